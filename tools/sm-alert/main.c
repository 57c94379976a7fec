/*
 * sm-alert - turn result records into incident events (down, up,
 * reminder, stale, cert_expiring, slow, flapping, resolved) by the rules in
 * sites.yaml's alerts keys, with state that survives kill -9.
 *
 * Acknowledgements: a result carrying a "kafka" object (from sm-kafka-sub)
 * is acknowledged by a bare line {"v":1,"kafka":{...}} on stdout after its
 * events, and, with --state, only once a checkpoint that covers it is on
 * disk: an offset is committed only after sm-alert can no longer lose what
 * the result did to its state.  The outbox (events by the id of the result
 * that caused them, kept in the checkpoint) gives the same events again
 * when sm-kafka-sub redelivers results the state has already seen.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alert.h"
#include "../sm-schedule/config.h"
#include "jsonscan.h"
#include "sm.h"
#include "stopsig.h"

static const char usage_text[] =
	"usage: sm-alert [-sw] [-c duration] [-n time] [-O count] [-S file]\n"
	"                [-P pattern] [--stats-interval duration] sites.yaml\n"
	"       sm-alert -h | -V\n";

static const char options_text[] =
	"\n"
	"Read result records on stdin, write incident events on stdout by the\n"
	"alerts rules of sites.yaml (SIGHUP reloads them).\n"
	"\n"
	"  -S, --state FILE          keep state in FILE, checkpointed atomically\n"
	"                            (SM_ALERT_STATE; default: none, state is\n"
	"                            lost at exit)\n"
	"  -P, --peers PATTERN       the checkpoints of the other sm-alert\n"
	"                            processes of the consumer group (a glob\n"
	"                            pattern; own -S file skipped): partitions\n"
	"                            moved by a rebalance take their state from\n"
	"                            them (SM_ALERT_PEERS; needs -S)\n"
	"  -c, --checkpoint-interval DURATION\n"
	"                            longest time between checkpoints (1s)\n"
	"  -O, --outbox COUNT        recent events kept to re-emit for replayed\n"
	"                            results (10000)\n"
	"  -n, --now TIME            at the end of input, check timers (stale,\n"
	"                            reminders, maintenance) as of TIME (RFC 3339)\n"
	"  -w, --wall-clock          also check timers by the wall clock when the\n"
	"                            input is idle (a whole fleet gone silent)\n"
	"  -s, --strict              exit 65 at the first invalid line\n"
	"      --stats-interval DURATION\n"
	"                            write a stats line to stderr this often\n"
	"                            (SM_STATS_INTERVAL; default 0: never)\n"
	"  -h, --help                this text\n"
	"  -V, --version             print the version\n";

#define OPT_STATS_INTERVAL 256
/* Acks held for a checkpoint: past this many bytes, checkpoint now. */
#define MAX_HELD_ACKS (8 * 1024 * 1024)

static struct {
	const char *sites, *state, *peers;
	int64_t ckpt_ms, now_ms, stats_ms;
	long long outbox;
	bool strict, wall;
} opt = {.ckpt_ms = 1000, .outbox = 10000};

static struct {
	unsigned long long in, bad, unknown, acks, ckpts;
} stats;

/* Acks waiting for the next checkpoint. */
static char *held;
static size_t held_len, held_cap;
static int64_t last_ckpt_ns;
static bool dirty;

/* A reader that goes away while we stop (a whole process group got the
 * signal) loses nothing: what it did not take was not acknowledged and is
 * read again after the restart.  Any other write error is one. */
static void
out_failed(void)
{
	if (stop_signal && errno == EPIPE) {
		info("stdout closed while stopping; what was not written is "
		     "replayed from the last commit");
		exit(0);
	}
	die(EX_IOERR, "stdout:");
}

static void
ack(const char *kafka, size_t len)
{
	static const char pre[] = "{\"v\":1,\"kafka\":";
	size_t need = sizeof(pre) - 1 + len + 2;

	stats.acks++;
	if (!opt.state) {
		if (fputs(pre, stdout) == EOF ||
		    fwrite(kafka, 1, len, stdout) != len ||
		    fputs("}\n", stdout) == EOF)
			out_failed();
		return;
	}
	if (held_len + need > held_cap) {
		held_cap = (held_len + need) * 2;
		held = xrealloc(held, held_cap);
	}
	memcpy(held + held_len, pre, sizeof(pre) - 1);
	memcpy(held + held_len + sizeof(pre) - 1, kafka, len);
	memcpy(held + held_len + sizeof(pre) - 1 + len, "}\n", 2);
	held_len += need;
}

/* Events out, state on disk, then the acks it covers. */
static void
checkpoint(struct engine *e)
{
	engine_check_peers(e);
	if (fflush(stdout) == EOF)
		out_failed();
	if (engine_save(e, opt.state) < 0)
		die(EX_CANTCREAT, "cannot write the checkpoint %s", opt.state);
	stats.ckpts++;
	if (held_len && fwrite(held, 1, held_len, stdout) != held_len)
		out_failed();
	held_len = 0;
	if (fflush(stdout) == EOF)
		out_failed();
	dirty = false;
	last_ckpt_ns = mono_now_ns();
}

static void
maybe_checkpoint(struct engine *e, bool idle)
{
	if (!opt.state || !dirty)
		return;
	if (held_len > MAX_HELD_ACKS ||
	    mono_now_ns() - last_ckpt_ns >= opt.ckpt_ms * 1000000)
		checkpoint(e);
	(void)idle;
}

static void
load_rules(struct engine *e, bool first)
{
	struct config *cfg = config_load(opt.sites, CONFIG_YAML);

	if (!cfg) {
		if (first)
			exit(EX_CONFIG);
		warn("%s: not reloaded, the rules stay as they were",
		     opt.sites);
		return;
	}
	engine_set_config(e, cfg);
	if (!first)
		info("%s: reloaded, %zu targets", opt.sites, cfg->n);
	config_free(&cfg);
	dirty = true;
}

/* A line that is not a valid result is still acknowledged when it carries
 * Kafka coordinates: an offset must not wait for a line that never gets
 * better. */
static void
ack_bad_line(const char *line, size_t len)
{
	struct jscan_field k = {.name = "kafka"}, none = {.name = NULL};

	if (jscan_object(line, len, &k, &none) == JSCAN_OBJECT &&
	    k.type == JV_COMPLEX && k.len && k.val[0] == '{')
		ack(k.val, k.len);
}

static void
handle_line(struct engine *e, struct line_reader *lr, char *line, size_t len)
{
	struct result r;
	json_t *tree;
	char err[256];

	stats.in++;
	if (input_decode(line, len, &r, &tree, err, sizeof(err)) < 0) {
		stats.bad++;
		warn_input(line_reader_name(lr), line_reader_lineno(lr), line,
		           len, "%s", err);
		if (opt.strict)
			exit(EX_DATAERR);
		ack_bad_line(line, len);
		return;
	}
	if (engine_result(e, &r) < 0) {
		if (stats.unknown++ < 10)
			warning("target \"%.*s\" is not in %s: its results are "
			        "ignored%s", (int)r.target_len, r.target,
			        opt.sites, stats.unknown == 10 ? " (no more of "
			        "these warnings)" : "");
	}
	dirty = true;
	if (r.kafka)
		ack(r.kafka, r.kafka_len);
	json_decref(tree);
	if (engine_out_error(e) < 0)
		out_failed();
}

static void
stats_line(struct engine *e)
{
	size_t targets, pairs, bytes = engine_state_bytes(e, &targets, &pairs);

	info("stats: in=%llu bad=%llu unknown_target=%llu events=%lu acks=%llu "
	     "checkpoints=%llu targets=%zu pairs=%zu state_bytes=%zu",
	     stats.in, stats.bad, stats.unknown, engine_events(e), stats.acks,
	     stats.ckpts, targets, pairs, bytes);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"state", required_argument, NULL, 'S'},
		{"peers", required_argument, NULL, 'P'},
		{"checkpoint-interval", required_argument, NULL, 'c'},
		{"outbox", required_argument, NULL, 'O'},
		{"now", required_argument, NULL, 'n'},
		{"wall-clock", no_argument, NULL, 'w'},
		{"strict", no_argument, NULL, 's'},
		{"stats-interval", required_argument, NULL, OPT_STATS_INTERVAL},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct engine_opts eo = {0};
	int64_t stop_ns = 0; /* when a stop signal came */
	struct stats_clock sc;
	struct line_reader *lr;
	struct engine *e;
	int c, rc, wake;

	diag_init("sm-alert");
	opt.state = getenv("SM_ALERT_STATE");
	if (opt.state && !*opt.state)
		opt.state = NULL;
	opt.peers = getenv("SM_ALERT_PEERS");
	if (opt.peers && !*opt.peers)
		opt.peers = NULL;
	opt.stats_ms = stats_interval_default_ms();
	while ((c = getopt_long(argc, argv, "S:P:c:O:n:wshV", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'S':
			opt.state = optarg;
			break;
		case 'P':
			opt.peers = optarg;
			break;
		case 'c':
			opt.ckpt_ms = opt_duration_ms("-c", optarg, 1, 3600000);
			break;
		case 'O':
			opt.outbox = opt_ll("-O", optarg, 0, 10000000);
			break;
		case 'n':
			if (time_parse_ms(optarg, &opt.now_ms) < 0) {
				warn("-n: not an RFC 3339 time: %s", optarg);
				usage_exit(usage_text, options_text, EX_USAGE);
			}
			break;
		case 'w':
			opt.wall = true;
			break;
		case 's':
			opt.strict = true;
			break;
		case OPT_STATS_INTERVAL:
			opt.stats_ms = stats_interval_option_ms(optarg);
			break;
		case 'h':
			usage_exit(usage_text, options_text, 0);
			break;
		case 'V':
			print_version_and_exit();
		default:
			usage_exit(usage_text, options_text, EX_USAGE);
		}
	}
	if (argc - optind != 1) {
		if (argc - optind == 0)
			warn("sites.yaml is missing");
		else
			warn("one sites.yaml only");
		usage_exit(usage_text, options_text, EX_USAGE);
	}
	opt.sites = argv[optind];
	if (opt.peers && !opt.state) {
		warn("-P needs -S: peers hand state over through checkpoints");
		usage_exit(usage_text, options_text, EX_USAGE);
	}
	/* Every signal makes wake readable: one that comes just before the
	 * idle poll below ends it at once. */
	wake = stop_signals_install(STOPSIG_HUP);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	eo.out = stdout;
	eo.outbox_max = opt.state ? (size_t)opt.outbox : 0;
	eo.state = opt.state;
	eo.peers = opt.peers;
	e = engine_new(&eo);
	load_rules(e, true);
	if (opt.state && (rc = engine_load(e, opt.state)) < 0)
		die(EX_CONFIG, "%s: move it away to start with no state",
		    opt.state);
	/* Partitions that went to a peer while we were down. */
	if (engine_check_peers(e))
		dirty = true;
	last_ckpt_ns = mono_now_ns();
	stats_clock_init(&sc, opt.stats_ms);

	stdin_nonblock();
	lr = line_reader_new(STDIN_FILENO, "<stdin>", SM_MAX_LINE);
	/* A stop signal ends the loop at the next pause in the input: what
	 * is already in the pipe (the upstream sm-kafka-sub stopped too) is
	 * decided and acknowledged first, for at most a second. */
	for (;;) {
		enum line_status st;
		char *line;
		size_t len;

		if (stop_signal && !stop_ns)
			stop_ns = mono_now_ns();
		if (stop_ns && mono_now_ns() - stop_ns > 1000000000LL)
			break;

		if (hup_signal) {
			hup_signal = 0;
			load_rules(e, false);
		}
		st = line_reader_next(lr, &line, &len);
		if (st == LINE_OK) {
			handle_line(e, lr, line, len);
			if ((stats.in & 1023) == 0)
				maybe_checkpoint(e, false);
			continue;
		}
		if (st == LINE_TOO_LONG) {
			stats.bad++;
			warn_input(line_reader_name(lr), line_reader_lineno(lr),
			           line, len, "line longer than %d bytes",
			           SM_MAX_LINE);
			if (opt.strict)
				exit(EX_DATAERR);
			continue;
		}
		if (st == LINE_EOF)
			break;
		if (st == LINE_ERROR)
			die(EX_IOERR, "<stdin>:");
		/* LINE_AGAIN: idle; everything written so far goes out */
		if (stop_signal)
			break;
		if (fflush(stdout) == EOF)
			out_failed();
		maybe_checkpoint(e, true);
		if (stats_clock_due(&sc))
			stats_line(e);
		{
			struct pollfd p[2] = {
				{ .fd = STDIN_FILENO, .events = POLLIN },
				{ .fd = wake, .events = POLLIN },
			};
			int timeout = 1000, n;

			if (opt.state && dirty)
				timeout = (int)opt.ckpt_ms;
			n = poll(p, 2, timeout);
			if (n > 0 && (p[1].revents & POLLIN))
				stop_signals_drain();
			if (n == 0 && opt.wall) {
				engine_scan(e, time_now_ms(), true);
				if (engine_out_error(e) < 0)
					out_failed();
			}
			/* Idle: the peers go on, and may have made the
			 * location-wide incidents ours, or a location
			 * silent or back. */
			if (opt.peers && mono_now_ns() - last_ckpt_ns >=
			                     opt.ckpt_ms * 1000000 &&
			    engine_check_peers(e))
				dirty = true;
		}
	}
	if (opt.now_ms)
		engine_scan(e, opt.now_ms, true);
	if (opt.state)
		checkpoint(e);
	if (opt.stats_ms)
		stats_line(e);
	line_reader_free(&lr);
	engine_free(&e);
	rules_free_all();
	free(held);
	stdin_restore();
	if (fflush(stdout) == EOF || fclose(stdout) == EOF)
		out_failed();
	return 0;
}
