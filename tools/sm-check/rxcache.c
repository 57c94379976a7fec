/*
 * rxcache.c - compile each distinct PCRE2 pattern once, and match with
 * bounds.
 *
 * A set-associative cache (RX_SETS sets of RX_WAYS entries, least recently
 * used entry evicted within its set) keeps memory bounded however many
 * distinct patterns a long-running sm-check sees, while a schedule that
 * reuses a few hundred patterns never recompiles them.  Entries are
 * reference counted under one mutex (every probe loop thread gets and puts
 * them): a probe holds its patterns from start to result, and an entry
 * evicted meanwhile is freed by the last rx_put().  Matching (rx_eval)
 * takes no lock: a held pattern does not change.
 */

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"
#include "rxcache.h"

#define RX_SETS 128
#define RX_WAYS 4

/* Slices of start positions (see rx_eval): the first holds this many, and
 * each next one is doubled or shrunk to keep a slice near SLICE_NS. */
#define SLICE_FIRST 1
#define SLICE_NS 5000000 /* 5 ms */
#define JIT_STACK_MAX (1024 * 1024)

struct rx {
	char *pattern;
	pcre2_code *code;
	unsigned refs; /* the cache's own, and one per rx_get() */
};

struct rx_entry {
	struct rx *rx;    /* NULL: empty slot */
	uint64_t last_use;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rx_entry cache[RX_SETS][RX_WAYS]; /* under mu */
static uint64_t use_clock;                      /* under mu */

/* Each thread's match state. */
static _Thread_local pcre2_match_data *mdata;
static _Thread_local pcre2_match_context *mctx;
static _Thread_local pcre2_jit_stack *jstack;

static uint32_t
fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* As lib/regex.c's regex_compile (the one check of a pattern's validity,
 * with the same options and messages), plus the offset limit that
 * rx_eval's slices need. */
static pcre2_code *
compile(const char *pattern, char *err, size_t errlen)
{
	pcre2_code *code;
	int errcode;
	PCRE2_SIZE erroff;
	PCRE2_UCHAR msg[256];

	code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
	                     PCRE2_UTF | PCRE2_MATCH_INVALID_UTF |
	                         PCRE2_USE_OFFSET_LIMIT,
	                     &errcode, &erroff, NULL);
	if (code == NULL) {
		if (pcre2_get_error_message(errcode, msg, sizeof msg) < 0)
			snprintf((char *)msg, sizeof msg, "error %d", errcode);
		snprintf(err, errlen, "invalid PCRE2 pattern at offset %zu: %s",
		         (size_t)erroff, (char *)msg);
		return NULL;
	}
	/* JIT is an optimisation only: a pattern it refuses still works.
	 * Both modes are compiled now, while no other thread uses code. */
	(void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE |
	                                  PCRE2_JIT_PARTIAL_HARD);
	return code;
}

static void
rx_unref(struct rx *rx)
{
	if (rx == NULL || --rx->refs > 0)
		return;
	free(rx->pattern);
	pcre2_code_free(rx->code);
	free(rx);
}

/* The cached entry for pattern, compiling it on a miss; NULL if it does
 * not compile. */
static struct rx *
lookup(const char *pattern, char *err, size_t errlen)
{
	struct rx_entry *set = cache[fnv1a(pattern) % RX_SETS];
	struct rx_entry *victim = &set[0];
	pcre2_code *code;
	struct rx *rx;

	for (int i = 0; i < RX_WAYS; i++) {
		if (set[i].rx != NULL && strcmp(set[i].rx->pattern, pattern) == 0) {
			set[i].last_use = ++use_clock;
			return set[i].rx;
		}
		if (set[i].rx == NULL)
			victim = &set[i];
		else if (victim->rx != NULL && set[i].last_use < victim->last_use)
			victim = &set[i];
	}
	/* Invalid patterns are not cached: sm-check refuses the line that
	 * carries one, so they never reach a probe. */
	if ((code = compile(pattern, err, errlen)) == NULL)
		return NULL;
	rx_unref(victim->rx);
	rx = xcalloc(1, sizeof *rx);
	rx->pattern = xstrdup(pattern);
	rx->code = code;
	rx->refs = 1;
	victim->rx = rx;
	victim->last_use = ++use_clock;
	return rx;
}

int
rx_check(const char *pattern, char *err, size_t errlen)
{
	int rc;

	pthread_mutex_lock(&mu);
	rc = lookup(pattern, err, errlen) == NULL ? -1 : 0;
	pthread_mutex_unlock(&mu);
	return rc;
}

struct rx *
rx_get(const char *pattern, char *err, size_t errlen)
{
	struct rx *rx;

	pthread_mutex_lock(&mu);
	if ((rx = lookup(pattern, err, errlen)) != NULL)
		rx->refs++;
	pthread_mutex_unlock(&mu);
	return rx;
}

void
rx_put(struct rx **rx)
{
	if (*rx == NULL)
		return;
	pthread_mutex_lock(&mu);
	rx_unref(*rx);
	pthread_mutex_unlock(&mu);
	*rx = NULL;
}

static void
thread_state(void)
{
	if (mdata != NULL)
		return;
	if ((mdata = pcre2_match_data_create(1, NULL)) == NULL ||
	    (mctx = pcre2_match_context_create(NULL)) == NULL)
		die(EX_SOFTWARE, "out of memory");
	pcre2_set_match_limit(mctx, RX_MATCH_LIMIT);
	pcre2_set_depth_limit(mctx, RX_DEPTH_LIMIT);
	pcre2_set_heap_limit(mctx, RX_HEAP_LIMIT_KIB);
	/* Without a stack of its own JIT has 32 KiB, and a pattern that
	 * needs more is run again without JIT. */
	if ((jstack = pcre2_jit_stack_create(32 * 1024, JIT_STACK_MAX,
	                                     NULL)) != NULL)
		pcre2_jit_stack_assign(mctx, NULL, jstack);
}

void
rx_thread_end(void)
{
	pcre2_match_data_free(mdata);
	pcre2_match_context_free(mctx);
	pcre2_jit_stack_free(jstack);
	mdata = NULL;
	mctx = NULL;
	jstack = NULL;
}

/* A UTF-8 continuation byte (never where a match starts). */
static bool
continuation(unsigned char c)
{
	return (c & 0xc0) == 0x80;
}

enum rx_result
rx_eval(const struct rx *rx, const char *subject, size_t len, bool cut,
        int64_t deadline_ns, size_t *searched, char *err, size_t errlen)
{
	PCRE2_UCHAR msg[256];
	uint32_t opts = cut ? PCRE2_PARTIAL_HARD : 0;
	size_t start = 0, slice = SLICE_FIRST;
	int rc;

	thread_state();
	/* An empty body has no buffer; PCRE2 wants a non-NULL subject. */
	if (subject == NULL)
		subject = "";
	*searched = 0;
	/*
	 * The start positions are searched in slices, each one pcre2_match
	 * call whose match may begin at most at the slice's end (the
	 * offset limit) but may run to the end of the subject: the answer
	 * is the one a single call would give, and the clock is looked at
	 * between slices.  A slice is as long as about SLICE_NS of work, so
	 * that a cheap pattern on a large body takes a few calls and a
	 * costly one is stopped soon after its deadline.
	 */
	for (;;) {
		size_t limit = len - start > slice ? start + slice : len;
		int64_t t0 = mono_now_ns(), took;

		/* The next slice starts on a character. */
		while (limit < len && continuation((unsigned char)subject[limit]))
			limit++;
		pcre2_set_offset_limit(mctx, limit >= len ? PCRE2_UNSET : limit);
		rc = pcre2_match(rx->code, (PCRE2_SPTR)subject, len, start, opts,
		                 mdata, mctx);
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
			rc = pcre2_match(rx->code, (PCRE2_SPTR)subject, len,
			                 start, opts | PCRE2_NO_JIT, mdata, mctx);
		if (rc >= 0)
			return RX_MATCH;
		if (rc == PCRE2_ERROR_PARTIAL)
			return RX_UNDECIDED;
		if (rc != PCRE2_ERROR_NOMATCH)
			break;
		if (limit >= len) {
			*searched = len;
			return cut ? RX_UNDECIDED : RX_NOMATCH;
		}
		/* The limit itself was a start position of this slice. */
		start = limit + 1;
		while (start < len && continuation((unsigned char)subject[start]))
			start++;
		*searched = start;
		took = mono_now_ns() - t0;
		if (deadline_ns != 0 && mono_now_ns() >= deadline_ns)
			return RX_DEADLINE;
		if (took < SLICE_NS / 4 && slice < len)
			slice *= 2;
		else if (took > SLICE_NS && slice >= 4)
			slice /= 4;
	}
	if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
		strcpy((char *)msg, "match failed");
	snprintf(err, errlen, "regex match failed: %s", (char *)msg);
	return RX_ERROR;
}

void
rx_cache_clear(void)
{
	pthread_mutex_lock(&mu);
	for (int s = 0; s < RX_SETS; s++)
		for (int i = 0; i < RX_WAYS; i++) {
			rx_unref(cache[s][i].rx);
			cache[s][i].rx = NULL;
		}
	pthread_mutex_unlock(&mu);
	rx_thread_end();
}
