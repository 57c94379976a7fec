/*
 * sm-schedule - emit a target record on stdout each time a target is due.
 *
 *   sm-schedule sites.yaml | sm-check | sm-kafka-pub -b host:9092 -t results
 *
 * Every target fires at a fixed phase within its interval (a hash of its
 * name), aligned to the wall clock, so its rhythm survives restarts and
 * reloads.  At start, each target is first checked within a short ramp
 * (--ramp, spread by the same phase), then at its phase.  Timing runs on CLOCK_MONOTONIC; a min-heap holds the next due
 * time of each target.  Each wake-up writes what is due in one write(2).
 * When stdout is full, ticks that cannot be written in time are skipped
 * and counted, never bunched up.  SIGHUP loads the new configuration in a
 * thread while emission goes on; only the swap happens on the main loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
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
/* getopt value of the long-only --stats-interval (not a character). */
#define OPT_STATS_INTERVAL 256
/* Records per write(2) at most, when many are due at once. */
#define BATCH_MAX 256
/* Wake-ups fall on even milliseconds of the wall clock: a record waits at
 * most 1 ms more, and with thousands due per second there are at most 500
 * wake-ups a second instead of up to 1000 (each costs a context switch). */
#define WAKE_GRAIN_MS 2
/* The default --ramp: the first check of every target within 5 s. */
#define RAMP_DEFAULT_MS 5000
/* getopt value of the long-only --ramp. */
#define OPT_RAMP 257

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
    "      --ramp DUR     first check every target within DUR of start\n"
    "                     (at most its interval; default 5s, 0: off)\n"
    "      --stats-interval DUR\n"
    "                     write a stats line on stderr every DUR (0: off)\n"
    "  -h, --help         show this help and exit\n"
    "  -V, --version      show the version and exit\n"
    "\n"
    "Environment: SM_SHARD (default of --shard), SM_STATS_INTERVAL\n"
    "(default of --stats-interval).\n"
    "Signals: SIGHUP reloads the configuration, SIGTERM and SIGINT stop.\n"
    "Exit status: 0 ok, 64 usage, 70 internal, 74 write error, 78 bad\n"
    "configuration.  See sm-schedule(1) and sites.yaml(5).\n";

enum out_status { OUT_OK, OUT_BLOCKED };

struct slot {
	char *name;
	uint64_t hash; /* sched_hash(name) */
	int64_t interval_ms, phase_ms;
	bool first; /* its next tick is the first check, in the ramp */
	char *prefix; /* the record's JSON without its closing brace */
	size_t prefix_len;
};

/* A configuration loaded by the reload thread, ready to swap in. */
struct loaded {
	bool ok;
	struct slot *slots;
	size_t n;
	size_t *tab;       /* open addressing on hash: slot index + 1, 0 free */
	size_t tab_mask;
	size_t *old_to_new; /* per current slot: its successor's index + 1,
	                       0 when removed or its interval changed */
	size_t kept, changed;
	int64_t load_ms;   /* how long the load took */
};

struct reloader {
	pthread_t th;
	bool running, again; /* again: SIGHUP during a load */
	int efd;             /* eventfd: the thread is done */
	struct loaded out;   /* the thread's, until efd says done */
};

struct state {
	const char *path;
	enum config_format fmt;
	unsigned shard_i, shard_n; /* shard_n 0: no sharding */
	int64_t ramp_ms;           /* --ramp */

	struct slot *slots;
	size_t n;
	struct heap heap;    /* due times in unix ms, indices into slots */
	int64_t offset_ns;   /* wall clock minus monotonic clock */

	char *buf;           /* the records of one write, reused */
	size_t buf_len, buf_cap;
	struct heap_item batch[BATCH_MAX]; /* popped from the heap */
	size_t batch_end[BATCH_MAX];       /* where each record ends in buf */
	char *pend;          /* the unwritten tail of a partial write */
	size_t pend_len, pend_cap;

	struct reloader rl;
	unsigned long long skipped, skipped_total;
	int64_t last_report_ms;

	struct stats_clock stats; /* --stats-interval */
	unsigned long long emitted, reloads; /* since start, for the line */
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
real_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wall clock minus monotonic clock, to the nanosecond (to the millisecond,
 * due times would drift up to a millisecond off the wall clock). */
static int64_t
clock_offset_ns(void)
{
	int64_t m = mono_now_ns(), r = real_now_ns(), m2 = mono_now_ns();

	return r - (m + (m2 - m) / 2);
}

/* Now, in the wall-clock frame (unix ms) but advancing with the monotonic
 * clock. */
static int64_t
sched_now(const struct state *S)
{
	return (mono_now_ns() + S->offset_ns) / 1000000;
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

/* Writes as much of buf as stdout takes now; returns how much. */
static size_t
write_some(const char *buf, size_t len)
{
	size_t off = 0;

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
		break;
	}
	return off;
}

/* Keeps buf[off, len) as the pending tail, to be finished first. */
static void
pend_keep(struct state *S, const char *buf, size_t off, size_t len)
{
	if (len - off > S->pend_cap) {
		S->pend_cap = len - off;
		S->pend = xrealloc(S->pend, S->pend_cap);
	}
	memcpy(S->pend, buf + off, len - off);
	S->pend_len = len - off;
}

/* Appends the record of sl due at scheduled_ms to S->buf: the JSON encoded
 * once at load, then scheduled_at. */
static void
encode(struct state *S, const struct slot *sl, int64_t scheduled_ms)
{
	static const char mid[] = ",\"scheduled_at\":\"";
	size_t need = sl->prefix_len + sizeof(mid) + TIME_STR_LEN + 3;
	char *p;

	if (S->buf_len + need > S->buf_cap) {
		S->buf_cap = (S->buf_len + need) * 2;
		S->buf = xrealloc(S->buf, S->buf_cap);
	}
	p = S->buf + S->buf_len;
	memcpy(p, sl->prefix, sl->prefix_len);
	p += sl->prefix_len;
	memcpy(p, mid, sizeof(mid) - 1);
	p += sizeof(mid) - 1;
	time_format_ms(scheduled_ms, p);
	p += strlen(p);
	memcpy(p, "\"}\n", 3);
	S->buf_len = (size_t)(p + 3 - S->buf);
}

/* One record, for --once.  OUT_BLOCKED: nothing written (the pipe is
 * full); a partial write keeps its tail pending. */
static enum out_status
emit(struct state *S, const struct slot *sl, int64_t scheduled_ms)
{
	size_t w;

	if (S->pend_len)
		return OUT_BLOCKED;
	S->buf_len = 0;
	encode(S, sl, scheduled_ms);
	if ((w = write_some(S->buf, S->buf_len)) == 0)
		return OUT_BLOCKED;
	if (w < S->buf_len)
		pend_keep(S, S->buf, w, S->buf_len);
	return OUT_OK;
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

		if (!in_shard(S, ct->hash))
			continue;
		sl = &v[n++];
		sl->name = xstrdup(ct->name);
		sl->hash = ct->hash;
		sl->interval_ms = ct->interval_ms;
		sl->phase_ms = sched_phase(ct->hash, ct->interval_ms);
		sl->prefix = xstrndup(ct->json, ct->json_len);
		sl->prefix_len = ct->json_len;
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

/* The first check of a target at start: within min(interval, --ramp) of
 * now, at the same fraction of that ramp as its phase is of its interval,
 * so that the targets are spread over the ramp as over their intervals. */
static int64_t
ramp_due(const struct state *S, const struct slot *sl, int64_t now)
{
	int64_t ramp = S->ramp_ms < sl->interval_ms ? S->ramp_ms
	                                             : sl->interval_ms;

	return now + (int64_t)((double)sl->phase_ms * (double)ramp /
	                       (double)sl->interval_ms);
}

/* The tick after a target's first check: its first phase-aligned due time
 * at least half an interval later, so two checks never come close. */
static int64_t
after_first_due(const struct slot *sl, int64_t first)
{
	return sched_next_due(first + sl->interval_ms / 2, sl->interval_ms,
	                      sl->phase_ms);
}

/* Every target at its next due time from now; with ramp, at its first
 * check within the ramp instead. */
static void
schedule_all(struct state *S, bool ramp)
{
	int64_t now = sched_now(S), *due = xcalloc(S->n + 1, sizeof(*due));

	for (size_t i = 0; i < S->n; i++) {
		struct slot *sl = &S->slots[i];

		sl->first = ramp && S->ramp_ms > 0;
		due[i] = sl->first ? ramp_due(S, sl, now)
		                   : sched_next_due(now, sl->interval_ms,
		                                    sl->phase_ms);
	}
	heap_fill(S, due);
	free(due);
}

/* ---- reload: load in a thread, swap on the loop ---------------------- */

static void
loaded_free(struct loaded *ld)
{
	slots_free(ld->slots, ld->n);
	free(ld->tab);
	free(ld->old_to_new);
	memset(ld, 0, sizeof(*ld));
}

struct old_slots {
	struct slot *v;
	size_t n;
};

/* The helper threads yield the CPU to the loop, which keeps time: on a
 * busy host a reload then takes longer rather than making records late.
 * (Linux keeps a nice value per thread.) */
static void
thread_lower_priority(void)
{
	int prio;

	errno = 0;
	prio = getpriority(PRIO_PROCESS, (id_t)gettid());
	if (errno == 0)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(),
		                  prio + 10 > 19 ? 19 : prio + 10);
}

static void *
free_thread(void *arg)
{
	struct old_slots *o = arg;

	thread_lower_priority();
	slots_free(o->v, o->n);
	free(o);
	/* Give back what the load and the old targets took. */
	malloc_trim(0);
	return NULL;
}

/* 100,000 targets take some 10 ms to free: not on the loop. */
static void
slots_free_later(struct slot *v, size_t n)
{
	struct old_slots *o = xmalloc(sizeof(*o));
	pthread_attr_t attr;
	pthread_t th;

	o->v = v;
	o->n = n;
	if (pthread_attr_init(&attr) == 0 &&
	    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
	    pthread_create(&th, &attr, free_thread, o) == 0) {
		pthread_attr_destroy(&attr);
		return;
	}
	free_thread(o);
}

/* The slot of ld named like sl, or NULL. */
static const struct slot *
loaded_find(const struct loaded *ld, const struct slot *sl)
{
	for (size_t i = sl->hash & ld->tab_mask; ld->tab[i];
	     i = (i + 1) & ld->tab_mask) {
		const struct slot *c = &ld->slots[ld->tab[i] - 1];

		if (c->hash == sl->hash && !strcmp(c->name, sl->name))
			return c;
	}
	return NULL;
}

/* Everything that takes time happens here, off the loop: parsing,
 * validation, encoding, and matching the new targets with the current
 * ones by name.  S's path, format and shard never change; its slots (not
 * its heap) stay as they are until the loop has joined this thread. */
static void *
reload_thread(void *arg)
{
	struct state *S = arg;
	struct loaded *ld = &S->rl.out;
	int64_t t0 = mono_now_ns();
	struct config *cfg;
	size_t cap = 16;
	uint64_t one = 1;

	thread_lower_priority();
	cfg = config_load(S->path, S->fmt);
	if (cfg) {
		ld->slots = slots_new(S, cfg, &ld->n);
		config_free(&cfg);
		while (cap < ld->n * 2)
			cap *= 2;
		ld->tab = xcalloc(cap, sizeof(*ld->tab));
		ld->tab_mask = cap - 1;
		for (size_t i = 0; i < ld->n; i++) {
			size_t j = ld->slots[i].hash & ld->tab_mask;

			while (ld->tab[j])
				j = (j + 1) & ld->tab_mask;
			ld->tab[j] = i + 1;
		}
		ld->old_to_new = xcalloc(S->n + 1, sizeof(*ld->old_to_new));
		for (size_t i = 0; i < S->n; i++) {
			const struct slot *o = &S->slots[i];
			const struct slot *c = loaded_find(ld, o);

			if (!c)
				continue;
			ld->kept++;
			if (c->interval_ms != o->interval_ms) {
				ld->changed++;
				continue;
			}
			if (c->prefix_len != o->prefix_len ||
			    memcmp(c->prefix, o->prefix, o->prefix_len))
				ld->changed++;
			ld->old_to_new[i] = (size_t)(c - ld->slots) + 1;
		}
		free(ld->tab);
		ld->tab = NULL;
		ld->ok = true;
	}
	ld->load_ms = (mono_now_ns() - t0) / 1000000;
	malloc_trim(0);
	while (write(S->rl.efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	return NULL;
}

static void
reload_start(struct state *S)
{
	int err;

	if (S->rl.running) {
		S->rl.again = true;
		return;
	}
	memset(&S->rl.out, 0, sizeof(S->rl.out));
	if ((err = pthread_create(&S->rl.th, NULL, reload_thread, S))) {
		errno = err;
		warn("reload of %s: cannot start a thread:", S->path);
		return;
	}
	S->rl.running = true;
}

/* Waits for the reload thread to end (it has, when efd is readable). */
static void
reload_join(struct state *S)
{
	uint64_t v;

	while (read(S->rl.efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_join(S->rl.th, NULL);
	S->rl.running = false;
}

/* The swap: targets that stay keep their next due time (and so their
 * rhythm); new ones start at their phase; removed ones are dropped.
 * The thread matched them: a few ms for 100,000 targets. */
static void
reload_apply(struct state *S)
{
	struct loaded *ld = &S->rl.out;
	size_t old_n = S->n;
	int64_t now, t0 = mono_now_ns(), *due;

	if (!ld->ok) {
		warn("reload of %s failed; keeping the %zu current targets",
		     S->path, S->n);
		loaded_free(ld);
		return;
	}
	due = xmalloc((ld->n + 1) * sizeof(*due));
	for (size_t i = 0; i < ld->n; i++)
		due[i] = -1;
	for (size_t i = 0; i < S->heap.n; i++) {
		size_t j = ld->old_to_new[S->heap.v[i].idx];

		if (j) {
			due[j - 1] = S->heap.v[i].due;
			ld->slots[j - 1].first = S->slots[S->heap.v[i].idx].first;
		}
	}
	now = sched_now(S);
	for (size_t i = 0; i < ld->n; i++)
		if (due[i] < 0)
			due[i] = sched_next_due(now, ld->slots[i].interval_ms,
			                        ld->slots[i].phase_ms);
	slots_free_later(S->slots, S->n);
	S->slots = ld->slots;
	S->n = ld->n;
	heap_fill(S, due);
	free(due);
	S->reloads++;
	info("reloaded %s: %zu targets (%zu new, %zu changed, %zu removed); "
	     "loaded in %lld ms, swapped in %lld ms",
	     S->path, S->n, S->n - ld->kept, ld->changed, old_n - ld->kept,
	     (long long)ld->load_ms,
	     (long long)((mono_now_ns() - t0) / 1000000));
	free(ld->old_to_new);
	memset(ld, 0, sizeof(*ld));
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

/* The --stats-interval line: counters since start.  Skipped ticks not yet
 * reported by report_skips() count too. */
static void
stats_report(const struct state *S)
{
	info("stats: targets=%zu emitted=%llu skipped=%llu reloads=%llu",
	     S->n, S->emitted, S->skipped_total + S->skipped, S->reloads);
}

/* Called after the due ticks went out, so the line never delays one. */
static void
stats_tick(struct state *S)
{
	if (stats_clock_due(&S->stats))
		stats_report(S);
}

/* The wait before the next tick (or none: NULL), shortened to when the
 * stats line is due.  The tick's own wait is kept to the nanosecond. */
static struct timespec *
wait_until(const struct state *S, int64_t deadline, struct timespec *ts)
{
	int64_t wait_ns = -1;
	int stats_ms = stats_clock_timeout_ms(&S->stats);

	if (deadline != INT64_MAX) {
		wait_ns = deadline * 1000000 - S->offset_ns - mono_now_ns();
		if (wait_ns < 0)
			wait_ns = 0;
	}
	if (stats_ms >= 0 &&
	    (wait_ns < 0 || (int64_t)stats_ms * 1000000 < wait_ns))
		wait_ns = (int64_t)stats_ms * 1000000;
	if (wait_ns < 0)
		return NULL;
	ts->tv_sec = wait_ns / 1000000000;
	ts->tv_nsec = wait_ns % 1000000000;
	return ts;
}

/* The wall clock was set: due times are wall-aligned, so start over. */
static void
check_clock_step(struct state *S)
{
	int64_t drift = (real_now_ns() - (mono_now_ns() + S->offset_ns)) /
	                1000000;

	if (drift > -CLOCK_STEP_MS && drift < CLOCK_STEP_MS)
		return;
	info("wall clock stepped by %+lld ms; schedule re-aligned",
	     (long long)drift);
	S->offset_ns = clock_offset_ns();
	schedule_all(S, false);
}

static int64_t
max_late(const struct slot *sl)
{
	return sl->interval_ms / 2 < MAX_LATE_MS ? sl->interval_ms / 2
	                                          : MAX_LATE_MS;
}

/* If the heap's head tick is too late to honour, skip it (counted) to the
 * first tick still in time, and say so (true). */
static bool
skip_top_if_late(struct state *S, int64_t now)
{
	struct heap_item *top = &S->heap.v[0];
	struct slot *sl = &S->slots[top->idx];
	int64_t late = now - top->due, k;

	if (late <= max_late(sl))
		return false;
	if (sl->first) {
		/* A first check too late: go on at the phase. */
		sl->first = false;
		S->skipped++;
		top->due = sched_next_due(now, sl->interval_ms, sl->phase_ms);
	} else {
		/* Skip to the first tick that is still in time (or in the
		 * future). */
		k = (late - max_late(sl) + sl->interval_ms - 1) / sl->interval_ms;
		S->skipped += (unsigned long long)k;
		top->due += k * sl->interval_ms;
	}
	heap_sift_top(&S->heap);
	return true;
}

/* While stdout is blocked (even in the middle of a record), the ticks that
 * run out of time are skipped and counted all the same. */
static void
skip_overdue(struct state *S, int64_t now)
{
	while (S->heap.n && skip_top_if_late(S, now))
		;
}

/* Emits every due tick that can be written, up to BATCH_MAX records per
 * write(2); true when stdout blocked.  A record that did not go out at all
 * goes back on the heap as it was: it is tried again on the next wake-up,
 * or skipped once too late, so that nothing is bunched up. */
static bool
run_due(struct state *S, int64_t now)
{
	for (;;) {
		size_t nb = 0, w, done;

		S->buf_len = 0;
		while (nb < BATCH_MAX && S->heap.n && S->heap.v[0].due <= now) {
			struct heap_item *top = &S->heap.v[0];
			const struct slot *sl = &S->slots[top->idx];

			if (skip_top_if_late(S, now))
				continue;
			encode(S, sl, top->due);
			S->batch[nb] = *top;
			S->batch_end[nb++] = S->buf_len;
			heap_pop(&S->heap);
		}
		if (nb == 0)
			return false;
		w = write_some(S->buf, S->buf_len);
		/* Records begun are sent (a partial one is finished first
		 * thing, from pend); the others go back as they were. */
		for (done = 0; done < nb && (done == 0 ? 0 : S->batch_end[done - 1]) < w;
		     done++)
			;
		if (w < S->buf_len && w > 0)
			pend_keep(S, S->buf, w, S->batch_end[done - 1]);
		/* A record begun is counted: its tail goes out first next. */
		S->emitted += done;
		for (size_t i = 0; i < nb; i++) {
			struct slot *sl = &S->slots[S->batch[i].idx];
			int64_t next = S->batch[i].due;

			if (i < done && sl->first) {
				sl->first = false;
				next = after_first_due(sl, next);
			} else if (i < done) {
				next += sl->interval_ms;
			}
			heap_push(&S->heap, next, S->batch[i].idx);
		}
		if (w < S->buf_len)
			return true;
	}
}

/* Before the first load (which takes seconds for 100,000 targets), so that
 * a SIGHUP or SIGTERM then is acted on once the loop runs rather than
 * killing the process.  orig: the mask to wait with. */
static void
signals_setup(sigset_t *orig)
{
	sigset_t block;
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
	sigprocmask(SIG_BLOCK, &block, orig);
}

static int
run(struct state *S, const sigset_t *origp)
{
	sigset_t orig = *origp;

	stdout_nonblocking();
	if ((S->rl.efd = eventfd(0, EFD_CLOEXEC)) < 0)
		die(EX_SOFTWARE, "eventfd:");
	S->offset_ns = clock_offset_ns();
	schedule_all(S, true);
	if (S->n == 0)
		info("no targets%s; waiting for SIGHUP",
		     S->shard_n ? " in this shard" : "");

	while (!stop_signals) {
		struct pollfd pfd[2] = {
		    {.fd = STDOUT_FILENO, .events = POLLOUT},
		    {.fd = S->rl.efd, .events = POLLIN},
		};
		struct timespec ts, *tsp;
		int64_t now, deadline = INT64_MAX;
		bool blocked;

		if (hup_signal) {
			hup_signal = 0;
			if (strcmp(S->path, "-"))
				reload_start(S);
			else
				warn("SIGHUP: targets read from stdin cannot be "
				     "reloaded");
		}
		check_clock_step(S);
		blocked = !out_flush(S);
		now = sched_now(S);
		if (!blocked)
			blocked = run_due(S, now);
		else
			skip_overdue(S, now);
		report_skips(S, now, false);
		stats_tick(S);

		if (S->heap.n) {
			const struct heap_item *top = &S->heap.v[0];

			/* Blocked: wake when the head tick runs out of time. */
			deadline = blocked ? top->due +
			                         max_late(&S->slots[top->idx]) + 1
			                   : (top->due + WAKE_GRAIN_MS - 1) /
			                         WAKE_GRAIN_MS * WAKE_GRAIN_MS;
		}
		if (S->skipped && S->last_report_ms + SKIP_REPORT_MS < deadline)
			deadline = S->last_report_ms + SKIP_REPORT_MS;
		tsp = wait_until(S, deadline, &ts);
		/* pfd[0] only when blocked; pfd[1] only during a reload. */
		if (!blocked)
			pfd[0].fd = -1;
		if (!S->rl.running)
			pfd[1].fd = -1;
		if (ppoll(pfd, 2, tsp, &orig) < 0 && errno != EINTR)
			die(EX_SOFTWARE, "ppoll:");
		if (S->rl.running && (pfd[1].revents & POLLIN)) {
			reload_join(S);
			reload_apply(S);
			if (S->rl.again) {
				S->rl.again = false;
				reload_start(S);
			}
		}
	}
	/* A reload under way is waited for (and dropped), unless stopped
	 * again: then the process exits with the thread still loading. */
	while (S->rl.running && stop_signals < 2) {
		struct pollfd pfd = {.fd = S->rl.efd, .events = POLLIN};

		if (ppoll(&pfd, 1, NULL, &orig) < 0 && errno != EINTR)
			break;
		if (pfd.revents & POLLIN) {
			reload_join(S);
			loaded_free(&S->rl.out);
		}
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
	if (S->stats.interval_ns)
		stats_report(S); /* the last word, with the final counts */
	if (S->rl.running) {
		restore_stdout();
		_exit(0); /* the thread still uses the configuration */
	}
	close(S->rl.efd);
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

/* time_format_ms() for many instants in a few minutes: the
 * "YYYY-MM-DDTHH:MM:" of a minute is formatted once (two minutes kept). */
struct minute_cache {
	int64_t min[2];
	char text[2][TIME_STR_LEN];
};

static void
format_due(struct minute_cache *mc, int64_t ms, char out[TIME_STR_LEN])
{
	int64_t min = ms >= 0 ? ms / 60000 : -1, rest = ms - min * 60000;
	size_t slot = (size_t)(min & 1);

	if (min < 0) {
		time_format_ms(ms, out);
		return;
	}
	if (mc->min[slot] != min) {
		time_format_ms(min * 60000, mc->text[slot]);
		mc->min[slot] = min;
	}
	memcpy(out, mc->text[slot], 17); /* 2026-11-23T10:49: */
	out[17] = (char)('0' + rest / 10000);
	out[18] = (char)('0' + rest / 1000 % 10);
	out[19] = '.';
	out[20] = (char)('0' + rest / 100 % 10);
	out[21] = (char)('0' + rest / 10 % 10);
	out[22] = (char)('0' + rest % 10);
	out[23] = 'Z';
	out[24] = '\0';
}

static bool
plain_name(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s >= 0x7f || *s == '@' || *s == '\\')
			return false;
	return true;
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
	/* Most targets share their interval and timeout: each is formatted
	 * when it differs from the one before. */
	int64_t last_iv = -1, last_to = -1;
	char iv[32] = "", to[32] = "";
	struct minute_cache mc = {{-1, -1}, {"", ""}};

	for (size_t i = 0; i < cfg->n; i++) {
		const struct config_target *ct = &cfg->v[i];
		char next[TIME_STR_LEN], *name;

		if (!in_shard(S, ct->hash))
			continue;
		if (ct->interval_ms != last_iv)
			config_format_duration(last_iv = ct->interval_ms, iv,
			                       sizeof(iv));
		if (ct->timeout_ms != last_to)
			config_format_duration(last_to = ct->timeout_ms, to,
			                       sizeof(to));
		format_due(&mc, sched_next_due(now, ct->interval_ms,
		                               sched_phase(ct->hash,
		                                           ct->interval_ms)),
		           next);
		/* Unnamed targets are named after their url: no password;
		 * and a name prints as one line, control characters escaped,
		 * as diagnostics do (a name of printable ASCII without '@' or
		 * '\\' is one diag_clean_new() leaves as it is). */
		name = plain_name(ct->name) ? NULL
		                            : diag_clean_new(ct->name,
		                                             strlen(ct->name), 0);
		printf("  %s: line %lu, every %s, timeout %s, next %s\n",
		       name ? name : ct->name, ct->line, iv, to, next);
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
	    {"stats-interval", required_argument, NULL, OPT_STATS_INTERVAL},
	    {"ramp", required_argument, NULL, OPT_RAMP},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct state S = {.fmt = CONFIG_YAML, .ramp_ms = RAMP_DEFAULT_MS};
	const char *shard = getenv("SM_SHARD"), *shard_from = "SM_SHARD";
	bool once = false, check = false;
	int64_t stats_ms = -1; /* -1: not given, SM_STATS_INTERVAL then */
	struct config *cfg;
	sigset_t orig;
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
		case OPT_STATS_INTERVAL:
			stats_ms = stats_interval_option_ms(optarg);
			break;
		case OPT_RAMP:
			S.ramp_ms = opt_duration_ms("--ramp", optarg, 0,
			                            INT64_C(86400000) * 366);
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
	if (stats_ms < 0)
		stats_ms = stats_interval_default_ms();

	if (!once && !check)
		signals_setup(&orig);
	if (!(cfg = config_load(S.path, S.fmt)))
		return EX_CONFIG;
	/* From here: the first interval starts when targets can be due. */
	stats_clock_init(&S.stats, stats_ms);
	if (check) {
		status = check_summary(&S, cfg);
		config_free(&cfg);
		return status;
	}
	S.slots = slots_new(&S, cfg, &S.n);
	config_free(&cfg);
	/* The load's intermediate memory (YAML document, JSON trees) is free
	 * now: return it to the system rather than keep it as peak RSS. */
	malloc_trim(0);
	status = once ? run_once(&S) : run(&S, &orig);
	slots_free(S.slots, S.n);
	heap_clear(&S.heap);
	free(S.buf);
	free(S.pend);
	return status;
}
