/*
 * sm-notify - deliver sm-alert's event records to receivers; acknowledge
 * each event once every receiver it goes to has it.
 *
 *   sm-kafka-sub --ack FIFO | sm-alert sites.yaml | sm-notify receivers.yaml > FIFO
 *
 * Each input line is held in a bounded ring (stdin is not read while the
 * ring is full: backpressure) until its deliveries are settled: confirmed
 * by the receiver, or dead-lettered past --retry-for.  Settled lines leave
 * the ring strictly in input order; those carrying a "kafka" object are
 * written to stdout, the ack stream sm-kafka-sub commits offsets from.
 * Confirmed deliveries go to the durable delivered log (dlog.c) before
 * their events are acknowledged, so a replay after a crash skips them.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm.h"
#include "stopsig.h"
#include "notify.h"

static const char usage_text[] =
	"usage: sm-notify [-ans] [-D file] [-d file] [-m count] [-r duration]\n"
	"                 [--delivered-max count] [--drain-for duration]\n"
	"                 [--stats-interval duration] receivers.yaml\n"
	"       sm-notify -c receivers.yaml\n"
	"       sm-notify -h | -V\n";

static const char options_text[] =
	"\n"
	"Deliver event records from stdin to the receivers that receivers.yaml\n"
	"routes them to; write each input line that carries a \"kafka\" object\n"
	"to stdout, in input order, once all its deliveries are settled (the\n"
	"ack stream).\n"
	"\n"
	"  -d, --delivered-log FILE  the durable log of confirmed deliveries\n"
	"                            (SM_NOTIFY_DELIVERED_LOG; default: none,\n"
	"                            memory only)\n"
	"      --delivered-max COUNT deliveries the log remembers (100000)\n"
	"  -D, --dead-letter FILE    append events given up on to FILE\n"
	"                            (SM_NOTIFY_DEAD_LETTER)\n"
	"  -r, --retry-for DURATION  retry a delivery this long, then give up\n"
	"                            (dead letter) and acknowledge (15m)\n"
	"  -m, --max-pending COUNT   input lines held unsettled (10000)\n"
	"      --drain-for DURATION  on SIGTERM, wait this long for deliveries\n"
	"                            in progress (10s)\n"
	"  -n, --dry-run             print what would be sent, send nothing\n"
	"  -a, --echo-all            write every settled line, with or without\n"
	"                            \"kafka\"\n"
	"  -s, --strict              exit 65 at the first invalid line\n"
	"  -c, --check               check receivers.yaml, list it, exit\n"
	"      --stats-interval DURATION\n"
	"                            write a stats line to stderr this often\n"
	"                            (SM_STATS_INTERVAL; default 0: at exit)\n"
	"  -h, --help                this text\n"
	"  -V, --version             print the version\n";

/* The delivered log is synced at most this often (group commit). */
#define SYNC_EVERY_MS 10

enum {
	OPT_STATS_INTERVAL = 256, OPT_DRAIN_FOR, OPT_DELIVERED_MAX,
};

static struct {
	const char *config;
	const char *delivered_log;
	long long delivered_max;
	const char *dead_letter;
	int64_t retry_for_ms;
	long long max_pending;
	int64_t drain_for_ms;
	int64_t stats_ms;
	bool dry_run, echo_all, strict, check;
} opt = {
	.delivered_max = 100000,
	.retry_for_ms = 15 * 60 * 1000,
	.max_pending = 10000,
	.drain_for_ms = 10000,
};

static struct {
	unsigned long long in, events, acked, invalid, unrouted;
} stats;

static const char *input_name = "<stdin>";
static int wake_fd = -1; /* readable after a signal (stop_signals_install) */
static struct deliver_opts dopts;

/* The ring of held input lines. */
static struct entry **ring;
static size_t ring_head, ring_len;

static void
parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"delivered-log", required_argument, NULL, 'd'},
		{"delivered-max", required_argument, NULL, OPT_DELIVERED_MAX},
		{"dead-letter", required_argument, NULL, 'D'},
		{"retry-for", required_argument, NULL, 'r'},
		{"max-pending", required_argument, NULL, 'm'},
		{"drain-for", required_argument, NULL, OPT_DRAIN_FOR},
		{"dry-run", no_argument, NULL, 'n'},
		{"echo-all", no_argument, NULL, 'a'},
		{"strict", no_argument, NULL, 's'},
		{"check", no_argument, NULL, 'c'},
		{"stats-interval", required_argument, NULL, OPT_STATS_INTERVAL},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *e;
	int c;

	opt.stats_ms = stats_interval_default_ms();
	if ((e = getenv("SM_NOTIFY_DELIVERED_LOG")) && *e)
		opt.delivered_log = e;
	if ((e = getenv("SM_NOTIFY_DEAD_LETTER")) && *e)
		opt.dead_letter = e;
	while ((c = getopt_long(argc, argv, "d:D:r:m:naschV", longopts,
	                        NULL)) != -1) {
		switch (c) {
		case 'd':
			opt.delivered_log = optarg;
			break;
		case OPT_DELIVERED_MAX:
			opt.delivered_max = opt_ll("--delivered-max", optarg, 1,
			                           100000000);
			break;
		case 'D':
			opt.dead_letter = optarg;
			break;
		case 'r':
			opt.retry_for_ms = opt_duration_ms("-r", optarg, 0,
			                                   INT64_C(1) << 40);
			break;
		case 'm':
			opt.max_pending = opt_ll("-m", optarg, 1, 10000000);
			break;
		case OPT_DRAIN_FOR:
			opt.drain_for_ms = opt_duration_ms("--drain-for", optarg, 0,
			                                   INT64_C(1) << 40);
			break;
		case 'n':
			opt.dry_run = true;
			break;
		case 'a':
			opt.echo_all = true;
			break;
		case 's':
			opt.strict = true;
			break;
		case 'c':
			opt.check = true;
			break;
		case OPT_STATS_INTERVAL:
			opt.stats_ms = stats_interval_option_ms(optarg);
			break;
		case 'h':
			usage_exit(usage_text, options_text, 0);
			break;
		case 'V':
			print_version_and_exit();
			break;
		default:
			usage_exit(usage_text, options_text, EX_USAGE);
		}
	}
	if (optind != argc - 1) {
		warn(optind == argc ? "no receivers file given"
		                    : "one receivers file only");
		usage_exit(usage_text, options_text, EX_USAGE);
	}
	opt.config = argv[optind];
}

/* ---- --check ---------------------------------------------------------------- */

static void
print_config(const struct config *c)
{
	for (size_t i = 0; i < c->n_recv; i++) {
		const struct receiver *r = &c->recv[i];

		printf("receiver %s: %s", r->name, rkind_name(r->kind));
		if (r->url_shown)
			printf(" %s", r->url_shown);
		if (r->argv)
			printf(" %s", r->argv[0]);
		printf(" timeout=%lldms group_wait=%lldms concurrency=%ld",
		       (long long)r->timeout_ms, (long long)r->group_wait_ms,
		       r->concurrency);
		if (r->rate_n)
			printf(" rate_limit=%ld/%lldms", r->rate_n,
			       (long long)r->rate_per_ms);
		printf("\n");
	}
	for (size_t i = 0; i < c->n_routes; i++) {
		const struct route *rt = &c->routes[i];

		printf("route %zu:", i + 1);
		for (size_t k = 0; k < rt->n_match; k++)
			printf(" %s=%s", rt->keys[k], rt->vals[k]);
		if (rt->n_match == 0)
			printf(" (every target)");
		printf(" ->");
		for (size_t k = 0; k < rt->n_recv; k++)
			printf(" %s", c->recv[rt->recv[k]].name);
		printf("%s\n", rt->cont ? " (continue)" : "");
	}
	printf("default ->");
	for (size_t k = 0; k < c->n_deflt; k++)
		printf(" %s", c->recv[c->deflt[k]].name);
	printf("%s\n", c->n_deflt ? "" : " (nothing)");
}

/* ---- input ---------------------------------------------------------------- */

static void
entry_free(struct entry *e)
{
	json_decref(e->ev);
	free(e->line);
	free(e);
}

static void
reject(unsigned long lineno, const char *line, size_t len, const char *why)
{
	warn_input(input_name, lineno, line, len, "%s", why);
	stats.invalid++;
	if (opt.strict)
		exit(EX_DATAERR);
	if (dopts.dead_letter) {
		char at[TIME_STR_LEN];
		json_t *o;

		time_format_ms(time_now_ms(), at);
		o = json_pack("{s:s, s:s, s:i, s:s, s:s%}", "at", at,
		              "source", input_name, "line", (json_int_t)lineno,
		              "error", why, "input", line, len);
		if (o && (json_line_write(dopts.dead_letter, o) == -1 ||
		          fflush(dopts.dead_letter) != 0 ||
		          fdatasync(fileno(dopts.dead_letter)) == -1))
			die(EX_IOERR, "dead letter %s:", opt.dead_letter);
		json_decref(o);
	}
}

/* A held line: the line, then (set_body) the webhook body, then room for
 * id_len bytes and a NUL, in one allocation. */
static struct entry *
entry_new(const char *line, size_t len, unsigned long lineno, size_t id_len)
{
	struct entry *e = xcalloc(1, sizeof *e);

	e->line = xmalloc(2 * len + 2 + id_len + 1);
	memcpy(e->line, line, len);
	e->line[len] = '\0';
	e->len = len;
	e->lineno = lineno;
	ring[(ring_head + ring_len) % (size_t)opt.max_pending] = e;
	ring_len++;
	return e;
}

/* The webhook body: the line's bytes without its "kafka" member (kafka:
 * whether it has one).  Left NULL when that member is not spelled
 * plainly: the body is then rendered from the tree. */
static void
set_body(struct entry *e, bool kafka)
{
	size_t cut_off, cut_len;

	if (!kafka) {
		e->body = e->line;
		e->body_len = e->len;
	} else if (raw_without_member(e->line, e->len, "kafka", &cut_off,
	                              &cut_len)) {
		e->body = e->line + e->len + 1;
		memcpy(e->body, e->line, cut_off);
		memcpy(e->body + cut_off, e->line + cut_off + cut_len,
		       e->len - cut_off - cut_len);
		e->body_len = e->len - cut_len;
		e->body[e->body_len] = '\0';
	}
}

json_t *
entry_event(struct entry *e)
{
	json_error_t jerr;

	if (e->ev)
		return e->ev;
	if (!e->body ||
	    !(e->ev = json_loadb(e->body, e->body_len, JSON_REJECT_DUPLICATES,
	                         &jerr)))
		die(EX_SOFTWARE, "line %lu: checked event does not parse: %s",
		    e->lineno, e->body ? jerr.text : "no body");
	return e->ev;
}

/* The common case: an event line checked and routed by fast_event and
 * config_route_raw, no tree built.  false: take the long way. */
static bool
take_fast(char *line, size_t len, unsigned long lineno, size_t *route_buf)
{
	struct fast_ev fe;
	struct entry *e;
	long n;

	if (!fast_event(line, len, &fe))
		return false;
	n = config_route_raw(dopts.cfg, fe.kind_bit, fe.labels, fe.labels_len,
	                     route_buf);
	if (n < 0)
		return false;
	e = entry_new(line, len, lineno, fe.id_len);
	e->has_kafka = fe.has_kafka;
	set_body(e, fe.has_kafka);
	if (!e->body) {
		/* Cannot happen for a line jscan is sure of; be safe. */
		ring_len--;
		free(e->line);
		free(e);
		return false;
	}
	e->id = e->line + 2 * len + 2;
	memcpy((char *)e->id, fe.id, fe.id_len);
	((char *)e->id)[fe.id_len] = '\0';
	stats.events++;
	if (n == 0)
		stats.unrouted++;
	deliver_enqueue(e, route_buf, (size_t)n);
	return true;
}

static void
take_line(char *line, size_t len, unsigned long lineno, size_t *route_buf)
{
	char err[256];
	json_t *obj;
	struct entry *e;
	size_t n;

	stats.in++;
	if (take_fast(line, len, lineno, route_buf))
		return;
	if (!(obj = json_line_parse(line, len, err, sizeof err))) {
		reject(lineno, line, len, err);
		return;
	}
	e = entry_new(line, len, lineno, 0);
	e->has_kafka = json_is_object(json_object_get(obj, "kafka"));
	if (!json_object_get(obj, "event") && e->has_kafka) {
		/* A bare ack line: settled at once. */
		json_decref(obj);
		return;
	}
	if (event_validate(obj, err, sizeof err) < 0) {
		reject(lineno, line, len, err);
		json_decref(obj);
		return;
	}
	set_body(e, json_object_get(obj, "kafka") != NULL);
	json_object_del(obj, "kafka");
	e->ev = obj;
	e->id = json_string_value(json_object_get(obj, "id"));
	stats.events++;
	n = config_route(dopts.cfg, obj, route_buf);
	if (n == 0)
		stats.unrouted++;
	deliver_enqueue(e, route_buf, n);
}

/* Write the settled lines at the head of the ring, in order. */
static void
emit_settled(void)
{
	bool wrote = false;

	while (ring_len) {
		struct entry *e = ring[ring_head];

		if (e->pending)
			break;
		if (!opt.dry_run && (e->has_kafka || opt.echo_all)) {
			if (fwrite(e->line, 1, e->len, stdout) != e->len ||
			    putchar('\n') == EOF)
				die(EX_IOERR, "writing the ack stream:");
			stats.acked++;
			wrote = true;
		}
		entry_free(e);
		ring[ring_head] = NULL;
		ring_head = (ring_head + 1) % (size_t)opt.max_pending;
		ring_len--;
	}
	if (wrote && fflush(stdout) != 0)
		die(EX_IOERR, "writing the ack stream:");
}

static void
print_stats(void)
{
	const struct deliver_stats *d = deliver_stats();
	char *q = deliver_queues_text();

	info("stats: in=%llu events=%llu acked=%llu delivered=%llu "
	     "messages=%llu attempts=%llu failures=%llu retries=%llu dead=%llu "
	     "skipped=%llu invalid=%llu unrouted=%llu held=%zu queues=%s",
	     stats.in, stats.events, stats.acked, d->delivered, d->messages,
	     d->attempts, d->failures, d->retries, d->dead, d->skipped,
	     stats.invalid, stats.unrouted, ring_len, q);
	free(q);
}

static long
min_wait(long a, long b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

/* Settle the transfers libcurl has finished; true when there were any. */
static bool
curl_finished(CURLM *multi)
{
	bool any = false;
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(multi, &left)) != NULL)
		if (m->msg == CURLMSG_DONE) {
			deliver_curl_done(m->easy_handle, m->data.result);
			any = true;
		}
	return any;
}

static int
run(CURLM *multi)
{
	struct line_reader *lr;
	struct stats_clock sc;
	size_t *route_buf = xcalloc(dopts.cfg->n_recv + 1, sizeof *route_buf);
	bool reading = true, stopping = false, was_full = false;
	bool watching_stdin = false, stdin_pollable = true;
	int64_t drain_deadline = 0, last_sync_ns = 0;

	stats_clock_init(&sc, opt.stats_ms);
	stdin_nonblock();
	lr = line_reader_new(STDIN_FILENO, input_name, SM_MAX_LINE);
	ev_watch(wake_fd, true);
	ring = xcalloc((size_t)opt.max_pending, sizeof *ring);

	for (;;) {
		int64_t now = mono_now_ns();
		long wait;
		bool want_stdin;

		if (stop_signal && !stopping) {
			stopping = true;
			/* In a pipeline the writer before us got the signal too
			 * and is about to close: what it still hands over (its
			 * last acks) is settled within the drain time.  A
			 * person at a terminal means stop now. */
			if (isatty(STDIN_FILENO))
				reading = false;
			drain_deadline = now + opt.drain_for_ms * 1000000;
			info("stopping: %s; %zu deliveries in progress",
			     strsignal(stop_signal), deliver_outstanding());
		}
		was_full = false;
		while (reading) {
			char *line;
			size_t len;
			enum line_status ls;

			if (ring_len == (size_t)opt.max_pending) {
				was_full = true;
				break;
			}
			ls = line_reader_next(lr, &line, &len);
			if (ls == LINE_AGAIN)
				break;
			if (ls == LINE_EOF) {
				reading = false;
				break;
			}
			if (ls == LINE_ERROR)
				die(EX_IOERR, "reading %s:", input_name);
			if (ls == LINE_TOO_LONG) {
				reject(line_reader_lineno(lr), line, len,
				       "line too long");
				continue;
			}
			if (len == 0)
				continue;
			take_line(line, len, line_reader_lineno(lr), route_buf);
		}
		deliver_reap(now);
		curl_finished(multi);
		wait = deliver_run(now, !reading);
		/* Starts the transfers deliver_run added. */
		ev_curl_timer(now);
		if (curl_finished(multi))
			wait = 0; /* their slots may start the next ones */
		/* Group commit: one fdatasync for the deliveries confirmed
		 * within SYNC_EVERY_MS (the transfers go on meanwhile); the
		 * events are acknowledged only after it. */
		if (dlog_pending(dopts.dlog)) {
			int64_t t = mono_now_ns();

			if (t - last_sync_ns >= SYNC_EVERY_MS * 1000000 || stopping ||
			    (!reading && deliver_outstanding() == 0)) {
				dlog_sync(dopts.dlog);
				last_sync_ns = t;
				emit_settled();
			} else {
				wait = min_wait(wait, (long)((last_sync_ns - t) / 1000000) +
				                      SYNC_EVERY_MS + 1);
			}
		} else {
			emit_settled();
		}
		if (stats_clock_due(&sc))
			print_stats();
		if (!reading && ring_len == 0 && deliver_outstanding() == 0)
			break;
		if (stopping && now >= drain_deadline) {
			warning("stopping with %zu deliveries unsettled (%zu input "
			        "lines not acknowledged)", deliver_outstanding(),
			        ring_len);
			break;
		}
		if (was_full && ring_len < (size_t)opt.max_pending)
			wait = 0;
		if (stopping)
			wait = min_wait(wait, (long)((drain_deadline - now) / 1000000) + 1);
		wait = min_wait(wait, stats_clock_timeout_ms(&sc));
		wait = min_wait(wait, ev_curl_wait_ms(mono_now_ns()));
		wait = min_wait(wait, 1000);
		want_stdin = reading && ring_len < (size_t)opt.max_pending;
		if (want_stdin != watching_stdin && stdin_pollable) {
			stdin_pollable = ev_watch(STDIN_FILENO, want_stdin);
			watching_stdin = want_stdin && stdin_pollable;
		}
		if (want_stdin && !stdin_pollable)
			wait = 0; /* a regular file: always ready */
		ev_wait(wait);
		stop_signals_drain();
		ev_curl_timer(mono_now_ns());
	}
	if (watching_stdin)
		ev_watch(STDIN_FILENO, false);
	stdin_restore();
	line_reader_free(&lr);
	while (ring_len) {
		entry_free(ring[ring_head]);
		ring_head = (ring_head + 1) % (size_t)opt.max_pending;
		ring_len--;
	}
	free(ring);
	free(route_buf);
	return 0;
}

int
main(int argc, char **argv)
{
	CURLM *multi;
	int status;

	diag_init("sm-notify");
	parse_args(argc, argv);
	srandom((unsigned)(time_now_ms() ^ getpid()));
	dopts.cfg = config_load(opt.config);
	if (opt.check) {
		print_config(dopts.cfg);
		config_free(&dopts.cfg);
		return fflush(stdout) == 0 ? 0 : EX_IOERR;
	}
	wake_fd = stop_signals_install(STOPSIG_CHLD);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die(EX_SOFTWARE, "curl_global_init failed");
	dopts.retry_for_ms = opt.retry_for_ms;
	dopts.dry_run = opt.dry_run;
	dopts.dead_letter_path = opt.dead_letter;
	if (opt.dead_letter && !opt.dry_run) {
		dopts.dead_letter = fopen(opt.dead_letter, "ae");
		if (!dopts.dead_letter)
			die(EX_IOERR, "dead letter %s:", opt.dead_letter);
	}
	dopts.dlog = dlog_open(opt.dry_run ? NULL : opt.delivered_log,
	                       (size_t)opt.delivered_max);
	if ((multi = curl_multi_init()) == NULL)
		die(EX_SOFTWARE, "curl_multi_init failed");
	ev_init(multi);
	deliver_init(&dopts, multi);
	status = run(multi);
	print_stats();
	deliver_shutdown();
	curl_multi_cleanup(multi);
	ev_free();
	curl_global_cleanup();
	dlog_free(&dopts.dlog);
	if (dopts.dead_letter && fclose(dopts.dead_letter) != 0)
		die(EX_IOERR, "dead letter %s:", opt.dead_letter);
	config_free(&dopts.cfg);
	if (fclose(stdout) != 0)
		die(EX_IOERR, "stdout:");
	return status;
}
