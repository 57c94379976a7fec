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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void
buf_add(struct pgw_buf *b, const char *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
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
		buf_add(b, "\t", 1);
	switch (v == NULL ? JSON_NULL : json_typeof(v)) {
	case JSON_NULL:
		buf_add(b, "\\N", 2);
		return;
	case JSON_STRING:
		buf_add_escaped(b, json_string_value(v), json_string_length(v));
		return;
	case JSON_INTEGER:
		n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
		             json_integer_value(v));
		buf_add(b, num, (size_t)n);
		return;
	case JSON_REAL:
		/* 17 significant digits: the server reads back the very
		 * double jansson read. */
		n = snprintf(num, sizeof num, "%.17g", json_real_value(v));
		buf_add(b, num, (size_t)n);
		return;
	case JSON_TRUE:
		buf_add(b, "true", 4);
		return;
	case JSON_FALSE:
		buf_add(b, "false", 5);
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
	field(b, get(kafka, "topic"), false);
	field(b, get(kafka, "partition"), false);
	field(b, get(kafka, "offset"), false);
	buf_add(b, "\n", 1);
}
