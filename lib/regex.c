/* regex.c - the one way sitemon compiles a PCRE2 pattern, so a pattern
 * sm-schedule accepts is exactly a pattern sm-check can run. */
#include "sm.h"

pcre2_code *
regex_compile(const char *pattern, char *err, size_t errlen)
{
	int errcode;
	PCRE2_SIZE erroff;
	PCRE2_UCHAR msg[256];
	pcre2_code *code;

	/* Bodies are often not valid UTF-8: match what is valid, skip the
	 * rest, rather than failing the whole match. */
	code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
	                     PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &errcode,
	                     &erroff, NULL);
	if (code == NULL) {
		if (pcre2_get_error_message(errcode, msg, sizeof msg) < 0)
			snprintf((char *)msg, sizeof msg, "error %d", errcode);
		snprintf(err, errlen, "invalid PCRE2 pattern at offset %zu: %s",
		         (size_t)erroff, (char *)msg);
		return NULL;
	}
	return code;
}
