/*
 * fuzz_event - sm-notify's fast path (tools/sm-notify/fastev.c) against
 * the reference, json_line_parse and event_validate: fast_event may only
 * answer "valid" for a line they accept, and what it hands on (the id, the
 * kind, the raw labels object, whether kafka is there) must be what
 * jansson reads in that line.  And the webhook body cut from the line's
 * bytes (rawbody.c) must be the event without its kafka member.
 */
#include "fuzz.h"
#include "../tools/sm-notify/notify.h"

static void
check_fast(const json_t *ev, const struct fast_ev *f, const char *line)
{
	const char *id = json_string_value(json_object_get(ev, "id"));
	const char *kind = json_string_value(json_object_get(ev, "event"));
	const json_t *labels = json_object_get(ev, "labels");

	FUZZ_ASSERT(id != NULL && f->id_len == strlen(id) &&
	            memcmp(f->id, id, f->id_len) == 0, "id differs: %s", line);
	FUZZ_ASSERT(kind != NULL && f->kind_bit == event_bit(kind),
	            "kind differs: %s", line);
	FUZZ_ASSERT(f->has_kafka == json_is_object(json_object_get(ev, "kafka")),
	            "kafka differs: %s", line);
	if (f->labels == NULL) {
		FUZZ_ASSERT(labels == NULL || json_is_null(labels),
		            "labels missed: %s", line);
	} else {
		json_t *raw = json_loadb(f->labels, f->labels_len,
		                         JSON_DECODE_ANY, NULL);

		FUZZ_ASSERT(raw != NULL && json_equal(raw, labels),
		            "labels differ: %s", line);
		json_decref(raw);
	}
}

static void
check_body(const json_t *ev, const char *line, size_t size)
{
	size_t off, len;
	json_t *body, *want;

	if (!raw_without_member(line, size, "kafka", &off, &len))
		return; /* no plain "kafka": sm-notify encodes the tree */
	FUZZ_ASSERT(off + len <= size, "cut past the end: %s", line);
	{
		char *cut = malloc(size - len + 1);

		memcpy(cut, line, off);
		memcpy(cut + off, line + off + len, size - off - len);
		cut[size - len] = '\0';
		body = json_loadb(cut, size - len, 0, NULL);
		FUZZ_ASSERT(body != NULL, "the body is not JSON: %s -> %s",
		            line, cut);
		free(cut);
	}
	want = json_deep_copy(ev);
	json_object_del(want, "kafka");
	FUZZ_ASSERT(json_equal(body, want), "the body is not the event "
	            "without kafka: %s", line);
	json_decref(want);
	json_decref(body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = fuzz_str(data, size), err[256];
	struct fast_ev f;
	json_t *ev;
	bool fast;

	memset(&f, 0, sizeof f);
	fast = fast_event(line, size, &f);
	ev = json_line_parse(line, size, err, sizeof err);
	if (fast) {
		FUZZ_ASSERT(ev != NULL, "fast path took what jansson refuses "
		            "(%s): %s", err, line);
		FUZZ_ASSERT(event_validate(ev, err, sizeof err) == 0,
		            "fast path took an invalid event (%s): %s", err,
		            line);
		check_fast(ev, &f, line);
		if (f.has_kafka)
			check_body(ev, line, size);
	}
	json_decref(ev);
	free(line);
	return 0;
}
