/* test_event.c - unit tests of lib/event.c (event_validate), as TAP. */
#include <string.h>

#include "sm.h"
#include "tap.h"

#define INC "0123456789abcdef0123456789abcdef"
#define GOOD "{\"v\":1,\"id\":\"" INC "/down\",\"event\":\"down\"," \
	"\"incident\":\"" INC "\",\"target\":\"web\",\"url\":\"https://x/\"," \
	"\"labels\":{},\"at\":\"2026-12-02T10:00:00.000Z\"," \
	"\"since\":\"2026-12-02T09:58:00.000Z\",\"locations\":[\"a\",\"b\"]," \
	"\"locations_total\":3,\"reason\":{\"error_kind\":\"http_status\"," \
	"\"error\":\"HTTP 500\",\"status\":500},\"results\":" \
	"[\"01900000-0000-7000-8000-000000000001\"]}"

/* GOOD with key set to the JSON text val (NULL: deleted). */
static int
with(const char *key, const char *val, char *err, size_t errlen)
{
	json_t *o = json_loads(GOOD, 0, NULL), *v;
	int rc;

	if (val) {
		v = json_loads(val, JSON_DECODE_ANY, NULL);
		json_object_set_new(o, key, v);
	} else {
		json_object_del(o, key);
	}
	rc = event_validate(o, err, errlen);
	json_decref(o);
	return rc;
}

int
main(void)
{
	char err[256];

	diag_init("test_event");
	CHECK(with("v", "1", err, sizeof err) == 0);
	CHECK(with("v", "2", err, sizeof err) < 0 && strstr(err, "\"v\""));
	CHECK(with("event", "\"exploded\"", err, sizeof err) < 0 &&
	      strstr(err, "unknown event"));
	CHECK(with("incident", "\"ABC\"", err, sizeof err) < 0);
	CHECK(with("id", "\"" INC "/up\"", err, sizeof err) < 0 &&
	      strstr(err, "\"id\""));
	CHECK(with("id", "\"" INC "/down/3\"", err, sizeof err) == 0);
	CHECK(with("id", "\"" INC "/downx\"", err, sizeof err) < 0);
	CHECK(with("target", "\"\"", err, sizeof err) < 0);
	CHECK(with("at", "\"yesterday\"", err, sizeof err) < 0 &&
	      strstr(err, "\"at\""));
	CHECK(with("since", NULL, err, sizeof err) < 0);
	CHECK(with("locations", "[1]", err, sizeof err) < 0);
	CHECK(with("results", "[\"nope\"]", err, sizeof err) < 0);
	/* Not strings: refused, not read as strings (a crash once). */
	CHECK(with("results", "[1]", err, sizeof err) < 0 &&
	      strstr(err, "\"results\""));
	CHECK(with("results", "[null]", err, sizeof err) < 0);
	CHECK(with("results", "[{}]", err, sizeof err) < 0);
	CHECK(with("reason", "{\"error_kind\":\"gremlins\"}", err, sizeof err) < 0);
	CHECK(with("reason", "{\"error_kind\":null}", err, sizeof err) == 0);
	CHECK(with("resolution", "\"recovered\"", err, sizeof err) < 0 &&
	      strstr(err, "only for resolved"));
	CHECK(with("labels", "[]", err, sizeof err) < 0);
	{
		json_t *o = json_loads(GOOD, 0, NULL);

		json_object_set_new(o, "event", json_string("resolved"));
		json_object_set_new(o, "id", json_string(INC "/resolved"));
		CHECK(event_validate(o, err, sizeof err) < 0 &&
		      strstr(err, "resolution"));
		json_object_set_new(o, "resolution", json_string("removed"));
		CHECK(event_validate(o, err, sizeof err) == 0);
		json_object_set_new(o, "resolution", json_string("whatever"));
		CHECK(event_validate(o, err, sizeof err) < 0);
		json_decref(o);
	}
	CHECK(event_kind_valid("cert_expiring") && !event_kind_valid("Down"));
	printf("1..%d\n", n_run);
	return n_failed ? 1 : 0;
}
