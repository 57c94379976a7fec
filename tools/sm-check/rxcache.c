/*
 * rxcache.c - compile each distinct PCRE2 pattern once.
 *
 * A set-associative cache (RX_SETS sets of RX_WAYS entries, least recently
 * used entry evicted within its set) keeps memory bounded however many
 * distinct patterns a long-running sm-check sees, while a schedule that
 * reuses a few hundred patterns never recompiles them.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"
#include "rxcache.h"

#define RX_SETS 128
#define RX_WAYS 4

struct rx_entry {
	char *pattern;    /* NULL: empty slot */
	pcre2_code *code;
	uint64_t last_use;
};

static struct rx_entry cache[RX_SETS][RX_WAYS];
static uint64_t use_clock;
static pcre2_match_data *mdata;

static uint32_t
fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static pcre2_code *
compile(const char *pattern, char *err, size_t errlen)
{
	pcre2_code *code = regex_compile(pattern, err, errlen);

	if (code == NULL)
		return NULL;
	/* JIT is an optimisation only: a pattern it refuses still works. */
	(void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
	return code;
}

/* The cached code for pattern, compiling it on a miss; NULL if it does
 * not compile. */
static pcre2_code *
lookup(const char *pattern, char *err, size_t errlen)
{
	struct rx_entry *set = cache[fnv1a(pattern) % RX_SETS];
	struct rx_entry *victim = &set[0];
	pcre2_code *code;

	for (int i = 0; i < RX_WAYS; i++) {
		if (set[i].pattern != NULL &&
		    strcmp(set[i].pattern, pattern) == 0) {
			set[i].last_use = ++use_clock;
			return set[i].code;
		}
		if (set[i].pattern == NULL)
			victim = &set[i];
		else if (victim->pattern != NULL &&
		         set[i].last_use < victim->last_use)
			victim = &set[i];
	}
	/* Invalid patterns are not cached: sm-check refuses the line that
	 * carries one, so they never reach a probe. */
	if ((code = compile(pattern, err, errlen)) == NULL)
		return NULL;
	if (victim->pattern != NULL) {
		free(victim->pattern);
		pcre2_code_free(victim->code);
	}
	victim->pattern = xstrdup(pattern);
	victim->code = code;
	victim->last_use = ++use_clock;
	return code;
}

int
rx_check(const char *pattern, char *err, size_t errlen)
{
	return lookup(pattern, err, errlen) == NULL ? -1 : 0;
}

enum rx_result
rx_match(const char *pattern, const char *subject, size_t len, char *err,
         size_t errlen)
{
	pcre2_code *code;
	PCRE2_UCHAR msg[256];
	int rc;

	if ((code = lookup(pattern, err, errlen)) == NULL)
		return RX_ERROR;
	if (mdata == NULL && (mdata = pcre2_match_data_create(1, NULL)) == NULL)
		die(EX_SOFTWARE, "out of memory");
	/* An empty body has no buffer; PCRE2 wants a non-NULL subject. */
	if (subject == NULL)
		subject = "";
	rc = pcre2_match(code, (PCRE2_SPTR)subject, len, 0, 0, mdata, NULL);
	if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
		rc = pcre2_match(code, (PCRE2_SPTR)subject, len, 0,
		                 PCRE2_NO_JIT, mdata, NULL);
	if (rc >= 0)
		return RX_MATCH;
	if (rc == PCRE2_ERROR_NOMATCH)
		return RX_NOMATCH;
	if (pcre2_get_error_message(rc, msg, sizeof msg) < 0)
		strcpy((char *)msg, "match failed");
	snprintf(err, errlen, "regex match failed: %s", (char *)msg);
	return RX_ERROR;
}

void
rx_cache_clear(void)
{
	for (int s = 0; s < RX_SETS; s++)
		for (int i = 0; i < RX_WAYS; i++) {
			free(cache[s][i].pattern);
			pcre2_code_free(cache[s][i].code);
			cache[s][i].pattern = NULL;
			cache[s][i].code = NULL;
		}
	pcre2_match_data_free(mdata);
	mdata = NULL;
}
