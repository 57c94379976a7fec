/*
 * event.c - event records (sm-alert -> sm-notify), schema v1: the one
 * validator.  schema/event.schema.json says the same in JSON Schema.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sm.h"

static const char *const event_kinds[] = {
	"down", "up", "reminder", "stale", "cert_expiring", "slow", "flapping",
	"resolved",
};

static const char *const resolutions[] = {
	"recovered", "removed", "renewed", "ended",
};

#define FAIL(...)                                                              \
	do {                                                                   \
		snprintf(err, errlen, __VA_ARGS__);                            \
		return -1;                                                     \
	} while (0)

static bool
in_set(const char *s, const char *const *set, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		if (!strcmp(s, set[i]))
			return true;
	return false;
}

bool
event_kind_valid(const char *s)
{
	return in_set(s, event_kinds, sizeof event_kinds / sizeof *event_kinds);
}

/* 32 lowercase hex digits, or a UUID. */
static bool
incident_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 36)
		return uuid_is_valid(s);
	if (n != 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool
is_time(const json_t *v)
{
	int64_t ms;

	return json_is_string(v) && time_parse_ms(json_string_value(v), &ms) == 0;
}

static bool
strings_only(const json_t *a)
{
	size_t i;
	json_t *v;

	if (!json_is_array(a))
		return false;
	json_array_foreach(a, i, v) {
		if (!json_is_string(v))
			return false;
	}
	return true;
}

int
event_validate(const json_t *obj, char *err, size_t errlen)
{
	const json_t *v = json_object_get(obj, "v"), *f;
	const char *kind, *id, *inc;
	size_t il;

	if (!json_is_object(obj))
		FAIL("an event must be a JSON object");
	if (!json_is_integer(v) || json_integer_value(v) != SM_SCHEMA_VERSION)
		FAIL("field \"v\" must be 1 (schema version)");
	kind = json_string_value(json_object_get(obj, "event"));
	if (!kind)
		FAIL("field \"event\" is required (a string)");
	if (!event_kind_valid(kind))
		FAIL("field \"event\": unknown event \"%s\"", kind);
	inc = json_string_value(json_object_get(obj, "incident"));
	if (!incident_valid(inc))
		FAIL("field \"incident\" must be 32 lowercase hex digits or a "
		     "UUID");
	id = json_string_value(json_object_get(obj, "id"));
	il = inc ? strlen(inc) : 0;
	if (!id || strncmp(id, inc, il) || id[il] != '/' ||
	    strncmp(id + il + 1, kind, strlen(kind)) ||
	    (id[il + 1 + strlen(kind)] != '\0' &&
	     id[il + 1 + strlen(kind)] != '/'))
		FAIL("field \"id\" must be \"<incident>/<event>[/<n>]\"");
	if (!json_is_string(json_object_get(obj, "target")) ||
	    !json_string_length(json_object_get(obj, "target")))
		FAIL("field \"target\" is required (a non-empty string)");
	if ((f = json_object_get(obj, "url")) && !json_is_string(f))
		FAIL("field \"url\" must be a string");
	if ((f = json_object_get(obj, "labels")) && !json_is_object(f))
		FAIL("field \"labels\" must be an object");
	if (!is_time(json_object_get(obj, "at")))
		FAIL("field \"at\" must be an RFC 3339 time");
	if (!is_time(json_object_get(obj, "since")))
		FAIL("field \"since\" must be an RFC 3339 time");
	if (!strings_only(json_object_get(obj, "locations")))
		FAIL("field \"locations\" must be an array of strings");
	f = json_object_get(obj, "locations_total");
	if (f && (!json_is_integer(f) || json_integer_value(f) < 0))
		FAIL("field \"locations_total\" must be a non-negative integer");
	f = json_object_get(obj, "reason");
	if (f && !json_is_object(f))
		FAIL("field \"reason\" must be an object");
	if (f && json_object_get(f, "error_kind") &&
	    !json_is_null(json_object_get(f, "error_kind"))) {
		enum error_kind k;
		const char *s = json_string_value(json_object_get(f, "error_kind"));

		if (!s || error_kind_parse(s, &k) < 0)
			FAIL("field \"reason.error_kind\" must be an error kind");
	}
	f = json_object_get(obj, "results");
	if (f) {
		size_t i;
		json_t *r;

		if (!json_is_array(f))
			FAIL("field \"results\" must be an array of UUIDs");
		json_array_foreach(f, i, r) {
			if (!json_is_string(r) ||
			    !uuid_is_valid(json_string_value(r)))
				FAIL("field \"results\" must be an array of UUIDs");
		}
	}
	f = json_object_get(obj, "resolution");
	if (!strcmp(kind, "resolved")) {
		if (!in_set(json_string_value(f), resolutions,
		            sizeof resolutions / sizeof *resolutions))
			FAIL("field \"resolution\" must be recovered, removed, "
			     "renewed or ended on a resolved event");
	} else if (f) {
		FAIL("field \"resolution\" is only for resolved events");
	}
	if ((f = json_object_get(obj, "detail")) && !json_is_object(f))
		FAIL("field \"detail\" must be an object");
	if ((f = json_object_get(obj, "kafka")) && !json_is_object(f))
		FAIL("field \"kafka\" must be an object");
	return 0;
}
