/*
 * rxcache.h - sm-check's bounded cache of compiled PCRE2 patterns, and
 * the bounded evaluation of a pattern on a body.
 *
 * Any thread may get and put patterns (one mutex guards the cache); a
 * compiled pattern taken with rx_get() stays valid until rx_put(), even if
 * the cache evicts it meanwhile, so that a regex worker thread may match
 * with it (rx_eval) while the probe loops go on.
 */
#ifndef SM_CHECK_RXCACHE_H
#define SM_CHECK_RXCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of one match (PCRE2's match, depth and heap limits). */
#define RX_MATCH_LIMIT 10000000u
#define RX_DEPTH_LIMIT 1000000u
#define RX_HEAP_LIMIT_KIB (32u * 1024u)

/* Result of rx_eval(). */
enum rx_result {
	RX_NOMATCH = 0,
	RX_MATCH = 1,
	RX_ERROR = -1,     /* a PCRE2 limit was hit: reason in err */
	RX_DEADLINE = -2,  /* the deadline passed before an answer */
	RX_UNDECIDED = -3, /* a cut body: the answer may lie past the cut */
};

struct rx;

/* Compile pattern (or find it in the cache).  Returns 0, or -1 with a
 * one-line reason ("missing ) at offset 3") in err. */
int rx_check(const char *pattern, char *err, size_t errlen);

/* The compiled pattern, held until rx_put(); NULL (reason in err) if it
 * does not compile.  Main thread only, as rx_put(). */
struct rx *rx_get(const char *pattern, char *err, size_t errlen);
void rx_put(struct rx **rx);

/* Whether subject[0..len) has a match of rx.  Any thread.  The search is
 * cut in slices of start positions; between slices the monotonic clock
 * is compared with deadline_ns (0: none), and RX_DEADLINE returned once
 * it has passed, *searched then saying how far the search went.  cut:
 * the subject is the first part of a longer body, and only a match that
 * could not depend on what follows counts (RX_MATCH); anything else is
 * RX_UNDECIDED. */
enum rx_result rx_eval(const struct rx *rx, const char *subject, size_t len,
                       bool cut, int64_t deadline_ns, size_t *searched,
                       char *err, size_t errlen);

/* Free what the calling thread's matches used (at thread exit). */
void rx_thread_end(void);

/* Free every cached pattern (at exit, for leak checkers). */
void rx_cache_clear(void);

#endif
