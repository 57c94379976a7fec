/*
 * sm-check - probe each target read on stdin over HTTP(S) and write one
 * result record per probe on stdout.
 *
 * --threads probe loops (one per CPU by default), each a thread with its
 * own libcurl multi handle and epoll set.  They share stdin: a loop with
 * room for more probes takes the next lines under a mutex (so each line
 * goes to exactly one loop), and stdin is not read at all while every
 * loop has its share of --concurrency probes in flight, so a fast producer
 * is slowed through the pipe instead of buffered.  Each loop writes its
 * results with one write(2) of whole lines under a mutex: lines are never
 * interleaved, their order across loops is that of the probes' ends.
 *
 * Regexes run on a few worker threads (workers.c) shared by the loops, so
 * that a costly one delays no other probe's timings; each loop takes its
 * own probes' results from its own eventfd.
 *
 * Each loop is event driven (curl_multi_socket_action over epoll): a
 * wake-up costs in proportion to the sockets that are ready, not to the
 * probes in flight, which matters at a -c of thousands.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <curl/curl.h>

#include "sm.h"
#include "castore.h"
#include "probe.h"
#include "rxcache.h"
#include "mialloc.h"
#include "tlsrelay.h"
#include "workers.h"

#define DEFAULT_CONCURRENCY 64
#define MAX_CONCURRENCY 100000
#define MAX_THREADS 256
/* Lines a loop takes from stdin at once (at most its room for probes). */
#define TAKE_MAX 64
/* A loop's results are written when this many bytes wait (and before it
 * waits for events in any case). */
#define OUT_FLUSH 65536
/* getopt value of the long-only --stats-interval (not a character). */
#define OPT_STATS_INTERVAL 256

static const char usage_text[] =
    "usage: sm-check [-s] [-c n] [-t n] [-l name] [-A agent] [-d file] < targets\n"
    "\n"
    "  -c, --concurrency N       probes in flight at most (default 64)\n"
    "  -t, --threads N           probe loops, each on its own thread (default:\n"
    "                            the CPUs sm-check may run on; at most -c)\n"
    "  -l, --probe-location NAME value of \"probe\" in results (default: host name)\n"
    "  -A, --user-agent AGENT    default User-Agent (default: sitemon/VERSION)\n"
    "  -d, --dead-letter FILE    append each invalid input line to FILE\n"
    "  -s, --strict              an invalid input line is fatal (exit 65)\n"
    "      --stats-interval DUR  a stats line on stderr every DUR (0: off)\n"
    "  -h, --help                show this help\n"
    "  -V, --version             show the version\n"
    "\n"
    "Input: one target record (JSON) or one http(s) URL per line.\n"
    "Environment: SM_CHECK_CONCURRENCY, SM_CHECK_THREADS, SM_PROBE_LOCATION,\n"
    "SM_STATS_INTERVAL.\n";

static const struct option long_opts[] = {
	{ "concurrency", required_argument, NULL, 'c' },
	{ "threads", required_argument, NULL, 't' },
	{ "probe-location", required_argument, NULL, 'l' },
	{ "user-agent", required_argument, NULL, 'A' },
	{ "dead-letter", required_argument, NULL, 'd' },
	{ "strict", no_argument, NULL, 's' },
	{ "stats-interval", required_argument, NULL, OPT_STATS_INTERVAL },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Since start, for the stats line.  in counts the targets taken up (each
 * is in flight or has its result out: in = out + in_flight); invalid the
 * input lines refused, which are not in. */
struct counts {
	unsigned long long in, out, ok, failed, invalid;
	unsigned long long err[ERR_OTHER + 1]; /* by error kind */
};

/* Readiness bits of a curl socket (CURL_CSELECT_IN, _OUT, _ERR). */
#define SEL_IN CURL_CSELECT_IN
#define SEL_OUT CURL_CSELECT_OUT
#define SEL_ERR CURL_CSELECT_ERR

/* What sm-check knows of one of curl's sockets.
 *
 * A socket starts edge-triggered, registered once for both directions:
 * an edge sets bits in ready, and what curl wants of them is handed to it.
 * A plain http probe (connect, send the request, read the answer in one
 * go) then costs one epoll_ctl, the ADD, instead of two (ADD for the
 * connect, MOD for the answer).  Edges say nothing of what curl left
 * unread or unwritten, so after anything but that first step (writable,
 * and then curl waits for input) a socket curl still waits on turns
 * level-triggered (lt) and follows curl's wishes with EPOLL_CTL_MOD, as a
 * plain level-triggered loop would: a TLS handshake, an answer in several
 * reads, a body sent in parts. */
struct sock {
	unsigned gen;   /* bumped when the fd becomes another socket */
	unsigned char want;  /* SEL_IN | SEL_OUT: what curl waits for */
	unsigned char ready; /* SEL_*: edges not yet handed to curl */
	bool active;    /* curl has this socket (between its first call and
	                 * CURL_POLL_REMOVE) */
	bool lt;        /* level-triggered from now on */
	bool pending;   /* in state.pending */
	CURL *easy;     /* whose socket it is */
};

/* What the probe loops share: the input, the output, the counts. */
struct shared {
	pthread_mutex_t in_mu;   /* the reader, and the dead-letter file */
	struct line_reader *lr;
	atomic_bool eof;         /* stdin is exhausted */
	atomic_bool bad_strict;  /* --strict and an invalid line was seen */
	atomic_ulong bad_lineno; /* ... the first of them, or ULONG_MAX */
	bool strict;
	FILE *dead;              /* --dead-letter, or NULL */
	const char *dead_path;
	pthread_mutex_t out_mu;  /* stdout: one loop's lines at a time */
	pthread_mutex_t n_mu;
	struct counts n;         /* under n_mu */
	size_t inflight;         /* under n_mu: every loop's, for the stats */
	atomic_bool stop_logged; /* the "stopping" line was written */
};

/* A line taken from stdin, kept in the loop's take buffer. */
struct taken {
	size_t off, len;
	unsigned long lineno;
};

/* One probe loop (a thread; the first runs on the main thread). */
struct state {
	struct shared *sh;
	CURLM *multi;
	const struct probe_opts *popts;
	size_t max_inflight;
	size_t inflight;
	struct jtext out;  /* the result being written, reused */
	char *obuf;        /* results waiting for their write(2) */
	size_t olen, ocap;
	char *tbuf;        /* lines taken from stdin, not yet handled */
	size_t tlen, tcap;
	struct taken taken[TAKE_MAX];
	int epfd;          /* epoll: curl's sockets, stdin, the wake-up */
	int wake_fd;       /* eventfd: a signal came */
	struct wq *wq;     /* this loop's regexes done */
	struct relays *relays; /* this loop's https relays (tlsrelay.h) */
	bool stdin_polled; /* stdin is in epfd (not a regular file) */
	bool stdin_armed;  /* ... and armed (EPOLLONESHOT) */
	int64_t timer_ns;  /* when curl wants its timeout handled, or -1 */
	struct sock *socks; /* by fd: the sockets curl waits on */
	size_t n_socks;
	int *pending;       /* fds with readiness curl wants since (a stack) */
	size_t n_pending, cap_pending;
	struct stats_clock *stats; /* --stats-interval: the first loop's */
	pthread_t thread;
};

/* Signals: the first asks for a drain, through each loop's eventfd, which
 * wakes its poll; the second restores the default action and so ends the
 * process at once. */
static volatile sig_atomic_t stop_requested;
static int wake_fds[MAX_THREADS];
static volatile sig_atomic_t n_wake_fds;
static int stdin_flags = -1; /* as found, restored at exit */

static void
on_signal(int sig)
{
	static const uint64_t one = 1;
	int saved = errno;

	if (stop_requested) {
		/* atexit() will not run: give stdin back its flags here. */
		if (stdin_flags != -1)
			(void)fcntl(STDIN_FILENO, F_SETFL, stdin_flags);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		raise(sig);
	}
	stop_requested = 1;
	for (int i = 0; i < n_wake_fds; i++)
		(void)!write(wake_fds[i], &one, sizeof one);
	errno = saved;
}

static void
setup_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* stdin may be a terminal shared with the shell: give it back as found. */
static void
restore_stdin(void)
{
	if (stdin_flags != -1)
		(void)fcntl(STDIN_FILENO, F_SETFL, stdin_flags);
}

static void
nonblocking_stdin(void)
{
	if ((stdin_flags = fcntl(STDIN_FILENO, F_GETFL)) < 0)
		die(EX_SOFTWARE, "stdin:");
	atexit(restore_stdin);
	if (fcntl(STDIN_FILENO, F_SETFL, stdin_flags | O_NONBLOCK) < 0)
		die(EX_SOFTWARE, "stdin: cannot make it non-blocking:");
}

/* Each probe holds a socket: let -c use what the hard limit allows. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* ---- output ------------------------------------------------------------- */

/* Write all of buf to stdout (which another process may have left
 * non-blocking: then wait until it takes more). */
static void
write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(STDOUT_FILENO, buf, len);

		if (w < 0) {
			struct pollfd pfd = { .fd = STDOUT_FILENO, .events = POLLOUT };

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				die(EX_IOERR, "write <stdout>:");
			(void)poll(&pfd, 1, -1);
			continue;
		}
		buf += w;
		len -= (size_t)w;
	}
}

/* The loop's waiting results out, in one write(2) of whole lines. */
static void
flush_out(struct state *st)
{
	if (st->olen == 0)
		return;
	pthread_mutex_lock(&st->sh->out_mu);
	write_all(st->obuf, st->olen);
	pthread_mutex_unlock(&st->sh->out_mu);
	st->olen = 0;
}

/* A result line (text without its newline) to the loop's output. */
static void
out_line(struct state *st, const char *text, size_t len)
{
	if (st->olen + len + 1 > st->ocap) {
		size_t cap = st->ocap ? st->ocap : OUT_FLUSH + 4096;

		while (cap < st->olen + len + 1)
			cap *= 2;
		st->obuf = xrealloc(st->obuf, cap);
		st->ocap = cap;
	}
	memcpy(st->obuf + st->olen, text, len);
	st->obuf[st->olen + len] = '\n';
	st->olen += len + 1;
	if (st->olen >= OUT_FLUSH)
		flush_out(st);
}

/* ---- input ------------------------------------------------------------- */

/* An input line refused (lineno: its number).  The dead-letter file is
 * written under the input mutex; locked: the caller holds it. */
static void
bad_line_at(struct state *st, unsigned long lineno, const char *line,
            size_t len, const char *why, bool locked)
{
	struct shared *sh = st->sh;

	warn_input(line_reader_name(sh->lr), lineno, line, len, "%s", why);
	pthread_mutex_lock(&sh->n_mu);
	sh->n.invalid++;
	pthread_mutex_unlock(&sh->n_mu);
	if (sh->dead != NULL) {
		if (!locked)
			pthread_mutex_lock(&sh->in_mu);
		if (fwrite(line, 1, len, sh->dead) != len ||
		    putc('\n', sh->dead) == EOF || fflush(sh->dead) != 0)
			die(EX_IOERR, "%s:", sh->dead_path);
		if (!locked)
			pthread_mutex_unlock(&sh->in_mu);
	}
	if (sh->strict) {
		unsigned long first = sh->bad_lineno;

		while (lineno < first &&
		       !atomic_compare_exchange_weak(&sh->bad_lineno, &first,
		                                     lineno))
			;
		sh->bad_strict = true;
	}
}

/* A result went out with error kind k (ERR_NONE: ok). */
static void
count_result(struct shared *sh, enum error_kind k)
{
	struct counts *n = &sh->n;

	pthread_mutex_lock(&sh->n_mu);
	n->out++;
	sh->inflight--;
	if (k == ERR_NONE) {
		n->ok++;
	} else {
		n->failed++;
		n->err[(size_t)k <= ERR_OTHER ? k : ERR_OTHER]++;
	}
	pthread_mutex_unlock(&sh->n_mu);
}

static void
write_result(struct state *st, json_t *r)
{
	char err[256], *text;

	/* A record that fails the schema is a bug here, not bad input. */
	if (result_validate(r, err, sizeof err) < 0)
		die(EX_SOFTWARE, "internal error: result fails schema v1: %s",
		    err);
	/* As json_line_write() prints it, into the loop's output. */
	if ((text = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(15))) ==
	    NULL)
		die(EX_SOFTWARE, "out of memory");
	out_line(st, text, strlen(text));
	free(text);
}

static void
start_probe(struct state *st, struct target *t, const char *line, size_t len,
            unsigned long lineno)
{
	char err[512];
	struct probe *p;
	CURLMcode mc;

	if ((p = probe_new(t, st->popts, err, sizeof err)) == NULL) {
		bad_line_at(st, lineno, line, len, err, false);
		return;
	}
	pthread_mutex_lock(&st->sh->n_mu);
	st->sh->n.in++;
	st->sh->inflight++;
	pthread_mutex_unlock(&st->sh->n_mu);
	probe_start(p);
	if ((mc = curl_multi_add_handle(st->multi, probe_easy(p))) != CURLM_OK) {
		json_t *r = probe_result_error(p, ERR_OTHER,
		                               curl_multi_strerror(mc));
		write_result(st, r);
		json_decref(r);
		count_result(st->sh, ERR_OTHER);
		probe_free(&p);
		return;
	}
	st->inflight++;
}

static void
handle_line(struct state *st, char *line, size_t len, unsigned long lineno)
{
	char err[512];
	size_t a = 0, b = len;
	struct target *t;

	while (a < b && (line[a] == ' ' || line[a] == '\t'))
		a++;
	while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t'))
		b--;
	/* Blank lines and "#" comments let a URL list be a plain file. */
	if (a == b || line[a] == '#')
		return;
	if (line[a] == '{') {
		json_t *obj = json_line_parse(line + a, b - a, err, sizeof err);

		if (obj == NULL) {
			bad_line_at(st, lineno, line, len, err, false);
			return;
		}
		t = target_from_json(obj, err, sizeof err);
		json_decref(obj);
		if (t == NULL) {
			bad_line_at(st, lineno, line, len, err, false);
			return;
		}
	} else {
		const char *reason;

		line[b] = '\0';
		/* A NUL would end the URL early: the rest would go unseen. */
		if (memchr(line + a, '\0', b - a) != NULL)
			reason = "must not contain NUL";
		else if (url_check(line + a, &reason) == 0)
			reason = NULL;
		if (reason != NULL) {
			snprintf(err, sizeof err,
			         "not a target record or URL (%s)", reason);
			bad_line_at(st, lineno, line, len, err, false);
			return;
		}
		t = target_new(line + a, line + a);
	}
	start_probe(st, t, line, len, lineno);
}

/* Whether this loop may take more lines. */
static bool
reading(const struct state *st)
{
	return !st->sh->eof && !st->sh->bad_strict;
}

/* Take up to max lines from stdin into the take buffer, under the input
 * mutex.  After a signal only the lines already read (in the reader's
 * buffer) are taken: none is lost, no more is read.  Returns how many;
 * *dry when stdin has no more for now (or at all). */
/* Wake every loop but st (their wake-up eventfd). */
static void
wake_others(const struct state *st)
{
	static const uint64_t one = 1;

	for (int i = 0; i < n_wake_fds; i++)
		if (wake_fds[i] != st->wake_fd)
			(void)!write(wake_fds[i], &one, sizeof one);
}

static size_t
take_lines(struct state *st, size_t max, bool *dry)
{
	struct shared *sh = st->sh;
	size_t n = 0;
	bool more;
	char *line;
	size_t len;

	*dry = false;
	st->tlen = 0;
	pthread_mutex_lock(&sh->in_mu);
	while (n < max && !sh->eof && !sh->bad_strict) {
		if (stop_requested && !line_reader_has_line(sh->lr)) {
			*dry = true;
			break;
		}
		switch (line_reader_next(sh->lr, &line, &len)) {
		case LINE_OK:
			if (st->tlen + len + 1 > st->tcap) {
				size_t cap = st->tcap ? st->tcap : 16384;

				while (cap < st->tlen + len + 1)
					cap *= 2;
				st->tbuf = xrealloc(st->tbuf, cap);
				st->tcap = cap;
			}
			memcpy(st->tbuf + st->tlen, line, len + 1);
			st->taken[n++] = (struct taken){
				.off = st->tlen, .len = len,
				.lineno = line_reader_lineno(sh->lr) };
			st->tlen += len + 1;
			break;
		case LINE_TOO_LONG:
			bad_line_at(st, line_reader_lineno(sh->lr), line, len,
			            "line too long", true);
			break;
		case LINE_AGAIN:
			*dry = true;
			goto out;
		case LINE_EOF:
			sh->eof = true;
			*dry = true;
			goto out;
		case LINE_ERROR:
			die(EX_IOERR, "read %s:", line_reader_name(sh->lr));
		}
	}
out:
	if (sh->eof || sh->bad_strict)
		*dry = true;
	/* Lines left in the buffer when this loop is full: the others
	 * would not see them (epoll sees the pipe, not the buffer), so
	 * wake them to take their share. */
	more = !*dry && line_reader_has_line(sh->lr);
	pthread_mutex_unlock(&sh->in_mu);
	if (more)
		wake_others(st);
	return n;
}

/* Read lines while there is room for more probes.  Returns false when
 * it stopped for want of room, with lines perhaps left in the reader's
 * buffer. */
static bool
read_input(struct state *st)
{
	while (reading(st) && st->inflight < st->max_inflight) {
		size_t room = st->max_inflight - st->inflight, n;
		bool dry;

		n = take_lines(st, room < TAKE_MAX ? room : TAKE_MAX, &dry);
		/* Under --strict nothing after an invalid line is started
		 * (another loop may have started some before it was seen). */
		for (size_t i = 0; i < n && st->taken[i].lineno < st->sh->bad_lineno;
		     i++)
			handle_line(st, st->tbuf + st->taken[i].off,
			            st->taken[i].len, st->taken[i].lineno);
		if (dry)
			return true;
	}
	return st->inflight < st->max_inflight;
}

/* ---- the multi loop ---------------------------------------------------- */

/* A probe's result out, and the probe gone. */
static void
finish(struct state *st, struct probe *p)
{
	enum error_kind kind = probe_result(p, &st->out);

	out_line(st, st->out.buf, st->out.len);
	count_result(st->sh, kind);
	probe_free(&p);
	st->inflight--;
}

static void
collect_done(struct state *st)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(st->multi, &left)) != NULL) {
		struct probe *p = NULL;
		bool eval;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
		/* msg is invalid once its handle leaves the multi. */
		eval = probe_transfer_done(p, msg->data.result);
		curl_multi_remove_handle(st->multi, probe_easy(p));
		if (eval)
			workers_submit(st->wq, p); /* in flight until its regexes end */
		else
			finish(st, p);
	}
}

/* Probes whose regexes a worker has evaluated. */
static void
collect_evaluated(struct state *st)
{
	struct probe *p;

	while ((p = workers_take(st->wq)) != NULL)
		finish(st, p);
}

/* ---- the stats line ---------------------------------------------------- */

static void
stats_report(struct shared *sh)
{
	struct counts c;
	const struct counts *n = &c;
	size_t inflight;
	char kinds[512];
	size_t off = 0;

	pthread_mutex_lock(&sh->n_mu);
	c = sh->n;
	inflight = sh->inflight;
	pthread_mutex_unlock(&sh->n_mu);

	kinds[0] = '\0';
	for (int k = ERR_NONE + 1; k <= ERR_OTHER && off < sizeof kinds; k++)
		if (n->err[k])
			off += (size_t)snprintf(kinds + off, sizeof kinds - off,
			                        " err_%s=%llu",
			                        error_kind_name((enum error_kind)k),
			                        n->err[k]);
	if (probe_waited_us() >= 1000 && off < sizeof kinds)
		off += (size_t)snprintf(kinds + off, sizeof kinds - off,
		                        " waited_ms=%llu", probe_waited_us() / 1000);
	if (probe_relayed() > 0 && off < sizeof kinds)
		snprintf(kinds + off, sizeof kinds - off, " tls_relayed=%lu",
		         probe_relayed());
	info("stats: in=%llu out=%llu in_flight=%zu ok=%llu failed=%llu "
	     "invalid=%llu%s", n->in, n->out, inflight, n->ok, n->failed,
	     n->invalid, kinds);
}

/* The wait of the loop, shortened to when the stats line is due. */
static int
stats_wait_ms(const struct state *st, int wait_ms)
{
	int s;

	if (st->stats == NULL)
		return wait_ms;
	s = stats_clock_timeout_ms(st->stats);

	return s >= 0 && s < wait_ms ? s : wait_ms;
}

/* The fd's entry, the table grown to hold it. */
static struct sock *
sock_of(struct state *st, int fd)
{
	st->socks = xgrow_index(st->socks, &st->n_socks, (size_t)fd,
	                        sizeof *st->socks);
	return &st->socks[fd];
}

/* The entry of a socket curl has, or NULL. */
static struct sock *
active_sock(const struct state *st, int fd)
{
	if (fd < 0 || (size_t)fd >= st->n_socks || !st->socks[fd].active)
		return NULL;
	return &st->socks[fd];
}

static uint32_t
level_events(unsigned want)
{
	return (want & SEL_IN ? EPOLLIN : 0) | (want & SEL_OUT ? EPOLLOUT : 0);
}

static void
epoll_set(struct state *st, int op, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	if (epoll_ctl(st->epfd, op, fd, &ev) == 0)
		return;
	/* ADD of a socket curl let go of but kept open (still in the set),
	 * or MOD of one it closed and opened again (out of the set). */
	if (op == EPOLL_CTL_ADD && errno == EEXIST &&
	    epoll_ctl(st->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
		return;
	if (op == EPOLL_CTL_MOD && errno == ENOENT &&
	    epoll_ctl(st->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
		return;
	die(EX_SOFTWARE, "epoll_ctl:");
}

/* Hand fd to curl at the next turn of the loop, before it waits. */
static void
add_pending(struct state *st, int fd, struct sock *s)
{
	if (s->pending)
		return;
	if (st->n_pending == st->cap_pending) {
		st->cap_pending = st->cap_pending ? 2 * st->cap_pending : 64;
		st->pending = xrealloc(st->pending,
		                       st->cap_pending * sizeof *st->pending);
	}
	st->pending[st->n_pending++] = fd;
	s->pending = true;
}

/* CURLMOPT_SOCKETFUNCTION: follow what curl wants of each socket.
 *
 * A socket curl is done with is not taken out of the epoll set at once:
 * curl closes it right after (every probe has its own connection), and
 * closing it takes it out, which saves a system call per probe.  Should
 * one stay open and report an event, run() takes it out then. */
static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
          void *socketp)
{
	struct state *st = userp;
	struct sock *s = sock_of(st, fd);
	unsigned want = (what & CURL_POLL_IN ? SEL_IN : 0) |
	                (what & CURL_POLL_OUT ? SEL_OUT : 0);

	if (what == CURL_POLL_REMOVE) {
		if (socketp != NULL) {
			s->active = false;
			curl_multi_assign(st->multi, fd, NULL);
		}
		return 0;
	}
	if (socketp == NULL) {
		/* A new socket (or one curl took back): edge-triggered, both
		 * directions, whatever curl wants first. */
		*s = (struct sock){ .gen = s->gen + 1, .want = (unsigned char)want,
		                    .active = true, .easy = easy };
		epoll_set(st, EPOLL_CTL_ADD, fd,
		          EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
		curl_multi_assign(st->multi, fd, st);
		return 0;
	}
	s->want = (unsigned char)want;
	if (s->lt)
		epoll_set(st, EPOLL_CTL_MOD, fd, level_events(want));
	else if (s->ready & want)
		add_pending(st, fd, s); /* the edge came before the wish */
	return 0;
}

/* A socket of curl's whose descriptor now names another file (a relay
 * made it one end of a pair, and took the old registration out): into
 * the epoll set again, as the table says curl waits on it. */
static void
sock_rebind(void *ctx, int fd)
{
	struct state *st = ctx;
	struct sock *s = active_sock(st, fd);

	if (s == NULL)
		return;
	s->ready = 0;
	epoll_set(st, EPOLL_CTL_ADD, fd,
	          s->lt ? level_events(s->want)
	                : EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
}

/* CURLMOPT_TIMERFUNCTION: -1 deletes the timer. */
static int
on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct state *st = userp;

	st->timer_ns = timeout_ms < 0 ? -1
	                              : mono_now_ns() + (int64_t)timeout_ms * 1000000;
	return 0;
}

static void
socket_action(struct state *st, curl_socket_t fd, int flags)
{
	int running;
	CURLMcode mc = curl_multi_socket_action(st->multi, fd, flags, &running);

	if (mc != CURLM_OK)
		die(EX_SOFTWARE, "curl_multi_socket_action: %s",
		    curl_multi_strerror(mc));
}

/* An edge-triggered socket: give curl what it wants of what is ready,
 * then decide whether edges still tell enough (see struct sock). */
static void
serve_edges(struct state *st, int fd, struct sock *s)
{
	unsigned given = s->ready & s->want, gen = s->gen;

	if ((s->ready & SEL_ERR) && s->want)
		given |= SEL_ERR;
	if (given == 0)
		return; /* kept in ready until curl wants it */
	s->ready &= (unsigned char)~given;
	socket_action(st, fd, (int)given);
	s = &st->socks[fd]; /* the table may have grown */
	if (!s->active || s->gen != gen || s->lt)
		return; /* done with, or another socket by now */
	if (given == SEL_OUT && s->want == SEL_IN) {
		/* Connected and the request sent: the answer's edge is
		 * still to come, or has come already. */
		if (s->ready & SEL_IN)
			add_pending(st, fd, s);
		return;
	}
	s->lt = true;
	epoll_set(st, EPOLL_CTL_MOD, fd, level_events(s->want));
}

/* An event on one of curl's sockets. */
static void
socket_event(struct state *st, int fd, uint32_t e)
{
	struct sock *s = active_sock(st, fd);
	unsigned bits = (e & (EPOLLIN | EPOLLHUP | EPOLLRDHUP) ? SEL_IN : 0) |
	                (e & EPOLLOUT ? SEL_OUT : 0) |
	                (e & EPOLLERR ? SEL_ERR : 0);

	if (s == NULL) {
		/* Left open by curl after its REMOVE. */
		(void)epoll_ctl(st->epfd, EPOLL_CTL_DEL, fd, NULL);
		return;
	}
	/* Not with an error pending: a peek at an empty queue would take
	 * the error that libcurl has to see. */
	if ((e & EPOLLIN) && !(e & (EPOLLERR | EPOLLHUP)))
		probe_socket_readable(s->easy, fd);
	if (s->lt) {
		socket_action(st, fd, (int)bits);
		return;
	}
	s->ready |= (unsigned char)bits;
	serve_edges(st, fd, s);
}

/* Sockets whose readiness came before curl wanted it. */
static void
serve_pending(struct state *st)
{
	/* Serving may queue more: take the list as it is now. */
	while (st->n_pending > 0) {
		int fd = st->pending[--st->n_pending];
		struct sock *s = active_sock(st, fd);

		st->socks[fd].pending = false;
		if (s != NULL && !s->lt)
			serve_edges(st, fd, s);
	}
}

static void
setup_events(struct state *st)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = st->wake_fd };

	if ((st->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die(EX_SOFTWARE, "epoll_create1:");
	if (epoll_ctl(st->epfd, EPOLL_CTL_ADD, st->wake_fd, &ev) < 0)
		die(EX_SOFTWARE, "epoll_ctl:");
	ev = (struct epoll_event){ .events = EPOLLIN,
	                           .data.fd = workers_fd(st->wq) };
	if (epoll_ctl(st->epfd, EPOLL_CTL_ADD, workers_fd(st->wq), &ev) < 0)
		die(EX_SOFTWARE, "epoll_ctl:");
	/* stdin is armed only while there is room for its lines; a regular
	 * file (EPERM) is always readable and so never waited for. */
	ev = (struct epoll_event){ .events = 0, .data.fd = STDIN_FILENO };
	if (epoll_ctl(st->epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev) == 0)
		st->stdin_polled = true;
	else if (errno != EPERM)
		die(EX_SOFTWARE, "epoll_ctl <stdin>:");
	st->timer_ns = -1;
	curl_multi_setopt(st->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(st->multi, CURLMOPT_SOCKETDATA, st);
	curl_multi_setopt(st->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(st->multi, CURLMOPT_TIMERDATA, st);
}

static void
arm_stdin(struct state *st)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT,
	                          .data.fd = STDIN_FILENO };

	if (st->stdin_armed || !st->stdin_polled)
		return;
	if (epoll_ctl(st->epfd, EPOLL_CTL_MOD, STDIN_FILENO, &ev) < 0)
		die(EX_SOFTWARE, "epoll_ctl <stdin>:");
	st->stdin_armed = true;
}

/* The loop that writes the stats line stays while other loops still
 * have probes in flight, so that the line keeps coming. */
static bool
others_to_report(const struct state *st)
{
	size_t inflight;

	if (st->stats == NULL || st->stats->interval_ns == 0)
		return false;
	pthread_mutex_lock(&st->sh->n_mu);
	inflight = st->sh->inflight;
	pthread_mutex_unlock(&st->sh->n_mu);
	return inflight > 0;
}

static void
run(struct state *st)
{
	struct epoll_event evs[256];

	relays_attach(st->relays);

	for (;;) {
		bool more, drained;
		int n, wait_ms;

		/* drained: stdin has no line for us now (or never again). */
		drained = read_input(st);
		/* Probes just added are started by their timeout of 0. */
		if (st->timer_ns >= 0 && mono_now_ns() >= st->timer_ns) {
			st->timer_ns = -1;
			socket_action(st, CURL_SOCKET_TIMEOUT, 0);
		}
		serve_pending(st);
		collect_done(st);
		/* Results go out before we wait, so that the pipeline streams
		 * without a write per record. */
		flush_out(st);
		/* After the write: the line counts what has gone out. */
		if (st->stats != NULL && stats_clock_due(st->stats))
			stats_report(st->sh);

		if (stop_requested && !atomic_exchange(&st->sh->stop_logged, true)) {
			size_t inflight;

			pthread_mutex_lock(&st->sh->n_mu);
			inflight = st->sh->inflight;
			pthread_mutex_unlock(&st->sh->n_mu);
			info("stopping: %zu probe%s in flight to finish", inflight,
			     inflight == 1 ? "" : "s");
		}
		more = reading(st);
		/* Done: no more input for this loop (end of it, --strict, or a
		 * signal and no line left that was read), nothing in flight. */
		if ((!more || stop_requested) && st->inflight == 0 &&
		    (!more || drained) && !others_to_report(st))
			return;

		wait_ms = 1000;
		if (st->timer_ns >= 0) {
			int64_t left = st->timer_ns - mono_now_ns();

			wait_ms = left <= 0 ? 0
			          : left / 1000000 >= 1000 ? 1000
			                                    : (int)((left + 999999) / 1000000);
		}
		if (st->n_pending > 0)
			wait_ms = 0; /* curl's wishes changed after the serving */
		if (more && st->inflight < st->max_inflight) {
			/* Probes ended since the reader stopped for want of
			 * room: complete lines may sit in its buffer, where
			 * epoll cannot see them. */
			if (!drained)
				wait_ms = 0;
			else if (!stop_requested && !st->stdin_polled)
				wait_ms = 0;
			else if (!stop_requested)
				arm_stdin(st);
		}
		n = epoll_wait(st->epfd, evs, (int)(sizeof evs / sizeof evs[0]),
		               stats_wait_ms(st, wait_ms));
		/* Interrupted (a SIGCONT does it too): the events that are
		 * ready go before curl's timers, which would read sockets
		 * without them and so without their arrival times. */
		if (n < 0 && errno == EINTR)
			n = epoll_wait(st->epfd, evs,
			               (int)(sizeof evs / sizeof evs[0]), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(EX_SOFTWARE, "epoll_wait:");
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			uint32_t e = evs[i].events;

			if (fd == STDIN_FILENO) {
				st->stdin_armed = false;
				continue;
			}
			if (fd == workers_fd(st->wq)) {
				collect_evaluated(st);
				continue;
			}
			if (fd == st->wake_fd) {
				uint64_t count;

				(void)!read(st->wake_fd, &count, sizeof count);
				continue;
			}
			if (relays_event(st->relays, fd, e))
				continue;
			socket_event(st, fd, e);
		}
		relays_flush(st->relays);
	}
}

/* A probe loop's own resources; wake_fd was made by main (for the
 * signal handler). */
static void
loop_init(struct state *st)
{
	if ((st->multi = curl_multi_init()) == NULL)
		die(EX_SOFTWARE, "curl_multi_init failed");
	st->wq = workers_queue_new();
	setup_events(st);
	st->relays = relays_new(st->epfd, sock_rebind, st);
}

static void
loop_end(struct state *st)
{
	flush_out(st);
	curl_multi_cleanup(st->multi);
	relays_free(&st->relays);
	probe_pool_clear();
	workers_queue_free(&st->wq);
	close(st->epfd);
	jt_free(&st->out);
	free(st->obuf);
	free(st->tbuf);
	free(st->socks);
	free(st->pending);
}

static void *
loop_thread(void *arg)
{
	struct state *st = arg;

	run(st);
	loop_end(st);
	return NULL;
}

/* ---- main -------------------------------------------------------------- */

/* Whether the environment names a proxy that libcurl would use: the
 * variables it reads for http and https targets.  The environment does
 * not change while sm-check runs, so this is looked at once. */
static bool
proxy_in_env(void)
{
	static const char *const vars[] = {
		"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
		"all_proxy", "ALL_PROXY",
	};

	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		const char *v = getenv(vars[i]);

		if (v != NULL && *v != '\0')
			return true;
	}
	return false;
}

/* Threads for regexes: one per CPU, at least 4 (so that a few costly
 * regexes, each held to its probe's deadline, leave threads for the
 * rest), at most 16. */
static size_t
regex_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 4 ? 4 : n > 16 ? 16 : (size_t)n;
}

static char *
default_location(void)
{
	char host[256];

	if (gethostname(host, sizeof host) < 0)
		return xstrdup("unknown");
	host[sizeof host - 1] = '\0';
	return xstrdup(host);
}

/* The location goes into every result and, beside the target name, into
 * the storage's index keys: one that cannot be stored is refused here,
 * before any probe, rather than by every program after it. */
static void
probe_location_check(const char *location)
{
	size_t len = strlen(location);

	if (len == 0)
		die(EX_USAGE, "-l: the probe location must not be empty");
	if (len > SM_MAX_PROBE_NAME)
		die(EX_USAGE, "the probe location (-l, SM_PROBE_LOCATION) is %zu "
		    "bytes, more than the %d it may take", len,
		    SM_MAX_PROBE_NAME);
}

/* The default of --threads: the CPUs sm-check may run on (its affinity
 * mask, so taskset and cpusets count), else those online. */
static size_t
default_threads(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (size_t)n;
}

int
main(int argc, char **argv)
{
	static struct shared sh = {
		.bad_lineno = ULONG_MAX,
		.in_mu = PTHREAD_MUTEX_INITIALIZER,
		.out_mu = PTHREAD_MUTEX_INITIALIZER,
		.n_mu = PTHREAD_MUTEX_INITIALIZER,
	};
	struct probe_opts popts;
	struct stats_clock stats;
	struct state *loops;
	size_t max_inflight = DEFAULT_CONCURRENCY, n_threads = 0;
	const char *env, *location = NULL, *user_agent = NULL;
	char *owned_location = NULL, *owned_ua = NULL;
	int64_t stats_ms = -1; /* -1: not given, SM_STATS_INTERVAL then */
	int c;

	diag_init(argv[0]);
	if ((env = getenv("SM_CHECK_CONCURRENCY")) != NULL && *env)
		max_inflight = (size_t)opt_ll("SM_CHECK_CONCURRENCY", env, 1,
		                              MAX_CONCURRENCY);
	if ((env = getenv("SM_CHECK_THREADS")) != NULL && *env)
		n_threads = (size_t)opt_ll("SM_CHECK_THREADS", env, 1,
		                           MAX_THREADS);
	if ((env = getenv("SM_PROBE_LOCATION")) != NULL && *env)
		location = env;

	while ((c = getopt_long(argc, argv, "c:t:l:A:d:shV", long_opts,
	                        NULL)) != -1) {
		switch (c) {
		case 'c':
			max_inflight = (size_t)opt_ll("-c", optarg, 1,
			                              MAX_CONCURRENCY);
			break;
		case 't':
			n_threads = (size_t)opt_ll("-t", optarg, 1, MAX_THREADS);
			break;
		case 'l':
			location = optarg;
			break;
		case 'A':
			user_agent = optarg;
			break;
		case 'd':
			sh.dead_path = optarg;
			break;
		case 's':
			sh.strict = true;
			break;
		case OPT_STATS_INTERVAL:
			stats_ms = stats_interval_option_ms(optarg);
			break;
		case 'h':
			usage_exit(usage_text, NULL, 0);
		case 'V':
			print_version_and_exit();
		default:
			usage_exit(usage_text, NULL, EX_USAGE);
		}
	}
	if (optind < argc) {
		warn("unexpected argument \"%s\": targets are read on stdin",
		     argv[optind]);
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	if (stats_ms < 0)
		stats_ms = stats_interval_default_ms();
	if (n_threads == 0)
		n_threads = default_threads();
	/* Each loop has at least one probe of -c. */
	if (n_threads > max_inflight)
		n_threads = max_inflight;

	if (location == NULL)
		location = owned_location = default_location();
	else
		probe_location_check(location);
	if (user_agent == NULL)
		user_agent = owned_ua = xasprintf("sitemon/%s", SM_VERSION);
	popts.location = location;
	popts.user_agent = user_agent;
	popts.proxy_env = proxy_in_env();
	if (sh.dead_path != NULL &&
	    (sh.dead = fopen(sh.dead_path, "ae")) == NULL)
		die(EX_CONFIG, "%s:", sh.dead_path);

	if (!mialloc_curl_global_init())
		die(EX_SOFTWARE, "curl_global_init failed");
	probe_global_init();
	raise_fd_limit();
	nonblocking_stdin();
	sh.lr = line_reader_new(STDIN_FILENO, "<stdin>", SM_MAX_LINE);
	workers_init(regex_threads(), probe_eval);
	stats_clock_init(&stats, stats_ms);

	/* -c shared out: the first loops take the remainder. */
	loops = xcalloc(n_threads, sizeof *loops);
	for (size_t i = 0; i < n_threads; i++) {
		struct state *st = &loops[i];

		st->sh = &sh;
		st->popts = &popts;
		st->max_inflight = max_inflight / n_threads +
		                   (i < max_inflight % n_threads);
		st->stats = i == 0 ? &stats : NULL;
		if ((st->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
			die(EX_SOFTWARE, "eventfd:");
		wake_fds[i] = st->wake_fd;
		loop_init(st);
	}
	n_wake_fds = (sig_atomic_t)n_threads;
	setup_signals();
	for (size_t i = 1; i < n_threads; i++) {
		int rc = pthread_create(&loops[i].thread, NULL, loop_thread,
		                        &loops[i]);

		if (rc != 0) {
			errno = rc;
			die(EX_SOFTWARE, "pthread_create:");
		}
	}
	run(&loops[0]);
	loop_end(&loops[0]);
	for (size_t i = 1; i < n_threads; i++)
		pthread_join(loops[i].thread, NULL);
	free(loops);
	if (stats.interval_ns)
		stats_report(&sh); /* the last word, with the final counts */

	line_reader_free(&sh.lr);
	workers_stop();
	probe_global_end();
	curl_global_cleanup();
	rx_cache_clear();
	castore_clear();
	free(owned_location);
	free(owned_ua);
	if (sh.dead != NULL && fclose(sh.dead) != 0)
		die(EX_IOERR, "%s:", sh.dead_path);
	if (fclose(stdout) != 0)
		die(EX_IOERR, "write <stdout>:");
	return sh.bad_strict ? EX_DATAERR : 0;
}
