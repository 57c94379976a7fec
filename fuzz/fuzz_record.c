/*
 * fuzz_record - target and result records as they come off the wire
 * (lib/record.c): target_from_json either refuses a line or gives a target
 * whose encoding decodes again to the same encoding, one line that every
 * program reads back (what sm-schedule --check accepts, sm-check takes);
 * result_validate and status ranges on anything.
 */
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], err2[256];
	json_t *obj = json_line_parse((const char *)data, size, err, sizeof err);
	struct target *t, *t2;
	json_t *enc, *enc2, *back;
	char *line;

	if (obj == NULL)
		return 0;
	(void)result_validate(obj, err, sizeof err);
	{
		json_t *es = json_object_get(obj, "expect_status"), *x;
		struct status_range sr;
		size_t i;

		if (json_is_array(es))
			json_array_foreach(es, i, x)
				if (status_range_parse(x, &sr) == 0)
					FUZZ_ASSERT(sr.lo >= 100 && sr.lo <= sr.hi &&
					            sr.hi <= 599, "range %d-%d",
					            sr.lo, sr.hi);
	}
	t = target_from_json(obj, err, sizeof err);
	if (t == NULL) {
		/* Any bytes may be in it (a key quoted): diag cleans. */
		FUZZ_ASSERT(err[0] != '\0', "no reason");
		json_decref(obj);
		return 0;
	}
	FUZZ_ASSERT(url_check(t->url, &(const char *){ NULL }) == 0,
	            "accepted url %s fails url_check", t->url);
	if (json_object_get(obj, "target") == NULL) {
		char *r = url_redact_new(t->url);

		FUZZ_ASSERT(strcmp(r, t->target) == 0, "unnamed target %s",
		            t->target);
		free(r);
	}
	enc = target_to_json(t);
	FUZZ_ASSERT(enc != NULL, "cannot encode");
	/* Over the wire as the programs write it, and back. */
	line = json_dumps(enc, JSON_COMPACT);
	FUZZ_ASSERT(line != NULL, "cannot dump");
	back = json_line_parse(line, strlen(line), err2, sizeof err2);
	FUZZ_ASSERT(back != NULL, "own line refused: %s: %s", err2, line);
	t2 = target_from_json(back, err2, sizeof err2);
	FUZZ_ASSERT(t2 != NULL, "own record refused: %s: %s", err2, line);
	enc2 = target_to_json(t2);
	FUZZ_ASSERT(json_equal(enc, enc2), "round trip differs: %s", line);
	FUZZ_ASSERT(status_expected(t, 200) == status_expected(t2, 200) &&
	            status_expected(t, 599) == status_expected(t2, 599),
	            "expect_status differs");
	json_decref(enc2);
	json_decref(back);
	free(line);
	json_decref(enc);
	target_free(&t2);
	target_free(&t);
	json_decref(obj);
	return 0;
}
