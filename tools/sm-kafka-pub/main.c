/*
 * sm-kafka-pub - produce JSON object lines from stdin to a Kafka topic,
 * each confirmed by the brokers or reported as failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonscan.h"
#include "kafkaconf.h"
#include "sm.h"

static const char usage_text[] =
"usage: sm-kafka-pub [-b BROKERS] [-t TOPIC] [-X PROP=VAL]... [-F FILE]\n"
"                    [--key-field FIELD] [--failure-topic TOPIC]\n"
"                    [--dead-letter FILE] [--flush-timeout DURATION]\n"
"                    [--stats-interval DURATION] [--tee] [--strict]\n"
"                    [--ca FILE] [--cert FILE] [--key FILE]\n"
"                    [--sasl-mechanism M] [--sasl-user USER]\n"
"                    [--sasl-password-file FILE]\n"
"\n"
"Produce each JSON object line of stdin to TOPIC, keyed by its \"target\"\n"
"field, with an idempotent producer (acks=all).  Exits 0 only when every\n"
"record was delivered.\n"
"\n"
"  -t, --topic TOPIC         topic to produce to (SM_KAFKA_TOPIC)\n"
"      --key-field FIELD     record field used as the message key\n"
"                            (default \"target\")\n"
"      --failure-topic TOPIC records with \"ok\": false go to TOPIC instead\n"
"      --dead-letter FILE    append undelivered and invalid records to FILE\n"
"                            (default: stderr)\n"
"      --flush-timeout DUR   on EOF or SIGTERM wait at most DUR for\n"
"                            deliveries (default 30s); after SIGTERM,\n"
"                            input is read until EOF for at most DUR/2\n"
"      --stats-interval DUR  write a stats line to stderr every DUR\n"
"                            (SM_STATS_INTERVAL; default 0: never)\n"
"      --tee                 write each record to stdout once delivered\n"
"      --strict              stop at the first invalid line (exit 65)\n"
KCONF_USAGE
"  -h, --help                this text\n"
"  -V, --version             print the version\n";

enum {
	OPT_KEY_FIELD = 0x100,
	OPT_FAILURE_TOPIC,
	OPT_DEAD_LETTER,
	OPT_FLUSH_TIMEOUT,
	OPT_TEE,
	OPT_STRICT,
	OPT_STATS_INTERVAL,
};

static const struct option long_options[] = {
	{ "topic", required_argument, NULL, 't' },
	{ "key-field", required_argument, NULL, OPT_KEY_FIELD },
	{ "failure-topic", required_argument, NULL, OPT_FAILURE_TOPIC },
	{ "dead-letter", required_argument, NULL, OPT_DEAD_LETTER },
	{ "flush-timeout", required_argument, NULL, OPT_FLUSH_TIMEOUT },
	{ "tee", no_argument, NULL, OPT_TEE },
	{ "strict", no_argument, NULL, OPT_STRICT },
	{ "stats-interval", required_argument, NULL, OPT_STATS_INTERVAL },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	KCONF_LONGOPTS,
	{ NULL, 0, NULL, 0 },
};

/* Reads, backpressure waits and the flush all poll these. */
static volatile sig_atomic_t signals;

struct pub {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;      /* the topic */
	rd_kafka_topic_t *fail_rkt; /* --failure-topic, or NULL */
	const char *topic;
	const char *key_field;
	const char *input_name;
	FILE *dead;                 /* --dead-letter, or NULL for stderr */
	const char *dead_name;
	bool tee, strict;
	int64_t flush_timeout_ms;
	int64_t stop_deadline_ns;   /* set when the drain starts */
	int64_t read_deadline_ns;   /* after a signal: stop reading then */
	unsigned long in;           /* lines read, blank ones too */
	unsigned long produced, delivered, failed, invalid;
	struct stats_clock stats;   /* --stats-interval */
	bool fatal;                 /* librdkafka's fatal error: stop */
	bool out_error;             /* writing stdout failed */
	bool dead_error;            /* writing --dead-letter failed: 74 */
	bool tee_unflushed;
};

static void
on_signal(int sig)
{
	(void)sig;
	signals++;
}

static void
usage_error(const char *msg)
{
	fprintf(stderr, "%s: error: %s\n%s", diag_progname(), msg, usage_text);
	exit(EX_USAGE);
}

/* A JSON string for a C string (escaped); caller frees. */
static char *
json_quote(const char *s)
{
	json_t *str = json_string(s != NULL ? s : "");
	char *out;

	if (str == NULL) /* not UTF-8 */
		str = json_string("(not UTF-8)");
	out = json_dumps(str, JSON_ENCODE_ANY);
	json_decref(str);
	if (out == NULL)
		die(EX_SOFTWARE, "out of memory");
	return out;
}

/*
 * One dead letter: {"reason":…,"source":…,"line":N,"topic":…,"record":{…}}
 * for a record Kafka did not take, or {…,"input":"…"} for an input line
 * that is not a JSON object (record_is_json false).  Without a file, one
 * stderr line that keeps the whole record, so nothing vanishes silently.
 */
static void
dead_letter(struct pub *p, const char *reason, unsigned long lineno,
            const char *topic, const char *data, size_t len,
            bool record_is_json)
{
	char *qreason, *qsource, *qtopic, *qinput = NULL;
	int r;

	if (p->dead == NULL) {
		if (record_is_json)
			warn("%s:%lu: not delivered to %s: %s: %.*s",
			     p->input_name, lineno, topic, reason, (int)len,
			     data);
		return; /* invalid lines were already reported */
	}
	qreason = json_quote(reason);
	qsource = json_quote(p->input_name);
	qtopic = json_quote(topic);
	if (!record_is_json) {
		json_t *s = json_stringn_nocheck(data, len);
		char *tmp = NULL;

		/* Not UTF-8: keep it readable rather than drop it. */
		if (s != NULL && (tmp = json_dumps(s, JSON_ENCODE_ANY)) ==
		                     NULL) {
			json_decref(s);
			s = json_string("(not UTF-8)");
			tmp = json_dumps(s, JSON_ENCODE_ANY);
		}
		json_decref(s);
		qinput = tmp;
	}
	if (record_is_json)
		r = fprintf(p->dead,
		            "{\"reason\":%s,\"source\":%s,\"line\":%lu,"
		            "\"topic\":%s,\"record\":%.*s}\n",
		            qreason, qsource, lineno, qtopic, (int)len, data);
	else
		r = fprintf(p->dead,
		            "{\"reason\":%s,\"source\":%s,\"line\":%lu,"
		            "\"input\":%s}\n",
		            qreason, qsource, lineno,
		            qinput ? qinput : "null");
	if (r < 0 || fflush(p->dead) != 0) {
		/* The record is lost: stop reading, exit 74 as the other
		 * programs do when their dead-letter file fails. */
		warn("%s: cannot write dead letter for %s:%lu:", p->dead_name,
		     p->input_name, lineno);
		p->dead_error = true;
	}
	free(qreason);
	free(qsource);
	free(qtopic);
	free(qinput);
}

/* Delivery report, served by rd_kafka_poll() in this thread. */
static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct pub *p = opaque;
	unsigned long lineno = (unsigned long)(uintptr_t)m->_private;

	if (m->err) {
		p->failed++;
		dead_letter(p, rd_kafka_err2str(m->err), lineno,
		            rd_kafka_topic_name(m->rkt), m->payload, m->len,
		            true);
		return;
	}
	p->delivered++;
	if (p->tee && !p->out_error) {
		if (fwrite(m->payload, 1, m->len, stdout) != m->len ||
		    putchar('\n') == EOF) {
			warn("stdout:");
			p->out_error = true;
		}
		p->tee_unflushed = true;
	}
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct pub *p = opaque;

	if (kconf_error(rk, err, reason))
		p->fatal = true;
}

/* The stats line: counts since the start.  queue: produced, awaiting
 * its delivery report (rd_kafka_outq_len would count requests too). */
static void
stats_line(const struct pub *p)
{
	info("stats: in=%lu delivered=%lu failed=%lu invalid=%lu queue=%lu",
	     p->in, p->delivered, p->failed, p->invalid,
	     p->produced - p->delivered - p->failed);
}

/* A wait of at most max_ms that ends when the stats line is due, so that
 * it comes on time on an idle input too. */
static int
wait_ms(const struct pub *p, int max_ms)
{
	int due = stats_clock_timeout_ms(&p->stats);

	return due >= 0 && due < max_ms ? due : max_ms;
}

/* Serve delivery reports and keep --tee output streaming; every wait
 * goes through here (once per batch), so the stats line is checked here
 * too. */
static void
serve(struct pub *p, int timeout_ms)
{
	rd_kafka_poll(p->rk, timeout_ms);
	if (stats_clock_due(&p->stats))
		stats_line(p);
	if (p->tee_unflushed) {
		p->tee_unflushed = false;
		if (fflush(stdout) != 0 && !p->out_error) {
			warn("stdout:");
			p->out_error = true;
		}
	}
}

/* The first signal starts the clock: reading may go on for half of
 * --flush-timeout (the stage before us drains its work on the same
 * signal), deliveries for all of it. */
static void
note_signal(struct pub *p)
{
	int64_t now;

	if (signals == 0 || p->stop_deadline_ns != 0)
		return;
	now = mono_now_ns();
	p->stop_deadline_ns = now + p->flush_timeout_ms * 1000000;
	p->read_deadline_ns = now + p->flush_timeout_ms * 500000;
}

/* Past the drain's deadline, or told twice to stop. */
static bool
must_give_up(struct pub *p)
{
	if (signals >= 2 || p->fatal)
		return true;
	note_signal(p);
	return p->stop_deadline_ns != 0 && mono_now_ns() >= p->stop_deadline_ns;
}

/* The message key: a string field as is, another scalar as JSON text. */
static const char *
record_key(const json_t *obj, const char *field, char **owned, size_t *len)
{
	const json_t *v = json_object_get(obj, field);

	*owned = NULL;
	if (v == NULL || json_is_null(v)) {
		*len = 0;
		return NULL;
	}
	if (json_is_string(v)) {
		*len = json_string_length(v);
		return json_string_value(v);
	}
	*owned = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	*len = *owned ? strlen(*owned) : 0;
	return *owned;
}

static void
produce_record(struct pub *p, const char *line, size_t len,
               unsigned long lineno, rd_kafka_topic_t *rkt, const char *key,
               size_t klen)
{
	rd_kafka_resp_err_t err;

	for (;;) {
		err = rd_kafka_producev(
		    p->rk, RD_KAFKA_V_RKT(rkt),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_VALUE((void *)line, len),
		    RD_KAFKA_V_KEY(key, klen),
		    RD_KAFKA_V_OPAQUE((void *)(uintptr_t)lineno),
		    RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		/* Backpressure: stop reading until the queue drains. */
		if (must_give_up(p)) {
			err = RD_KAFKA_RESP_ERR__TIMED_OUT;
			break;
		}
		serve(p, wait_ms(p, 100));
	}
	p->produced++;
	if (err) {
		p->failed++;
		dead_letter(p, err == RD_KAFKA_RESP_ERR__TIMED_OUT ?
		                   "not queued before the shutdown deadline" :
		                   rd_kafka_err2str(err),
		            lineno, rd_kafka_topic_name(rkt), line, len, true);
	}
}

/* The fast path: the scan is sure the line is an object, and the key is
 * a plain string, an integer, true, false or null (a real number's text
 * may differ from jansson's, so it takes the slow path).  kf.val points
 * into the NUL-terminated line, so strcspn stays inside it. */
static bool
produce_scanned(struct pub *p, const char *line, size_t len,
                unsigned long lineno)
{
	struct jscan_field kf = { .name = p->key_field };
	struct jscan_field okf = { .name = "ok" };
	enum jscan_type ok_type;

	if (jscan_object(line, len, &kf, &okf) != JSCAN_OBJECT ||
	    kf.type == JV_COMPLEX ||
	    (kf.type == JV_OTHER && strcspn(kf.val, ".eE") < kf.len))
		return false;
	if (kf.type == JV_NONE ||
	    (kf.type == JV_OTHER && kf.len == 4 && memcmp(kf.val, "null", 4) == 0))
		kf.val = NULL, kf.len = 0;
	ok_type = strcmp(p->key_field, "ok") == 0 ? kf.type : okf.type;
	produce_record(p, line, len, lineno,
	               p->fail_rkt != NULL && ok_type == JV_FALSE ? p->fail_rkt :
	                                                            p->rkt,
	               kf.val, kf.len);
	return true;
}

/* Returns false when --strict stops the input. */
static bool
handle_line(struct pub *p, char *line, size_t len, unsigned long lineno)
{
	rd_kafka_topic_t *rkt;
	const char *key;
	char err[256], *owned;
	size_t klen;
	json_t *obj;

	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	while (len > 0 && (*line == ' ' || *line == '\t')) {
		line++;
		len--;
	}
	if (len == 0)
		return true; /* blank lines carry nothing */
	if (produce_scanned(p, line, len, lineno))
		return true;
	/* jansson is the reference for everything the scan is unsure of. */
	if ((obj = json_line_parse(line, len, err, sizeof err)) == NULL) {
		p->invalid++;
		warn_input(p->input_name, lineno, line, len, "%s", err);
		dead_letter(p, err, lineno, p->topic, line, len, false);
		return !p->strict;
	}
	rkt = p->fail_rkt != NULL && json_is_false(json_object_get(obj, "ok")) ?
	          p->fail_rkt : p->rkt;
	key = record_key(obj, p->key_field, &owned, &klen);
	produce_record(p, line, len, lineno, rkt, key, klen);
	free(owned);
	json_decref(obj);
	return true;
}

static int stdin_flags = -1;

static void
restore_stdin(void)
{
	if (stdin_flags != -1)
		(void)fcntl(STDIN_FILENO, F_SETFL, stdin_flags);
	stdin_flags = -1;
}

/* Reads stdin until EOF, a signal, --strict, or a fatal error, serving
 * delivery reports meanwhile.  Returns the exit status so far. */
static int
read_input(struct pub *p, int wake_fd)
{
	struct line_reader *lr;
	enum line_status st;
	bool more = false, stopped_reading = false;
	char *line;
	size_t len;
	int status = 0;

	stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
	if (stdin_flags == -1)
		die(EX_NOINPUT, "stdin:");
	atexit(restore_stdin);
	if (fcntl(STDIN_FILENO, F_SETFL, stdin_flags | O_NONBLOCK) == -1)
		die(EX_SOFTWARE, "stdin: O_NONBLOCK:");
	lr = line_reader_new(STDIN_FILENO, p->input_name, SM_MAX_LINE);
	while (signals < 2 && !p->fatal && !p->out_error && !p->dead_error) {
		struct pollfd fds[2] = {
			{ .fd = STDIN_FILENO, .events = POLLIN },
			{ .fd = wake_fd, .events = POLLIN },
		};
		int n;

		/* SIGTERM: go on reading until EOF, so that what the stage
		 * before us drains is not lost (a whole pipeline gets the
		 * signal), but not past the read deadline on an endless
		 * input; every line read is produced. */
		note_signal(p);
		if (signals == 1 && !stopped_reading &&
		    mono_now_ns() >= p->read_deadline_ns) {
			warning("input still open %" PRId64 " ms after the "
			        "signal: reading no more",
			        p->flush_timeout_ms / 2);
			int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

			restore_stdin();
			if (null == -1 || dup2(null, STDIN_FILENO) == -1)
				die(EX_OSERR, "/dev/null:");
			close(null);
			stopped_reading = true;
		}
		if (!more &&
		    poll(fds, 2, wait_ms(p, signals ? 100 : 1000)) < 0 &&
		    errno != EINTR)
			die(EX_SOFTWARE, "poll:");
		if (fds[1].revents & POLLIN) {
			char buf[256];

			while (read(wake_fd, buf, sizeof buf) > 0)
				;
		}
		serve(p, 0);
		/* Take a bounded batch, then serve reports again. */
		more = false;
		for (n = 0; n < 1000 && signals < 2 && !p->fatal && !p->dead_error;
		     n++) {
			st = line_reader_next(lr, &line, &len);
			if (st == LINE_AGAIN)
				break;
			if (st == LINE_EOF)
				goto done; /* (after a SIGTERM too) */
			if (st == LINE_ERROR) {
				warn("%s:", p->input_name);
				status = EX_IOERR;
				goto done;
			}
			p->in++;
			if (st == LINE_TOO_LONG) {
				p->invalid++;
				warn_input(p->input_name, line_reader_lineno(lr),
				           line, len, "line longer than %d bytes",
				           SM_MAX_LINE);
				if (p->strict) {
					status = EX_DATAERR;
					goto done;
				}
				continue;
			}
			if (!handle_line(p, line, len, line_reader_lineno(lr))) {
				status = EX_DATAERR;
				goto done;
			}
		}
		if (n == 1000)
			more = true;
	}
done:
	line_reader_free(&lr);
	return status;
}

/* Wait for every delivery report, at most --flush-timeout; then purge
 * what is left so that it too is reported (and dead-lettered). */
static void
drain(struct pub *p)
{
	int64_t give_up_ns;

	if (p->stop_deadline_ns == 0)
		p->stop_deadline_ns = mono_now_ns() +
		                      p->flush_timeout_ms * 1000000;
	while (p->delivered + p->failed < p->produced && !p->fatal) {
		if (signals >= 2 || mono_now_ns() >= p->stop_deadline_ns)
			break;
		rd_kafka_flush(p->rk, wait_ms(p, 100));
		serve(p, 0);
	}
	if (p->delivered + p->failed < p->produced) {
		warn("%lu records not delivered by the deadline: purging",
		     p->produced - p->delivered - p->failed);
		rd_kafka_purge(p->rk,
		               RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	}
	/* Purged messages come back as failed delivery reports. */
	give_up_ns = mono_now_ns() + 5000000000LL;
	while (p->delivered + p->failed < p->produced &&
	       mono_now_ns() < give_up_ns)
		serve(p, 100);
	serve(p, 0);
}

int
main(int argc, char **argv)
{
	struct pub p = {
		.key_field = "target",
		.input_name = "<stdin>",
		.flush_timeout_ms = 30000,
	};
	const char *topic = getenv("SM_KAFKA_TOPIC");
	const char *failure_topic = NULL;
	const char *dead_path = NULL;
	int64_t stats_ms = -1;
	char errstr[512];
	struct sigaction sa;
	struct kconf *kc;
	rd_kafka_conf_t *conf;
	rd_kafka_queue_t *mainq;
	int wake[2], c, status;

	diag_init(argv[0]);
	signal(SIGPIPE, SIG_IGN);
	kc = kconf_new(KCONF_PRODUCER);
	while ((c = getopt_long(argc, argv, "t:hV" KCONF_SHORTOPTS,
	                        long_options, NULL)) != -1) {
		if (kconf_option(kc, c, optarg))
			continue;
		switch (c) {
		case 't':
			topic = optarg;
			break;
		case OPT_KEY_FIELD:
			p.key_field = optarg;
			break;
		case OPT_FAILURE_TOPIC:
			failure_topic = optarg;
			break;
		case OPT_DEAD_LETTER:
			dead_path = optarg;
			break;
		case OPT_FLUSH_TIMEOUT:
			p.flush_timeout_ms = opt_duration_ms("--flush-timeout",
			                                     optarg, 0,
			                                     86400000);
			break;
		case OPT_TEE:
			p.tee = true;
			break;
		case OPT_STRICT:
			p.strict = true;
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
	if (optind < argc)
		usage_error("unexpected argument");
	conf = kconf_finish(kc); /* -X dump exits here */
	kconf_free(&kc);
	if (topic == NULL || *topic == '\0')
		usage_error("no topic: give -t TOPIC or set SM_KAFKA_TOPIC");
	p.topic = topic;
	/* The environment only when the flag is absent: a flag overrides a
	 * bad SM_STATS_INTERVAL. */
	stats_clock_init(&p.stats, stats_ms >= 0 ? stats_ms :
	                                           stats_interval_default_ms());

	if (dead_path != NULL) {
		if ((p.dead = fopen(dead_path, "a")) == NULL)
			die(EX_CANTCREAT, "%s:", dead_path);
		p.dead_name = dead_path;
	}
	if (p.tee)
		setvbuf(stdout, NULL, _IOFBF, 65536);

	rd_kafka_conf_set_opaque(conf, &p);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	p.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
	if (p.rk == NULL)
		die(EX_CONFIG, "%s", errstr); /* conf is still ours: exiting */
	conf = NULL; /* librdkafka owns it */
	if ((p.rkt = rd_kafka_topic_new(p.rk, topic, NULL)) == NULL)
		die(EX_CONFIG, "topic %s: %s", topic,
		    rd_kafka_err2str(rd_kafka_last_error()));
	if (failure_topic != NULL &&
	    (p.fail_rkt = rd_kafka_topic_new(p.rk, failure_topic, NULL)) ==
	        NULL)
		die(EX_CONFIG, "topic %s: %s", failure_topic,
		    rd_kafka_err2str(rd_kafka_last_error()));

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	/* librdkafka wakes our poll() when a delivery report is queued. */
	if (pipe2(wake, O_NONBLOCK | O_CLOEXEC) == -1)
		die(EX_OSERR, "pipe:");
	mainq = rd_kafka_queue_get_main(p.rk);
	rd_kafka_queue_io_event_enable(mainq, wake[1], "1", 1);

	status = read_input(&p, wake[0]);
	drain(&p);

	rd_kafka_queue_io_event_enable(mainq, -1, NULL, 0);
	rd_kafka_queue_destroy(mainq);
	close(wake[0]);
	close(wake[1]);
	if (p.delivered + p.failed < p.produced) {
		p.failed += p.produced - p.delivered - p.failed;
		warn("delivery of some records is unknown");
	}
	if (p.failed > 0 || p.fatal || p.invalid > 0)
		info("%lu delivered, %lu failed, %lu invalid lines skipped",
		     p.delivered, p.failed, p.invalid);
	if (p.stats.interval_ns != 0)
		stats_line(&p); /* the final counts */
	if (p.fail_rkt != NULL)
		rd_kafka_topic_destroy(p.fail_rkt);
	rd_kafka_topic_destroy(p.rkt);
	rd_kafka_destroy(p.rk);
	if (p.dead != NULL && fclose(p.dead) != 0) {
		warn("%s:", dead_path);
		status = EX_IOERR;
	}
	if (fflush(stdout) != 0 || ferror(stdout) || p.out_error)
		status = EX_IOERR;
	if (p.failed > 0 || p.fatal)
		status = EX_UNAVAILABLE;
	if (p.dead_error)
		status = EX_IOERR;
	return status;
}
