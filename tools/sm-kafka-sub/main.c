/*
 * sm-kafka-sub - consume JSON records from Kafka as a consumer group and
 * write them to stdout with their coordinates; commit an offset only once
 * every record up to it is written (or, with --ack, acknowledged).
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
#include "output.h"
#include "sm.h"
#include "track.h"

static const char usage_text[] =
"usage: sm-kafka-sub [-b BROKERS] [-t TOPIC]... [-G GROUP]\n"
"                    [-o beginning|end|stored] [-e] [--ack PATH]\n"
"                    [--dead-letter FILE] [--max-inflight N]\n"
"                    [--drain-timeout DURATION]\n"
"                    [--stats-interval DURATION] [-v] [-X PROP=VAL]...\n"
"                    [-F FILE] [--ca FILE] [--cert FILE] [--key FILE]\n"
"                    [--sasl-mechanism M] [--sasl-user USER]\n"
"                    [--sasl-password-file FILE]\n"
"\n"
"Consume TOPICs as consumer group GROUP and write each message (a JSON\n"
"object) to stdout as one line with \"kafka\": {topic, partition, offset}\n"
"added.  Offsets are committed once records are written or, with --ack,\n"
"once every record up to them is acknowledged on PATH.\n"
"\n"
"  -t, --topic TOPIC         topic to consume, repeatable (SM_KAFKA_TOPIC,\n"
"                            comma-separated)\n"
"  -G, --group GROUP         consumer group (SM_KAFKA_GROUP)\n"
"  -o, --offset WHERE        where a newly assigned partition starts:\n"
"                            stored (default: committed offset, else the\n"
"                            oldest record), beginning or end\n"
"  -e, --exit                exit once every partition is at its end and\n"
"                            everything emitted is committed\n"
"      --ack PATH            FIFO or file of acknowledged records (JSON\n"
"                            lines carrying the \"kafka\" object)\n"
"      --dead-letter FILE    append messages that are not JSON objects to\n"
"                            FILE (default: stderr)\n"
"      --max-inflight N      pause consuming past N unacknowledged records\n"
"                            (default 10000)\n"
"      --drain-timeout DUR   on SIGTERM wait at most DUR for outstanding\n"
"                            acks (default 10s)\n"
"      --stats-interval DUR  write a stats line to stderr every DUR\n"
"                            (SM_STATS_INTERVAL; default 0: never)\n"
"  -v, --verbose             log assignments, revocations and commits\n"
KCONF_USAGE
"  -h, --help                this text\n"
"  -V, --version             print the version\n";

enum {
	OPT_ACK = 0x100,
	OPT_DEAD_LETTER,
	OPT_MAX_INFLIGHT,
	OPT_DRAIN_TIMEOUT,
	OPT_STATS_INTERVAL,
};

static const struct option long_options[] = {
	{ "topic", required_argument, NULL, 't' },
	{ "group", required_argument, NULL, 'G' },
	{ "offset", required_argument, NULL, 'o' },
	{ "exit", no_argument, NULL, 'e' },
	{ "ack", required_argument, NULL, OPT_ACK },
	{ "dead-letter", required_argument, NULL, OPT_DEAD_LETTER },
	{ "max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT },
	{ "drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT },
	{ "stats-interval", required_argument, NULL, OPT_STATS_INTERVAL },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	KCONF_LONGOPTS,
	{ NULL, 0, NULL, 0 },
};

enum start_at { START_STORED, START_BEGINNING, START_END };

#define BATCH 1000            /* messages taken per loop turn */
#define COMMIT_EVERY_NS 1000000000LL
#define OUT_HIGH (4 << 20)    /* take no more past this much unwritten output */
#define OUT_PAUSE_NS 5000000000LL /* ... and pause past this long so */

static volatile sig_atomic_t signals;

struct sub {
	rd_kafka_t *rk;
	struct tracker t;
	struct ack_stream *acks;  /* --ack, or NULL */
	bool acks_closed;         /* the ack writer has gone */
	FILE *dead;               /* --dead-letter, or NULL for stderr */
	const char *dead_name;
	enum start_at start_at;
	bool exit_at_end;
	size_t max_inflight;
	int64_t drain_timeout_ms;
	bool verbose;             /* -v: one line per group event */
	bool paused;
	int64_t out_full_since;   /* when output reached OUT_HIGH, or 0 */
	bool assigned_once;
	bool cooperative;         /* the group's rebalance protocol */
	bool draining;            /* stopping: emit nothing more */
	bool fatal;
	int status;               /* exit status so far */
	struct output out;        /* stdout */
	unsigned long emitted, dead_letters, acked;
	struct stats_clock stats; /* --stats-interval */
};

/* Set once everything was written: the final commit and leaving the
 * group may still block while no coordinator answers (up to
 * session.timeout.ms). */
static volatile sig_atomic_t closing;

/* A second signal stops at once.  Nothing is lost by not committing:
 * what was not committed is delivered again to the group. */
static void
stop_now(void)
{
	static const char msg[] = "sm-kafka-sub: warning: second signal: "
		"exiting without the final commit\n";

	(void)!write(STDERR_FILENO, msg, sizeof msg - 1);
	_exit(EX_UNAVAILABLE);
}

static void
on_signal(int sig)
{
	(void)sig;
	if (++signals >= 2 && closing)
		stop_now();
}

/* Said once, on the first signal: what the drain waits for, and how to
 * cut it short. */
static void
log_stopping(const struct sub *s)
{
	if (s->acks != NULL && s->t.inflight > 0)
		info("stopping: waiting for %zu acknowledgement%s, then the "
		     "final commit; a second signal exits at once",
		     s->t.inflight, s->t.inflight == 1 ? "" : "s");
	else
		info("stopping: the final commit, then leaving the group; "
		     "a second signal exits at once");
}

static void
usage_error(const char *msg)
{
	fprintf(stderr, "%s: error: %s\n%s", diag_progname(), msg, usage_text);
	exit(EX_USAGE);
}

static void
stop(struct sub *s, int status)
{
	s->fatal = true;
	if (s->status == 0)
		s->status = status;
}

/* ---- acknowledgements ------------------------------------------------ */

/* The "kafka" object of an ack line: the scan finds it without parsing
 * the whole record (jansson parses just that object); where the scan is
 * unsure, jansson parses the line.  NULL with *err set for invalid JSON;
 * NULL with *err empty when there is no "kafka" object. */
static json_t *
ack_kafka_object(const char *line, size_t len, char *err, size_t errlen)
{
	struct jscan_field kf = { .name = "kafka" }, unused = { .name = NULL };
	json_t *obj, *k;

	*err = '\0';
	if (jscan_object(line, len, &kf, &unused) == JSCAN_OBJECT) {
		/* An object's text starts at its brace; a string's after
		 * its quote. */
		if (kf.type != JV_COMPLEX || kf.val[0] != '{' ||
		    kf.val[-1] == '"')
			return NULL;
		return json_loadb(kf.val, kf.len, 0, NULL);
	}
	if ((obj = json_line_parse(line, len, err, errlen)) == NULL)
		return NULL;
	/* json_incref: k outlives obj. */
	if ((k = json_object_get(obj, "kafka")) != NULL)
		json_incref(k);
	json_decref(obj);
	return k;
}

static void
on_ack_line(const char *line, size_t len, unsigned long lineno, void *arg)
{
	struct sub *s = arg;
	const json_t *topic, *partition, *offset;
	char err[256];
	struct part *p;
	json_t *k;

	if (len == 0)
		return;
	k = ack_kafka_object(line, len, err, sizeof err);
	if (k == NULL && *err != '\0') {
		warn_input(ack_stream_name(s->acks), lineno, line, len, "%s",
		           err);
		return;
	}
	topic = json_object_get(k, "topic");
	partition = json_object_get(k, "partition");
	offset = json_object_get(k, "offset");
	if (!json_is_string(topic) || !json_is_integer(partition) ||
	    !json_is_integer(offset)) {
		warn_input(ack_stream_name(s->acks), lineno, line, len,
		           "no \"kafka\" object with topic, partition and "
		           "offset");
	} else if ((p = tracker_find(&s->t, json_string_value(topic),
	                             (int32_t)json_integer_value(partition)))
	               != NULL &&
	           part_ack(&s->t, p, json_integer_value(offset))) {
		s->acked++;
	}
	/* Anything else is an ack for a revoked partition or a duplicate:
	 * nothing to do, the record's new owner handles it. */
	json_decref(k);
}

/* -v: "committed results [3] at 1207" for each partition of a commit. */
static void
log_partitions(const struct sub *s, const char *what,
               const rd_kafka_topic_partition_list_t *l, bool offsets)
{
	int i;

	if (!s->verbose || l == NULL)
		return;
	for (i = 0; i < l->cnt; i++) {
		if (offsets && l->elems[i].err)
			continue;
		if (offsets)
			info("%s %s [%" PRId32 "] at %" PRId64, what,
			     l->elems[i].topic, l->elems[i].partition,
			     l->elems[i].offset);
		else
			info("%s %s [%" PRId32 "]", what, l->elems[i].topic,
			     l->elems[i].partition);
	}
}

static void
read_acks(struct sub *s, short revents)
{
	if (s->acks == NULL || s->acks_closed)
		return;
	if (!ack_stream_read(s->acks, revents, on_ack_line, s, 4 << 20))
		s->acks_closed = true;
}

/* ---- commits --------------------------------------------------------- */

/* Commit what is acknowledged; async from the loop, sync on revoke and
 * at the end.  Returns the error of a sync commit. */
static rd_kafka_resp_err_t
commit(struct sub *s, bool async)
{
	rd_kafka_topic_partition_list_t *l = tracker_commit_list(&s->t);
	rd_kafka_resp_err_t err;

	if (l == NULL)
		return RD_KAFKA_RESP_ERR_NO_ERROR;
	err = rd_kafka_commit(s->rk, l, async);
	if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		warn("commit: %s", rd_kafka_err2str(err));
	else if (!async) {
		tracker_committed(&s->t, l);
		log_partitions(s, "committed", l, true);
	}
	rd_kafka_topic_partition_list_destroy(l);
	return err == RD_KAFKA_RESP_ERR__NO_OFFSET ? 0 : err;
}

static void
offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                 rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	struct sub *s = opaque;

	if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
		warn("commit: %s", rd_kafka_err2str(err));
		return; /* retried on the next turn: committed did not move */
	}
	tracker_committed(&s->t, offsets);
	log_partitions(s, "committed", offsets, true);
}

/* ---- rebalancing ----------------------------------------------------- */

/* Whether the group rebalances incrementally: librdkafka picks the
 * COOPERATIVE protocol when every configured assignor supports it, which
 * of its assignors only cooperative-sticky does.  Decided from the
 * configuration, once: rd_kafka_rebalance_protocol() called from the
 * rebalance callback that rd_kafka_consumer_close() triggers can wait
 * forever in librdkafka 2.0 (confluentinc/librdkafka#4041), and did here
 * when the group rebalanced as the consumer stopped. */
static bool
strategy_is_cooperative(const rd_kafka_conf_t *conf)
{
	char list[512], *tok, *save = NULL;
	size_t len = sizeof list;
	bool any = false;

	if (rd_kafka_conf_get(conf, "partition.assignment.strategy", list,
	                      &len) != RD_KAFKA_CONF_OK)
		return false;
	for (tok = strtok_r(list, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (strcmp(tok, "cooperative-sticky") != 0)
			return false;
		any = true;
	}
	return any;
}

static void
check_error(struct sub *s, rd_kafka_error_t *error, const char *what)
{
	if (error == NULL)
		return;
	warn("%s: %s", what, rd_kafka_error_string(error));
	rd_kafka_error_destroy(error);
	stop(s, EX_UNAVAILABLE);
}

static void
check_err(struct sub *s, rd_kafka_resp_err_t err, const char *what)
{
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	warn("%s: %s", what, rd_kafka_err2str(err));
	stop(s, EX_UNAVAILABLE);
}

static void
assign_parts(struct sub *s, rd_kafka_topic_partition_list_t *parts)
{
	int i;

	log_partitions(s, "assigned", parts, false);
	for (i = 0; i < parts->cnt; i++) {
		rd_kafka_topic_partition_t *tp = &parts->elems[i];
		struct part *p = tracker_get(&s->t, tp->topic, tp->partition);

		part_reset(&s->t, p);
		p->assigned = true;
		/* -o applies to a partition's first assignment only: coming
		 * back after a rebalance, it resumes where the group is. */
		if (!p->seen && s->start_at == START_BEGINNING)
			tp->offset = RD_KAFKA_OFFSET_BEGINNING;
		else if (!p->seen && s->start_at == START_END)
			tp->offset = RD_KAFKA_OFFSET_END;
		p->seen = true;
	}
	if (s->cooperative)
		check_error(s, rd_kafka_incremental_assign(s->rk, parts),
		            "assign");
	else
		check_err(s, rd_kafka_assign(s->rk, parts), "assign");
	if (s->paused || s->draining)
		rd_kafka_pause_partitions(s->rk, parts);
	s->assigned_once = true;
}

static void
revoke_parts(struct sub *s, rd_kafka_topic_partition_list_t *parts)
{
	int i;

	log_partitions(s, "revoked", parts, false);
	/* Commit what was acknowledged first, or the next owner of these
	 * partitions re-delivers it. */
	if (!rd_kafka_assignment_lost(s->rk)) {
		read_acks(s, POLLIN);
		(void)commit(s, false);
	}
	for (i = 0; i < parts->cnt; i++) {
		struct part *p = tracker_find(&s->t, parts->elems[i].topic,
		                              parts->elems[i].partition);

		if (p != NULL) {
			part_reset(&s->t, p);
			p->assigned = false;
		}
	}
	if (s->cooperative)
		check_error(s, rd_kafka_incremental_unassign(s->rk, parts),
		            "unassign");
	else
		check_err(s, rd_kafka_assign(s->rk, NULL), "unassign");
}

static void
rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
             rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct sub *s = opaque;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		assign_parts(s, parts);
	} else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
		revoke_parts(s, parts);
	} else {
		warn("rebalance: %s", rd_kafka_err2str(err));
		revoke_parts(s, parts);
	}
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	if (kconf_error(rk, err, reason))
		stop(opaque, EX_UNAVAILABLE);
}

/* Pause every assigned partition while too much is unacknowledged (or
 * while draining); resume below the limit. */
static void
flow_control(struct sub *s)
{
	rd_kafka_topic_partition_list_t *l = NULL;
	bool want;

	/* A slow stdout first only stops the taking of messages: librdkafka
	 * stops fetching when its own queue is full, and what it fetched
	 * stays.  Pausing discards that (it is fetched again on resume), so
	 * it is kept for a stdout blocked long enough that the group would
	 * miss our polls (max.poll.interval.ms). */
	if (output_pending(&s->out) < OUT_HIGH)
		s->out_full_since = 0;
	else if (s->out_full_since == 0)
		s->out_full_since = mono_now_ns();
	want = s->draining || s->t.inflight >= s->max_inflight ||
	       (s->out_full_since != 0 &&
	        mono_now_ns() - s->out_full_since >= OUT_PAUSE_NS);

	if (want == s->paused)
		return;
	if (rd_kafka_assignment(s->rk, &l) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    l != NULL) {
		if (want)
			rd_kafka_pause_partitions(s->rk, l);
		else
			rd_kafka_resume_partitions(s->rk, l);
	}
	if (l != NULL)
		rd_kafka_topic_partition_list_destroy(l);
	s->paused = want;
}

/* ---- messages -------------------------------------------------------- */

/* The first bytes of a value, printable, for a stderr line. */
static void
printable_prefix(const char *v, size_t n, char *out, size_t outlen)
{
	size_t i, o = 0;

	for (i = 0; i < n && i < 80 && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c < 0x20 || c >= 0x7f)
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	if (n > 80 && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

static json_t *
bytes_json(const void *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *b = data;
	json_t *s;
	char *h;
	size_t i;

	if (data == NULL)
		return json_null();
	if ((s = json_stringn(data, len)) != NULL)
		return s;
	/* Not UTF-8: hex, so that the dead letter is still JSON. */
	h = xmalloc(len * 2 + 5);
	memcpy(h, "hex:", 4);
	for (i = 0; i < len; i++) {
		h[4 + 2 * i] = hex[b[i] >> 4];
		h[4 + 2 * i + 1] = hex[b[i] & 15];
	}
	h[4 + 2 * len] = '\0';
	s = json_string(h);
	free(h);
	return s;
}

/* A message that is not a JSON object: dead letter, counted as acked so
 * that it never blocks its partition.  False when it could not be kept. */
static bool
dead_letter(struct sub *s, const rd_kafka_message_t *m, const char *reason)
{
	char prefix[512];
	json_t *dl;
	int r;

	s->dead_letters++;
	if (s->dead == NULL) {
		printable_prefix(m->payload, m->len, prefix, sizeof prefix);
		warn("%s [%" PRId32 "] offset %" PRId64 ": %s: %s",
		     rd_kafka_topic_name(m->rkt), m->partition, m->offset,
		     reason, prefix);
		return true;
	}
	/* json_pack "o" steals the references bytes_json returns. */
	dl = json_pack("{s:s, s:s, s:i, s:I, s:o, s:o}", "reason", reason,
	               "topic", rd_kafka_topic_name(m->rkt), "partition",
	               (int)m->partition, "offset", (json_int_t)m->offset,
	               "key", bytes_json(m->key, m->key_len), "value",
	               bytes_json(m->payload ? m->payload : "",
	                          m->payload ? m->len : 0));
	r = dl ? json_line_write(s->dead, dl) : -1;
	json_decref(dl);
	if (r != 0 || fflush(s->dead) != 0) {
		warn("%s:", s->dead_name);
		return false;
	}
	return true;
}

/* The value with "kafka" added before its closing brace, written as it
 * came: no re-serialising.  1 when written; 0 when the text does not lend
 * itself (a line break inside, or a "kafka" field already there); -1 when
 * the line would be longer than SM_MAX_LINE, which no stage after us
 * reads (it could never be acknowledged). */
static int
emit_spliced(struct sub *s, struct part *p, const rd_kafka_message_t *m,
             bool has_kafka)
{
	const char *v = m->payload ? m->payload : "", *q;
	size_t n = m->payload ? m->len : 0;
	char coords[1024];
	bool empty;
	int c;

	while (n > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (has_kafka || n < 2 || *v != '{' || v[n - 1] != '}' ||
	    memchr(v, '\n', n) != NULL || memchr(v, '\r', n) != NULL)
		return 0;
	for (q = v + 1; *q == ' ' || *q == '\t'; q++)
		;
	empty = q == v + n - 1;
	c = snprintf(coords, sizeof coords,
	             "%s\"kafka\":{\"topic\":%s,\"partition\":%" PRId32
	             ",\"offset\":%" PRId64 "}}\n",
	             empty ? "" : ",", p->qtopic, m->partition, m->offset);
	if (c <= 0 || (size_t)c >= sizeof coords)
		return 0;
	if (n - 1 + (size_t)c - 1 > SM_MAX_LINE)
		return -1;
	output_append(&s->out, v, n - 1);
	output_append(&s->out, coords, (size_t)c);
	s->emitted++;
	return 1;
}

/* The slow path: add "kafka" to the parsed object and print it again.
 * False when the line would be longer than SM_MAX_LINE. */
static bool
emit_dumped(struct sub *s, struct part *p, const rd_kafka_message_t *m,
            json_t *obj)
{
	char *text;

	/* json_object_set_new steals the new object. */
	json_object_set_new(obj, "kafka",
	                    json_pack("{s:s, s:i, s:I}", "topic", p->topic,
	                              "partition", (int)m->partition,
	                              "offset", (json_int_t)m->offset));
	text = json_dumps(obj, JSON_COMPACT);
	if (text == NULL)
		die(EX_SOFTWARE, "out of memory");
	if (strlen(text) > SM_MAX_LINE) {
		free(text);
		return false;
	}
	output_append(&s->out, text, strlen(text));
	output_append(&s->out, "\n", 1);
	free(text);
	s->emitted++;
	return true;
}

static void
handle_message(struct sub *s, rd_kafka_message_t *m)
{
	const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
	struct jscan_field kf = { .name = "kafka" }, unused = { .name = NULL };
	char err[256];
	struct part *p;
	json_t *obj;
	int r;

	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		if ((p = tracker_find(&s->t, topic, m->partition)) != NULL)
			p->eof = true;
		return;
	}
	if (m->err) {
		warn("kafka: %s%s%s: %s", topic, *topic ? " " : "",
		     m->partition >= 0 ? "partition" : "",
		     rd_kafka_message_errstr(m));
		if (m->err == RD_KAFKA_RESP_ERR__FATAL)
			stop(s, EX_UNAVAILABLE);
		return;
	}
	if (s->draining)
		return; /* not emitted: re-delivered after the restart */
	p = tracker_get(&s->t, topic, m->partition);
	p->eof = false;
	/* The fast path: the scan is certain the value is a valid object
	 * (where it is unsure, jansson, the reference, decides). */
	if (jscan_object(m->payload ? m->payload : "",
	                 m->payload ? m->len : 0, &kf, &unused) ==
	        JSCAN_OBJECT &&
	    (r = emit_spliced(s, p, m, kf.type != JV_NONE)) != 0) {
		if (r < 0)
			goto too_long;
		part_emit(&s->t, p, m->offset, false);
		return;
	}
	obj = json_line_parse(m->payload ? m->payload : "",
	                      m->payload ? m->len : 0, err, sizeof err);
	if (obj == NULL)
		goto dead;
	if ((r = emit_spliced(s, p, m, json_object_get(obj, "kafka") != NULL))
	    == 0)
		r = emit_dumped(s, p, m, obj) ? 1 : -1;
	json_decref(obj);
	if (r < 0)
		goto too_long;
	part_emit(&s->t, p, m->offset, false);
	return;
too_long:
	snprintf(err, sizeof err, "longer than %d bytes with its \"kafka\" "
	         "object", SM_MAX_LINE);
dead:
	if (!dead_letter(s, m, err)) {
		stop(s, EX_IOERR);
		return;
	}
	part_emit(&s->t, p, m->offset, true);
}

/* Write what stdout takes; without --ack, written is done: commit it. */
static void
flush_output(struct sub *s)
{
	if (output_pending(&s->out) == 0)
		return;
	if (output_flush(&s->out) != 0) {
		warn("stdout:");
		output_discard(&s->out);
		stop(s, EX_IOERR);
		return;
	}
	if (s->acks == NULL && output_pending(&s->out) == 0)
		tracker_ack_all(&s->t);
}

/* At the end with --ack: never leave half a line in the pipe.  Finish the
 * line being written (reading acks meanwhile, the next stage may wait on
 * us), drop the rest: it was not acknowledged, it will come again. */
static void
finish_output(struct sub *s)
{
	int64_t deadline = mono_now_ns() + 2000000000LL;

	while (!output_at_line_end(&s->out) && mono_now_ns() < deadline) {
		struct pollfd fds[2] = {
			{ .fd = s->out.fd, .events = POLLOUT },
			{ .fd = s->acks ? ack_stream_poll_fd(s->acks) : -1,
			  .events = POLLIN },
		};

		if (poll(fds, 2, 100) < 0 && errno != EINTR)
			break;
		if (output_flush_line(&s->out) != 0)
			break;
		read_acks(s, fds[1].fd == -1 ? POLLIN : fds[1].revents);
	}
	output_discard(&s->out);
}

/* -e: every assigned partition at its end, nothing awaited. */
static bool
at_end(const struct sub *s)
{
	size_t i;

	if (!s->assigned_once || s->t.inflight > 0)
		return false;
	for (i = 0; i < s->t.n_parts; i++)
		if (s->t.parts[i]->assigned && !s->t.parts[i]->eof)
			return false;
	return true;
}

/* ---- the stats line -------------------------------------------------- */

/* The lag of one partition: high watermark minus position, from
 * librdkafka's cache (the watermarks come with each fetch response: no
 * broker round trip).  Before its first message the position is unknown;
 * an empty partition or one at its end (partition EOF, enabled with the
 * stats) has none.  -1 when unknown. */
static int64_t
part_lag(struct sub *s, const rd_kafka_topic_partition_t *tp)
{
	const struct part *p;
	int64_t lo, hi;

	if (rd_kafka_get_watermark_offsets(s->rk, tp->topic, tp->partition,
	                                   &lo, &hi) !=
	        RD_KAFKA_RESP_ERR_NO_ERROR ||
	    hi < 0)
		return -1;
	if (tp->offset >= 0)
		return hi > tp->offset ? hi - tp->offset : 0;
	p = tracker_find(&s->t, tp->topic, tp->partition);
	return lo == hi || (p != NULL && p->eof) ? 0 : -1;
}

/* Sum over the assigned partitions; -1 when one is unknown, or before
 * the group's first assignment (none yet is not none at all). */
static int64_t
consumer_lag(struct sub *s)
{
	rd_kafka_topic_partition_list_t *l = NULL;
	int64_t sum = 0, lag;
	int i;

	if (!s->assigned_once ||
	    rd_kafka_assignment(s->rk, &l) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    l == NULL)
		return -1;
	if (rd_kafka_position(s->rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR)
		sum = -1;
	for (i = 0; sum >= 0 && i < l->cnt; i++) {
		lag = part_lag(s, &l->elems[i]);
		sum = lag < 0 ? -1 : sum + lag;
	}
	rd_kafka_topic_partition_list_destroy(l);
	return sum;
}

/* Counts since the start; unacked: written, awaiting an ack (without
 * --ack, awaiting the write). */
static void
stats_line(struct sub *s)
{
	int64_t lag = consumer_lag(s);
	char lagstr[24] = "-";

	if (lag >= 0)
		snprintf(lagstr, sizeof lagstr, "%" PRId64, lag);
	info("stats: out=%lu acked=%lu invalid=%lu unacked=%zu committed=%lu "
	     "lag=%s",
	     s->emitted, s->acked, s->dead_letters, s->t.inflight,
	     s->t.commits, lagstr);
}

/* The loop's poll timeout, cut short when the stats line is due. */
static int
stats_bound(const struct sub *s, int timeout_ms)
{
	int due = stats_clock_timeout_ms(&s->stats);

	return due >= 0 && due < timeout_ms ? due : timeout_ms;
}

static void
drain_wake(int fd)
{
	char buf[256];

	while (read(fd, buf, sizeof buf) > 0)
		;
}

static void
run(struct sub *s, int wake_fd)
{
	int64_t next_commit_ns = mono_now_ns() + COMMIT_EVERY_NS;
	int64_t drain_deadline_ns = 0;
	bool more = false;

	while (!s->fatal) {
		struct pollfd fds[3] = {
			{ .fd = wake_fd, .events = POLLIN },
			{ .fd = s->acks ? ack_stream_poll_fd(s->acks) : -1,
			  .events = POLLIN },
			{ .fd = output_pending(&s->out) > 0 ? s->out.fd : -1,
			  .events = POLLOUT },
		};
		int64_t now = mono_now_ns();
		int timeout, n;

		if (signals > 0 && !s->draining) {
			s->draining = true;
			log_stopping(s);
			drain_deadline_ns = now + s->drain_timeout_ms * 1000000;
			flow_control(s);
		}
		if (s->draining &&
		    (signals >= 2 || s->acks == NULL || s->acks_closed ||
		     s->t.inflight == 0 || now >= drain_deadline_ns))
			break;
		if (s->acks_closed) {
			if (s->t.inflight > 0) {
				warn("ack stream %s closed with %zu records "
				     "unacknowledged (they will be delivered "
				     "again)",
				     ack_stream_name(s->acks), s->t.inflight);
				s->status = EX_UNAVAILABLE;
			}
			break;
		}
		if (s->exit_at_end && at_end(s))
			break;

		timeout = more ? 0 : 1000;
		if (s->acks != NULL && ack_stream_poll_fd(s->acks) == -1)
			timeout = more ? 0 : 100; /* a file: look again soon */
		if (timeout > (next_commit_ns - now) / 1000000)
			timeout = (int)((next_commit_ns - now) / 1000000);
		if (timeout < 0)
			timeout = 0;
		timeout = stats_bound(s, timeout);
		if (poll(fds, 3, timeout) < 0 && errno != EINTR)
			die(EX_OSERR, "poll:");
		if (fds[0].revents & POLLIN)
			drain_wake(wake_fd);
		read_acks(s, fds[1].fd == -1 ? POLLIN : fds[1].revents);

		/* While stdout is full, take nothing more (unless paused:
		 * then polling only serves the group's events). */
		for (n = 0; n < BATCH && !s->fatal &&
		            (s->paused || output_pending(&s->out) < OUT_HIGH);
		     n++) {
			rd_kafka_message_t *m =
			    rd_kafka_consumer_poll(s->rk, 0);

			if (m == NULL)
				break;
			handle_message(s, m);
			rd_kafka_message_destroy(m);
			/* Pausing discards what librdkafka fetched ahead, so
			 * the limit holds exactly. */
			if (s->t.inflight >= s->max_inflight) {
				flow_control(s);
				break;
			}
		}
		more = n == BATCH;
		flush_output(s);
		flow_control(s);
		if (mono_now_ns() >= next_commit_ns) {
			(void)commit(s, true);
			next_commit_ns = mono_now_ns() + COMMIT_EVERY_NS;
		}
		if (stats_clock_due(&s->stats))
			stats_line(s);
	}
}

static void
add_topic(const char *topic, void *arg)
{
	rd_kafka_topic_partition_list_add(arg, topic, RD_KAFKA_PARTITION_UA);
}

int
main(int argc, char **argv)
{
	struct sub s = {
		.start_at = START_STORED,
		.max_inflight = 10000,
		.drain_timeout_ms = 10000,
	};
	rd_kafka_topic_partition_list_t *topics;
	const char *group = NULL, *ack_path = NULL, *dead_path = NULL;
	rd_kafka_queue_t *q;
	rd_kafka_conf_t *conf;
	rd_kafka_resp_err_t err;
	struct sigaction sa;
	struct kconf *kc;
	char errstr[512];
	int64_t stats_ms = -1;
	int wake[2], c;

	diag_init(argv[0]);
	signal(SIGPIPE, SIG_IGN);
	kc = kconf_new(KCONF_CONSUMER);
	topics = rd_kafka_topic_partition_list_new(4);
	while ((c = getopt_long(argc, argv, "t:G:o:evhV" KCONF_SHORTOPTS,
	                        long_options, NULL)) != -1) {
		if (kconf_option(kc, c, optarg))
			continue;
		switch (c) {
		case 't':
			add_topic(optarg, topics);
			break;
		case 'G':
			group = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "beginning") == 0)
				s.start_at = START_BEGINNING;
			else if (strcmp(optarg, "end") == 0)
				s.start_at = START_END;
			else if (strcmp(optarg, "stored") == 0)
				s.start_at = START_STORED;
			else
				usage_error("-o: expected beginning, end or "
				            "stored");
			break;
		case 'e':
			s.exit_at_end = true;
			break;
		case 'v':
			s.verbose = true;
			break;
		case OPT_ACK:
			ack_path = optarg;
			break;
		case OPT_DEAD_LETTER:
			dead_path = optarg;
			break;
		case OPT_MAX_INFLIGHT:
			s.max_inflight = (size_t)opt_ll("--max-inflight", optarg,
			                                1, 100000000);
			break;
		case OPT_DRAIN_TIMEOUT:
			s.drain_timeout_ms = opt_duration_ms("--drain-timeout",
			                                     optarg, 0, 86400000);
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
	if (topics->cnt == 0 && getenv("SM_KAFKA_TOPIC") != NULL)
		kconf_split_list(getenv("SM_KAFKA_TOPIC"), add_topic, topics);
	if (group != NULL)
		kconf_set(kc, "group.id", group);
	else if (getenv("SM_KAFKA_GROUP") != NULL &&
	         *getenv("SM_KAFKA_GROUP") != '\0')
		kconf_default(kc, "group.id", getenv("SM_KAFKA_GROUP"));
	/* The environment only when the flag is absent: a flag overrides a
	 * bad SM_STATS_INTERVAL. */
	stats_clock_init(&s.stats, stats_ms >= 0 ? stats_ms :
	                                           stats_interval_default_ms());
	/* The stats line's lag needs to know a partition is at its end
	 * before a message gives the position. */
	if (s.exit_at_end || s.stats.interval_ns != 0)
		kconf_default(kc, "enable.partition.eof", "true");
	conf = kconf_finish(kc); /* -X dump exits here */
	kconf_free(&kc);
	if (topics->cnt == 0)
		usage_error("no topic: give -t TOPIC or set SM_KAFKA_TOPIC");
	{
		char gid[512];
		size_t glen = sizeof gid;

		if (rd_kafka_conf_get(conf, "group.id", gid, &glen) !=
		        RD_KAFKA_CONF_OK ||
		    gid[0] == '\0')
			usage_error("no group: give -G GROUP or set "
			            "SM_KAFKA_GROUP");
	}

	if (dead_path != NULL) {
		if ((s.dead = fopen(dead_path, "a")) == NULL)
			die(EX_CANTCREAT, "%s:", dead_path);
		s.dead_name = dead_path;
	}
	if (ack_path != NULL)
		s.acks = ack_stream_open(ack_path);
	output_init(&s.out, STDOUT_FILENO, ack_path != NULL);
	tracker_init(&s.t);

	s.cooperative = strategy_is_cooperative(conf);
	rd_kafka_conf_set_opaque(conf, &s);
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	s.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
	if (s.rk == NULL)
		die(EX_CONFIG, "%s", errstr);
	conf = NULL; /* librdkafka owns it */
	rd_kafka_poll_set_consumer(s.rk);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if ((err = rd_kafka_subscribe(s.rk, topics)) != 0)
		die(EX_CONFIG, "subscribe: %s", rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(topics);

	/* librdkafka wakes our poll() when the consumer queue fills. */
	if (pipe2(wake, O_NONBLOCK | O_CLOEXEC) == -1)
		die(EX_OSERR, "pipe:");
	q = rd_kafka_queue_get_consumer(s.rk);
	rd_kafka_queue_io_event_enable(q, wake[1], "1", 1);

	run(&s, wake[0]);

	flush_output(&s);
	finish_output(&s);
	read_acks(&s, POLLIN);
	closing = 1;
	if (signals >= 2)
		stop_now();
	if (commit(&s, false) != 0 && s.status == 0)
		s.status = EX_UNAVAILABLE;
	if (s.stats.interval_ns != 0)
		stats_line(&s); /* the final counts, while lag is known */
	rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
	rd_kafka_queue_destroy(q);
	s.draining = true; /* nothing more is emitted while closing */
	if ((err = rd_kafka_consumer_close(s.rk)) != 0)
		warn("close: %s", rd_kafka_err2str(err));
	rd_kafka_destroy(s.rk);
	close(wake[0]);
	close(wake[1]);
	ack_stream_free(&s.acks);
	tracker_free(&s.t);
	if (s.dead != NULL && fclose(s.dead) != 0) {
		warn("%s:", dead_path);
		if (s.status == 0)
			s.status = EX_IOERR;
	}
	output_free(&s.out);
	return s.status;
}
