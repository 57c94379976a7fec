/*
 * fastev.c - the common event line checked without building a jansson
 * tree: one jscan_fields() pass (lib/jsonscan.c) and the checks of
 * event_validate() on the spans it finds.  It only ever answers "valid"
 * for a line that json_line_parse() and event_validate() accept; anything
 * else, or anything it is not sure of (escapes, numbers it would have to
 * convert), is "ask jansson": take_line then parses and validates the line
 * as before, with the same error messages.
 */
#include <string.h>

#include "jsonscan.h"
#include "sm.h"
#include "notify.h"

enum {
	F_V, F_ID, F_EVENT, F_INCIDENT, F_TARGET, F_URL, F_LABELS, F_AT,
	F_SINCE, F_LOCATIONS, F_LOCATIONS_TOTAL, F_REASON, F_ERROR_KIND,
	F_RESULTS, F_RESOLUTION, F_DETAIL, F_KAFKA, NF
};

/* In the order sm-alert writes them (jscan_fields looks for the next
 * wanted name where the last one was found). */
static const struct jscan_field proto[NF] = {
	[F_V] = {"v", NULL, 0, NULL, 0, 0, false},
	[F_ID] = {"id", NULL, 0, NULL, 0, 0, false},
	[F_EVENT] = {"event", NULL, 0, NULL, 0, 0, false},
	[F_INCIDENT] = {"incident", NULL, 0, NULL, 0, 0, false},
	[F_TARGET] = {"target", NULL, 0, NULL, 0, 0, false},
	[F_URL] = {"url", NULL, 0, NULL, 0, 0, false},
	[F_LABELS] = {"labels", NULL, 0, NULL, 0, 0, false},
	[F_AT] = {"at", NULL, 0, NULL, 0, 0, false},
	[F_SINCE] = {"since", NULL, 0, NULL, 0, 0, false},
	[F_LOCATIONS] = {"locations", NULL, 0, NULL, 0, 0, false},
	[F_LOCATIONS_TOTAL] = {"locations_total", NULL, 0, NULL, 0, 0, false},
	[F_REASON] = {"reason", NULL, 0, NULL, 0, 0, false},
	[F_ERROR_KIND] = {"error_kind", "reason", 0, NULL, 0, 0, false},
	[F_RESULTS] = {"results", NULL, 0, NULL, 0, 0, false},
	[F_RESOLUTION] = {"resolution", NULL, 0, NULL, 0, 0, false},
	[F_DETAIL] = {"detail", NULL, 0, NULL, 0, 0, false},
	[F_KAFKA] = {"kafka", NULL, 0, NULL, 0, 0, false},
};

/* A span as a C string in buf (room n); false when it does not fit. */
static bool
cstr(const struct jscan_field *f, char *buf, size_t n)
{
	if (f->len >= n)
		return false;
	memcpy(buf, f->val, f->len);
	buf[f->len] = '\0';
	return true;
}

static bool
is_time(const struct jscan_field *f)
{
	char buf[64];
	int64_t ms;

	return f->type == JV_STRING && cstr(f, buf, sizeof buf) &&
	       time_parse_ms(buf, &ms) == 0;
}

static bool
is_uuid(const char *s, size_t n)
{
	char buf[40];

	if (n != 36)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return uuid_is_valid(buf);
}

static bool
incident_ok(const struct jscan_field *f)
{
	if (f->type != JV_STRING)
		return false;
	if (f->len == 36)
		return is_uuid(f->val, f->len);
	if (f->len != 32)
		return false;
	for (size_t i = 0; i < f->len; i++) {
		char c = f->val[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

/* An array (valid JSON, its raw text) of strings without escapes, each
 * passing ok (NULL: any).  false: not that, or not sure. */
static bool
plain_strings(const struct jscan_field *f, bool (*ok)(const char *, size_t))
{
	const char *p, *end;

	if (f->type != JV_ARRAY) /* absent: val is NULL */
		return false;
	end = f->val + f->len;
	for (p = f->val + 1; p < end; p++) {
		const char *s;

		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ||
		    *p == ',' || *p == ']')
			continue;
		if (*p != '"')
			return false;
		for (s = ++p; p < end && *p != '"'; p++)
			if (*p == '\\')
				return false;
		if (ok && !ok(s, (size_t)(p - s)))
			return false;
	}
	return true;
}

static bool
in_set(const struct jscan_field *f, const char *const *set)
{
	if (f->type != JV_STRING)
		return false;
	for (; *set; set++)
		if (strlen(*set) == f->len && !memcmp(*set, f->val, f->len))
			return true;
	return false;
}

bool
fast_event(const char *line, size_t len, struct fast_ev *out)
{
	static const char *const resolutions[] = {
		"recovered", "removed", "renewed", "ended", NULL,
	};
	struct jscan_field f[NF];
	char kind[32], ek[32];
	const struct jscan_field *id, *inc;
	enum error_kind k;
	size_t kl;

	memcpy(f, proto, sizeof f);
	if (jscan_fields(line, len, f, NF) != JSCAN_OBJECT)
		return false;
	if (f[F_V].type != JV_NUMBER || f[F_V].len != 1 || f[F_V].val[0] != '1')
		return false;
	if (f[F_EVENT].type != JV_STRING || !cstr(&f[F_EVENT], kind, sizeof kind) ||
	    !event_kind_valid(kind))
		return false;
	inc = &f[F_INCIDENT];
	id = &f[F_ID];
	kl = f[F_EVENT].len;
	if (!incident_ok(inc) || id->type != JV_STRING ||
	    id->len < inc->len + 1 + kl ||
	    memcmp(id->val, inc->val, inc->len) != 0 ||
	    id->val[inc->len] != '/' ||
	    memcmp(id->val + inc->len + 1, kind, kl) != 0 ||
	    (id->len > inc->len + 1 + kl && id->val[inc->len + 1 + kl] != '/'))
		return false;
	if (f[F_TARGET].type != JV_STRING || f[F_TARGET].len == 0)
		return false;
	if (f[F_URL].type != JV_NONE && f[F_URL].type != JV_STRING &&
	    f[F_URL].type != JV_ESCAPED)
		return false;
	if (f[F_LABELS].type != JV_NONE && f[F_LABELS].type != JV_OBJECT)
		return false;
	if (!is_time(&f[F_AT]) || !is_time(&f[F_SINCE]))
		return false;
	if (!plain_strings(&f[F_LOCATIONS], NULL))
		return false;
	if (f[F_LOCATIONS_TOTAL].type != JV_NONE) {
		/* Digits only: a non-negative integer jansson reads as one. */
		if (f[F_LOCATIONS_TOTAL].type != JV_NUMBER ||
		    f[F_LOCATIONS_TOTAL].len > 15)
			return false;
		for (size_t i = 0; i < f[F_LOCATIONS_TOTAL].len; i++)
			if (f[F_LOCATIONS_TOTAL].val[i] < '0' ||
			    f[F_LOCATIONS_TOTAL].val[i] > '9')
				return false;
	}
	if (f[F_REASON].type != JV_NONE && f[F_REASON].type != JV_OBJECT)
		return false;
	if (f[F_ERROR_KIND].type != JV_NONE && f[F_ERROR_KIND].type != JV_NULL &&
	    (f[F_ERROR_KIND].type != JV_STRING ||
	     !cstr(&f[F_ERROR_KIND], ek, sizeof ek) || error_kind_parse(ek, &k) < 0))
		return false;
	if (f[F_RESULTS].type != JV_NONE && !plain_strings(&f[F_RESULTS], is_uuid))
		return false;
	if (!strcmp(kind, "resolved") ? !in_set(&f[F_RESOLUTION], resolutions)
	                              : f[F_RESOLUTION].type != JV_NONE)
		return false;
	if (f[F_DETAIL].type != JV_NONE && f[F_DETAIL].type != JV_OBJECT)
		return false;
	if (f[F_KAFKA].type != JV_NONE && f[F_KAFKA].type != JV_OBJECT)
		return false;
	out->id = id->val;
	out->id_len = id->len;
	out->kind_bit = event_bit(kind);
	out->labels = f[F_LABELS].type == JV_OBJECT ? f[F_LABELS].val : NULL;
	out->labels_len = f[F_LABELS].len;
	out->has_kafka = f[F_KAFKA].type == JV_OBJECT;
	return true;
}
