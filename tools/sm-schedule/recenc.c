/*
 * recenc.c - a target record encoded straight into a buffer.  The field
 * order and the escaping are target_to_json()'s and jansson's compact
 * dump: "v", "target", "url", then each field that differs from its
 * default, in the order of target_to_json(); strings escape '"', '\\' and
 * the control characters below 0x20 (\b \f \n \r \t, else \u00XX) and keep
 * every other byte as it is.  At 100,000 targets a load spent a quarter of
 * its time building and dumping JSON trees.
 */
#include "recenc.h"

#include <stdlib.h>
#include <string.h>

static void
sb_grow(struct strbuf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	while (b->len + more + 1 > b->cap)
		b->cap = b->cap ? b->cap * 2 : 512;
	b->s = xrealloc(b->s, b->cap);
}

static void
sb_put(struct strbuf *b, const char *s, size_t n)
{
	sb_grow(b, n);
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

#define SB_LIT(b, lit) sb_put((b), (lit), sizeof(lit) - 1)

static void
sb_int(struct strbuf *b, long long v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
	                             : (unsigned long long)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	sb_put(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* The length of the UTF-8 sequence at s (at most n bytes), 0 if it is not
 * one that jansson accepts (no overlong forms, no surrogates, at most
 * U+10FFFF). */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned long cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

static bool
sb_str(struct strbuf *b, const char *str, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *s = (const unsigned char *)str;
	char *o;
	size_t i = 0;

	/* At most 6 bytes out per byte in (\u00XX), and the quotes. */
	sb_grow(b, n * 6 + 2);
	o = b->s + b->len;
	*o++ = '"';
	while (i < n) {
		unsigned char c = s[i];
		size_t k;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			*o++ = (char)c;
			i++;
			continue;
		}
		if (c >= 0x80) {
			if (!(k = utf8_seq(s + i, n - i)))
				return false;
			memcpy(o, s + i, k);
			o += k;
			i += k;
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		default:
			memcpy(o, "u00", 3);
			o[3] = hex[c >> 4];
			o[4] = hex[c & 15];
			o += 5;
		}
		i++;
	}
	*o++ = '"';
	*o = '\0';
	b->len = (size_t)(o - b->s);
	return true;
}

static bool
sb_cstr(struct strbuf *b, const char *s)
{
	return sb_str(b, s, strlen(s));
}

/* An object of strings (headers, labels), in its insertion order. */
static bool
sb_strobj(struct strbuf *b, const json_t *o)
{
	const char *key;
	json_t *v;
	bool first = true;

	sb_put(b, "{", 1);
	json_object_foreach((json_t *)o, key, v) {
		if (!first)
			sb_put(b, ",", 1);
		first = false;
		if (!json_is_string(v) || !sb_cstr(b, key))
			return false;
		sb_put(b, ":", 1);
		if (!sb_str(b, json_string_value(v), json_string_length(v)))
			return false;
	}
	sb_put(b, "}", 1);
	return true;
}

static bool
sb_range(struct strbuf *b, const struct status_range *r)
{
	char tmp[32];
	int n;

	if (r->lo == r->hi) {
		sb_int(b, r->lo);
		return true;
	}
	if (r->lo % 100 == 0 && r->hi == r->lo + 99)
		n = snprintf(tmp, sizeof(tmp), "\"%dxx\"", r->lo / 100);
	else
		n = snprintf(tmp, sizeof(tmp), "\"%d-%d\"", r->lo, r->hi);
	sb_put(b, tmp, (size_t)n);
	return true;
}

bool
target_record_encode(struct strbuf *b, const struct target *t)
{
	bool ok = true;

	b->len = 0;
	sb_grow(b, 0);
	b->s[0] = '\0';
	SB_LIT(b, "{\"v\":");
	sb_int(b, SM_SCHEMA_VERSION);
	SB_LIT(b, ",\"target\":");
	ok &= sb_cstr(b, t->target);
	SB_LIT(b, ",\"url\":");
	ok &= sb_cstr(b, t->url);
	if (strcmp(t->method, "GET") != 0) {
		SB_LIT(b, ",\"method\":");
		ok &= sb_cstr(b, t->method);
	}
	if (t->headers) {
		SB_LIT(b, ",\"headers\":");
		ok &= sb_strobj(b, t->headers);
	}
	if (t->body) {
		SB_LIT(b, ",\"body\":");
		ok &= sb_cstr(b, t->body);
	}
	if (t->timeout_ms != SM_DEFAULT_TIMEOUT_MS) {
		SB_LIT(b, ",\"timeout_ms\":");
		sb_int(b, t->timeout_ms);
	}
	if (!t->follow_redirects)
		SB_LIT(b, ",\"follow_redirects\":false");
	if (t->max_redirects != SM_DEFAULT_MAX_REDIRECTS) {
		SB_LIT(b, ",\"max_redirects\":");
		sb_int(b, t->max_redirects);
	}
	if (t->n_expect_status > 0) {
		SB_LIT(b, ",\"expect_status\":[");
		for (size_t i = 0; i < t->n_expect_status; i++) {
			if (i)
				sb_put(b, ",", 1);
			sb_range(b, &t->expect_status[i]);
		}
		sb_put(b, "]", 1);
	}
	if (t->regex) {
		SB_LIT(b, ",\"regex\":");
		ok &= sb_cstr(b, t->regex);
	}
	if (t->regex_absent) {
		SB_LIT(b, ",\"regex_absent\":");
		ok &= sb_cstr(b, t->regex_absent);
	}
	if (!t->tls_verify)
		SB_LIT(b, ",\"tls_verify\":false");
	if (t->ca_file) {
		SB_LIT(b, ",\"ca_file\":");
		ok &= sb_cstr(b, t->ca_file);
	}
	if (t->max_body_bytes) {
		SB_LIT(b, ",\"max_body_bytes\":");
		sb_int(b, t->max_body_bytes);
	}
	if (t->ip_version != IP_ANY) {
		SB_LIT(b, ",\"ip_version\":");
		sb_int(b, t->ip_version);
	}
	if (t->labels) {
		SB_LIT(b, ",\"labels\":");
		ok &= sb_strobj(b, t->labels);
	}
	if (t->scheduled_at_ms) {
		char ts[TIME_STR_LEN];

		time_format_ms(t->scheduled_at_ms, ts);
		SB_LIT(b, ",\"scheduled_at\":");
		ok &= sb_cstr(b, ts);
	}
	sb_put(b, "}", 1);
	return ok;
}

void
strbuf_free(struct strbuf *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
}
