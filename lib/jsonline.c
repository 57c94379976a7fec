/* jsonline.c - one JSON object per line. */
#include <string.h>

#include "sm.h"

json_t *
json_line_parse(const char *line, size_t len, char *err, size_t errlen)
{
	const char *nul = memchr(line, '\0', len);
	json_error_t jerr;
	json_t *obj;

	/* A raw NUL is never JSON, but jansson 2.14 reads one after a number
	 * as the end of the number ({"a":1<NUL>} is accepted). */
	if (nul != NULL) {
		snprintf(err, errlen, "invalid JSON at column %zu: NUL byte",
		         (size_t)(nul - line) + 1);
		return NULL;
	}
	obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (obj == NULL) {
		snprintf(err, errlen, "invalid JSON at column %d: %s",
		         jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "not a JSON object");
		json_decref(obj);
		return NULL;
	}
	return obj;
}

int
json_line_write(FILE *fp, const json_t *obj)
{
	/* 15 significant digits print 0.828 as 0.828, not 0.82799999999999996,
	 * and still hold every millisecond duration exactly. */
	if (json_dumpf(obj, fp, JSON_COMPACT | JSON_REAL_PRECISION(15)) < 0 ||
	    putc('\n', fp) == EOF)
		return -1;
	return 0;
}
