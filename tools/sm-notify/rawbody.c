/*
 * rawbody.c - an input line as the webhook's body, without decoding and
 * encoding it again: the bytes of the object as they came (jansson has
 * already parsed and validated them), with the top-level "kafka" member
 * cut out.  One event to a webhook receiver is then one copy of bytes
 * instead of a json_dumps of the decoded tree.
 */
#include <string.h>

#include "notify.h"

static size_t
skip_ws(const char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' ||
	                   s[i] == '\r'))
		i++;
	return i;
}

/* s[i] is '"': the index after the closing quote. */
static size_t
skip_string(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return len;
}

/* The index after the value that starts at s[i]. */
static size_t
skip_value(const char *s, size_t len, size_t i)
{
	int depth = 0;

	if (i >= len)
		return len;
	if (s[i] == '"')
		return skip_string(s, len, i);
	if (s[i] != '{' && s[i] != '[') {
		while (i < len && !strchr(",}] \t\r\n", s[i]))
			i++;
		return i;
	}
	for (; i < len; i++) {
		if (s[i] == '"') {
			i = skip_string(s, len, i) - 1;
		} else if (s[i] == '{' || s[i] == '[') {
			depth++;
		} else if (s[i] == '}' || s[i] == ']') {
			if (--depth == 0)
				return i + 1;
		}
	}
	return len;
}

bool
raw_without_member(const char *s, size_t len, const char *key,
                   size_t *cut_off, size_t *cut_len)
{
	size_t klen = strlen(key), i = skip_ws(s, len, 0);
	size_t prev_end = 0; /* after the previous member's value */
	bool first = true;

	if (i >= len || s[i] != '{')
		return false;
	for (i = skip_ws(s, len, i + 1); i < len && s[i] == '"';) {
		size_t kstart = i, kend = skip_string(s, len, i), vend, next;

		i = skip_ws(s, len, kend);
		if (i >= len || s[i] != ':')
			return false;
		vend = skip_value(s, len, skip_ws(s, len, i + 1));
		next = skip_ws(s, len, vend);
		if (kend - kstart == klen + 2 &&
		    memcmp(s + kstart + 1, key, klen) == 0) {
			if (next < len && s[next] == ',') {
				/* "key":value, "next"... -> "next"... */
				*cut_off = kstart;
				*cut_len = skip_ws(s, len, next + 1) - kstart;
			} else if (!first) {
				/* ..., "key":value} -> ...} */
				*cut_off = prev_end;
				*cut_len = vend - prev_end;
			} else {
				*cut_off = kstart;
				*cut_len = vend - kstart;
			}
			return true;
		}
		if (next >= len || s[next] != ',')
			return false;
		first = false;
		prev_end = vend;
		i = skip_ws(s, len, next + 1);
	}
	return false;
}

int
raw_member(const char *s, size_t len, const char *key, const char **val,
           size_t *vlen)
{
	size_t klen = strlen(key), i = skip_ws(s, len, 0);

	if (i >= len || s[i] != '{')
		return -1;
	for (i = skip_ws(s, len, i + 1); i < len && s[i] == '"';) {
		size_t kstart = i, kend = skip_string(s, len, i), vstart, vend;

		if (memchr(s + kstart + 1, '\\', kend - kstart - 2))
			return -1; /* an escaped name may spell key */
		i = skip_ws(s, len, kend);
		if (i >= len || s[i] != ':')
			return -1;
		vstart = skip_ws(s, len, i + 1);
		vend = skip_value(s, len, vstart);
		if (kend - kstart == klen + 2 &&
		    memcmp(s + kstart + 1, key, klen) == 0) {
			*val = s + vstart;
			*vlen = vend - vstart;
			return 1;
		}
		i = skip_ws(s, len, vend);
		if (i >= len || s[i] != ',')
			break;
		i = skip_ws(s, len, i + 1);
	}
	return 0;
}
