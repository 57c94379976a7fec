/*
 * row.c - a result record as one row of COPY text format, in the column
 * order of PGW_COLUMNS.
 *
 * The record is already parsed (and validated) by main.c; extracting the
 * fields here costs little, where sending the line as jsonb and extracting
 * them in SQL cost the server more than the rest of the batch together.
 * Each value is given as the text that ->> would have given in SQL (strings
 * raw, numbers as numbers, objects as JSON), so that the server's input
 * functions for the staging table's typed columns accept and refuse what
 * the casts did: a value out of range still fails the batch with SQLSTATE
 * class 22 and is isolated by splitting.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"
#include "sm.h"
#include "pgw.h"

static void
buf_reserve(struct pgw_buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return;
	while (b->len + more > b->cap)
		b->cap = b->cap ? b->cap * 2 : 1024;
	b->data = xrealloc(b->data, b->cap);
}

void
pgw_buf_add(struct pgw_buf *b, const char *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

void *
pgw_buf_grow(struct pgw_buf *b, size_t n)
{
	buf_reserve(b, n);
	b->len += n;
	return b->data + b->len - n;
}

/* COPY text format: backslash, and the delimiter and row ends, escaped. */
static void
buf_add_escaped(struct pgw_buf *b, const char *s, size_t n)
{
	size_t i, o;

	buf_reserve(b, n * 2);
	o = b->len;
	for (i = 0; i < n; i++) {
		char c = s[i];

		switch (c) {
		case '\\': b->data[o++] = '\\'; b->data[o++] = '\\'; break;
		case '\n': b->data[o++] = '\\'; b->data[o++] = 'n'; break;
		case '\r': b->data[o++] = '\\'; b->data[o++] = 'r'; break;
		case '\t': b->data[o++] = '\\'; b->data[o++] = 't'; break;
		default: b->data[o++] = c; break;
		}
	}
	b->len = o;
}

/* One field, preceded by a tab unless first. */
static void
field(struct pgw_buf *b, const json_t *v, bool first)
{
	char num[40];
	int n;

	if (!first)
		pgw_buf_add(b, "\t", 1);
	switch (v == NULL ? JSON_NULL : json_typeof(v)) {
	case JSON_NULL:
		pgw_buf_add(b, "\\N", 2);
		return;
	case JSON_STRING:
		buf_add_escaped(b, json_string_value(v), json_string_length(v));
		return;
	case JSON_INTEGER:
		n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
		             json_integer_value(v));
		pgw_buf_add(b, num, (size_t)n);
		return;
	case JSON_REAL:
		/* 17 significant digits: the server reads back the very
		 * double jansson read. */
		n = snprintf(num, sizeof num, "%.17g", json_real_value(v));
		pgw_buf_add(b, num, (size_t)n);
		return;
	case JSON_TRUE:
		pgw_buf_add(b, "true", 4);
		return;
	case JSON_FALSE:
		pgw_buf_add(b, "false", 5);
		return;
	case JSON_OBJECT:
	case JSON_ARRAY: {
		char *s = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15));

		if (s == NULL)
			die(EX_SOFTWARE, "out of memory encoding JSON");
		buf_add_escaped(b, s, strlen(s));
		free(s);
		return;
	}
	}
}

static const json_t *
get(const json_t *obj, const char *key)
{
	return json_is_object(obj) ? json_object_get(obj, key) : NULL;
}

void
pgw_row_format(struct pgw_buf *b, const json_t *r)
{
	const json_t *phases = get(r, "phases"), *regex = get(r, "regex");
	const json_t *tls = get(r, "tls"), *kafka = get(r, "kafka");

	field(b, get(r, "id"), true);
	field(b, get(r, "target"), false);
	field(b, get(r, "url"), false);
	field(b, get(r, "labels"), false);
	field(b, get(r, "probe"), false);
	field(b, get(r, "scheduled_at"), false);
	field(b, get(r, "started_at"), false);
	field(b, get(r, "ok"), false);
	field(b, get(r, "status"), false);
	field(b, get(r, "error_kind"), false);
	field(b, get(r, "error"), false);
	field(b, get(r, "duration_ms"), false);
	field(b, get(phases, "dns_ms"), false);
	field(b, get(phases, "connect_ms"), false);
	field(b, get(phases, "tls_ms"), false);
	field(b, get(phases, "ttfb_ms"), false);
	field(b, get(phases, "transfer_ms"), false);
	field(b, get(r, "bytes"), false);
	field(b, get(r, "http_version"), false);
	field(b, get(r, "remote_ip"), false);
	field(b, get(r, "redirects"), false);
	field(b, get(r, "final_url"), false);
	field(b, get(regex, "pattern"), false);
	field(b, get(regex, "matched"), false);
	field(b, get(tls, "version"), false);
	field(b, get(tls, "cert_not_after"), false);
	field(b, get(tls, "cert_issuer"), false);
	field(b, get(tls, "chain_not_after"), false);
	field(b, get(r, "tls_error"), false);
	field(b, get(r, "truncated"), false);
	field(b, get(r, "content_length"), false);
	field(b, get(r, "wire_bytes"), false);
	field(b, get(r, "hops"), false);
	field(b, get(r, "final_phases"), false);
	field(b, get(phases, "regex_ms"), false);
	field(b, get(tls, "cert_not_before"), false);
	field(b, get(tls, "cert_subject"), false);
	field(b, get(tls, "cert_sans"), false);
	field(b, get(tls, "cert_sha256"), false);
	field(b, get(kafka, "topic"), false);
	field(b, get(kafka, "partition"), false);
	field(b, get(kafka, "offset"), false);
	pgw_buf_add(b, "\n", 1);
}

/* ---- without a tree: the common case ---------------------------------- */

/*
 * pgw_row_scan extracts the same fields with jscan_fields, without building
 * a tree, for the records it can be sure of: it accepts a line only where
 * json_line_parse and result_validate would accept it too, and writes the
 * row pgw_row_format would, but for two harmless differences: a number is
 * sent as its JSON text (the server reads the same double from it as from
 * the 17 digits pgw_row_format prints) and labels as its JSON text (the
 * same jsonb value).  Anything it is not sure of (a field of an unexpected
 * type, a key or time with escapes, a number that may be out of range,
 * labels holding numbers, a negative number where result_validate wants a
 * non-negative one, members of phases it does not know) is left to the
 * tree.
 */

enum {
	F_V, F_ID, F_TARGET, F_URL, F_LABELS, F_PROBE, F_SCHEDULED_AT,
	F_STARTED_AT, F_OK, F_STATUS, F_ERROR_KIND, F_ERROR, F_DURATION_MS,
	F_PHASES, F_DNS_MS, F_CONNECT_MS, F_TLS_MS, F_TTFB_MS, F_TRANSFER_MS,
	F_BYTES, F_HTTP_VERSION, F_REMOTE_IP, F_REDIRECTS, F_FINAL_URL,
	F_REGEX, F_REGEX_PATTERN, F_REGEX_MATCHED, F_TLS, F_TLS_VERSION,
	F_TLS_NOT_AFTER, F_TLS_ISSUER, F_TLS_CHAIN_NOT_AFTER, F_TLS_ERROR,
	F_TRUNCATED, F_CONTENT_LENGTH, F_WIRE_BYTES, F_HOPS, F_FINAL_PHASES,
	F_REGEX_MS, F_TLS_NOT_BEFORE, F_TLS_SUBJECT, F_TLS_SANS, F_TLS_SHA256,
	F_TLS_DAYS_LEFT, F_KAFKA, F_KAFKA_TOPIC, F_KAFKA_PARTITION,
	F_KAFKA_OFFSET, N_FIELDS,
};

/* In the order sm-check writes them: each lookup then hits at once. */
static const struct jscan_field field_template[N_FIELDS] = {
	[F_V] = { .name = "v" },
	[F_ID] = { .name = "id" },
	[F_TARGET] = { .name = "target" },
	[F_URL] = { .name = "url" },
	[F_LABELS] = { .name = "labels" },
	[F_PROBE] = { .name = "probe" },
	[F_SCHEDULED_AT] = { .name = "scheduled_at" },
	[F_STARTED_AT] = { .name = "started_at" },
	[F_OK] = { .name = "ok" },
	[F_STATUS] = { .name = "status" },
	[F_ERROR_KIND] = { .name = "error_kind" },
	[F_ERROR] = { .name = "error" },
	[F_DURATION_MS] = { .name = "duration_ms" },
	[F_PHASES] = { .name = "phases" },
	[F_DNS_MS] = { .name = "dns_ms", .parent = "phases" },
	[F_CONNECT_MS] = { .name = "connect_ms", .parent = "phases" },
	[F_TLS_MS] = { .name = "tls_ms", .parent = "phases" },
	[F_TTFB_MS] = { .name = "ttfb_ms", .parent = "phases" },
	[F_TRANSFER_MS] = { .name = "transfer_ms", .parent = "phases" },
	[F_BYTES] = { .name = "bytes" },
	[F_HTTP_VERSION] = { .name = "http_version" },
	[F_REMOTE_IP] = { .name = "remote_ip" },
	[F_REDIRECTS] = { .name = "redirects" },
	[F_FINAL_URL] = { .name = "final_url" },
	[F_REGEX] = { .name = "regex" },
	[F_REGEX_PATTERN] = { .name = "pattern", .parent = "regex" },
	[F_REGEX_MATCHED] = { .name = "matched", .parent = "regex" },
	[F_TLS] = { .name = "tls" },
	[F_TLS_VERSION] = { .name = "version", .parent = "tls" },
	[F_TLS_NOT_AFTER] = { .name = "cert_not_after", .parent = "tls" },
	[F_TLS_ISSUER] = { .name = "cert_issuer", .parent = "tls" },
	[F_TLS_CHAIN_NOT_AFTER] = { .name = "chain_not_after",
	                            .parent = "tls" },
	[F_TLS_ERROR] = { .name = "tls_error" },
	[F_TRUNCATED] = { .name = "truncated" },
	[F_CONTENT_LENGTH] = { .name = "content_length" },
	[F_WIRE_BYTES] = { .name = "wire_bytes" },
	[F_HOPS] = { .name = "hops" },
	[F_FINAL_PHASES] = { .name = "final_phases" },
	[F_REGEX_MS] = { .name = "regex_ms", .parent = "phases" },
	[F_TLS_NOT_BEFORE] = { .name = "cert_not_before", .parent = "tls" },
	[F_TLS_SUBJECT] = { .name = "cert_subject", .parent = "tls" },
	[F_TLS_SANS] = { .name = "cert_sans", .parent = "tls" },
	[F_TLS_SHA256] = { .name = "cert_sha256", .parent = "tls" },
	[F_TLS_DAYS_LEFT] = { .name = "cert_days_left", .parent = "tls" },
	[F_KAFKA] = { .name = "kafka" },
	[F_KAFKA_TOPIC] = { .name = "topic", .parent = "kafka" },
	[F_KAFKA_PARTITION] = { .name = "partition", .parent = "kafka" },
	[F_KAFKA_OFFSET] = { .name = "offset", .parent = "kafka" },
};

/* The kinds a field may have for the scan to be sure of it. */
enum {
	K_ABSENT = 1 << 0, K_NULL = 1 << 1, K_STR = 1 << 2,
	K_INT = 1 << 3,    /* a number without fraction or exponent */
	K_NUM = 1 << 4,    /* a number that is not negative */
	K_BOOL = 1 << 5, K_OBJ = 1 << 6,
	K_TIME = 1 << 7,   /* an unescaped string that is an RFC 3339 time */
	K_ARR = 1 << 8,
};

static const unsigned field_kinds[N_FIELDS] = {
	[F_V] = K_INT, /* and "1", checked apart */
	[F_ID] = K_STR,
	[F_TARGET] = K_STR,
	[F_URL] = K_STR,
	[F_LABELS] = K_ABSENT | K_NULL | K_OBJ,
	[F_PROBE] = K_STR,
	[F_SCHEDULED_AT] = K_ABSENT | K_NULL | K_TIME,
	[F_STARTED_AT] = K_TIME,
	[F_OK] = K_BOOL,
	[F_STATUS] = K_NULL | K_INT,
	[F_ERROR_KIND] = K_NULL | K_STR,
	[F_ERROR] = K_ABSENT | K_NULL | K_STR,
	[F_DURATION_MS] = K_NUM,
	[F_PHASES] = K_ABSENT | K_NULL | K_OBJ,
	[F_DNS_MS] = K_ABSENT | K_NULL | K_NUM,
	[F_CONNECT_MS] = K_ABSENT | K_NULL | K_NUM,
	[F_TLS_MS] = K_ABSENT | K_NULL | K_NUM,
	[F_TTFB_MS] = K_ABSENT | K_NULL | K_NUM,
	[F_TRANSFER_MS] = K_ABSENT | K_NULL | K_NUM,
	[F_BYTES] = K_ABSENT | K_NULL | K_INT,
	[F_HTTP_VERSION] = K_ABSENT | K_NULL | K_STR,
	[F_REMOTE_IP] = K_ABSENT | K_NULL | K_STR,
	[F_REDIRECTS] = K_ABSENT | K_NULL | K_INT,
	[F_FINAL_URL] = K_ABSENT | K_NULL | K_STR,
	[F_REGEX] = K_ABSENT | K_NULL | K_OBJ,
	[F_REGEX_PATTERN] = K_ABSENT | K_STR,
	[F_REGEX_MATCHED] = K_ABSENT | K_BOOL,
	[F_TLS] = K_ABSENT | K_NULL | K_OBJ,
	[F_TLS_VERSION] = K_ABSENT | K_NULL | K_STR,
	/* A time as result_validate parses it; any other string goes to
	 * the tree, which refuses it. */
	[F_TLS_NOT_AFTER] = K_ABSENT | K_NULL | K_TIME,
	[F_TLS_ISSUER] = K_ABSENT | K_NULL | K_STR,
	[F_TLS_CHAIN_NOT_AFTER] = K_ABSENT | K_NULL | K_TIME,
	[F_TLS_ERROR] = K_ABSENT | K_NULL | K_STR,
	[F_TRUNCATED] = K_ABSENT | K_BOOL,
	/* Not negative: checked apart. */
	[F_CONTENT_LENGTH] = K_ABSENT | K_NULL | K_INT,
	[F_WIRE_BYTES] = K_ABSENT | K_NULL | K_INT,
	/* hops always holds numbers, final_phases nearly always: the tree
	 * path writes them (see objects_valid); only their absence is
	 * sure here. */
	[F_HOPS] = K_ABSENT,
	[F_FINAL_PHASES] = K_ABSENT | K_NULL,
	[F_REGEX_MS] = K_ABSENT | K_NULL | K_NUM,
	[F_TLS_NOT_BEFORE] = K_ABSENT | K_NULL | K_TIME,
	[F_TLS_SUBJECT] = K_ABSENT | K_NULL | K_STR,
	/* An array of strings (see objects_valid): its JSON text is the
	 * jsonb value. */
	[F_TLS_SANS] = K_ABSENT | K_NULL | K_ARR,
	[F_TLS_SHA256] = K_ABSENT | K_NULL | K_STR,
	/* Not stored (derived), but checked by result_validate. */
	[F_TLS_DAYS_LEFT] = K_ABSENT | K_NULL | K_INT,
	[F_KAFKA] = K_ABSENT | K_OBJ,
	/* Required when kafka is there (checked apart). */
	[F_KAFKA_TOPIC] = K_ABSENT | K_STR,
	[F_KAFKA_PARTITION] = K_ABSENT | K_INT,
	[F_KAFKA_OFFSET] = K_ABSENT | K_INT,
};

static bool
is_time(const struct jscan_field *f, int64_t *ms)
{
	char s[64];

	if (f->type != JV_STRING || f->len >= sizeof s)
		return false;
	memcpy(s, f->val, f->len);
	s[f->len] = '\0';
	return time_parse_ms(s, ms) == 0;
}

static unsigned
kind_of(const struct jscan_field *f)
{
	int64_t ms;

	switch (f->type) {
	case JV_NONE: return K_ABSENT;
	case JV_NULL: return K_NULL;
	case JV_STRING: return K_STR | (is_time(f, &ms) ? K_TIME : 0);
	case JV_ESCAPED: return K_STR;
	case JV_TRUE:
	case JV_FALSE: return K_BOOL;
	case JV_NUMBER:
		return (f->val[0] != '-' ? K_NUM : 0) |
		       (memchr(f->val, '.', f->len) == NULL &&
		        memchr(f->val, 'e', f->len) == NULL &&
		        memchr(f->val, 'E', f->len) == NULL ? K_INT : 0);
	case JV_OBJECT: return K_OBJ;
	case JV_ARRAY: return K_ARR;
	default: return 0;
	}
}

/* The string-typed checks of result_validate. */
static bool
strings_valid(const struct jscan_field *f)
{
	char s[40];
	enum error_kind kind;

	if (f[F_ID].type != JV_STRING || f[F_ID].len != 36)
		return false;
	memcpy(s, f[F_ID].val, 36);
	s[36] = '\0';
	if (!uuid_is_valid(s))
		return false;
	/* Raw lengths: an escaped name may be shorter once decoded, so a
	 * long one goes to the tree, which counts decoded bytes.  An empty
	 * one is refused. */
	if (f[F_TARGET].len == 0 || f[F_TARGET].len > SM_MAX_TARGET_NAME ||
	    f[F_PROBE].len == 0 || f[F_PROBE].len > SM_MAX_PROBE_NAME)
		return false;
	if (f[F_ERROR_KIND].type == JV_ESCAPED)
		return false;
	if (f[F_ERROR_KIND].type == JV_STRING) {
		if (f[F_ERROR_KIND].len >= sizeof s)
			return false;
		memcpy(s, f[F_ERROR_KIND].val, f[F_ERROR_KIND].len);
		s[f[F_ERROR_KIND].len] = '\0';
		if (error_kind_parse(s, &kind) < 0)
			return false;
	}
	return true;
}

/* A number below zero, or "-0" (left to the tree, which reads it as 0). */
static bool
negative(const struct jscan_field *f)
{
	return f->type == JV_NUMBER && f->val[0] == '-';
}

/* phases: every member must be a number or null, and the scan knows only
 * the five it looks for; kafka: all three or not there. */
static bool
objects_valid(const struct jscan_field *f)
{
	size_t known = 0, i;

	if (f[F_PHASES].type == JV_OBJECT) {
		for (i = F_DNS_MS; i <= F_TRANSFER_MS; i++)
			known += f[i].type != JV_NONE;
		known += f[F_REGEX_MS].type != JV_NONE;
		if (f[F_PHASES].members != known)
			return false;
	}
	/* Labels and cert_sans (strings only, sent as their JSON text),
	 * tls_error and the fingerprint, as result_validate has them. */
	if (!result_scan_strings_sure(&f[F_LABELS], &f[F_TLS_ERROR],
	                              &f[F_TLS_SANS], &f[F_TLS_SHA256]))
		return false;
	/* result_validate refuses negative counts and coordinates. */
	if (negative(&f[F_BYTES]) || negative(&f[F_CONTENT_LENGTH]) ||
	    negative(&f[F_WIRE_BYTES]) || negative(&f[F_REDIRECTS]) ||
	    negative(&f[F_KAFKA_PARTITION]) || negative(&f[F_KAFKA_OFFSET]))
		return false;
	if (f[F_KAFKA].type == JV_OBJECT &&
	    (f[F_KAFKA_TOPIC].type == JV_NONE ||
	     f[F_KAFKA_PARTITION].type == JV_NONE ||
	     f[F_KAFKA_OFFSET].type == JV_NONE))
		return false;
	return f[F_V].len == 1 && f[F_V].val[0] == '1';
}

/* The bytes of an escaped JSON string, as COPY text.  jscan_fields has
 * checked the escapes; \u0000 and surrogates never get here. */
static void
add_unescaped(struct pgw_buf *b, const char *s, size_t n)
{
	char *out = xmalloc(n), *o = out;
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned v;

		if (s[i] != '\\') {
			*o++ = s[i];
			continue;
		}
		switch (s[++i]) {
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			v = (unsigned)strtoul((char[]){ s[i + 1], s[i + 2],
			                                s[i + 3], s[i + 4], 0 },
			                      NULL, 16);
			i += 4;
			if (v < 0x80) {
				*o++ = (char)v;
			} else if (v < 0x800) {
				*o++ = (char)(0xc0 | v >> 6);
				*o++ = (char)(0x80 | (v & 0x3f));
			} else {
				*o++ = (char)(0xe0 | v >> 12);
				*o++ = (char)(0x80 | (v >> 6 & 0x3f));
				*o++ = (char)(0x80 | (v & 0x3f));
			}
			break;
		default: *o++ = s[i]; break; /* " \ / */
		}
	}
	buf_add_escaped(b, out, (size_t)(o - out));
	free(out);
}

static void
scanned_field(struct pgw_buf *b, const struct jscan_field *f, bool first)
{
	if (!first)
		pgw_buf_add(b, "\t", 1);
	switch (f->type) {
	case JV_STRING:
	case JV_NUMBER:
	case JV_TRUE:
	case JV_FALSE:
		/* Nothing to escape: no backslash, no control character. */
		pgw_buf_add(b, f->val, f->len);
		return;
	case JV_ESCAPED:
		add_unescaped(b, f->val, f->len);
		return;
	case JV_OBJECT:
	case JV_ARRAY:
		buf_add_escaped(b, f->val, f->len);
		return;
	default:
		pgw_buf_add(b, "\\N", 2);
		return;
	}
}

/* The COPY columns, in PGW_COLUMNS order. */
static const unsigned char column_fields[] = {
	F_ID, F_TARGET, F_URL, F_LABELS, F_PROBE, F_SCHEDULED_AT,
	F_STARTED_AT, F_OK, F_STATUS, F_ERROR_KIND, F_ERROR, F_DURATION_MS,
	F_DNS_MS, F_CONNECT_MS, F_TLS_MS, F_TTFB_MS, F_TRANSFER_MS, F_BYTES,
	F_HTTP_VERSION, F_REMOTE_IP, F_REDIRECTS, F_FINAL_URL,
	F_REGEX_PATTERN, F_REGEX_MATCHED, F_TLS_VERSION, F_TLS_NOT_AFTER,
	F_TLS_ISSUER, F_TLS_CHAIN_NOT_AFTER, F_TLS_ERROR, F_TRUNCATED,
	F_CONTENT_LENGTH, F_WIRE_BYTES, F_HOPS, F_FINAL_PHASES, F_REGEX_MS,
	F_TLS_NOT_BEFORE, F_TLS_SUBJECT, F_TLS_SANS, F_TLS_SHA256,
	F_KAFKA_TOPIC, F_KAFKA_PARTITION, F_KAFKA_OFFSET,
};

/* The wanted names' lengths, masks and parents, worked out once: per line
 * they cost as much as a tenth of the scan. */
static struct jscan_names field_names;
static pthread_once_t field_names_once = PTHREAD_ONCE_INIT;

static void
field_names_init(void)
{
	jscan_names_init(&field_names, field_template, N_FIELDS);
}

bool
pgw_row_scan(struct pgw_buf *b, const char *line, size_t len,
             int64_t *started_ms)
{
	struct jscan_field f[N_FIELDS];
	size_t i;

	pthread_once(&field_names_once, field_names_init);
	/* What follows reads members of absent fields too: zeroed, as the
	 * template was. */
	memset(f, 0, sizeof f);
	if (jscan_fields_named(line, len, f, &field_names) != JSCAN_OBJECT)
		return false;
	for (i = 0; i < N_FIELDS; i++)
		if ((kind_of(&f[i]) & field_kinds[i]) == 0)
			return false;
	if (!strings_valid(f) || !objects_valid(f) ||
	    !is_time(&f[F_STARTED_AT], started_ms))
		return false;
	for (i = 0; i < sizeof column_fields; i++)
		scanned_field(b, &f[column_fields[i]], i == 0);
	pgw_buf_add(b, "\n", 1);
	return true;
}
