/*
 * sm-pg-write - store result records in PostgreSQL, acknowledge them.
 *
 * Reads result records (sm-check's output, possibly wrapped with Kafka
 * coordinates by sm-kafka-sub) from stdin, gathers them in batches by count
 * and by time, stores each batch in one transaction (pg.c), and only after
 * COMMIT writes the batch's original lines to stdout, in input order: the
 * ack stream sm-kafka-sub commits offsets from.
 *
 * Two threads: the main one reads and parses the input and fills a batch
 * while the writer thread stores the previous one (and owns the database
 * connection, the ack stream and retention), so that parsing overlaps the
 * server's work; at most two batches are held.
 *
 * A record that is invalid or that the server refuses is reported (stderr,
 * --dead-letter) and, unless --ack-stored-only, acknowledged too at its
 * place in the order: sm-kafka-sub commits an offset only when everything
 * before it is acknowledged, so a record never acked would hold its
 * partition's offset back for good.  A line that is not a JSON object
 * carries no coordinates and is never acknowledged.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sm.h"
#include "stopsig.h"
#include "pgw.h"

static const char usage_text[] =
	"usage: sm-pg-write [-As] [-b count] [-D file] [-d conninfo] "
	"[-l duration]\n"
	"                   [-R duration] [-r duration] "
	"[--rollup-retention duration]\n"
	"                   [--fold-every duration] [--no-rollups] "
	"[--stats-interval duration]\n"
	"       sm-pg-write -m [-d conninfo] [-R duration] [-r duration]\n"
	"       sm-pg-write -h | -V\n";

static const char options_text[] =
	"\n"
	"Store result records from stdin in PostgreSQL, in batches; after each\n"
	"commit, write the batch's lines to stdout (the ack stream).\n"
	"\n"
	"  -d, --dsn CONNINFO        libpq connection string or URI (SM_PG_DSN;\n"
	"                            default: the PG* variables)\n"
	"  -b, --batch COUNT         records per transaction (10000)\n"
	"  -l, --linger DURATION     longest wait to fill a batch (200ms)\n"
	"  -r, --retry-for DURATION  retry an unavailable database this long,\n"
	"                            then exit 69 (5m)\n"
	"  -D, --dead-letter FILE    append invalid and refused lines to FILE\n"
	"  -s, --strict              exit 65 at the first invalid or refused line\n"
	"  -A, --ack-stored-only     do not acknowledge invalid or refused records\n"
	"  -R, --retention DURATION  drop day partitions older than DURATION\n"
	"                            (a bare number is days; at least 1d)\n"
	"      --rollup-retention DURATION\n"
	"                            delete hourly and daily rollups and outages\n"
	"                            older than DURATION (SM_PG_ROLLUP_RETENTION;\n"
	"                            at least --retention; default: keep)\n"
	"      --fold-every DURATION fold pending rollups this often (60s)\n"
	"      --no-rollups          do not feed the rollups and outages\n"
	"  -m, --migrate             apply the schema migrations and exit\n"
	"      --stats-interval DURATION\n"
	"                            write a stats line to stderr this often\n"
	"                            (SM_STATS_INTERVAL; default 0: never)\n"
	"  -h, --help                this text\n"
	"  -V, --version             print the version\n";

/* A batch never holds more than this many bytes (input lines and their
 * rows), whatever -b. */
#define MAX_BATCH_BYTES (32L * 1024 * 1024)
#define RETENTION_EVERY_MS (60L * 60 * 1000)
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* getopt_long value of the long-only option. */
#define OPT_STATS_INTERVAL 256
#define OPT_FOLD_EVERY 257
#define OPT_NO_ROLLUPS 258
#define OPT_ROLLUP_RETENTION 259

struct rec {
	char *line;    /* the input line, its COPY row and its binary tuple
	                  (one allocation) */
	size_t len;
	const char *copy;
	size_t copy_len;
	const char *bin; /* NULL: the row can go only as text */
	size_t bin_len;
	unsigned long lineno;
	int64_t started_ms; /* started_at, unix ms (for lag_ms) */
	int32_t day;   /* started_at's UTC day (the checks partition) */
	bool rejected; /* refused; here only to keep the ack order */
};

struct batch {
	struct rec *recs;
	size_t n, cap;
	size_t bytes;
	int64_t opened_ns; /* mono time of the first record */
	unsigned long expired; /* results skipped for --retention */
	struct pgw_state state; /* its targets state rows */
	struct pgw_rollup rollup; /* its rollup rows, all rows new */
};

static struct {
	const char *conninfo;
	long long batch;
	int64_t linger_ms;
	int64_t retry_for_ms;
	const char *dead_letter;
	int64_t retention_ms; /* 0: keep everything */
	int64_t rollup_retention_ms; /* 0: keep the rollups for ever */
	int64_t fold_ms;      /* fold pending rollups this often */
	bool no_rollups;
	int64_t stats_ms;     /* 0: no stats line */
	bool strict;
	bool migrate_only;
	bool ack_rejected;
} opt = {
	.batch = 10000,
	.linger_ms = 200,
	.retry_for_ms = 5 * 60 * 1000,
	.ack_rejected = true,
	/* A fold merges every target and location checked since the last
	 * one, so its work follows the targets, not the checks: at 50,000
	 * targets a fold every 10 s took the server's CPU from the rest of
	 * the pipeline; every 60 s it costs a sixth (bench/pipeline.bench).
	 * Readers count pending rows, so no figure waits for it. */
	.fold_ms = 60000,
};

static struct pgw *pg;          /* the writer thread's, once it runs */
static FILE *dead_letter;
static pthread_mutex_t reject_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *input_name = "<stdin>";

/* Cumulative counters for the stats line (--stats-interval), updated by
 * both threads. */
static struct {
	_Atomic unsigned long long in, stored, duplicates, acked, dead;
	_Atomic unsigned long long invalid, batches;
	_Atomic int64_t newest_ms; /* newest started_at committed */
	_Atomic unsigned long reconnects;
	_Atomic size_t pending; /* read, not yet stored or refused */
} stats = { .newest_ms = INT64_MIN };
static struct stats_clock stats_clock;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

/* Readable after a signal (stop_signals_install): wakes the input poll. */
static int wake_fd = -1;

/* Failing since (mono ns, 0 when not failing) and the next delay. */
static int64_t failing_since_ns;
static int64_t backoff_ms = BACKOFF_MIN_MS;

/* ---- acks and rejects ------------------------------------------------- */

static void
ack(const struct rec *r)
{
	if (fwrite(r->line, 1, r->len, stdout) != r->len ||
	    putchar('\n') == EOF)
		die(EX_IOERR, "writing the ack stream:");
	stats.acked++;
}

static void
ack_flush(void)
{
	if (fflush(stdout) != 0)
		die(EX_IOERR, "writing the ack stream:");
}

/* A JSON string for any bytes: invalid UTF-8 becomes U+FFFD. */
static json_t *
json_bytes(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);
	char *clean;
	size_t i, o = 0;

	if (j != NULL)
		return j;
	clean = xmalloc(len * 3 + 1);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x80) {
			clean[o++] = (char)c;
		} else {
			memcpy(clean + o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	j = json_stringn(clean, o);
	free(clean);
	return j;
}

/* One stderr line always; the whole line to the dead-letter file too.
 * Either thread may reject: one at a time. */
static void
reject(unsigned long lineno, const char *line, size_t len, const char *why)
{
	char at[TIME_STR_LEN];
	json_t *o;

	pthread_mutex_lock(&reject_lock);
	warn_input(input_name, lineno, line, len, "%s", why);
	if (dead_letter == NULL) {
		pthread_mutex_unlock(&reject_lock);
		return;
	}
	time_format_ms(time_now_ms(), at);
	o = json_object();
	json_object_set_new(o, "at", json_string(at));
	json_object_set_new(o, "source", json_string(input_name));
	json_object_set_new(o, "line", json_integer((json_int_t)lineno));
	json_object_set_new(o, "error", json_bytes(why, strlen(why)));
	json_object_set_new(o, "input", json_bytes(line, len));
	/* On disk before the record can be acknowledged. */
	if (json_line_write(dead_letter, o) == -1 || fflush(dead_letter) != 0 ||
	    fdatasync(fileno(dead_letter)) == -1) {
		json_decref(o); /* (nothing left for LeakSanitizer to report) */
		die(EX_IOERR, "%s:", opt.dead_letter);
	}
	json_decref(o);
	pthread_mutex_unlock(&reject_lock);
}

/* ---- stats line ------------------------------------------------------- */

static void
stats_write(void)
{
	char lag[24] = "-";
	int64_t newest_ms = stats.newest_ms;

	if (newest_ms != INT64_MIN)
		snprintf(lag, sizeof lag, "%lld",
		         (long long)(time_now_ms() - newest_ms));
	info("stats: in=%llu stored=%llu duplicates=%llu acked=%llu dead=%llu "
	     "invalid=%llu batches=%llu pending=%zu reconnects=%lu lag_ms=%s",
	     (unsigned long long)stats.in, (unsigned long long)stats.stored,
	     (unsigned long long)stats.duplicates,
	     (unsigned long long)stats.acked, (unsigned long long)stats.dead,
	     (unsigned long long)stats.invalid,
	     (unsigned long long)stats.batches, (size_t)stats.pending,
	     (unsigned long)stats.reconnects, lag);
}

/* Called between batches and while waiting, never per line: the clock is
 * read only when the interval is on.  Either thread may call it. */
static void
stats_tick(void)
{
	pthread_mutex_lock(&stats_lock);
	if (stats_clock_due(&stats_clock))
		stats_write();
	pthread_mutex_unlock(&stats_lock);
}

/* The poll timeout bounded by the stats clock, so that the line comes on
 * time while the input is idle. */
static int
stats_bound(int64_t timeout_ms)
{
	int s = stats_clock_timeout_ms(&stats_clock);

	if (s >= 0 && (timeout_ms < 0 || s < timeout_ms))
		return s;
	return (int)timeout_ms;
}

/* ---- retry budget ----------------------------------------------------- */

/* Sleep ms, or less when a stop signal comes: the writer thread blocks
 * signals, so it looks at the flag at least every 50 ms. */
static void
sleep_ms(int64_t ms)
{
	int64_t end = mono_now_ns() + ms * 1000000, left;
	struct timespec ts;

	while (!stop_signal && (left = end - mono_now_ns()) > 0) {
		if (left > 50 * 1000000)
			left = 50 * 1000000;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)left;
		nanosleep(&ts, NULL);
	}
}

/* Called after a transient failure: sleep before the next attempt, or give
 * up with 69 once the failures have lasted --retry-for. */
static void
retry_wait(const char *what, const char *err)
{
	int64_t now = mono_now_ns(), elapsed_ms, left_ms, delay;

	if (failing_since_ns == 0) {
		failing_since_ns = now;
		backoff_ms = BACKOFF_MIN_MS;
	}
	elapsed_ms = (now - failing_since_ns) / 1000000;
	left_ms = opt.retry_for_ms - elapsed_ms;
	if (left_ms <= 0)
		die(EX_UNAVAILABLE, "%s: giving up after %lld ms: %s", what,
		    (long long)elapsed_ms, err);
	/* Jitter (75-100%) so that writers restarted together spread out. */
	delay = backoff_ms - (backoff_ms / 4) * (rand() % 1000) / 1000;
	if (delay > left_ms)
		delay = left_ms;
	warn("%s: %s; retrying in %lld ms", what, err, (long long)delay);
	/* An outage is when the stats line matters most. */
	stats_tick();
	sleep_ms(delay);
	/* Waiting for a database is no work to finish: a signal stops it at
	 * once, and what was not stored was not acknowledged either. */
	if (stop_signal)
		die(EX_UNAVAILABLE, "%s: stopping on signal %d while it is "
		    "unavailable: %s", what, (int)stop_signal, err);
	backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
	                                              : backoff_ms * 2;
}

static void
retry_done(void)
{
	if (failing_since_ns != 0)
		info("database available again");
	failing_since_ns = 0;
	backoff_ms = BACKOFF_MIN_MS;
}

/* Retention: drop the day partitions older than --retention.  A failure is
 * reported and tried again at the next round, never fatal. */
static int64_t next_retention_ns;

/* --rollup-retention, on the same rounds. */
static void
rollup_retention(void)
{
	char err[1024], cutoff[TIME_STR_LEN];
	int64_t cutoff_ms;
	long long deleted;

	if (opt.rollup_retention_ms == 0 || opt.no_rollups)
		return;
	cutoff_ms = time_now_ms() - opt.rollup_retention_ms;
	if (pgw_rollup_drop_before(pg, cutoff_ms, &deleted, err, sizeof err) !=
	    PGW_OK) {
		warn("rollup retention: %s", err);
		return;
	}
	if (deleted > 0) {
		time_format_ms(cutoff_ms, cutoff);
		info("rollup retention: deleted %lld rollup and outage row%s "
		     "before %s", deleted, deleted == 1 ? "" : "s", cutoff);
	}
}

static void
retention(void)
{
	char err[1024], cutoff[TIME_STR_LEN];
	int64_t cutoff_ms;
	int dropped;

	if ((opt.retention_ms == 0 && opt.rollup_retention_ms == 0) ||
	    mono_now_ns() < next_retention_ns)
		return;
	next_retention_ns = mono_now_ns() + RETENTION_EVERY_MS * 1000000;
	if (opt.retention_ms == 0) {
		rollup_retention();
		return;
	}
	cutoff_ms = time_now_ms() - opt.retention_ms;
	if (pgw_drop_before(pg, cutoff_ms, &dropped, err, sizeof err) !=
	    PGW_OK) {
		warn("retention: %s", err);
		return;
	}
	if (dropped > 0) {
		time_format_ms(cutoff_ms, cutoff);
		info("retention: dropped %d day partition%s before %s", dropped,
		     dropped == 1 ? "" : "s", cutoff);
	}
	rollup_retention();
}

/* Fold the pending rollups.  A failure is reported and tried again
 * later: readers count the pending rows meanwhile, so nothing waits for a
 * fold, not even at exit. */
static void
fold_on(struct pgw *conn)
{
	char err[1024];
	long long folded;

	if (pgw_fold(conn, &folded, err, sizeof err) != PGW_OK)
		warn("folding the rollups: %s", err);
}

/* --fold-every 0: after every batch, on the writer's connection (what the
 * tests use to see every batch folded). */
static void
fold(void)
{
	if (!opt.no_rollups && opt.fold_ms == 0)
		fold_on(pg);
}

/* Start fn on a thread of its own, with cond on mono_now_ns's clock for
 * its timed waits; signals stay with the main thread, whose poll they
 * must wake. */
static void
thread_start(pthread_t *thread, pthread_cond_t *cond, void *(*fn)(void *),
             const char *what)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	int rc;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(thread, NULL, fn, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		errno = rc;
		die(EX_OSERR, "cannot start the %s thread:", what);
	}
}

/* ---- the folder thread ------------------------------------------------ */

/* Otherwise a thread of its own folds every --fold-every on a connection
 * of its own: with many targets a fold takes seconds, and the batches
 * must not wait for it.  sm_rollup_fold() takes only the pending rows
 * its statement sees and one folder runs at a time (an advisory lock), so
 * rows a batch adds meanwhile simply wait for the next fold. */
static struct {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* quit */
	bool quit, running;
} folder = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *
folder_main(void *arg)
{
	struct pgw *conn = pgw_new(opt.conninfo);
	struct timespec ts;
	int64_t due_ns;

	(void)arg;
	pthread_mutex_lock(&folder.lock);
	while (!folder.quit) {
		due_ns = mono_now_ns() + opt.fold_ms * 1000000;
		ts.tv_sec = due_ns / 1000000000;
		ts.tv_nsec = (long)(due_ns % 1000000000);
		while (!folder.quit &&
		       pthread_cond_timedwait(&folder.cond, &folder.lock, &ts) !=
		           ETIMEDOUT)
			;
		if (folder.quit)
			break;
		pthread_mutex_unlock(&folder.lock);
		fold_on(conn);
		pthread_mutex_lock(&folder.lock);
	}
	pthread_mutex_unlock(&folder.lock);
	pgw_free(&conn);
	return NULL;
}

static void
folder_start(void)
{
	if (opt.no_rollups || opt.fold_ms == 0)
		return;
	thread_start(&folder.thread, &folder.cond, folder_main, "fold");
	folder.running = true;
}

/* A fold in progress is let finish (its transaction is whole either way;
 * a second signal exits at once). */
static void
folder_stop(void)
{
	if (!folder.running)
		return;
	pthread_mutex_lock(&folder.lock);
	folder.quit = true;
	pthread_cond_broadcast(&folder.cond);
	pthread_mutex_unlock(&folder.lock);
	pthread_join(folder.thread, NULL);
	folder.running = false;
}

static void
connect_and_migrate(void)
{
	char err[1024];
	enum pgw_status st;
	int applied;

	for (;;) {
		st = pgw_connect(pg, err, sizeof err);
		if (st == PGW_OK)
			st = pgw_migrate(pg, &applied, err, sizeof err);
		if (st == PGW_OK)
			break;
		if (st != PGW_TRANSIENT)
			die(EX_CONFIG, "database: %s", err);
		pgw_disconnect(pg);
		retry_wait("database", err);
	}
	retry_done();
}

/* ---- storing a batch -------------------------------------------------- */

static void
ack_range(const struct batch *b, size_t lo, size_t hi)
{
	size_t i;

	for (i = lo; i < hi; i++)
		if (!b->recs[i].rejected || opt.ack_rejected)
			ack(&b->recs[i]);
}

/* A committed transaction of live records, inserted of them new to checks:
 * the rest were there already (redelivered), which is no error. */
static void
stats_committed(size_t live, size_t inserted, int64_t newest_ms)
{
	stats.batches++;
	stats.stored += inserted;
	stats.duplicates += live - (inserted < live ? inserted : live);
	if (newest_ms > stats.newest_ms)
		stats.newest_ms = newest_ms; /* only the writer stores it */
}

/* The batch's records lo..hi as pg.c sees them (the caller frees). */
static struct pgw_row *
batch_rows(const struct batch *b, size_t lo, size_t hi)
{
	struct pgw_row *rows = xcalloc(hi - lo + 1, sizeof *rows);
	size_t i;

	for (i = lo; i < hi; i++) {
		rows[i - lo].copy = b->recs[i].copy;
		rows[i - lo].len = b->recs[i].copy_len;
		rows[i - lo].bin = b->recs[i].bin;
		rows[i - lo].bin_len = b->recs[i].bin_len;
		rows[i - lo].started_ms = b->recs[i].started_ms;
		rows[i - lo].day = b->recs[i].day;
		rows[i - lo].skip = b->recs[i].rejected;
	}
	return rows;
}

/*
 * Store recs[lo..hi) and acknowledge them.  A batch the server refuses for
 * its data is split in halves until the refused record is alone; that one
 * is rejected and the others stored, each part in its own transaction, in
 * input order, so the acks stay in input order.
 */
static void
store_range(struct batch *b, size_t lo, size_t hi)
{
	struct pgw_row *rows;
	size_t i, live = 0, last_live = lo, mid, inserted;
	int64_t newest_ms = INT64_MIN;
	bool whole;
	enum pgw_status st;
	char err[1024];

	for (i = lo; i < hi; i++)
		if (!b->recs[i].rejected) {
			live++;
			last_live = i;
		}
	if (live == 0) {
		ack_range(b, lo, hi);
		return;
	}
	rows = batch_rows(b, lo, hi);
	for (i = lo; i < hi; i++)
		if (!b->recs[i].rejected && b->recs[i].started_ms > newest_ms)
			newest_ms = b->recs[i].started_ms;
	/* The whole batch's state rows were made while the last batch was
	 * being stored; a part of it (after a split) needs its own. */
	whole = lo == 0 && hi == b->n;
	for (;;) {
		st = pgw_write(pg, rows, hi - lo, whole ? &b->state : NULL,
		               whole && !opt.no_rollups ? &b->rollup : NULL,
		               &inserted, err, sizeof err);
		stats.reconnects = pgw_reconnects(pg);
		if (st != PGW_TRANSIENT)
			break;
		retry_wait("database", err);
	}
	free(rows);
	switch (st) {
	case PGW_OK:
		retry_done();
		stats_committed(live, inserted, newest_ms);
		ack_range(b, lo, hi);
		return;
	case PGW_DATA:
		retry_done();
		if (live == 1) {
			struct rec *r = &b->recs[last_live];
			char why[1100];

			snprintf(why, sizeof why, "refused by the server: %s",
			         err);
			reject(r->lineno, r->line, r->len, why);
			r->rejected = true;
			stats.dead++;
			if (opt.strict) {
				ack_range(b, lo, last_live);
				ack_flush();
				die(EX_DATAERR, "stopping (--strict)");
			}
			ack_range(b, lo, hi);
			return;
		}
		mid = lo + (hi - lo) / 2;
		store_range(b, lo, mid);
		store_range(b, mid, hi);
		return;
	case PGW_FATAL:
	case PGW_TRANSIENT:
		break;
	}
	die(EX_CONFIG, "database: %s", err);
}

static void
batch_clear(struct batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		free(b->recs[i].line);
	b->n = 0;
	b->bytes = 0;
	b->opened_ns = 0;
	b->expired = 0;
	b->state.text.len = 0;
	b->state.bin.len = 0;
}

/* The writer thread's work on a batch: store it, acknowledge it, empty
 * it. */
static void
batch_store(struct batch *b)
{
	if (b->expired > 0)
		info("skipped %lu result%s older than the retention",
		     b->expired, b->expired == 1 ? "" : "s");
	if (b->n > 0) {
		store_range(b, 0, b->n);
		ack_flush();
		stats.pending -= b->n;
	}
	batch_clear(b);
	retention();
	fold();
}

/* ---- the writer thread ------------------------------------------------ */

/* The batch handed to the writer (job), and whether it is still at work
 * on it; the main thread waits for both before handing it another, so
 * that at most two batches are held: one filling, one being stored. */
static struct {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* job taken or done, or quit */
	struct batch *job;
	bool busy, quit;
} writer = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Retention while no batch comes: wait for a job at most until the next
 * round is due. */
static void
writer_wait(void)
{
	struct timespec ts;
	int64_t due_ns;

	if (opt.retention_ms == 0 && opt.rollup_retention_ms == 0) {
		pthread_cond_wait(&writer.cond, &writer.lock);
		return;
	}
	due_ns = INT64_MAX;
	if (opt.retention_ms != 0 || opt.rollup_retention_ms != 0)
		due_ns = next_retention_ns;
	ts.tv_sec = due_ns / 1000000000;
	ts.tv_nsec = (long)(due_ns % 1000000000);
	if (pthread_cond_timedwait(&writer.cond, &writer.lock, &ts) ==
	    ETIMEDOUT) {
		pthread_mutex_unlock(&writer.lock);
		retention();
		pthread_mutex_lock(&writer.lock);
	}
}

static void *
writer_main(void *arg)
{
	struct batch *b;

	(void)arg;
	pthread_mutex_lock(&writer.lock);
	for (;;) {
		while (writer.job == NULL && !writer.quit)
			writer_wait();
		if (writer.job == NULL)
			break;
		b = writer.job;
		writer.busy = true;
		pthread_mutex_unlock(&writer.lock);
		batch_store(b);
		pthread_mutex_lock(&writer.lock);
		writer.job = NULL;
		writer.busy = false;
		pthread_cond_broadcast(&writer.cond);
	}
	pthread_mutex_unlock(&writer.lock);
	return NULL;
}

static void
writer_start(void)
{
	thread_start(&writer.thread, &writer.cond, writer_main, "writer");
}

/* Wait until the writer has stored everything handed to it. */
static void
writer_drain(void)
{
	pthread_mutex_lock(&writer.lock);
	while (writer.job != NULL || writer.busy)
		pthread_cond_wait(&writer.cond, &writer.lock);
	pthread_mutex_unlock(&writer.lock);
}

/* Hand *bp to the writer once it is done with the last one, and take that
 * one, emptied, in its place. */
static void
writer_submit(struct batch **bp, struct batch **spare)
{
	struct batch *b = *bp;

	if (b->n == 0 && b->expired == 0)
		return;
	writer_drain();
	pthread_mutex_lock(&writer.lock);
	writer.job = b;
	pthread_cond_broadcast(&writer.cond);
	pthread_mutex_unlock(&writer.lock);
	*bp = *spare;
	*spare = b;
}

/* Let the writer store what it was given, then end. */
static void
writer_stop(void)
{
	writer_drain();
	pthread_mutex_lock(&writer.lock);
	writer.quit = true;
	pthread_cond_broadcast(&writer.cond);
	pthread_mutex_unlock(&writer.lock);
	pthread_join(writer.thread, NULL);
}

/* started_at's UTC day: the checks partition. */
static int32_t
utc_day(int64_t ms)
{
	return (int32_t)(ms >= 0 ? ms / 86400000
	                         : -((-ms + 86399999) / 86400000));
}

/* copy: the record's COPY row, NULL for a rejected record.  Its binary
 * tuple is made here, on the main thread, which waits for the writer
 * anyway. */
static void
batch_add(struct batch *b, const char *line, size_t len,
          const struct pgw_buf *copy, unsigned long lineno,
          int64_t started_ms, bool rejected)
{
	static struct pgw_buf bin;
	struct rec *r;
	size_t copy_len = copy != NULL ? copy->len : 0, bin_len = 0;
	char *p;

	bin.len = 0;
	if (copy_len > 0 && pgw_row_binary(&bin, copy->data, copy_len,
	                                   PGW_COLUMN_TYPES))
		bin_len = bin.len;
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		b->recs = xrealloc(b->recs, b->cap * sizeof *b->recs);
	}
	r = &b->recs[b->n++];
	p = r->line = xmalloc(len + 1 + copy_len + bin_len);
	memcpy(p, line, len);
	p[len] = '\0';
	r->len = len;
	p += len + 1;
	r->copy = p;
	if (copy_len > 0)
		memcpy(p, copy->data, copy_len);
	r->copy_len = copy_len;
	p += copy_len;
	r->bin = bin_len > 0 ? p : NULL;
	if (bin_len > 0)
		memcpy(p, bin.data, bin_len);
	r->bin_len = bin_len;
	r->lineno = lineno;
	r->started_ms = started_ms;
	r->day = utc_day(started_ms);
	r->rejected = rejected;
	b->bytes += len + copy_len + bin_len;
	if (b->n == 1)
		b->opened_ns = mono_now_ns();
	stats.pending++;
}

static bool
batch_full(const struct batch *b)
{
	return b->n >= (size_t)opt.batch || b->bytes >= MAX_BATCH_BYTES;
}

static bool
batch_due(const struct batch *b, int64_t now_ns)
{
	return b->n > 0 && now_ns - b->opened_ns >= opt.linger_ms * 1000000;
}

/* ---- input ------------------------------------------------------------ */

/* The batch the main thread fills, and the one the writer works on or
 * has emptied. */
static struct batch batches[2];
static struct batch *filling = &batches[0], *spare = &batches[1];

/* Make the batch's state rows here, while the writer is busy, then hand
 * it over. */
static void
flush(void)
{
	struct pgw_row *rows;

	if (filling->n > 0) {
		rows = batch_rows(filling, 0, filling->n);
		pgw_state_make(&filling->state, rows, filling->n);
		if (!opt.no_rollups)
			pgw_rollup_make(&filling->rollup, rows, filling->n,
			                NULL);
		free(rows);
	}
	writer_submit(&filling, &spare);
}

/* Store and acknowledge everything read so far, then die. */
static void
flush_and_die(int status, const char *what)
{
	flush();
	writer_stop();
	die(status, "%s", what);
}

static bool
blank(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

static void
take_line(struct batch *b, const char *line, size_t len, unsigned long lineno)
{
	static struct pgw_buf copy; /* reused: one row at a time */
	char err[512];
	json_t *obj;
	bool is_object, valid;
	int64_t started_ms = 0;

	if (blank(line, len))
		return;
	copy.len = 0;
	/* The common case without a tree; the tree decides the rest, and
	 * words the errors. */
	if (pgw_row_scan(&copy, line, len, &started_ms)) {
		obj = NULL;
		is_object = valid = true;
	} else {
		obj = json_line_parse(line, len, err, sizeof err);
		is_object = obj != NULL;
		valid = false;
	}
	if (obj != NULL) {
		valid = result_validate(obj, err, sizeof err) == 0;
		if (valid && time_parse_ms(json_string_value(json_object_get(
		        obj, "started_at")), &started_ms) != 0)
			started_ms = 0;
		if (valid)
			pgw_row_format(&copy, obj);
		json_decref(obj);
	}
	/* Older than the retention: it would only bring back a partition
	 * that the next round drops.  Done with, so acknowledged like a
	 * refused record, but not an error. */
	if (valid && opt.retention_ms > 0 &&
	    started_ms < time_now_ms() - opt.retention_ms) {
		b->expired++;
		if (opt.ack_rejected)
			batch_add(b, line, len, NULL, lineno, started_ms, true);
		return;
	}
	if (valid) {
		batch_add(b, line, len, &copy, lineno, started_ms, false);
		return;
	}
	reject(lineno, line, len, err);
	stats.invalid++;
	/* Everything before the bad line is stored and acked. */
	if (opt.strict)
		flush_and_die(EX_DATAERR, "stopping (--strict)");
	/* Only a JSON object can carry the coordinates an ack is for. */
	if (opt.ack_rejected && is_object)
		batch_add(b, line, len, NULL, lineno, 0, true);
}

static void
run(void)
{
	struct line_reader *lr;
	struct pollfd pfd[2];
	enum line_status ls;
	bool eof = false;
	char *line, why[64];
	size_t len, after_stop = 0;

	stdin_nonblock();
	lr = line_reader_new(STDIN_FILENO, input_name, SM_MAX_LINE);
	/* Acks go out after each commit (ack_flush), whatever the buffer:
	 * a large one only saves system calls while the server waits. */
	setvbuf(stdout, NULL, _IOFBF, 1 << 20);
	writer_start();

	while (!eof) {
		int64_t now, timeout_ms;
		int rc;

		/* Take every line already available, flushing as batches fill
		 * or come due.  After a signal, take what is already there
		 * (at most one more batch of lines), then stop. */
		for (;;) {
			if (stop_signal && after_stop++ >= (size_t)opt.batch)
				break;
			ls = line_reader_next(lr, &line, &len);
			if (ls == LINE_AGAIN)
				break;
			if (ls == LINE_EOF) {
				eof = true;
				break;
			}
			if (ls == LINE_ERROR) {
				int saved = errno;

				flush();
				writer_stop();
				errno = saved;
				die(EX_IOERR, "%s:", input_name);
			}
			stats.in++;
			if (ls == LINE_TOO_LONG) {
				snprintf(why, sizeof why,
				         "line longer than %d bytes", SM_MAX_LINE);
				reject(line_reader_lineno(lr), line, len, why);
				stats.invalid++;
				if (opt.strict)
					flush_and_die(EX_DATAERR,
					              "stopping (--strict)");
				continue;
			}
			take_line(filling, line, len, line_reader_lineno(lr));
			/* With --linger 0 a batch is what is available now. */
			if (batch_full(filling) ||
			    (opt.linger_ms > 0 &&
			     batch_due(filling, mono_now_ns()))) {
				flush();
				stats_tick();
			}
		}
		if (eof || stop_signal)
			break;

		now = mono_now_ns();
		if (batch_due(filling, now)) {
			flush();
			continue;
		}
		stats_tick();
		timeout_ms = -1;
		if (filling->n > 0)
			timeout_ms = (filling->opened_ns +
			              opt.linger_ms * 1000000 - now + 999999) /
			             1000000;
		pfd[0].fd = STDIN_FILENO;
		pfd[0].events = POLLIN;
		pfd[1].fd = wake_fd;
		pfd[1].events = POLLIN;
		rc = poll(pfd, 2, stats_bound(timeout_ms));
		if (rc == -1 && errno != EINTR)
			die(EX_OSERR, "poll:");
	}

	/* EOF or SIGTERM: store and acknowledge what is held. */
	flush();
	writer_stop();
	if (opt.stats_ms > 0)
		stats_write(); /* the totals, as the last word */
	free(batches[0].recs);
	free(batches[1].recs);
	pgw_state_free(&batches[0].state);
	pgw_state_free(&batches[1].state);
	line_reader_free(&lr);
	if (stop_signal)
		info("stopping on signal %d", (int)stop_signal);
}

/* ---- options ---------------------------------------------------------- */

/* --retention: a duration, or a bare number of days (never milliseconds:
 * "-R 30" dropping all but today's partitions would be a costly typo).
 * At least a day, the partitions' width. */
static int64_t
opt_retention(const char *name, const char *v)
{
	char days[32];

	if (v[strspn(v, "0123456789")] == '\0' && strlen(v) < 20) {
		snprintf(days, sizeof days, "%sd", v);
		v = days;
	}
	return opt_duration_ms(name, v, 86400000, INT64_C(100000) * 86400000);
}

static void
env_defaults(void)
{
	const char *v;

	if ((v = getenv("SM_PG_DSN")) != NULL)
		opt.conninfo = v;
	if ((v = getenv("SM_PG_BATCH")) != NULL && *v)
		opt.batch = opt_ll("SM_PG_BATCH", v, 1, 1000000);
	if ((v = getenv("SM_PG_LINGER")) != NULL && *v)
		opt.linger_ms = opt_duration_ms("SM_PG_LINGER", v, 0, 3600000);
	if ((v = getenv("SM_PG_RETRY_FOR")) != NULL && *v)
		opt.retry_for_ms = opt_duration_ms("SM_PG_RETRY_FOR", v, 0,
		                                   INT64_C(7) * 86400000);
	if ((v = getenv("SM_PG_DEAD_LETTER")) != NULL && *v)
		opt.dead_letter = v;
	if ((v = getenv("SM_PG_RETENTION")) != NULL && *v)
		opt.retention_ms = opt_retention("SM_PG_RETENTION", v);
	if ((v = getenv("SM_PG_ROLLUP_RETENTION")) != NULL && *v)
		opt.rollup_retention_ms = opt_retention("SM_PG_ROLLUP_RETENTION",
		                                        v);
	opt.stats_ms = stats_interval_default_ms();
}

static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ack-stored-only", no_argument, NULL, 'A' },
		{ "batch", required_argument, NULL, 'b' },
		{ "dead-letter", required_argument, NULL, 'D' },
		{ "dsn", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "linger", required_argument, NULL, 'l' },
		{ "migrate", no_argument, NULL, 'm' },
		{ "fold-every", required_argument, NULL, OPT_FOLD_EVERY },
		{ "no-rollups", no_argument, NULL, OPT_NO_ROLLUPS },
		{ "rollup-retention", required_argument, NULL,
		  OPT_ROLLUP_RETENTION },
		{ "retention", required_argument, NULL, 'R' },
		{ "retry-for", required_argument, NULL, 'r' },
		{ "stats-interval", required_argument, NULL,
		  OPT_STATS_INTERVAL },
		{ "strict", no_argument, NULL, 's' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "Ab:D:d:hl:mR:r:sV", longopts,
	                        NULL)) != -1) {
		switch (c) {
		case 'A':
			opt.ack_rejected = false;
			break;
		case 'b':
			opt.batch = opt_ll("-b", optarg, 1, 1000000);
			break;
		case 'D':
			opt.dead_letter = optarg;
			break;
		case 'd':
			/* Keep a copy and blank the argument, so that ps(1)
			 * does not show a password for longer than it must. */
			opt.conninfo = xstrdup(optarg);
			memset(optarg, '*', strlen(optarg));
			break;
		case 'h':
			usage_exit(usage_text, options_text, 0);
			break;
		case 'l':
			opt.linger_ms = opt_duration_ms("-l", optarg, 0, 3600000);
			break;
		case 'm':
			opt.migrate_only = true;
			break;
		case 'R':
			opt.retention_ms = opt_retention("-R", optarg);
			break;
		case 'r':
			opt.retry_for_ms = opt_duration_ms("-r", optarg, 0,
			                                   INT64_C(7) * 86400000);
			break;
		case 's':
			opt.strict = true;
			break;
		case OPT_STATS_INTERVAL:
			opt.stats_ms = stats_interval_option_ms(optarg);
			break;
		case OPT_FOLD_EVERY:
			opt.fold_ms = opt_duration_ms("--fold-every", optarg, 0,
			                              86400000);
			break;
		case OPT_NO_ROLLUPS:
			opt.no_rollups = true;
			break;
		case OPT_ROLLUP_RETENTION:
			opt.rollup_retention_ms =
			    opt_retention("--rollup-retention", optarg);
			break;
		case 'V':
			print_version_and_exit();
			break;
		default:
			usage_exit(usage_text, options_text, EX_USAGE);
		}
	}
	if (optind != argc) {
		warn("unexpected argument: %s", argv[optind]);
		usage_exit(usage_text, options_text, EX_USAGE);
	}
	if (opt.rollup_retention_ms != 0 &&
	    (opt.retention_ms == 0 ||
	     opt.rollup_retention_ms < opt.retention_ms)) {
		warn("--rollup-retention must be at least --retention (the "
		     "rollups outlive the rows they come from)");
		usage_exit(usage_text, options_text, EX_USAGE);
	}
}

int
main(int argc, char **argv)
{
	diag_init(argv[0]);
	env_defaults();
	parse_options(argc, argv);
	srand((unsigned)(getpid() ^ time_now_ms()));

	if (opt.conninfo == NULL)
		opt.conninfo = "";
	if (pgw_conninfo_ok(opt.conninfo) == -1)
		die(EX_CONFIG, "cannot parse the connection string given by "
		    "-d or SM_PG_DSN (not shown: it may hold a password)");
	if (opt.dead_letter != NULL &&
	    (dead_letter = fopen(opt.dead_letter, "a")) == NULL)
		die(EX_CONFIG, "%s:", opt.dead_letter);

	wake_fd = stop_signals_install(0);
	/* From the start: a database down at start is worth a stats line. */
	if (!opt.migrate_only)
		stats_clock_init(&stats_clock, opt.stats_ms);
	pg = pgw_new(opt.conninfo);
	pgw_set_rollups(pg, !opt.no_rollups);
	connect_and_migrate();
	retention();
	if (!opt.migrate_only) {
		folder_start();
		run();
		folder_stop();
	}
	pgw_free(&pg);

	if (dead_letter != NULL && fclose(dead_letter) != 0)
		die(EX_IOERR, "%s:", opt.dead_letter);
	if (fclose(stdout) != 0)
		die(EX_IOERR, "writing the ack stream:");
	return 0;
}
