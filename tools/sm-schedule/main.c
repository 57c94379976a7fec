/*
 * sm-schedule - emit a target record on stdout each time a target is due.
 *
 *   sm-schedule sites.yaml | sm-check | sm-kafka-pub -b host:9092 -t results
 *
 * Every target fires at a fixed phase within its interval (a hash of its
 * name), aligned to the wall clock, so its rhythm survives restarts and
 * reloads.  Timing runs on CLOCK_MONOTONIC; a min-heap holds the next due
 * time of each target.  When stdout is full, ticks that cannot be written
 * in time are skipped and counted, never bunched up.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "sched.h"
#include "sm.h"

/* How late a tick may still be written; later ones are skipped. */
#define MAX_LATE_MS 1000
/* At most one "skipped ticks" line per this many ms. */
#define SKIP_REPORT_MS 10000
/* A wall clock step larger than this re-aligns the schedule. */
#define CLOCK_STEP_MS 1000

static const char usage_text[] =
    "usage: sm-schedule [-1c] [-s i/N] sites.yaml\n"
    "       sm-schedule [-1c] [-s i/N] -f targets.ndjson\n";

static const char help_text[] =
    "\n"
    "Emit a target record (NDJSON) on stdout each time a target is due.\n"
    "\n"
    "  -1, --once         emit every target once, now, and exit\n"
    "  -c, --check        validate the configuration, print a summary, exit\n"
    "  -f, --file FILE    read NDJSON target records instead of YAML\n"
    "                     (\"-\" is stdin)\n"
    "  -s, --shard i/N    only targets whose name hash mod N is i\n"
    "  -h, --help         show this help and exit\n"
    "  -V, --version      show the version and exit\n"
    "\n"
    "Environment: SM_SHARD (default of --shard).\n"
    "Signals: SIGHUP reloads the configuration, SIGTERM and SIGINT stop.\n"
    "Exit status: 0 ok, 64 usage, 70 internal, 74 write error, 78 bad\n"
    "configuration.  See sm-schedule(1) and sites.yaml(5).\n";

enum out_status { OUT_OK, OUT_BLOCKED };

struct slot {
	char *name;
	int64_t interval_ms, phase_ms;
	char *prefix; /* the record's JSON without its closing brace */
	size_t prefix_len;
};

struct state {
	const char *path;
	enum config_format fmt;
	unsigned shard_i, shard_n; /* shard_n 0: no sharding */

	struct slot *slots;
	size_t n;
	struct heap heap;    /* due times in unix ms, indices into slots */
	int64_t offset_ms;   /* wall clock minus monotonic clock */

	char *line;          /* the record being written, reused */
	size_t line_cap;
	char *pend;          /* the unwritten tail of a partial write */
	size_t pend_len, pend_cap;

	unsigned long long skipped, skipped_total;
	int64_t last_report_ms;
};

static volatile sig_atomic_t stop_signals, hup_signal;
static int stdout_flags = -1; /* to restore at exit */

static void
on_stop(int sig)
{
	(void)sig;
	stop_signals++;
}

static void
on_hup(int sig)
{
	(void)sig;
	hup_signal = 1;
}

static void
usage(FILE *fp, int status)
{
	fputs(usage_text, fp);
	if (status == 0)
		fputs(help_text, fp);
	exit(status);
}

/* "i/N"; what names where it came from (--shard or SM_SHARD). */
static void
parse_shard(const char *what, const char *s, unsigned *i, unsigned *n)
{
	const char *slash = strchr(s, '/'), *why;
	long long a, b;
	char *left;

	if (!slash)
		die(EX_USAGE, "%s: expected i/N, got \"%s\"", what, s);
	left = xstrndup(s, (size_t)(slash - s));
	if (parse_ll(left, 0, 1000000, &a, &why) < 0 ||
	    parse_ll(slash + 1, 1, 1000000, &b, &why) < 0) {
		free(left);
		die(EX_USAGE, "%s: \"%s\": %s (expected i/N with 0 <= i < N)",
		    what, s, why);
	}
	free(left);
	if (a >= b)
		die(EX_USAGE, "%s: \"%s\": i must be less than N", what, s);
	*i = (unsigned)a;
	*n = (unsigned)b;
}

static bool
in_shard(const struct state *S, uint64_t hash)
{
	return S->shard_n == 0 || hash % S->shard_n == S->shard_i;
}

/* ---- clocks ----------------------------------------------------------- */

static int64_t
mono_ms(void)
{
	return mono_now_ns() / 1000000;
}

/* Now, in the wall-clock frame but advancing with the monotonic clock. */
static int64_t
sched_now(const struct state *S)
{
	return mono_ms() + S->offset_ms;
}

/* ---- output ----------------------------------------------------------- */

static void
restore_stdout(void)
{
	if (stdout_flags >= 0)
		(void)fcntl(STDOUT_FILENO, F_SETFL, stdout_flags);
}

/* A pipe or socket is ours alone: make it non-blocking so that a full
 * pipe shows up as EAGAIN.  A terminal or file is shared, left alone. */
static void
stdout_nonblocking(void)
{
	struct stat st;
	int fl;

	if (fstat(STDOUT_FILENO, &st) < 0 ||
	    !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
		return;
	if ((fl = fcntl(STDOUT_FILENO, F_GETFL)) < 0 || (fl & O_NONBLOCK))
		return;
	if (fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK) < 0)
		return;
	stdout_flags = fl;
	atexit(restore_stdout);
}

/* Writes the pending tail; true when nothing is left. */
static bool
out_flush(struct state *S)
{
	while (S->pend_len) {
		ssize_t w = write(STDOUT_FILENO, S->pend, S->pend_len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return false;
			die(EX_IOERR, "write error on stdout:");
		}
		memmove(S->pend, S->pend + w, S->pend_len - (size_t)w);
		S->pend_len -= (size_t)w;
	}
	return true;
}

/* OUT_BLOCKED: nothing written (the pipe is full); a partial write keeps
 * its tail pending, to be finished before anything else. */
static enum out_status
out_write(struct state *S, const char *buf, size_t len)
{
	size_t off = 0;

	if (S->pend_len)
		return OUT_BLOCKED;
	while (off < len) {
		ssize_t w = write(STDOUT_FILENO, buf + off, len - off);

		if (w >= 0) {
			off += (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			die(EX_IOERR, "write error on stdout:");
		if (off == 0)
			return OUT_BLOCKED;
		if (len - off > S->pend_cap) {
			S->pend_cap = len - off;
			S->pend = xrealloc(S->pend, S->pend_cap);
		}
		memcpy(S->pend, buf + off, len - off);
		S->pend_len = len - off;
		break;
	}
	return OUT_OK;
}

static enum out_status
emit(struct state *S, const struct slot *sl, int64_t scheduled_ms)
{
	static const char mid[] = ",\"scheduled_at\":\"";
	char ts[TIME_STR_LEN];
	size_t n = 0, tl, need;

	time_format_ms(scheduled_ms, ts);
	tl = strlen(ts);
	need = sl->prefix_len + sizeof(mid) + tl + 3;
	if (need > S->line_cap) {
		S->line_cap = need * 2;
		S->line = xrealloc(S->line, S->line_cap);
	}
	memcpy(S->line, sl->prefix, sl->prefix_len);
	n = sl->prefix_len;
	memcpy(S->line + n, mid, sizeof(mid) - 1);
	n += sizeof(mid) - 1;
	memcpy(S->line + n, ts, tl);
	n += tl;
	memcpy(S->line + n, "\"}\n", 3);
	n += 3;
	return out_write(S, S->line, n);
}

/* ---- targets ---------------------------------------------------------- */

static void
slots_free(struct slot *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].prefix);
	}
	free(v);
}

/* The configuration's targets in this shard, ready to emit. */
static struct slot *
slots_new(const struct state *S, const struct config *cfg, size_t *np)
{
	struct slot *v = xcalloc(cfg->n ? cfg->n : 1, sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; i < cfg->n; i++) {
		const struct config_target *ct = &cfg->v[i];
		struct slot *sl;
		char *js;

		if (!in_shard(S, ct->hash))
			continue;
		sl = &v[n++];
		sl->name = xstrdup(ct->name);
		sl->interval_ms = ct->interval_ms;
		sl->phase_ms = sched_phase(ct->hash, ct->interval_ms);
		if (!(js = json_dumps(ct->record, JSON_COMPACT)))
			die(EX_SOFTWARE, "cannot encode target \"%s\"",
			    ct->name);
		/* Drop the closing brace: emit() appends scheduled_at. */
		sl->prefix_len = strlen(js) - 1;
		js[sl->prefix_len] = '\0';
		sl->prefix = js;
	}
	*np = n;
	return v;
}

static void
heap_fill(struct state *S, const int64_t *due)
{
	S->heap.n = 0;
	for (size_t i = 0; i < S->n; i++)
		heap_push(&S->heap, due[i], i);
}

/* Every target at its next due time from now. */
static void
schedule_all(struct state *S)
{
	int64_t now = sched_now(S), *due = xcalloc(S->n + 1, sizeof(*due));

	for (size_t i = 0; i < S->n; i++)
		due[i] = sched_next_due(now, S->slots[i].interval_ms,
		                        S->slots[i].phase_ms);
	heap_fill(S, due);
	free(due);
}

struct old_due {
	const char *name;
	const struct slot *slot;
	int64_t due;
};

static int
old_due_cmp(const void *a, const void *b)
{
	return strcmp(((const struct old_due *)a)->name,
	              ((const struct old_due *)b)->name);
}

/* SIGHUP: a new configuration.  Targets that stay keep their next due
 * time; new ones start at their phase; removed ones are dropped. */
static void
reload(struct state *S)
{
	struct config *cfg = config_load(S->path, S->fmt);
	struct old_due *od, key;
	struct slot *nv;
	size_t nn, added = 0, changed = 0, kept = 0;
	int64_t now, *due;

	if (!cfg) {
		warn("reload of %s failed; keeping the %zu current targets",
		     S->path, S->n);
		return;
	}
	nv = slots_new(S, cfg, &nn);
	config_free(&cfg);
	od = xcalloc(S->n + 1, sizeof(*od));
	for (size_t i = 0; i < S->heap.n; i++) {
		const struct slot *sl = &S->slots[S->heap.v[i].idx];

		od[i].name = sl->name;
		od[i].slot = sl;
		od[i].due = S->heap.v[i].due;
	}
	qsort(od, S->heap.n, sizeof(*od), old_due_cmp);
	now = sched_now(S);
	due = xcalloc(nn + 1, sizeof(*due));
	for (size_t i = 0; i < nn; i++) {
		const struct old_due *o;

		key.name = nv[i].name;
		o = bsearch(&key, od, S->heap.n, sizeof(*od), old_due_cmp);
		if (o && o->slot->interval_ms == nv[i].interval_ms) {
			due[i] = o->due;
			kept++;
			if (strcmp(o->slot->prefix, nv[i].prefix))
				changed++;
		} else {
			due[i] = sched_next_due(now, nv[i].interval_ms,
			                        nv[i].phase_ms);
			if (o) {
				kept++;
				changed++;
			} else {
				added++;
			}
		}
	}
	info("reloaded %s: %zu targets (%zu new, %zu changed, %zu removed)",
	     S->path, nn, added, changed, S->n - kept);
	free(od);
	slots_free(S->slots, S->n);
	S->slots = nv;
	S->n = nn;
	heap_fill(S, due);
	free(due);
}

/* ---- the loop ----------------------------------------------------------- */

static void
report_skips(struct state *S, int64_t now, bool force)
{
	if (!S->skipped)
		return;
	if (!force && S->last_report_ms &&
	    now - S->last_report_ms < SKIP_REPORT_MS)
		return;
	S->skipped_total += S->skipped;
	warning("skipped %llu ticks that could not be written on time "
	     "(stdout blocked, or the process stalled); %llu since start",
	     S->skipped, S->skipped_total);
	S->skipped = 0;
	S->last_report_ms = now;
}

/* The wall clock was set: due times are wall-aligned, so start over. */
static void
check_clock_step(struct state *S)
{
	int64_t drift = time_now_ms() - sched_now(S);

	if (drift > -CLOCK_STEP_MS && drift < CLOCK_STEP_MS)
		return;
	info("wall clock stepped by %+lld ms; schedule re-aligned",
	     (long long)drift);
	S->offset_ms += drift;
	schedule_all(S);
}

static int64_t
max_late(const struct slot *sl)
{
	return sl->interval_ms / 2 < MAX_LATE_MS ? sl->interval_ms / 2
	                                          : MAX_LATE_MS;
}

/* Emits every due tick that can be written; true when stdout blocked. */
static bool
run_due(struct state *S, int64_t now)
{
	while (S->heap.n && S->heap.v[0].due <= now) {
		struct heap_item *top = &S->heap.v[0];
		const struct slot *sl = &S->slots[top->idx];
		int64_t late = now - top->due;

		if (late > max_late(sl)) {
			/* Too late to honour: skip to the first tick that is
			 * still in time (or in the future). */
			int64_t k = (late - max_late(sl) + sl->interval_ms - 1) /
			            sl->interval_ms;

			S->skipped += (unsigned long long)k;
			top->due += k * sl->interval_ms;
			heap_sift_top(&S->heap);
			continue;
		}
		if (emit(S, sl, top->due) == OUT_BLOCKED)
			return true;
		top->due += sl->interval_ms;
		heap_sift_top(&S->heap);
	}
	return false;
}

static int
run(struct state *S)
{
	sigset_t block, orig;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_hup;
	sigaction(SIGHUP, &sa, NULL);
	/* Signals arrive only inside ppoll(), so none is missed between a
	 * check of the flags and the wait. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &orig);

	stdout_nonblocking();
	S->offset_ms = time_now_ms() - mono_ms();
	schedule_all(S);
	if (S->n == 0)
		info("no targets%s; waiting for SIGHUP",
		     S->shard_n ? " in this shard" : "");

	while (!stop_signals) {
		struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};
		struct timespec ts, *tsp = NULL;
		int64_t now, deadline = INT64_MAX;
		bool blocked;

		if (hup_signal) {
			hup_signal = 0;
			if (strcmp(S->path, "-"))
				reload(S);
			else
				warn("SIGHUP: targets read from stdin cannot be "
				     "reloaded");
		}
		check_clock_step(S);
		blocked = !out_flush(S);
		now = sched_now(S);
		if (!blocked)
			blocked = run_due(S, now);
		report_skips(S, now, false);

		if (S->heap.n) {
			const struct heap_item *top = &S->heap.v[0];

			/* Blocked: wake when the head tick runs out of time. */
			deadline = blocked ? top->due +
			                         max_late(&S->slots[top->idx]) + 1
			                   : top->due;
		}
		if (S->skipped && S->last_report_ms + SKIP_REPORT_MS < deadline)
			deadline = S->last_report_ms + SKIP_REPORT_MS;
		if (deadline != INT64_MAX) {
			int64_t wait_ns = (deadline - S->offset_ms) * 1000000 -
			                  mono_now_ns();

			if (wait_ns < 0)
				wait_ns = 0;
			ts.tv_sec = wait_ns / 1000000000;
			ts.tv_nsec = wait_ns % 1000000000;
			tsp = &ts;
		}
		if (ppoll(&pfd, blocked ? 1 : 0, tsp, &orig) < 0 &&
		    errno != EINTR)
			die(EX_SOFTWARE, "ppoll:");
	}

	/* Finish a partially written record, unless stopped again. */
	while (S->pend_len && stop_signals < 2) {
		struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};

		if (out_flush(S))
			break;
		if (ppoll(&pfd, 1, NULL, &orig) < 0 && errno != EINTR)
			break;
	}
	report_skips(S, sched_now(S), true);
	return 0;
}

/* Waits until stdout takes more (only when someone else made it
 * non-blocking: --once leaves it as it is). */
static void
wait_writable(void)
{
	struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};

	if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
		die(EX_SOFTWARE, "poll:");
}

static int
run_once(struct state *S)
{
	int64_t now = time_now_ms();

	for (size_t i = 0; i < S->n; i++) {
		while (!out_flush(S))
			wait_writable();
		while (emit(S, &S->slots[i], now) == OUT_BLOCKED)
			wait_writable();
	}
	while (!out_flush(S))
		wait_writable();
	return 0;
}

static int
check_summary(const struct state *S, const struct config *cfg)
{
	int64_t now = time_now_ms();
	double rate = 0;
	size_t n = 0;

	for (size_t i = 0; i < cfg->n; i++) {
		if (!in_shard(S, cfg->v[i].hash))
			continue;
		n++;
		rate += 1000.0 / (double)cfg->v[i].interval_ms;
	}
	printf("%s: ok: %zu targets", cfg->path, cfg->n);
	if (S->shard_n)
		printf(", %zu in shard %u/%u", n, S->shard_i, S->shard_n);
	printf(", %.2f checks/s\n", rate);
	for (size_t i = 0; i < cfg->n; i++) {
		const struct config_target *ct = &cfg->v[i];
		char iv[32], to[32], next[TIME_STR_LEN], *name;

		if (!in_shard(S, ct->hash))
			continue;
		config_format_duration(ct->interval_ms, iv, sizeof(iv));
		config_format_duration(ct->timeout_ms, to, sizeof(to));
		time_format_ms(sched_next_due(now, ct->interval_ms,
		                              sched_phase(ct->hash,
		                                          ct->interval_ms)),
		               next);
		/* Unnamed targets are named after their url: no password. */
		name = xstrdup(ct->name);
		redact_userinfo(name);
		printf("  %s: line %lu, every %s, timeout %s, next %s\n", name,
		       ct->line, iv, to, next);
		free(name);
	}
	if (fflush(stdout) == EOF || ferror(stdout))
		die(EX_IOERR, "write error on stdout:");
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"once", no_argument, NULL, '1'},
	    {"check", no_argument, NULL, 'c'},
	    {"file", required_argument, NULL, 'f'},
	    {"shard", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct state S = {.fmt = CONFIG_YAML};
	const char *shard = getenv("SM_SHARD"), *shard_from = "SM_SHARD";
	bool once = false, check = false;
	struct config *cfg;
	int c, status;

	diag_init("sm-schedule");
	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt_long(argc, argv, "1cf:s:hV", longopts, NULL)) != -1) {
		switch (c) {
		case '1':
			once = true;
			break;
		case 'c':
			check = true;
			break;
		case 'f':
			S.path = optarg;
			S.fmt = CONFIG_NDJSON;
			break;
		case 's':
			shard = optarg;
			shard_from = "--shard";
			break;
		case 'h':
			usage(stdout, 0);
			break;
		case 'V':
			print_version_and_exit();
		default:
			usage(stderr, EX_USAGE);
		}
	}
	argc -= optind;
	argv += optind;
	if (S.fmt == CONFIG_YAML && argc == 1)
		S.path = argv[0];
	else if (argc != 0 || !S.path)
		usage(stderr, EX_USAGE);
	if (once && check)
		die(EX_USAGE, "--once and --check exclude each other");
	if (shard && *shard)
		parse_shard(shard_from, shard, &S.shard_i, &S.shard_n);

	if (!(cfg = config_load(S.path, S.fmt)))
		return EX_CONFIG;
	if (check) {
		status = check_summary(&S, cfg);
		config_free(&cfg);
		return status;
	}
	S.slots = slots_new(&S, cfg, &S.n);
	config_free(&cfg);
	status = once ? run_once(&S) : run(&S);
	slots_free(S.slots, S.n);
	heap_clear(&S.heap);
	free(S.line);
	free(S.pend);
	return status;
}
