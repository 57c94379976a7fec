/*
 * rxcache.h - sm-check's bounded cache of compiled PCRE2 patterns.
 */
#ifndef SM_CHECK_RXCACHE_H
#define SM_CHECK_RXCACHE_H

#include <stdbool.h>
#include <stddef.h>

/* Result of rx_match(). */
enum rx_result { RX_NOMATCH = 0, RX_MATCH = 1, RX_ERROR = -1 };

/* Compile pattern (or find it in the cache).  Returns 0, or -1 with a
 * one-line reason ("missing ) at offset 3") in err. */
int rx_check(const char *pattern, char *err, size_t errlen);

/* Match pattern against subject[0..len).  On RX_ERROR a reason is in err
 * (a pattern that does not compile, or a match limit hit). */
enum rx_result rx_match(const char *pattern, const char *subject, size_t len,
                        char *err, size_t errlen);

/* Free every cached pattern (at exit, for leak checkers). */
void rx_cache_clear(void);

#endif
