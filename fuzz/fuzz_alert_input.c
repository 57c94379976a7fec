/*
 * fuzz_alert_input - sm-alert's result decoding (tools/sm-alert/input.c)
 * against jansson and result_validate, the reference sm-pg-write uses too:
 * input_decode accepts a line exactly when json_line_parse and
 * result_validate accept it, and
 * whatever it accepts, by its scan or its tree, holds in the fields
 * sm-alert reads what jansson reads there (id, target, probe, times, ok,
 * status (null past 0 to 9999), error kind and text, duration, Kafka
 * coordinates, certificate dates).
 */
#include <math.h>

#include "fuzz.h"
#include "../tools/sm-alert/alert.h"

static bool
span_is(const char *s, size_t n, const json_t *v)
{
	return json_is_string(v) && json_string_length(v) == n &&
	       memcmp(json_string_value(v), s, n) == 0;
}

static int64_t
time_of(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	int64_t ms = 0;

	if (s == NULL || time_parse_ms(s, &ms) < 0)
		return 0;
	return ms;
}

static void
check_error_text(const struct result *r, const json_t *o, const char *line)
{
	const json_t *e = json_object_get(o, "error");
	json_t *dec;
	char *quoted;

	if (r->error == NULL) {
		FUZZ_ASSERT(e == NULL || json_is_null(e), "error missed: %s",
		            line);
		return;
	}
	if (!r->error_escaped) {
		FUZZ_ASSERT(span_is(r->error, r->error_len, e),
		            "error differs: %s", line);
		return;
	}
	/* Still JSON-escaped: decode it as jansson would. */
	quoted = malloc(r->error_len + 3);
	quoted[0] = '"';
	memcpy(quoted + 1, r->error, r->error_len);
	quoted[r->error_len + 1] = '"';
	quoted[r->error_len + 2] = '\0';
	dec = json_loads(quoted, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	FUZZ_ASSERT(dec != NULL && json_equal(dec, e), "escaped error "
	            "differs: %s", line);
	json_decref(dec);
	free(quoted);
}

static void
check_kafka(const struct result *r, const json_t *o, const char *line)
{
	const json_t *k = json_object_get(o, "kafka");

	if (r->kafka == NULL) {
		FUZZ_ASSERT(k == NULL, "kafka missed: %s", line);
		return;
	}
	FUZZ_ASSERT(json_is_object(k), "kafka is not an object: %s", line);
	if (r->kpart < 0)
		return;
	FUZZ_ASSERT(span_is(r->ktopic, r->ktopic_len,
	                    json_object_get(k, "topic")) &&
	            json_integer_value(json_object_get(k, "partition")) ==
	                    r->kpart &&
	            json_integer_value(json_object_get(k, "offset")) == r->koff,
	            "kafka coordinates differ: %s", line);
}

/* A refusal: the reference refuses too, and there is a reason (diag
 * escapes what it quotes when it prints it). */
static void
check_refusal(const char *line, size_t size, const char *why)
{
	char err[256];
	json_t *o = json_line_parse(line, size, err, sizeof err);

	FUZZ_ASSERT(*why, "refused without a reason: %s", line);
	FUZZ_ASSERT(o == NULL || result_validate(o, err, sizeof err) < 0,
	            "refused (%s) what result_validate accepts: %s", why, line);
	json_decref(o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = fuzz_str(data, size), err[256];
	const json_t *tls, *st;
	unsigned char id[16];
	struct result r;
	json_t *tree = NULL, *o;
	enum error_kind kind;
	const char *s;

	memset(&r, 0, sizeof r);
	if (input_decode(line, size, &r, &tree, err, sizeof err) < 0) {
		check_refusal(line, size, err);
		json_decref(tree);
		free(line);
		return 0;
	}
	o = json_line_parse(line, size, err, sizeof err);
	FUZZ_ASSERT(o != NULL, "accepted what jansson refuses (%s): %s", err,
	            line);
	FUZZ_ASSERT(result_validate(o, err, sizeof err) == 0,
	            "accepted what result_validate refuses (%s): %s", err, line);
	s = json_string_value(json_object_get(o, "id"));
	FUZZ_ASSERT(s != NULL && uuid_parse(s, strlen(s), id) &&
	            memcmp(id, r.id, 16) == 0, "id differs: %s", line);
	FUZZ_ASSERT(span_is(r.target, r.target_len, json_object_get(o, "target")) &&
	            r.target_len > 0 && r.target_len <= SM_MAX_TARGET_NAME,
	            "target differs: %s", line);
	FUZZ_ASSERT(json_is_string(json_object_get(o, "url")),
	            "accepted without a url: %s", line);
	FUZZ_ASSERT(span_is(r.probe, r.probe_len, json_object_get(o, "probe")) &&
	            r.probe_len > 0 && r.probe_len <= SM_MAX_PROBE_NAME,
	            "probe differs: %s", line);
	FUZZ_ASSERT(time_of(o, "started_at") == r.started_ms && r.started_ms,
	            "started_at differs: %s", line);
	FUZZ_ASSERT(json_is_boolean(json_object_get(o, "ok")) &&
	            json_is_true(json_object_get(o, "ok")) == r.ok,
	            "ok differs: %s", line);
	st = json_object_get(o, "status");
	FUZZ_ASSERT(json_is_integer(st) && json_integer_value(st) >= 0 &&
	            json_integer_value(st) <= 9999
	            ? json_integer_value(st) == r.status : r.status == -1,
	            "status differs: %s", line);
	s = json_string_value(json_object_get(o, "error_kind"));
	FUZZ_ASSERT(s ? error_kind_parse(s, &kind) == 0 && (int)kind == r.kind
	              : r.kind == 0,
	            "error_kind differs: %s", line);
	check_error_text(&r, o, line);
	FUZZ_ASSERT(json_is_number(json_object_get(o, "duration_ms")) &&
	            json_number_value(json_object_get(o, "duration_ms")) ==
	                    r.duration_ms && r.duration_ms >= 0,
	            "duration_ms differs: %s", line);
	check_kafka(&r, o, line);
	tls = json_object_get(o, "tls");
	FUZZ_ASSERT(time_of(tls, "cert_not_after") == r.cert_na &&
	            time_of(tls, "cert_not_before") == r.cert_nb &&
	            time_of(tls, "chain_not_after") == r.chain_na,
	            "certificate dates differ: %s", line);
	json_decref(o);
	json_decref(tree);
	free(line);
	return 0;
}
