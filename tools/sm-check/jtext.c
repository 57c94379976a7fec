/* jtext.c - JSON object text into a reusable buffer (see jtext.h). */
#include <stdlib.h>
#include <string.h>

#include "sm.h"
#include "jtext.h"

static void
reserve(struct jtext *j, size_t n)
{
	size_t cap;

	if (j->len + n <= j->cap)
		return;
	cap = j->cap ? j->cap : 1024;
	while (cap < j->len + n)
		cap *= 2;
	j->buf = xrealloc(j->buf, cap);
	j->cap = cap;
}

static void
put(struct jtext *j, const char *s, size_t n)
{
	reserve(j, n);
	memcpy(j->buf + j->len, s, n);
	j->len += n;
}

static void
putc_(struct jtext *j, char c)
{
	reserve(j, 1);
	j->buf[j->len++] = c;
}

void
jt_reset(struct jtext *j)
{
	j->len = 0;
	j->first = true;
}

void
jt_free(struct jtext *j)
{
	free(j->buf);
	memset(j, 0, sizeof *j);
}

void
jt_raw_newline(struct jtext *j)
{
	putc_(j, '\n');
}

void
jt_open(struct jtext *j)
{
	putc_(j, '{');
	j->first = true;
}

void
jt_close(struct jtext *j)
{
	putc_(j, '}');
	j->first = false;
}

void
jt_key(struct jtext *j, const char *k)
{
	size_t n = strlen(k);

	reserve(j, n + 4);
	if (!j->first)
		j->buf[j->len++] = ',';
	j->first = false;
	j->buf[j->len++] = '"';
	memcpy(j->buf + j->len, k, n);
	j->len += n;
	j->buf[j->len++] = '"';
	j->buf[j->len++] = ':';
}

void
jt_null(struct jtext *j)
{
	put(j, "null", 4);
}

void
jt_bool(struct jtext *j, bool v)
{
	if (v)
		put(j, "true", 4);
	else
		put(j, "false", 5);
}

/* Decimal digits of v, backwards from end; returns the first. */
static char *
digits(char *end, uint64_t v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return end;
}

void
jt_int(struct jtext *j, int64_t v)
{
	char tmp[24], *s;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	s = digits(tmp + sizeof tmp, u);
	if (v < 0)
		*--s = '-';
	put(j, s, (size_t)(tmp + sizeof tmp - s));
}

void
jt_ms(struct jtext *j, int64_t us)
{
	char tmp[32], *s, *end = tmp + sizeof tmp;
	uint64_t u = us < 0 ? (uint64_t)0 - (uint64_t)us : (uint64_t)us;
	unsigned frac = (unsigned)(u % 1000);

	/* The fraction, without its trailing zeros ("12.0" for none). */
	if (frac == 0) {
		*--end = '0';
	} else {
		char f[3] = { (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
		              (char)('0' + frac % 10) };
		int n = 3;

		while (f[n - 1] == '0')
			n--;
		while (n > 0)
			*--end = f[--n];
	}
	*--end = '.';
	s = digits(end, u / 1000);
	if (us < 0)
		*--s = '-';
	put(j, s, (size_t)(tmp + sizeof tmp - s));
}

/* Length of the valid UTF-8 sequence at s (0 if invalid). */
static size_t
utf8_len(const unsigned char *s, const unsigned char *end)
{
	unsigned c = s[0];
	size_t n, i;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if ((size_t)(end - s) < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

void
jt_str(struct jtext *j, const char *str, bool empty_is_null)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *s = (const unsigned char *)str, *end, *run;

	if (str == NULL || (empty_is_null && *str == '\0')) {
		jt_null(j);
		return;
	}
	end = s + strlen(str);
	putc_(j, '"');
	run = s;
	while (s < end) {
		unsigned c = *s;
		size_t n;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0x80 && (n = utf8_len(s, end)) > 0) {
			s += n;
			continue;
		}
		put(j, (const char *)run, (size_t)(s - run));
		switch (c) {
		case '"': put(j, "\\\"", 2); break;
		case '\\': put(j, "\\\\", 2); break;
		case '\b': put(j, "\\b", 2); break;
		case '\f': put(j, "\\f", 2); break;
		case '\n': put(j, "\\n", 2); break;
		case '\r': put(j, "\\r", 2); break;
		case '\t': put(j, "\\t", 2); break;
		default:
			if (c < 0x20) {
				char u[6] = { '\\', 'u', '0', '0', hex[c >> 4],
				              hex[c & 15] };

				put(j, u, sizeof u);
			} else {
				put(j, "\xef\xbf\xbd", 3); /* U+FFFD */
			}
		}
		run = ++s;
	}
	put(j, (const char *)run, (size_t)(s - run));
	putc_(j, '"');
}

static int
dump_cb(const char *buf, size_t size, void *data)
{
	put(data, buf, size);
	return 0;
}

void
jt_json(struct jtext *j, const json_t *v)
{
	if (v == NULL ||
	    json_dump_callback(v, dump_cb, j,
	                       JSON_COMPACT | JSON_ENCODE_ANY |
	                           JSON_REAL_PRECISION(15)) < 0)
		jt_null(j);
}

void
jt_kstr(struct jtext *j, const char *k, const char *s, bool empty_is_null)
{
	jt_key(j, k);
	jt_str(j, s, empty_is_null);
}

void
jt_kint(struct jtext *j, const char *k, int64_t v)
{
	jt_key(j, k);
	jt_int(j, v);
}

void
jt_arr_open(struct jtext *j)
{
	putc_(j, '[');
	j->first = true;
}

void
jt_arr_close(struct jtext *j)
{
	putc_(j, ']');
	j->first = false;
}

void
jt_elem(struct jtext *j)
{
	if (!j->first)
		putc_(j, ',');
	j->first = false;
}

void
jt_raw(struct jtext *j, const char *json)
{
	put(j, json, strlen(json));
	j->first = false;
}
