/*
 * test_pgw_row.c - sm-pg-write's row scanner (pgw_row_scan) against the
 * reference it stands in for (json_line_parse, result_validate,
 * pgw_row_format), on valid records and on thousands of variants of them,
 * as TAP.
 *
 * Whenever the scanner accepts a line, the reference must accept it too
 * and both rows must store the same values: the same bytes, but for
 * numbers in double columns (the same double) and labels (the same JSON).
 *
 * Every row is also encoded in COPY's binary format (pgw_row_binary, which
 * may decline), decoded here, and compared with its text, value by value;
 * values it must decline or encode just so are checked one by one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"
#include "tap.h"
#include "../../tools/sm-pg-write/pgw.h"


/* Valid records, as sm-check and sm-kafka-sub write them and less tidy. */
static const char *const bases[] = {
	"{\"v\":1,\"id\":\"01a20aa3-3d80-700b-8000-0000000b0000\","
	"\"target\":\"site-0\",\"url\":\"https://site-0.example.test/health\","
	"\"labels\":{\"team\":\"web\",\"env\":\"prod\"},\"probe\":\"probe-a\","
	"\"scheduled_at\":\"2026-11-23T22:59:59.997Z\","
	"\"started_at\":\"2026-11-23T23:00:00.000Z\",\"ok\":true,"
	"\"status\":200,\"error_kind\":null,\"error\":null,"
	"\"duration_ms\":40.731,\"phases\":{\"dns_ms\":0.006,"
	"\"connect_ms\":0.212,\"tls_ms\":12.5,\"ttfb_ms\":20.125,"
	"\"transfer_ms\":4},\"bytes\":11,\"http_version\":\"1.1\","
	"\"remote_ip\":\"127.0.0.1\",\"redirects\":0,"
	"\"final_url\":\"https://site-0.example.test/health\","
	"\"regex\":{\"pattern\":\"ok\",\"matched\":true},"
	"\"tls\":{\"version\":\"TLSv1.3\","
	"\"cert_not_after\":\"2027-02-01T00:00:00.000Z\","
	"\"cert_issuer\":\"CN=sitemon test CA\","
	"\"chain_not_after\":\"2026-12-15T08:30:00.250Z\"},"
	"\"kafka\":{\"topic\":\"results\",\"partition\":0,\"offset\":0}}",

	"{\"v\":1,\"id\":\"01A20AA3-3D80-700B-8000-0000000B0001\","
	"\"target\":\"t \\\"quoted\\\" \\u00e9\\u20ac\\/\","
	"\"url\":\"http://x.test/a\\\\b\",\"probe\":\"p\\tq\","
	"\"started_at\":\"2026-11-23 23:00:00.5+02:00\",\"ok\":false,"
	"\"status\":null,\"error_kind\":\"timeout\","
	"\"error\":\"read: \\\"slow\\\"\\n\\tline two \\b\\f\\r\","
	"\"duration_ms\":10000,\"phases\":{\"dns_ms\":null,"
	"\"connect_ms\":1,\"tls_ms\":null,\"ttfb_ms\":null,"
	"\"transfer_ms\":null},\"labels\":null,\"tls\":null,\"regex\":null,"
	"\"extra\":[1,{\"x\":2}]}",

	"{ \"v\" : 1 , \"id\":\"01a20aa3-3d80-700b-8000-0000000b0002\","
	"\"target\":\"m\",\"url\":\"http://m/\",\"probe\":\"n\","
	"\"started_at\":\"2026-01-01T00:00:00Z\",\"ok\":true,"
	"\"status\":204,\"error_kind\":null,\"duration_ms\":0}",

	"{\"v\":1,\"id\":\"01a20aa3-3d80-700b-8000-0000000b0003\","
	"\"target\":\"l\",\"url\":\"https://l/\",\"probe\":\"p\","
	"\"labels\":{\"a b\":\"c\\\\d\",\"nested\":\"{\\\"k\\\":[1]}\","
	"\t\"e\":\"\\u00e9\"},\"scheduled_at\":null,"
	"\"started_at\":\"2026-11-23T10:00:00.123456Z\",\"ok\":false,"
	"\"status\":503,\"error_kind\":\"http_status\",\"error\":\"503\","
	"\"duration_ms\":3.25,\"bytes\":9007199254,\"redirects\":3,"
	"\"http_version\":\"2\",\"remote_ip\":\"::1\",\"final_url\":null,"
	"\"tls\":{\"version\":\"TLSv1.2\",\"cert_not_after\":null,"
	"\"cert_issuer\":\"CN=\\u00c9\",\"chain_not_after\":null},"
	"\"kafka\":{\"topic\":\"r\",\"partition\":15,"
	"\"offset\":123456789012345,\"key\":\"l\"}}",

	/* sm-check's whole truth: a cut body, sizes, regex time, tls_error
	 * and the certificate's facts. */
	"{\"v\":1,\"id\":\"01a20aa3-3d80-700b-8000-0000000b0004\","
	"\"target\":\"w\",\"url\":\"https://w/\",\"labels\":{},"
	"\"probe\":\"p\",\"scheduled_at\":null,"
	"\"started_at\":\"2026-11-23T10:00:00.000Z\",\"ok\":false,"
	"\"status\":200,\"error_kind\":\"tls\",\"error\":\"x\","
	"\"tls_error\":\"expired\",\"duration_ms\":3.5,"
	"\"phases\":{\"dns_ms\":0.125,\"connect_ms\":0.25,\"tls_ms\":1,"
	"\"ttfb_ms\":1.5,\"transfer_ms\":0.25,\"regex_ms\":0.5},"
	"\"bytes\":1000,\"truncated\":true,\"content_length\":5000,"
	"\"wire_bytes\":null,\"http_version\":\"1.1\","
	"\"remote_ip\":\"127.0.0.1\",\"redirects\":0,"
	"\"final_url\":\"https://w/\","
	"\"tls\":{\"version\":\"TLSv1.3\","
	"\"cert_not_after\":\"2020-01-02T00:00:00.000Z\","
	"\"cert_not_before\":\"2020-01-01T00:00:00.000Z\","
	"\"cert_days_left\":-2517,\"cert_issuer\":\"CN = w\","
	"\"chain_not_after\":\"2020-01-02T00:00:00.000Z\","
	"\"cert_subject\":\"CN = w\","
	"\"cert_sans\":[\"DNS:w\",\"IP:127.0.0.1\"],"
	"\"cert_sha256\":\"0C:94:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1\"}}",
};

/* Values each field is set to in the variants (JSON text). */
static const char *const values[] = {
	"null", "true", "false", "0", "1", "-1", "-0", "2.5", "-2.5", "1e3",
	"1.0", "40.731", "12345678901234567890", "\"x\"", "\"\"",
	"\"a\\tb\\\\c\\nd\"", "\"\\u00e9\\u0001\"", "\"2026-11-23T10:00:00Z\"",
	"\"2026-11-23 10:00:00.5+02:00\"", "\"2026-13-01T00:00:00Z\"",
	"\"1013-11-23T10:00:00.123456Z\"", "\"0506-01-01T00:00:00Z\"",
	"\"not a time\"", "{}", "{\"a\":\"b\"}", "{\"a\":1}", "{\"a\":{\"b\":null}}",
	"[]", "[1]", "\"01a20aa3-3d80-700b-8000-0000000b00ff\"",
	"\"01a20aa3-3d80-700b-8000-0000000b00f\"", "\"timeout\"", "\"TIMEOUT\"",
	"\"http_status\"", "99999999999", "{\"a\":0.12345678901234567}",
	"[\"DNS:a\",\"IP:1\"]", "[\"a\\\"]\"]", "[\"a\",1]", "[\"a\",{}]", "[true]",
	"[null]", "[[]]",
};

/* Fields the variants change: "a" at the top, "a.b" inside object a. */
static const char *const fields[] = {
	"v", "id", "target", "url", "labels", "probe", "scheduled_at",
	"started_at", "ok", "status", "error_kind", "error", "duration_ms",
	"phases", "phases.dns_ms", "phases.transfer_ms", "phases.other",
	"bytes", "http_version", "remote_ip", "redirects", "final_url",
	"regex", "regex.pattern", "regex.matched", "tls", "tls.version",
	"tls.cert_not_after", "tls.cert_issuer", "tls.chain_not_after",
	"tls.cert_not_before", "tls.cert_days_left", "tls.cert_subject",
	"tls.cert_sans", "tls.cert_sha256",
	"tls_error", "truncated", "content_length", "wire_bytes", "hops",
	"final_phases", "phases.regex_ms",
	"kafka", "kafka.topic",
	"kafka.partition", "kafka.offset", "labels.team", "unknown",
};

/* Columns (PGW_COLUMNS order) compared as doubles; labels as JSON. */
#define N_COLUMNS 42
#define COL_LABELS 3
#define COL_CERT_NOT_AFTER 25
#define COL_CHAIN_NOT_AFTER 27
#define COL_TLS_ERROR 28
#define COL_TRUNCATED 29
#define COL_CONTENT_LENGTH 30
#define COL_WIRE_BYTES 31
#define COL_HOPS 32
#define COL_FINAL_PHASES 33
#define COL_REGEX_MS 34
#define COL_CERT_NOT_BEFORE 35
#define COL_CERT_SUBJECT 36
#define COL_CERT_SANS 37
#define COL_CERT_SHA256 38
/* The test's columns are the program's. */
_Static_assert(sizeof PGW_COLUMN_TYPES - 1 == N_COLUMNS,
               "N_COLUMNS is not the number of PGW_COLUMN_TYPES");
static bool
double_column(int c)
{
	/* duration_ms, the five phases, regex_ms */
	return (c >= 11 && c <= 16) || c == COL_REGEX_MS;
}

/* Undo COPY text escaping. */
static char *
copy_unescape(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n) {
			i++;
			*o++ = s[i] == 't' ? '\t' : s[i] == 'n' ? '\n'
			     : s[i] == 'r' ? '\r' : s[i];
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

static bool
same_column(int c, const char *a, size_t alen, const char *b, size_t blen)
{
	bool same;

	if (alen == blen && memcmp(a, b, alen) == 0)
		return true;
	if (alen == 2 && memcmp(a, "\\N", 2) == 0)
		return false;
	if (blen == 2 && memcmp(b, "\\N", 2) == 0)
		return false;
	if (double_column(c))
		return strtod(a, NULL) == strtod(b, NULL);
	if (PGW_COLUMN_TYPES[c] == 'I' || PGW_COLUMN_TYPES[c] == 'L') {
		/* "-0" as it came and "0" from the tree: the same integer. */
		char *ea, *eb;
		long long x = strtoll(a, &ea, 10), y = strtoll(b, &eb, 10);

		return ea == a + alen && eb == b + blen && x == y;
	}
	if (c == COL_LABELS || c == COL_HOPS || c == COL_FINAL_PHASES ||
	    c == COL_CERT_SANS) {
		char *sa = copy_unescape(a, alen), *sb = copy_unescape(b, blen);
		json_t *ja = json_loads(sa, 0, NULL), *jb = json_loads(sb, 0, NULL);

		same = ja != NULL && jb != NULL && json_equal(ja, jb);
		json_decref(ja);
		json_decref(jb);
		free(sa);
		free(sb);
		return same;
	}
	return false;
}

/* Both rows hold the same values, column by column. */
static bool
same_row(const struct pgw_buf *x, const struct pgw_buf *y)
{
	const char *a = x->data, *ae = x->data + x->len;
	const char *b = y->data, *be = y->data + y->len;
	int c;

	if (x->len == 0 || y->len == 0 || ae[-1] != '\n' || be[-1] != '\n')
		return false;
	ae--;
	be--;
	for (c = 0; a <= ae && b <= be; c++) {
		const char *ta = memchr(a, '\t', (size_t)(ae - a));
		const char *tb = memchr(b, '\t', (size_t)(be - b));

		if (ta == NULL)
			ta = ae;
		if (tb == NULL)
			tb = be;
		if (!same_column(c, a, (size_t)(ta - a), b, (size_t)(tb - b)))
			return false;
		a = ta + 1;
		b = tb + 1;
	}
	return c == N_COLUMNS && a > ae && b > be;
}

/* ---- the binary tuple, decoded ---------------------------------------- */

static const char column_types[] = PGW_COLUMN_TYPES;

static uint64_t
get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | *p++;
	return v;
}

/* The binary value v[0..n) (n -1: NULL) holds what the text t[0..tn)
 * says, for a column of type. */
static bool
same_value(char type, const unsigned char *v, long n, const char *t,
           size_t tn)
{
	char *text, hex[40];
	bool same = false;
	int64_t ms, us;
	double d;
	uint64_t bits;

	if (n < 0)
		return tn == 2 && memcmp(t, "\\N", 2) == 0;
	text = copy_unescape(t, tn);
	switch (type) {
	case 'U':
		for (int i = 0, o = 0; i < 16; i++) {
			if (i == 4 || i == 6 || i == 8 || i == 10)
				hex[o++] = '-';
			o += sprintf(hex + o, "%02x", v[i]);
		}
		same = n == 16 && strcasecmp(hex, text) == 0;
		break;
	case 'T':
		same = (size_t)n == strlen(text) && memcmp(v, text, (size_t)n) == 0;
		break;
	case 'J':
		same = (size_t)n == strlen(text) + 1 && v[0] == 1 &&
		       memcmp(v + 1, text, (size_t)n - 1) == 0;
		break;
	case 'Z': /* microseconds since 2000: the same millisecond
		   (rounded down, before 1970 too) */
		us = (int64_t)get_be(v, 8) + INT64_C(946684800000000);
		same = n == 8 && time_parse_ms(text, &ms) == 0 &&
		       us / 1000 - (us % 1000 < 0) == ms;
		break;
	case 'B':
		same = n == 1 && v[0] == (strcmp(text, "true") == 0);
		break;
	case 'I':
		same = n == 4 && (int32_t)get_be(v, 4) == strtoll(text, NULL, 10);
		break;
	case 'L':
		same = n == 8 && (int64_t)get_be(v, 8) == strtoll(text, NULL, 10);
		break;
	case 'F':
		d = strtod(text, NULL);
		memcpy(&bits, &d, sizeof bits);
		same = n == 8 && get_be(v, 8) == bits;
		break;
	}
	free(text);
	return same;
}

/* The tuple b[0..len) holds the values of the text row. */
static bool
same_tuple(const struct pgw_buf *row, const char *b, size_t len)
{
	const unsigned char *p = (const unsigned char *)b, *end = p + len;
	const char *t = row->data, *te = row->data + row->len - 1;

	if (len < 2 || get_be(p, 2) != N_COLUMNS)
		return false;
	p += 2;
	for (int c = 0; c < N_COLUMNS; c++) {
		const char *tab = memchr(t, '\t', (size_t)(te - t));
		long n;

		if (tab == NULL)
			tab = te;
		if (end - p < 4)
			return false;
		n = (int32_t)get_be(p, 4);
		p += 4;
		if (n > end - p ||
		    !same_value(column_types[c], p, n, t, (size_t)(tab - t)))
			return false;
		p += n > 0 ? n : 0;
		t = tab + 1;
	}
	return p == end && t == te + 1;
}

static struct {
	unsigned lines, scanned, valid, wrong, binary;
	char first_wrong[2048];
} tally;

/* The row encoded in binary, if the encoder takes it, holds its values. */
static void
compare_binary(const struct pgw_buf *row)
{
	struct pgw_buf bin = { 0 };

	if (pgw_row_binary(&bin, row->data, row->len, PGW_COLUMN_TYPES)) {
		tally.binary++;
		if (!same_tuple(row, bin.data, bin.len) && tally.wrong++ == 0)
			snprintf(tally.first_wrong, sizeof tally.first_wrong,
			         "binary tuple differs from: %.*s", (int)row->len,
			         row->data);
	} else if (bin.len != 0 && tally.wrong++ == 0) {
		snprintf(tally.first_wrong, sizeof tally.first_wrong,
		         "declined, yet wrote: %.*s", (int)row->len, row->data);
	}
	free(bin.data);
}

/* One line through both; a wrong answer is remembered, not printed. */
static void
compare(const char *line)
{
	struct pgw_buf fast = { 0 }, slow = { 0 };
	char err[256];
	int64_t fast_ms = 0, slow_ms = 0;
	size_t len = strlen(line);
	bool scanned = pgw_row_scan(&fast, line, len, &fast_ms);
	json_t *o = json_line_parse(line, len, err, sizeof err);
	bool valid = o != NULL && result_validate(o, err, sizeof err) == 0;

	tally.lines++;
	tally.scanned += scanned;
	tally.valid += valid;
	if (scanned)
		compare_binary(&fast);
	if (valid) {
		pgw_row_format(&slow, o);
		compare_binary(&slow);
		time_parse_ms(json_string_value(json_object_get(o, "started_at")),
		              &slow_ms);
	}
	if (scanned && (!valid || fast_ms != slow_ms || !same_row(&fast, &slow))) {
		if (tally.wrong++ == 0)
			snprintf(tally.first_wrong, sizeof tally.first_wrong,
			         "%s\n  fast: %.*s  slow: %.*s", line,
			         (int)fast.len, fast.data ? fast.data : "",
			         (int)slow.len, slow.data ? slow.data : "");
	}
	if (!scanned && fast.len != 0 && tally.wrong++ == 0)
		snprintf(tally.first_wrong, sizeof tally.first_wrong,
		         "unsure, yet wrote a row: %s", line);
	json_decref(o);
	free(fast.data);
	free(slow.data);
}

/* base with field set to value (NULL: removed), dumped with flags. */
static char *
variant(const char *base, const char *field, const char *value, size_t flags)
{
	json_t *o = json_loads(base, 0, NULL), *holder = o, *v = NULL;
	const char *dot = strchr(field, '.'), *key = field;
	char parent[32];
	char *s;

	if (dot != NULL) {
		snprintf(parent, sizeof parent, "%.*s", (int)(dot - field), field);
		holder = json_object_get(o, parent);
		key = dot + 1;
	}
	if (value != NULL)
		v = json_loads(value, JSON_DECODE_ANY, NULL);
	if (json_is_object(holder)) {
		if (v != NULL)
			json_object_set_new(holder, key, v);
		else
			json_object_del(holder, key);
	} else {
		json_decref(v);
	}
	s = json_dumps(o, JSON_COMPACT | flags);
	json_decref(o);
	return s;
}

static void
test_bases(void)
{
	struct pgw_buf b = { 0 };
	int64_t ms;
	size_t i;
	bool all = true;
	char *s;

	for (i = 0; i < sizeof bases / sizeof bases[0]; i++) {
		b.len = 0;
		all = all && pgw_row_scan(&b, bases[i], strlen(bases[i]), &ms);
		compare(bases[i]);
	}
	CHECK(all); /* the fast path takes every record of these shapes */
	/* Labels hold strings only: one holding a number is refused, by the
	 * scan too. */
	s = variant(bases[0], "labels", "{\"n\":1.50}", 0);
	b.len = 0;
	CHECK(!pgw_row_scan(&b, s, strlen(s), &ms) && b.len == 0);
	free(s);
	free(b.data);
	CHECK(tally.wrong == 0);
}

static void
test_variants(void)
{
	static const size_t flags[] = { 0, JSON_ENSURE_ASCII };
	size_t bi, fi, vi, k;

	for (bi = 0; bi < sizeof bases / sizeof bases[0]; bi++)
		for (fi = 0; fi < sizeof fields / sizeof fields[0]; fi++)
			for (k = 0; k < 2; k++) {
				char *s = variant(bases[bi], fields[fi], NULL,
				                  flags[k]);

				compare(s);
				free(s);
				for (vi = 0; vi < sizeof values / sizeof values[0];
				     vi++) {
					s = variant(bases[bi], fields[fi],
					            values[vi], flags[k]);
					compare(s);
					free(s);
				}
			}
	/* Broken and doubtful lines too. */
	compare("");
	compare("{");
	compare("[]");
	compare("{\"v\":1,\"v\":1}");
	printf("# %u lines, %u valid, %u taken by the scanner, %u rows in "
	       "binary\n", tally.lines, tally.valid, tally.scanned,
	       tally.binary);
	if (tally.wrong > 0)
		printf("# first of %u wrong: %s\n", tally.wrong,
		       tally.first_wrong);
	CHECK(tally.wrong == 0);
	/* The variants are mostly valid, and most valid ones are fast. */
	CHECK(tally.scanned * 10 >= tally.valid * 6);
	/* And most rows go binary. */
	CHECK(tally.binary * 10 >= (tally.scanned + tally.valid) * 6);
}

/* bases[0]'s text row with column col set to value (COPY text). */
static struct pgw_buf
row_with(int col, const char *value)
{
	struct pgw_buf row = { 0 }, out = { 0 };
	const char *p, *end;
	int64_t ms;
	int c;

	pgw_row_scan(&row, bases[0], strlen(bases[0]), &ms);
	p = row.data;
	end = row.data + row.len;
	for (c = 0; p < end; c++) {
		const char *f = p;

		while (p < end && *p != '\t' && *p != '\n')
			p++;
		if (c == col)
			pgw_buf_add(&out, value, strlen(value));
		else
			pgw_buf_add(&out, f, (size_t)(p - f));
		pgw_buf_add(&out, p, 1); /* the tab or the newline */
		p++;
	}
	free(row.data);
	return out;
}

/* The 8-byte value of column col of the tuple for a row with value
 * there, or INT64_MIN if the encoder declines. */
static int64_t
encoded(int col, const char *value)
{
	struct pgw_buf row = row_with(col, value), bin = { 0 };
	const unsigned char *p;
	int64_t v = INT64_MIN;
	bool ok = pgw_row_binary(&bin, row.data, row.len, PGW_COLUMN_TYPES);

	if (ok) {
		p = (const unsigned char *)bin.data + 2;
		for (int c = 0; c < col; c++) {
			long n = (int32_t)get_be(p, 4);

			p += 4 + (n > 0 ? n : 0);
		}
		v = get_be(p, 4) == 8 ? (int64_t)get_be(p + 4, 8) : INT64_MAX;
	}
	CHECK(ok || bin.len == 0);
	free(row.data);
	free(bin.data);
	return v;
}

/* The last field of a state row (state.c) ending in the int8[] text
 * array: its binary bytes in want[0..n), or declined when n is 0. */
static bool
array_encodes(const char *array, const unsigned char *want, size_t n)
{
	char row[256];
	struct pgw_buf bin = { 0 };
	bool ok, same;

	snprintf(row, sizeof row, "t\thttp://t/\t\\N\t2000-01-01T00:00:00Z\t"
	         "true\t200\t\\N\t1.5\t2000-01-01T00:00:00Z\t\\N\t%s\n", array);
	ok = pgw_row_binary(&bin, row, strlen(row), PGW_STATE_COLUMN_TYPES);
	same = n == 0 ? !ok && bin.len == 0
	              : ok && bin.len >= n &&
	                memcmp(bin.data + bin.len - n, want, n) == 0;
	free(bin.data);
	return same;
}

/* int8[]: dimensions, no NULLs, element type 20, then length and lower
 * bound of the one dimension, then each element with its length. */
static void
test_array(void)
{
	static const unsigned char two[] = {
		0, 0, 0, 44, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20,
		0, 0, 0, 2, 0, 0, 0, 1,
		0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1,
		0, 0, 0, 8, 255, 255, 255, 255, 255, 255, 255, 254,
	};
	static const unsigned char empty[] = {
		0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20,
	};

	CHECK(array_encodes("{1,-2}", two, sizeof two));
	CHECK(array_encodes("{}", empty, sizeof empty));
	CHECK(array_encodes("{1,}", NULL, 0));
	CHECK(array_encodes("{1,x}", NULL, 0));
	CHECK(array_encodes("1,2", NULL, 0));
}

/* A one-column row of the given type: its binary field (after the field
 * count) is want[0..n), or declined when n is 0. */
static bool
field_encodes(const char *type, const char *text, const unsigned char *want,
              size_t n)
{
	char row[256];
	struct pgw_buf bin = { 0 };
	bool ok, same;

	snprintf(row, sizeof row, "%s\n", text);
	ok = pgw_row_binary(&bin, row, strlen(row), type);
	same = n == 0 ? !ok && bin.len == 0
	              : ok && bin.len == 2 + n &&
	                memcmp(bin.data + 2, want, n) == 0;
	free(bin.data);
	return same;
}

/* The rollup rows' arrays (rollup.c): smallint[] (element type 21),
 * integer[] (23), text[] of plain words (25); booleans as t and f. */
static void
test_rollup_types(void)
{
	static const unsigned char i2[] = {
		0, 0, 0, 32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 21,
		0, 0, 0, 2, 0, 0, 0, 1,
		0, 0, 0, 2, 0, 3, 0, 0, 0, 2, 255, 254,
	};
	static const unsigned char i4[] = {
		0, 0, 0, 28, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 23,
		0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 4, 0, 1, 0, 0,
	};
	static const unsigned char words[] = {
		0, 0, 0, 36, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25,
		0, 0, 0, 2, 0, 0, 0, 1,
		0, 0, 0, 3, 'd', 'n', 's', 0, 0, 0, 5, 't', 'l', 's', '_', '2',
	};
	static const unsigned char no_words[] = {
		0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25,
	};
	static const unsigned char yes[] = { 0, 0, 0, 1, 1 };
	static const unsigned char no[] = { 0, 0, 0, 1, 0 };

	CHECK(field_encodes("s", "{3,-2}", i2, sizeof i2));
	CHECK(field_encodes("s", "{32768}", NULL, 0));
	CHECK(field_encodes("s", "{-32769}", NULL, 0));
	CHECK(field_encodes("a", "{65536}", i4, sizeof i4));
	CHECK(field_encodes("a", "{2147483648}", NULL, 0));
	CHECK(field_encodes("w", "{dns,tls_2}", words, sizeof words));
	CHECK(field_encodes("w", "{}", no_words, sizeof no_words));
	/* What array_in reads otherwise: a NULL, quotes, spaces. */
	CHECK(field_encodes("w", "{NULL}", NULL, 0));
	CHECK(field_encodes("w", "{null}", NULL, 0));
	CHECK(field_encodes("w", "{\"a b\"}", NULL, 0));
	CHECK(field_encodes("w", "{a, b}", NULL, 0));
	CHECK(field_encodes("w", "{a,}", NULL, 0));
	CHECK(field_encodes("w", "{,}", NULL, 0));
	CHECK(field_encodes("B", "t", yes, sizeof yes));
	CHECK(field_encodes("B", "f", no, sizeof no));
	CHECK(field_encodes("B", "x", NULL, 0));

	/* Rows as rollup.c writes them go binary whole. */
	{
		static const char pending[] =
		    "site-1\tprobe-a\t2026-11-23T23:00:00.000Z\t5\t4\t5\t"
		    "151000\t12.5\t90.25\t5000\t2026-11-23T23:00:01.250Z\t"
		    "2026-11-23T23:59:59.999Z\t2027-01-01T00:00:00Z\t\\N\t"
		    "{13,28}\t{4,1}\t{timeout}\t{1}\n";
		static const char run[] =
		    "site-1\t\t0\tf\t2026-11-23T23:00:01.250Z\t"
		    "2026-11-23T23:00:01.250Z\ttimeout\ttimed out\n";
		struct pgw_buf bin = { 0 };

		CHECK(pgw_row_binary(&bin, pending, strlen(pending),
		                     PGW_PENDING_COLUMN_TYPES));
		CHECK(pgw_row_binary(&bin, run, strlen(run),
		                     PGW_RUN_COLUMN_TYPES));
		free(bin.data);
	}
}

/* Values the encoder must give as the server reads them, or leave to the
 * server.  Columns: 6 started_at, 11 duration_ms, 17 bytes, 8 status. */
static void
test_binary(void)
{
	double d;
	int64_t bits;

	/* Microseconds since 2000-01-01, the fraction rounded half to even
	 * as the server's rint(strtod() * 1e6) does. */
	CHECK(encoded(6, "2000-01-01T00:00:00Z") == 0);
	CHECK(encoded(6, "1970-01-01T00:00:00Z") == -INT64_C(946684800000000));
	CHECK(encoded(6, "2000-01-01T00:00:00.0000005Z") == 0);
	CHECK(encoded(6, "2000-01-01T00:00:00.0000015Z") == 2);
	CHECK(encoded(6, "2000-01-01T00:00:00.9999995Z") == 1000000);
	CHECK(encoded(6, "2000-01-01T01:00:00.123456789+01:00") == 123457);
	CHECK(encoded(6, "2000-01-01T00:00:00-15:59") == INT64_C(57540000000));
	CHECK(encoded(6, "0001-01-01T00:00:00Z") ==
	      -INT64_C(63082281600000000));
	/* What the server refuses or reads in its own way: left to it. */
	CHECK(encoded(6, "0000-01-01T00:00:00Z") == INT64_MIN);
	CHECK(encoded(6, "2000-01-01T23:59:60Z") == INT64_MIN);
	CHECK(encoded(6, "2000-01-01T00:00:00+16:00") == INT64_MIN);
	CHECK(encoded(6, "2000-01-01t00:00:00Z") == INT64_MIN);
	CHECK(encoded(6, "2000-01-01 00:00:00Z") == INT64_MIN);
	CHECK(encoded(6, "2000-01-01T00:00:00.1234567891Z") == INT64_MIN);
	CHECK(encoded(6, "2000-01-01T00:00:00") == INT64_MIN);
	/* Doubles: strtod's, but for what the server refuses. */
	d = 1e-310;
	memcpy(&bits, &d, sizeof bits);
	CHECK(encoded(11, "1e-310") == bits);
	CHECK(encoded(11, "1e-400") == INT64_MIN);
	CHECK(encoded(11, "1e400") == INT64_MIN);
	CHECK(encoded(11, "0x10") == INT64_MIN);
	CHECK(encoded(11, "inf") == INT64_MIN);
	/* Integers within their column's range. */
	CHECK(encoded(17, "9007199254740993") == INT64_C(9007199254740993));
	CHECK(encoded(17, "-999999999999999999") ==
	      -INT64_C(999999999999999999));
	CHECK(encoded(17, "9223372036854775808") == INT64_MIN);
	CHECK(encoded(17, "1.0") == INT64_MIN);
	CHECK(encoded(8, "2147483648") == INT64_MIN); /* int4: declined */
	CHECK(encoded(8, "-2147483648") != INT64_MIN);
	/* Text: only the escapes row.c writes. */
	CHECK(encoded(1, "a\\\\b\\tc") != INT64_MIN);
	CHECK(encoded(1, "a\\\\b\\x") == INT64_MIN);
	CHECK(encoded(0, "01a20aa3-3d80-700b-8000-0000000b000") == INT64_MIN);
	CHECK(encoded(0, "{01a20aa3-3d80-700b-8000-0000000b0000}") == INT64_MIN);
	test_array();
}

/* Column col of a COPY text row, as it is (escapes kept). */
static char *
column_of(const struct pgw_buf *row, int col)
{
	const char *p, *end, *tab;
	int c;

	if (row->len == 0)
		return strdup("(no row)");
	p = row->data;
	end = row->data + row->len - 1; /* the newline */
	for (c = 0; c < col; c++) {
		tab = memchr(p, '\t', (size_t)(end - p));
		if (tab == NULL)
			return strdup("(no such column)");
		p = tab + 1;
	}
	tab = memchr(p, '\t', (size_t)(end - p));
	return strndup(p, (size_t)((tab != NULL ? tab : end) - p));
}

/* The scanner takes line (so that the fast path is the one tested), the
 * reference accepts it, and both give want in column col. */
static bool
both_give(const char *line, int col, const char *want)
{
	struct pgw_buf fast = { 0 }, slow = { 0 };
	char err[256], *f = NULL, *t = NULL;
	int64_t ms;
	json_t *o = json_line_parse(line, strlen(line), err, sizeof err);
	bool same = false;

	if (o != NULL && result_validate(o, err, sizeof err) == 0 &&
	    pgw_row_scan(&fast, line, strlen(line), &ms)) {
		pgw_row_format(&slow, o);
		f = column_of(&fast, col);
		t = column_of(&slow, col);
		same = strcmp(f, want) == 0 && strcmp(t, want) == 0;
		if (!same)
			printf("# column %d: scan \"%s\", tree \"%s\", want "
			       "\"%s\"\n", col, f, t, want);
	}
	json_decref(o);
	free(f);
	free(t);
	free(fast.data);
	free(slow.data);
	return same;
}

/* bases[0] with field set to value (NULL: removed) gives want in col. */
static bool
variant_gives(const char *field, const char *value, int col,
              const char *want)
{
	/* 15 digits: 40.731 stays 40.731, a number the scanner takes. */
	char *s = variant(bases[0], field, value, JSON_REAL_PRECISION(15));
	bool same = both_give(s, col, want);

	free(s);
	return same;
}

/* bases[0] with field set to value is refused by both paths: the scan
 * is unsure of it (no row) and result_validate names want in its error. */
static bool
variant_refused(const char *field, const char *value, const char *want)
{
	struct pgw_buf fast = { 0 };
	char err[256] = "", *s = variant(bases[0], field, value, 0);
	int64_t ms;
	json_t *o = json_line_parse(s, strlen(s), err, sizeof err);
	bool refused = o != NULL && result_validate(o, err, sizeof err) < 0 &&
	               strstr(err, want) != NULL &&
	               !pgw_row_scan(&fast, s, strlen(s), &ms) && fast.len == 0;

	if (!refused)
		printf("# %s = %s: \"%s\"\n", field, value, err);
	json_decref(o);
	free(fast.data);
	free(s);
	return refused;
}

/* tls.chain_not_after, column tls_chain_not_after: the time as sent (the
 * server reads it), NULL when null or absent, and a string that is not an
 * RFC 3339 time refused (result_validate; the scan leaves it to the
 * tree), exactly as tls.cert_not_after. */
static void
test_chain_not_after(void)
{
	/* Present, earlier than the leaf's notAfter: both, each in its own
	 * column, and the chain's in binary to the microsecond. */
	CHECK(both_give(bases[0], COL_CHAIN_NOT_AFTER,
	                "2026-12-15T08:30:00.250Z"));
	CHECK(both_give(bases[0], COL_CERT_NOT_AFTER,
	                "2027-02-01T00:00:00.000Z"));
	CHECK(encoded(COL_CHAIN_NOT_AFTER, "2026-12-15T08:30:00.250Z") ==
	      INT64_C(850638600250000));
	/* null, absent from tls, tls null, tls absent: NULL, in binary too
	 * (length -1, which encoded() reports as INT64_MAX). */
	CHECK(variant_gives("tls.chain_not_after", "null",
	                    COL_CHAIN_NOT_AFTER, "\\N"));
	CHECK(both_give(bases[3], COL_CHAIN_NOT_AFTER, "\\N"));
	CHECK(variant_gives("tls.chain_not_after", NULL, COL_CHAIN_NOT_AFTER,
	                    "\\N"));
	CHECK(variant_gives("tls", "null", COL_CHAIN_NOT_AFTER, "\\N"));
	CHECK(variant_gives("tls", NULL, COL_CHAIN_NOT_AFTER, "\\N"));
	CHECK(both_give(bases[2], COL_CHAIN_NOT_AFTER, "\\N"));
	CHECK(encoded(COL_CHAIN_NOT_AFTER, "\\N") == INT64_MAX);
	/* Not a time: refused, by its name, before any row is made; were
	 * one made, its text would never be encoded. */
	CHECK(variant_refused("tls.chain_not_after", "\"not a time\"",
	                      "\"tls.chain_not_after\" must be an RFC 3339 time"));
	CHECK(encoded(COL_CHAIN_NOT_AFTER, "not a time") == INT64_MIN);
	CHECK(variant_refused("tls.cert_not_after", "\"not a time\"",
	                      "\"tls.cert_not_after\" must be an RFC 3339 time"));
	CHECK(variant_refused("tls.cert_not_before", "12",
	                      "\"tls.cert_not_before\" must be an RFC 3339 time"));
	/* Another layout the server would read, but not RFC 3339's (the
	 * offset without its minutes): refused as well. */
	CHECK(variant_refused("tls.chain_not_after",
	                      "\"2026-12-15 08:30:00+00\"",
	                      "\"tls.chain_not_after\" must be an RFC 3339 time"));
	CHECK(encoded(COL_CHAIN_NOT_AFTER, "2026-12-15 08:30:00+00") ==
	      INT64_MIN);
}

/* regex and the other members of tls, of the types of their columns:
 * anything else refused by both paths, with the member's name. */
static void
test_member_types(void)
{
	CHECK(variant_refused("tls.version", "1",
	                      "\"tls.version\" must be a string or null"));
	CHECK(variant_refused("tls.cert_issuer", "{}",
	                      "\"tls.cert_issuer\" must be a string or null"));
	CHECK(variant_refused("tls.cert_subject", "true",
	                      "\"tls.cert_subject\" must be a string or null"));
	CHECK(variant_refused("tls.cert_sha256", "[]",
	                      "\"tls.cert_sha256\" must be a string or null"));
	CHECK(variant_refused("tls.cert_days_left", "2.5",
	                      "\"tls.cert_days_left\" must be an integer or null"));
	CHECK(variant_refused("tls.cert_sans", "\"DNS:a\"",
	                      "\"tls.cert_sans\" must be an array or null"));
	CHECK(variant_refused("tls.cert_sans", "[\"DNS:a\",true]",
	                      "\"tls.cert_sans\" must hold strings only"));
	CHECK(variant_refused("tls.cert_sans", "[[\"DNS:a\"]]",
	                      "\"tls.cert_sans\" must hold strings only"));
	CHECK(variant_refused("regex.matched", "\"yes\"",
	                      "\"regex.matched\" must be true or false"));
	CHECK(variant_refused("regex.matched", "null",
	                      "\"regex.matched\" must be true or false"));
	CHECK(variant_refused("regex.pattern", "7",
	                      "\"regex.pattern\" must be a string"));
	CHECK(variant_refused("tls.cert_sha256", "\"0C:94\"",
	                      "\"tls.cert_sha256\" must be a SHA-256 fingerprint"));
	CHECK(variant_refused("tls.cert_sha256",
	                      "\"0c:94:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:"
	                      "A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1\"",
	                      "\"tls.cert_sha256\" must be a SHA-256 fingerprint"));
	/* Labels of strings only, as targets have them. */
	CHECK(variant_refused("labels", "{\"team\":\"web\",\"n\":1}",
	                      "\"labels.n\" must be a string"));
	CHECK(variant_refused("labels", "{\"k\":{\"a\":\"b\"}}",
	                      "\"labels.k\" must be a string"));
	CHECK(variant_refused("labels", "{\"k\":null}",
	                      "\"labels.k\" must be a string"));
	/* Names that name something; a tls_error as sm-check words it. */
	CHECK(variant_refused("probe", "\"\"",
	                      "\"probe\" must be a non-empty string"));
	CHECK(variant_refused("target", "\"\"",
	                      "\"target\" must be a non-empty string"));
	CHECK(variant_refused("tls_error", "\"Expired\"",
	                      "\"tls_error\" must be a word of a-z and _"));
	CHECK(variant_gives("tls_error", "\"hostname_mismatch\"", COL_TLS_ERROR,
	                    "hostname_mismatch"));
	/* Counts and Kafka coordinates never below zero. */
	CHECK(variant_refused("bytes", "-1", "\"bytes\" must not be negative"));
	CHECK(variant_refused("redirects", "-2",
	                      "\"redirects\" must not be negative"));
	CHECK(variant_refused("kafka.partition", "-1",
	                      "\"kafka\" must not hold a negative partition"));
	CHECK(variant_refused("kafka.offset", "-7",
	                      "\"kafka\" must not hold a negative partition"));
	/* What sm-check writes is taken by the scan, and stored as sent. */
	CHECK(variant_gives("tls.cert_sans", "[\"DNS:a\",\"IP:127.0.0.1\"]",
	                    COL_CERT_SANS, "[\"DNS:a\",\"IP:127.0.0.1\"]"));
	CHECK(variant_gives("tls.cert_sans", "[\"a\\\"],\"]", COL_CERT_SANS,
	                    "[\"a\\\\\"],\"]"));
	CHECK(variant_gives("tls.cert_days_left", "-3", COL_CERT_SANS, "\\N"));
}

/* The columns of migration 4, by both paths; hops and final_phases (with
 * numbers in them) by the tree only. */
static void
test_whole_truth(void)
{
	const char *b = bases[4];
	struct pgw_buf fast = { 0 }, slow = { 0 };
	char *s, *col;
	int64_t ms;
	json_t *o;

	CHECK(both_give(b, COL_TLS_ERROR, "expired"));
	CHECK(both_give(b, COL_TRUNCATED, "true"));
	CHECK(both_give(b, COL_CONTENT_LENGTH, "5000"));
	CHECK(both_give(b, COL_WIRE_BYTES, "\\N"));
	CHECK(both_give(b, COL_CERT_NOT_BEFORE, "2020-01-01T00:00:00.000Z"));
	CHECK(both_give(b, COL_CERT_SUBJECT, "CN = w"));
	CHECK(both_give(b, COL_CERT_SHA256, "0C:94:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1:A1"));
	CHECK(both_give(b, COL_HOPS, "\\N"));
	CHECK(both_give(b, COL_FINAL_PHASES, "\\N"));
	CHECK(both_give(bases[2], COL_TRUNCATED, "\\N"));
	CHECK(both_give(bases[2], COL_REGEX_MS, "\\N"));
	CHECK(both_give(b, COL_CERT_SANS, "[\"DNS:w\",\"IP:127.0.0.1\"]") ||
	      both_give(b, COL_CERT_SANS, "[\"DNS:w\", \"IP:127.0.0.1\"]"));
	s = variant(b, "tls.cert_sans", "[]", 0);
	CHECK(both_give(s, COL_CERT_SANS, "[]"));
	free(s);
	s = variant(b, "tls.cert_sans", "null", 0);
	CHECK(both_give(s, COL_CERT_SANS, "\\N"));
	free(s);
	/* A number in it, or not an array: the tree decides. */
	s = variant(b, "tls.cert_sans", "[1.50]", 0);
	CHECK(!pgw_row_scan(&fast, s, strlen(s), &ms) && fast.len == 0);
	free(s);
	s = variant(b, "tls.cert_sans", "\"DNS:w\"", 0);
	CHECK(!pgw_row_scan(&fast, s, strlen(s), &ms) && fast.len == 0);
	free(s);
	/* Negative sizes: result_validate refuses them, so the scanner is
	 * unsure. */
	s = variant(b, "content_length", "-1", 0);
	CHECK(!pgw_row_scan(&fast, s, strlen(s), &ms) && fast.len == 0);
	free(s);
	s = variant(b, "hops", "[{\"url\":\"http://a/\",\"status\":302,"
	            "\"location\":\"http://b/\",\"time_ms\":1.5}]", 0);
	CHECK(!pgw_row_scan(&fast, s, strlen(s), &ms) && fast.len == 0);
	o = json_loads(s, 0, NULL);
	pgw_row_format(&slow, o);
	col = column_of(&slow, COL_HOPS);
	CHECK(strcmp(col, "[{\"url\": \"http://a/\", \"status\": 302, "
	                  "\"location\": \"http://b/\", \"time_ms\": 1.5}]") == 0 ||
	      strcmp(col, "[{\"url\":\"http://a/\",\"status\":302,"
	                  "\"location\":\"http://b/\",\"time_ms\":1.5}]") == 0);
	free(col);
	json_decref(o);
	free(s);
	free(fast.data);
	free(slow.data);
}

int
main(void)
{
	diag_init("test_pgw_row");
	test_bases();
	test_variants();
	test_binary();
	test_rollup_types();
	test_chain_not_after();
	test_member_types();
	test_whole_truth();
	printf("1..%d\n", n_run);
	return n_failed ? 1 : 0;
}
