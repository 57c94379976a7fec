/*
 * copybin.c - a COPY text row (row.c) as a tuple of COPY's binary format.
 *
 * Reading text costs the server more than storing the row: parsing three
 * timestamps, a uuid and six doubles per row is about a quarter of what a
 * COPY into checks takes.  Sent binary, those values are copied as they
 * are.  The text row stays the reference: each value is encoded only when
 * the encoder is certain to give what the server's text input function
 * would give, bit for bit, and certain that function would accept it.
 * Anything else (a time in another layout, a year 0, an offset beyond
 * 15:59, a leap second, a number out of range) makes pgw_row_binary give
 * up, and the batch goes as text, so that the server still refuses a bad
 * value with SQLSTATE class 22 and splitting isolates it.
 *
 * A tuple: the number of fields (int16), then per field its length (int32,
 * -1 for NULL) and its bytes; every integer in network byte order.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sm.h"
#include "pgw.h"

/* Signature, flags (none), header extension length (none). */
const char pgw_binary_header[PGW_BINARY_HEADER_LEN] =
	"PGCOPY\n\377\r\n\0" "\0\0\0\0" "\0\0\0\0";
/* The field count -1. */
const char pgw_binary_trailer[PGW_BINARY_TRAILER_LEN] = "\377\377";

/* Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01. */
#define PG_EPOCH_US INT64_C(946684800000000)
/* pg_type's oid of int8, the element type of an int8[]. */
#define INT8OID 20

static void
put_be(unsigned char *p, uint64_t v, int n)
{
	while (n-- > 0) {
		p[n] = (unsigned char)v;
		v >>= 8;
	}
}

static unsigned char *
grow(struct pgw_buf *b, size_t n)
{
	return (unsigned char *)pgw_buf_grow(b, n);
}

static void
add_field(struct pgw_buf *b, const void *v, size_t n)
{
	put_be(grow(b, 4), n, 4);
	if (n > 0)
		memcpy(grow(b, n), v, n);
}

static void
add_be(struct pgw_buf *b, uint64_t v, int n)
{
	put_be(grow(b, 4), (uint64_t)n, 4);
	put_be(grow(b, (size_t)n), v, n);
}

/* xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, the layout result_validate
 * insists on; the server reads others too, but gets none. */
static bool
enc_uuid(struct pgw_buf *b, const char *s, size_t n)
{
	unsigned char u[16];

	if (!uuid_parse(s, n, u))
		return false;
	add_field(b, u, sizeof u);
	return true;
}

/* Undo the text row's escapes (row.c writes \\ \n \r \t and nothing
 * else); prefix: a byte to put first (jsonb's format version), or -1. */
static bool
enc_text(struct pgw_buf *b, const char *s, size_t n, int prefix)
{
	size_t start, i;
	unsigned char *p;

	put_be(grow(b, 4), 0, 4);
	start = b->len;
	if (prefix >= 0)
		*grow(b, 1) = (unsigned char)prefix;
	for (i = 0; i < n; i++) {
		const char *bs = memchr(s + i, '\\', n - i);
		size_t run = bs != NULL ? (size_t)(bs - (s + i)) : n - i;
		char c;

		memcpy(grow(b, run), s + i, run);
		i += run;
		if (i == n)
			break;
		if (++i == n)
			return false;
		switch (s[i]) {
		case '\\': c = '\\'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		default: return false;
		}
		*grow(b, 1) = (unsigned char)c;
	}
	p = (unsigned char *)b->data + start - 4;
	put_be(p, b->len - start, 4);
	return true;
}

/* d decimal digits at s; -1 if any is not one. */
static int
num(const char *s, int d)
{
	int v = 0;

	while (d-- > 0) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s++ - '0');
	}
	return v;
}

int64_t
pgw_time_us(int64_t ms, const char *digits, size_t n)
{
	char frac[40] = "0.";
	int64_t ms_part = 0;
	size_t i;

	if (n == 0)
		return ms * 1000;
	for (i = 0; i < 3; i++)
		ms_part = ms_part * 10 + (i < n ? digits[i] - '0' : 0);
	if (n > sizeof frac - 3)
		n = sizeof frac - 3;
	memcpy(frac + 2, digits, n);
	frac[n + 2] = '\0';
	/* What the server does with the fraction of a time it reads. */
	return (ms - ms_part) * 1000 + (int64_t)rint(strtod(frac, NULL) * 1e6);
}

/*
 * YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM), as microseconds since
 * 2000-01-01: the layout sm-check writes.  Year 0, a leap second and
 * offsets of 16 hours or more are refused by the server and left to it;
 * other layouts are left to its parser.
 */
static bool
enc_tstz(struct pgw_buf *b, const char *s, size_t n)
{
	char t[48];
	size_t nfrac = 0, z = 19;
	int64_t ms, us;

	if (n < 20 || n >= sizeof t || s[4] != '-' || s[7] != '-' ||
	    s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return false;
	if (num(s, 4) < 1 || num(s + 17, 2) > 59)
		return false;
	if (s[z] == '.') {
		while (z + 1 + nfrac < n && s[z + 1 + nfrac] >= '0' &&
		       s[z + 1 + nfrac] <= '9')
			nfrac++;
		if (nfrac < 1 || nfrac > 9)
			return false;
		z += 1 + nfrac;
	}
	if (!(z + 1 == n && s[z] == 'Z') &&
	    !(z + 6 == n && (s[z] == '+' || s[z] == '-') && s[z + 3] == ':' &&
	      num(s + z + 1, 2) >= 0 && num(s + z + 1, 2) <= 15))
		return false;
	memcpy(t, s, n);
	t[n] = '\0';
	if (time_parse_ms(t, &ms) < 0)
		return false;
	us = pgw_time_us(ms, s + 20, nfrac);
	add_be(b, (uint64_t)(us - PG_EPOCH_US), 8);
	return true;
}

static bool
enc_bool(struct pgw_buf *b, const char *s, size_t n)
{
	unsigned char v;

	if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 1 && s[0] == 't'))
		v = 1;
	else if ((n == 5 && memcmp(s, "false", 5) == 0) ||
	         (n == 1 && s[0] == 'f'))
		v = 0;
	else
		return false;
	add_field(b, &v, 1);
	return true;
}

/* -?[0-9]{1,18}, within [min, max]. */
static bool
enc_int(struct pgw_buf *b, const char *s, size_t n, int64_t min,
        int64_t max, int bytes)
{
	size_t i = n > 0 && s[0] == '-';
	int64_t v = 0;

	if (i == n || n - i > 18)
		return false;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (s[0] == '-')
		v = -v;
	if (v < min || v > max)
		return false;
	add_be(b, (uint64_t)v, bytes);
	return true;
}

/* A JSON number, or what "%.17g" prints; the server reads it with strtod
 * too, and refuses what overflows or underflows to zero. */
static bool
enc_float8(struct pgw_buf *b, const char *s, size_t n)
{
	char t[64], *end;
	double v;
	uint64_t bits;
	size_t i;

	if (n == 0 || n >= sizeof t)
		return false;
	for (i = 0; i < n; i++)
		if (strchr("0123456789-+.eE", s[i]) == NULL || s[i] == '\0')
			return false;
	memcpy(t, s, n);
	t[n] = '\0';
	errno = 0;
	v = strtod(t, &end);
	if (end != t + n || (errno == ERANGE && (v == 0 || isinf(v))))
		return false;
	memcpy(&bits, &v, sizeof bits);
	add_be(b, bits, 8);
	return true;
}

/* pg_type's oids of the element types of the other arrays. */
#define INT2OID 21
#define INT4OID 23
#define TEXTOID 25

/* Finish an array value begun at start (its length and header reserved):
 * count elements of type oid, one dimension, lower bound 1. */
static void
end_array(struct pgw_buf *b, size_t start, size_t count, uint32_t oid)
{
	unsigned char *head = (unsigned char *)b->data + start + 4;

	put_be(head, count > 0, 4);   /* dimensions */
	put_be(head + 4, 0, 4);       /* no NULLs */
	put_be(head + 8, oid, 4);     /* element type */
	put_be(head + 12, count, 4);  /* length of the dimension */
	put_be(head + 16, 1, 4);      /* its lower bound */
	if (count == 0)
		b->len -= 8; /* no dimension: no length, no lower bound */
	put_be((unsigned char *)b->data + start, b->len - start - 4, 4);
}

/* {1,-2,3}: a one-dimensional array of integers of the given size (2, 4
 * or 8 bytes, element type oid) without NULLs, lower bound 1. */
static bool
enc_int_array(struct pgw_buf *b, const char *s, size_t n, uint32_t oid,
              int bytes)
{
	int64_t max = bytes == 2 ? INT16_MAX : bytes == 4 ? INT32_MAX
	            : INT64_MAX;
	int64_t min = bytes == 8 ? INT64_MIN + 1 : -max - 1;
	size_t start = b->len, i, count = 0;

	if (n < 2 || s[0] != '{' || s[n - 1] != '}')
		return false;
	grow(b, 4 + 20); /* the length, then the array's header */
	for (i = 1; i < n - 1;) {
		const char *comma = memchr(s + i, ',', n - 1 - i);
		size_t end = comma != NULL ? (size_t)(comma - s) : n - 1;

		if (!enc_int(b, s + i, end - i, min, max, bytes)) {
			b->len = start;
			return false;
		}
		count++;
		i = end + 1;
		if (comma != NULL && i == n - 1) { /* {1,} */
			b->len = start;
			return false;
		}
	}
	end_array(b, start, count, oid);
	return true;
}

/* {a,b_c}: a one-dimensional text[] of plain words (letters, digits and
 * _; not NULL, which the server would read as a NULL element), as
 * rollup.c writes error kinds; anything else is left to the server. */
static bool
enc_word_array(struct pgw_buf *b, const char *s, size_t n)
{
	size_t start = b->len, i, count = 0;

	if (n < 2 || s[0] != '{' || s[n - 1] != '}')
		return false;
	grow(b, 4 + 20);
	for (i = 1; i < n - 1;) {
		const char *comma = memchr(s + i, ',', n - 1 - i);
		size_t end = comma != NULL ? (size_t)(comma - s) : n - 1, k;

		if (end == i || (end - i == 4 && strncasecmp(s + i, "null", 4) == 0)) {
			b->len = start;
			return false;
		}
		for (k = i; k < end; k++)
			if (!((s[k] >= 'a' && s[k] <= 'z') ||
			      (s[k] >= 'A' && s[k] <= 'Z') ||
			      (s[k] >= '0' && s[k] <= '9') || s[k] == '_')) {
				b->len = start;
				return false;
			}
		add_field(b, s + i, end - i);
		count++;
		i = end + 1;
		if (comma != NULL && i == n - 1) {
			b->len = start;
			return false;
		}
	}
	end_array(b, start, count, TEXTOID);
	return true;
}

static bool
enc_value(struct pgw_buf *b, char type, const char *s, size_t n)
{
	if (n == 2 && s[0] == '\\' && s[1] == 'N') {
		put_be(grow(b, 4), UINT32_MAX, 4); /* -1: NULL */
		return true;
	}
	switch (type) {
	case 'U': return enc_uuid(b, s, n);
	case 'T': return enc_text(b, s, n, -1);
	case 'J': return enc_text(b, s, n, 1);
	case 'Z': return enc_tstz(b, s, n);
	case 'B': return enc_bool(b, s, n);
	case 'I': return enc_int(b, s, n, INT32_MIN, INT32_MAX, 4);
	case 'L': return enc_int(b, s, n, INT64_MIN + 1, INT64_MAX, 8);
	case 'F': return enc_float8(b, s, n);
	case 'A': return enc_int_array(b, s, n, INT8OID, 8);
	case 'a': return enc_int_array(b, s, n, INT4OID, 4);
	case 's': return enc_int_array(b, s, n, INT2OID, 2);
	case 'w': return enc_word_array(b, s, n);
	}
	return false;
}

bool
pgw_row_binary(struct pgw_buf *b, const char *row, size_t len,
               const char *types)
{
	size_t start = b->len, ncol = strlen(types), c;
	const char *p = row, *end = row + len;

	if (len == 0 || end[-1] != '\n')
		return false;
	end--;
	put_be(grow(b, 2), ncol, 2);
	for (c = 0; c < ncol; c++) {
		const char *tab = memchr(p, '\t', (size_t)(end - p));
		const char *fe = tab != NULL ? tab : end;

		if ((tab == NULL) != (c == ncol - 1) ||
		    !enc_value(b, types[c], p, (size_t)(fe - p))) {
			b->len = start;
			return false;
		}
		p = fe + 1;
	}
	return true;
}

bool
pgw_rows_binary(struct pgw_buf *b, const char *rows, size_t len,
                const char *types)
{
	size_t start = b->len, i, next;

	for (i = 0; i < len; i = next) {
		const char *nl = memchr(rows + i, '\n', len - i);

		next = nl != NULL ? (size_t)(nl - rows) + 1 : len;
		if (!pgw_row_binary(b, rows + i, next - i, types)) {
			b->len = start;
			return false;
		}
	}
	return true;
}
