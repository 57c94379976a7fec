/*
 * deliver.c - per receiver: a queue, messages (one event, or a group of
 * them after group_wait), a concurrency limit, a rate limit, timeouts,
 * retries with exponential backoff and jitter, and the dead letter past
 * retry_for.
 *
 * Everything runs in the caller's loop: HTTP and SMTP through the curl
 * multi handle, exec receivers as child processes reaped on SIGCHLD.  A
 * receiver that hangs holds only its own slots (its concurrency); the
 * others keep going.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sm.h"
#include "notify.h"

struct delivery {
	struct entry *e;
	int64_t queued_ns;
};

struct message {
	struct receiver *r;
	struct delivery *d;
	json_t **events; /* borrowed from the entries */
	size_t n;
	struct rendered m;
	int attempts;
	int64_t first_ns, next_ns;
	char err[512];
	/* curl */
	CURL *easy;
	struct curl_slist *hdrs, *rcpt; /* e-mail: curl_slist_append'ed */
	/* HTTP: the message's own header lines, ahead of the receiver's
	 * fixed ones (rqueue.hdrs): nothing to allocate per delivery. */
	struct curl_slist own[2];
	char *key_hdr, *sig_hdr;
	char *mail_from;
	size_t upload_off;
	char errbuf[CURL_ERROR_SIZE];
	/* exec */
	pid_t pid;
	int64_t deadline_ns;
	bool killed;
	struct message *next; /* waiting list, or the exec list */
};

struct rqueue {
	struct delivery *ring;
	size_t cap, head, len;
	long active;              /* messages in flight or waiting to retry */
	struct message *waiting;  /* failed, waiting for their next attempt */
	double tokens;
	int64_t refill_ns;
	CURL **idle;              /* easy handles to reuse (HTTP kinds),
	                           * every option but the message's set */
	size_t n_idle;
	struct curl_slist *hdrs;  /* HTTP: the fixed request headers */
	CURLU *url;               /* r->url parsed once (CURLOPT_CURLU) */
};

static struct deliver_opts *O;
static CURLM *multi;
static struct message *execs; /* exec messages whose child runs */
static struct message *curls; /* messages whose transfer runs */
static struct deliver_stats st;
static size_t outstanding;

static int64_t
ms_to_ns(int64_t ms)
{
	return ms * 1000000;
}

void
deliver_init(struct deliver_opts *o, CURLM *m)
{
	long conns = 0;

	O = o;
	multi = m;
	for (size_t i = 0; i < o->cfg->n_recv; i++) {
		struct receiver *r = &o->cfg->recv[i];

		r->q = xcalloc(1, sizeof *r->q);
		r->q->tokens = (double)r->rate_n;
		r->q->refill_ns = mono_now_ns();
		conns += r->concurrency;
	}
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conns);
}

/* ---- queues ---------------------------------------------------------------- */

static void
q_push(struct rqueue *q, struct entry *e, int64_t now_ns)
{
	if (q->len == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 64;
		struct delivery *n = xcalloc(ncap, sizeof *n);

		for (size_t i = 0; i < q->len; i++)
			n[i] = q->ring[(q->head + i) % q->cap];
		free(q->ring);
		q->ring = n;
		q->cap = ncap;
		q->head = 0;
	}
	q->ring[(q->head + q->len) % q->cap] = (struct delivery){e, now_ns};
	q->len++;
}

static struct delivery
q_pop(struct rqueue *q)
{
	struct delivery d = q->ring[q->head];

	q->head = (q->head + 1) % q->cap;
	q->len--;
	return d;
}

void
deliver_enqueue(struct entry *e, const size_t *recv, size_t n)
{
	int64_t now = mono_now_ns();

	for (size_t i = 0; i < n; i++) {
		struct receiver *r = &O->cfg->recv[recv[i]];

		if (!O->dry_run && dlog_has(O->dlog, r->name, e->id)) {
			st.skipped++;
			continue;
		}
		q_push(r->q, e, now);
		e->pending++;
		outstanding++;
	}
}

/* ---- settling ---------------------------------------------------------------- */

static void
message_free(struct message *msg)
{
	if (msg->easy) {
		curl_multi_remove_handle(multi, msg->easy);
		curl_easy_cleanup(msg->easy);
	}
	curl_slist_free_all(msg->hdrs);
	curl_slist_free_all(msg->rcpt);
	free(msg->key_hdr);
	free(msg->sig_hdr);
	free(msg->mail_from);
	rendered_clear(&msg->m);
	free(msg->d);
	free(msg->events);
	free(msg);
}

static void
settle(struct message *msg)
{
	for (size_t i = 0; i < msg->n; i++) {
		msg->d[i].e->pending--;
		outstanding--;
	}
	msg->r->q->active--;
	message_free(msg);
}

/* msg's event trees (parsed now if not yet: see entry_event). */
static json_t *const *
msg_events(struct message *msg)
{
	for (size_t i = 0; i < msg->n; i++)
		if (!msg->events[i])
			msg->events[i] = entry_event(msg->d[i].e);
	return msg->events;
}

static void
dead_letter(struct message *msg)
{
	char at[TIME_STR_LEN];

	time_format_ms(time_now_ms(), at);
	for (size_t i = 0; i < msg->n; i++) {
		json_t *o;

		st.dead++;
		if (!O->dead_letter) {
			warn("receiver %s: gave up on event %s after %d attempt%s: %s",
			     msg->r->name, msg->d[i].e->id, msg->attempts,
			     msg->attempts == 1 ? "" : "s", msg->err);
			continue;
		}
		o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:O}", "at", at,
		              "receiver", msg->r->name, "type",
		              rkind_name(msg->r->kind), "attempts", msg->attempts,
		              "error", msg->err, "event", msg_events(msg)[i]);
		if (!o)
			die(EX_SOFTWARE, "json_pack failed");
		if (json_line_write(O->dead_letter, o) == -1)
			die(EX_IOERR, "dead letter %s:", O->dead_letter_path);
		json_decref(o);
	}
	if (O->dead_letter) {
		/* On disk before the events can be acknowledged. */
		if (fflush(O->dead_letter) != 0 ||
		    fdatasync(fileno(O->dead_letter)) == -1)
			die(EX_IOERR, "dead letter %s:", O->dead_letter_path);
		warn("receiver %s: gave up on %zu event%s after %d attempt%s "
		     "(dead letter): %s", msg->r->name, msg->n,
		     msg->n == 1 ? "" : "s", msg->attempts,
		     msg->attempts == 1 ? "" : "s", msg->err);
	}
}

static int64_t
backoff_ms(const struct receiver *r, int attempts)
{
	double b = (double)r->backoff_min_ms * pow(2.0, attempts - 1);
	double jitter = 0.75 + 0.5 * ((double)random() / RAND_MAX);

	/* Jitter (0.75..1.25) spreads the retries of many messages; the
	 * cap comes after it: backoff_max is a promise. */
	b *= jitter;
	if (b > (double)r->backoff_max_ms)
		b = (double)r->backoff_max_ms;
	return (int64_t)b;
}

static void
finish(struct message *msg, bool ok, bool permanent, int64_t retry_after_ms)
{
	struct receiver *r = msg->r;
	int64_t now = mono_now_ns(), wait, limit;

	if (ok) {
		for (size_t i = 0; i < msg->n; i++)
			if (!O->dry_run)
				dlog_add(O->dlog, r->name, msg->d[i].e->id);
		st.delivered += msg->n;
		st.messages++;
		settle(msg);
		return;
	}
	st.failures++;
	wait = backoff_ms(r, msg->attempts);
	if (wait < 1)
		wait = 1;
	if (retry_after_ms > wait)
		wait = retry_after_ms;
	limit = r->retry_for_ms >= 0 ? r->retry_for_ms : O->retry_for_ms;
	if (permanent || now - msg->first_ns + ms_to_ns(wait) > ms_to_ns(limit)) {
		dead_letter(msg);
		settle(msg);
		return;
	}
	warn("receiver %s: %s (attempt %d, %zu event%s; next in %lldms)",
	     r->name, msg->err, msg->attempts, msg->n, msg->n == 1 ? "" : "s",
	     (long long)wait);
	st.retries++;
	msg->next_ns = now + ms_to_ns(wait);
	msg->next = r->q->waiting;
	r->q->waiting = msg;
}

/* ---- errors without secrets ------------------------------------------------ */

static void
scrub_one(char *s, const char *secret)
{
	size_t n;
	char *p;

	if (!secret || (n = strlen(secret)) < 4)
		return;
	while ((p = strstr(s, secret)) != NULL) {
		memmove(p + 3, p + n, strlen(p + n) + 1);
		memcpy(p, "***", 3);
	}
}

/* An error message with every secret of r replaced by "***". */
static void
scrub(const struct receiver *r, char *s)
{
	const char *path;

	scrub_one(s, r->url);
	if (r->url && (path = strstr(r->url, "://")) &&
	    (path = strpbrk(path + 3, "/?")) && strlen(path) > 1)
		scrub_one(s, path);
	scrub_one(s, r->password);
	scrub_one(s, r->routing_key);
	if (r->secret && strlen(r->secret) == r->secret_len)
		scrub_one(s, r->secret);
}

/* ---- curl ------------------------------------------------------------------- */

static size_t
discard(char *p, size_t size, size_t n, void *u)
{
	return size * n;
}

static size_t
read_body(char *buf, size_t size, size_t n, void *u)
{
	struct message *msg = u;
	size_t left = msg->m.len - msg->upload_off, take = size * n;

	if (take > left)
		take = left;
	memcpy(buf, msg->m.body + msg->upload_off, take);
	msg->upload_off += take;
	return take;
}

/* "Name <a@b>" -> "<a@b>" */
static char *
angle_addr(const char *s)
{
	const char *lt = strchr(s, '<'), *gt = lt ? strchr(lt, '>') : NULL;

	if (lt && gt)
		return xstrndup(lt, (size_t)(gt - lt + 1));
	return xasprintf("<%s>", s);
}

/* The options that stay the same for every message of r. */
static void
curl_configure(CURL *h, struct receiver *r)
{
	curl_easy_setopt(h, CURLOPT_URL, r->url);
	if (!r->q->url && (r->q->url = curl_url()) != NULL &&
	    curl_url_set(r->q->url, CURLUPART_URL, r->url, 0) != CURLUE_OK) {
		curl_url_cleanup(r->q->url);
		r->q->url = NULL;
	}
	/* Parsed once, not for every transfer; a url libcurl's parser
	 * refuses goes as CURLOPT_URL, to fail with its own error. */
	if (r->q->url)
		curl_easy_setopt(h, CURLOPT_CURLU, r->q->url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)(r->timeout_ms < 10000 ? r->timeout_ms : 10000));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, ev_open_socket);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, ev_close_socket);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, r->tls_verify ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, r->tls_verify ? 2L : 0L);
	if (r->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
	if (r->kind == RK_EMAIL) {
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_body);
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		if (r->starttls)
			curl_easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
		if (r->username)
			curl_easy_setopt(h, CURLOPT_USERNAME, r->username);
		if (r->password)
			curl_easy_setopt(h, CURLOPT_PASSWORD, r->password);
		return;
	}
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "sm-notify/" SM_VERSION);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	if (!r->q->hdrs) {
		r->q->hdrs = curl_slist_append(NULL,
		                               "Content-Type: application/json");
		r->q->hdrs = curl_slist_append(r->q->hdrs, "Expect:");
		for (size_t i = 0; i < r->n_headers; i++)
			r->q->hdrs = curl_slist_append(r->q->hdrs, r->headers[i]);
		if (!r->q->hdrs)
			die(EX_SOFTWARE, "curl_slist_append failed");
	}
}

static void
curl_start(struct message *msg)
{
	struct receiver *r = msg->r;
	CURL *h = r->q->n_idle ? r->q->idle[--r->q->n_idle] : NULL;
	struct curl_slist *hdrs;
	CURLMcode mc;

	if (!h) {
		if (!(h = curl_easy_init()))
			die(EX_SOFTWARE, "curl_easy_init failed");
		curl_configure(h, r);
	}
	msg->easy = h;
	msg->errbuf[0] = '\0';
	msg->upload_off = 0;
	curl_easy_setopt(h, CURLOPT_PRIVATE, msg);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, msg->errbuf);
	if (r->kind == RK_EMAIL) {
		if (!msg->mail_from)
			msg->mail_from = angle_addr(r->from);
		curl_easy_setopt(h, CURLOPT_MAIL_FROM, msg->mail_from);
		if (!msg->rcpt)
			for (size_t i = 0; i < r->n_to; i++) {
				char *a = angle_addr(r->to[i]);

				msg->rcpt = curl_slist_append(msg->rcpt, a);
				free(a);
			}
		curl_easy_setopt(h, CURLOPT_MAIL_RCPT, msg->rcpt);
		curl_easy_setopt(h, CURLOPT_READDATA, msg);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
		                 (curl_off_t)msg->m.len);
	} else {
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t)msg->m.len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, msg->m.body);
		if (!msg->key_hdr) {
			msg->key_hdr = xasprintf("Idempotency-Key: %s", msg->m.key);
			if (msg->m.signature)
				msg->sig_hdr = xasprintf("%s: %s",
				        r->signature_header, msg->m.signature);
		}
		/* curl only reads the list: the message's lines are linked
		 * in front of the receiver's. */
		hdrs = r->q->hdrs;
		if (msg->sig_hdr) {
			msg->own[1] = (struct curl_slist){msg->sig_hdr, hdrs};
			hdrs = &msg->own[1];
		}
		msg->own[0] = (struct curl_slist){msg->key_hdr, hdrs};
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, &msg->own[0]);
	}
	if ((mc = curl_multi_add_handle(multi, h)) != CURLM_OK)
		die(EX_SOFTWARE, "curl_multi_add_handle: %s",
		    curl_multi_strerror(mc));
	msg->next = curls;
	curls = msg;
}

void
deliver_curl_done(CURL *easy, CURLcode rc)
{
	struct message *msg = NULL;
	long code = 0;
	curl_off_t retry_after = 0;
	bool ok, permanent = false;

	struct message **pp = &curls;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&msg);
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	while (*pp && *pp != msg)
		pp = &(*pp)->next;
	if (*pp)
		*pp = msg->next;
	msg->next = NULL;
	if (rc == CURLE_OK && msg->r->kind != RK_EMAIL) {
		ok = code >= 200 && code <= 299;
		if (!ok) {
			snprintf(msg->err, sizeof msg->err, "HTTP %ld", code);
			/* A request the receiver refuses as it is will never
			 * pass: no retry (but timeouts and rate limits do). */
			permanent = code >= 400 && code <= 499 && code != 408 &&
			            code != 425 && code != 429;
			curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after);
		}
	} else {
		ok = rc == CURLE_OK;
		if (!ok) {
			snprintf(msg->err, sizeof msg->err, "%.100s%s%.300s",
			         curl_easy_strerror(rc), msg->errbuf[0] ? ": " : "",
			         msg->errbuf);
			scrub(msg->r, msg->err);
			/* SMTP 5xx: the server refuses for good. */
			permanent = msg->r->kind == RK_EMAIL && code >= 500 &&
			            (rc == CURLE_SEND_ERROR ||
			             rc == CURLE_LOGIN_DENIED);
		}
	}
	curl_multi_remove_handle(multi, easy);
	/* Reused for the receiver's next message: an easy handle is costly
	 * to make, and its receiver's options stay set (curl_configure);
	 * curl_start sets the message's. */
	if (msg->r->kind != RK_EMAIL) {
		struct rqueue *q = msg->r->q;

		curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
		if (!q->idle)
			q->idle = xcalloc((size_t)msg->r->concurrency,
			                  sizeof *q->idle);
		if (q->n_idle < (size_t)msg->r->concurrency)
			q->idle[q->n_idle++] = easy;
		else
			curl_easy_cleanup(easy);
	} else {
		curl_easy_cleanup(easy);
	}
	msg->easy = NULL;
	finish(msg, ok, permanent, (int64_t)retry_after * 1000);
}

/* ---- exec ------------------------------------------------------------------- */

static void
exec_start(struct message *msg, int64_t now)
{
	struct receiver *r = msg->r;
	int fd = memfd_create("sm-notify-event", MFD_CLOEXEC);
	const char *p = msg->m.body;
	size_t left = msg->m.len;
	pid_t pid;

	if (fd == -1)
		die(EX_OSERR, "memfd_create:");
	while (left) {
		ssize_t w = write(fd, p, left);

		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			die(EX_OSERR, "memfd write:");
		p += w;
		left -= (size_t)w;
	}
	if (lseek(fd, 0, SEEK_SET) == -1)
		die(EX_OSERR, "memfd lseek:");
	pid = fork();
	if (pid == -1) {
		snprintf(msg->err, sizeof msg->err, "fork: %s", strerror(errno));
		close(fd);
		finish(msg, false, false, 0);
		return;
	}
	if (pid == 0) {
		const json_t *ev = msg_events(msg)[0];
		char count[32];
		sigset_t none;

		setpgid(0, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		if (dup2(fd, 0) == -1 || dup2(2, 1) == -1)
			_exit(126);
		close_range(3, ~0U, 0);
		snprintf(count, sizeof count, "%zu", msg->n);
		setenv("SITEMON_RECEIVER", r->name, 1);
		setenv("SITEMON_EVENT_COUNT", count, 1);
		setenv("SITEMON_KEY", msg->m.key, 1);
		if (msg->n == 1) {
			const char *k[] = {"id", "event", "incident", "target", "url"};
			const char *e[] = {"SITEMON_EVENT_ID", "SITEMON_EVENT",
			                   "SITEMON_INCIDENT",
			                   "SITEMON_TARGET", "SITEMON_URL"};

			for (size_t i = 0; i < 5; i++) {
				const char *v = json_string_value(json_object_get(ev, k[i]));

				if (v)
					setenv(e[i], v, 1);
			}
		}
		execvp(r->argv[0], r->argv);
		dprintf(2, "%s: error: receiver %s: %s: %s\n", diag_progname(),
		        r->name, r->argv[0], strerror(errno));
		_exit(127);
	}
	close(fd);
	msg->pid = pid;
	msg->killed = false;
	msg->deadline_ns = now + ms_to_ns(r->timeout_ms);
	msg->next = execs;
	execs = msg;
}

void
deliver_reap(int64_t now)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct message **pp = &execs, *msg;

		while (*pp && (*pp)->pid != pid)
			pp = &(*pp)->next;
		if (!(msg = *pp))
			continue;
		*pp = msg->next;
		msg->next = NULL;
		if (msg->killed)
			snprintf(msg->err, sizeof msg->err, "timed out after %lldms",
			         (long long)msg->r->timeout_ms);
		else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			finish(msg, true, false, 0);
			continue;
		} else if (WIFEXITED(status))
			snprintf(msg->err, sizeof msg->err, "exit status %d",
			         WEXITSTATUS(status));
		else
			snprintf(msg->err, sizeof msg->err, "killed by signal %d",
			         WTERMSIG(status));
		finish(msg, false, false, 0);
	}
	for (struct message *m = execs; m; m = m->next)
		if (!m->killed && now >= m->deadline_ns) {
			kill(-m->pid, SIGKILL);
			kill(m->pid, SIGKILL);
			m->killed = true;
		}
}

/* ---- dry run ----------------------------------------------------------------- */

static void
dry_print(struct message *msg)
{
	struct receiver *r = msg->r;

	printf("--- %s (%s", r->name, rkind_name(r->kind));
	if (r->url_shown)
		printf(" %s", r->url_shown);
	printf("): %zu event%s:", msg->n, msg->n == 1 ? "" : "s");
	for (size_t i = 0; i < msg->n; i++)
		printf(" %s", msg->d[i].e->id);
	printf("\n");
	if (r->kind == RK_EXEC) {
		printf("command:");
		for (char **a = r->argv; *a; a++)
			printf(" %s", *a);
		printf("\n");
	} else if (r->kind == RK_EMAIL) {
		printf("smtp: from %s to", r->from);
		for (size_t i = 0; i < r->n_to; i++)
			printf(" %s", r->to[i]);
		printf("%s%s\n", r->starttls ? " (STARTTLS)" : "",
		       r->username ? " (AUTH)" : "");
	} else {
		printf("Idempotency-Key: %s\n", msg->m.key);
		if (msg->m.signature)
			printf("%s: %s\n", r->signature_header, msg->m.signature);
		for (size_t i = 0; i < r->n_headers; i++) {
			const char *colon = strchr(r->headers[i], ':');

			printf("%.*s: ***\n", (int)(colon - r->headers[i]),
			       r->headers[i]);
		}
	}
	printf("\n");
	{
		/* The PagerDuty body holds the routing key: hidden too. */
		char *shown = xstrndup(msg->m.body, msg->m.len);
		size_t len;

		scrub(r, shown);
		len = strlen(shown);
		for (size_t i = 0; i < len; i++)
			if (shown[i] != '\r')
				putchar(shown[i]);
		if (len && shown[len - 1] != '\n')
			putchar('\n');
		free(shown);
	}
	printf("\n");
	if (fflush(stdout) != 0)
		die(EX_IOERR, "stdout:");
}

/* ---- starting messages ------------------------------------------------------- */

static void
attempt(struct message *msg, int64_t now)
{
	if (msg->attempts == 0) {
		const struct entry *e = msg->d[0].e;

		msg->first_ns = now;
		if (msg->r->kind == RK_WEBHOOK && msg->n == 1 && e->body)
			render_raw(msg->r, e->body, e->body_len, e->id, &msg->m);
		else
			render(msg->r, O->cfg, msg_events(msg), msg->n,
			       time_now_ms(), &msg->m);
	}
	msg->attempts++;
	st.attempts++;
	if (O->dry_run) {
		dry_print(msg);
		finish(msg, true, false, 0);
	} else if (msg->r->kind == RK_EXEC) {
		exec_start(msg, now);
	} else {
		curl_start(msg);
	}
}

/* Take a token of r's rate limit; false (and *wait set) when none. */
static bool
take_token(struct receiver *r, int64_t now, long *wait)
{
	struct rqueue *q = r->q;
	double per_ns = (double)ms_to_ns(r->rate_per_ms);
	long ms;

	if (r->rate_n == 0)
		return true;
	q->tokens += (double)(now - q->refill_ns) * (double)r->rate_n / per_ns;
	if (q->tokens > (double)r->rate_n)
		q->tokens = (double)r->rate_n;
	q->refill_ns = now;
	if (q->tokens >= 1.0) {
		q->tokens -= 1.0;
		return true;
	}
	ms = (long)((1.0 - q->tokens) * per_ns / (double)r->rate_n / 1e6) + 1;
	if (*wait < 0 || ms < *wait)
		*wait = ms;
	return false;
}

static void
wait_min(long *wait, int64_t due_ns, int64_t now)
{
	long ms = due_ns <= now ? 0 : (long)((due_ns - now + 999999) / 1000000);

	if (*wait < 0 || ms < *wait)
		*wait = ms;
}

long
deliver_run(int64_t now, bool draining)
{
	long wait = -1;

	for (size_t i = 0; i < O->cfg->n_recv; i++) {
		struct receiver *r = &O->cfg->recv[i];
		struct rqueue *q = r->q;
		struct message **pp = &q->waiting;
		size_t max = r->group_wait_ms > 0 && r->kind != RK_PAGERDUTY
		             ? (size_t)r->group_max : 1;

		while (*pp) {
			struct message *msg = *pp;

			if (now < msg->next_ns) {
				wait_min(&wait, msg->next_ns, now);
				pp = &msg->next;
				continue;
			}
			if (!take_token(r, now, &wait))
				break;
			*pp = msg->next;
			msg->next = NULL;
			attempt(msg, now);
		}
		while (q->active < r->concurrency && q->len > 0) {
			struct message *msg;
			size_t n;

			if (r->group_wait_ms > 0 && !draining && q->len < max) {
				int64_t due = q->ring[q->head].queued_ns +
				              ms_to_ns(r->group_wait_ms);

				if (now < due) {
					wait_min(&wait, due, now);
					break;
				}
			}
			if (!take_token(r, now, &wait))
				break;
			n = q->len < max ? q->len : max;
			msg = xcalloc(1, sizeof *msg);
			msg->r = r;
			msg->n = n;
			msg->d = xcalloc(n, sizeof *msg->d);
			msg->events = xcalloc(n, sizeof *msg->events);
			for (size_t k = 0; k < n; k++)
				msg->d[k] = q_pop(q);
			q->active++;
			attempt(msg, now);
		}
	}
	for (struct message *m = execs; m; m = m->next)
		if (!m->killed)
			wait_min(&wait, m->deadline_ns, now);
	return wait;
}

size_t
deliver_outstanding(void)
{
	return outstanding;
}

const struct deliver_stats *
deliver_stats(void)
{
	return &st;
}

char *
deliver_queues_text(void)
{
	char *s = xstrdup(""), *n;

	for (size_t i = 0; i < O->cfg->n_recv; i++) {
		struct receiver *r = &O->cfg->recv[i];

		n = xasprintf("%s%s%s=%zu/%ld", s, *s ? " " : "", r->name,
		              r->q->len, r->q->active);
		free(s);
		s = n;
	}
	return s;
}

void
deliver_shutdown(void)
{
	for (size_t i = 0; i < O->cfg->n_recv; i++) {
		struct receiver *r = &O->cfg->recv[i];
		struct message *m, *next;

		if (!r->q)
			continue;
		for (m = r->q->waiting; m; m = next) {
			next = m->next;
			message_free(m);
		}
		while (r->q->n_idle)
			curl_easy_cleanup(r->q->idle[--r->q->n_idle]);
		free(r->q->idle);
		curl_slist_free_all(r->q->hdrs);
		curl_url_cleanup(r->q->url);
		free(r->q->ring);
		free(r->q);
		r->q = NULL;
	}
	for (struct message *m = execs, *next; m; m = next) {
		next = m->next;
		kill(-m->pid, SIGKILL);
		message_free(m);
	}
	execs = NULL;
	for (struct message *m = curls, *next; m; m = next) {
		next = m->next;
		message_free(m);
	}
	curls = NULL;
}
