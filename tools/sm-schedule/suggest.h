/* suggest.h - "did you mean" for unknown keys */
#ifndef SM_SCHEDULE_SUGGEST_H
#define SM_SCHEDULE_SUGGEST_H

#include <stddef.h>

/* The one of names[0..n) nearest to key (Levenshtein distance, ignoring
 * case, '-' the same as '_') when it is near enough to be a typo of it;
 * else NULL. */
const char *suggest(const char *key, const char *const *names, size_t n);

#endif
