/*
 * fuzz_jsonscan - lib/jsonscan.c against jansson, the reference
 * (json_line_parse), on every input: when the scan is certain the line is
 * a JSON object jansson accepts it, when it is certain it is not jansson
 * refuses it, and every field the scan finds holds what jansson reads
 * there (type, value, member count, whether numbers are inside, whether
 * an array holds strings only).
 */
#include "fuzz.h"
#include "jsonscan.h"

#define MAX_WANTED 64

static bool
has_number(const json_t *v)
{
	const char *k;
	json_t *x;
	size_t i;

	if (json_is_number(v))
		return true;
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, k, x)
			if (has_number(x))
				return true;
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			if (has_number(x))
				return true;
	}
	return false;
}

/* An array of strings only, or an object of string values (or empty). */
static bool
strings_only(const json_t *a)
{
	const char *k;
	json_t *x;
	size_t i;

	if (json_is_object(a)) {
		json_object_foreach((json_t *)a, k, x)
			if (!json_is_string(x))
				return false;
		return true;
	}
	json_array_foreach(a, i, x)
		if (!json_is_string(x))
			return false;
	return true;
}

/* The JSON text s[0..n) as jansson reads it (any value). */
static json_t *
load_any(const char *s, size_t n)
{
	return json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static void
check_field(const json_t *root, const struct jscan_field *f, const char *in)
{
	const json_t *ref;
	json_t *got = NULL;
	char *quoted;

	if (f->parent == NULL) {
		ref = json_object_get(root, f->name);
	} else {
		const json_t *p = json_object_get(root, f->parent);

		ref = json_is_object(p) ? json_object_get(p, f->name) : NULL;
	}
	if (ref == NULL) {
		FUZZ_ASSERT(f->type == JV_NONE, "%s.%s found, jansson has none",
		            f->parent ? f->parent : "", f->name);
		return;
	}
	switch (f->type) {
	case JV_NONE:
		FUZZ_ASSERT(0, "field %s not found: %s", f->name, in);
		break;
	case JV_STRING:
		FUZZ_ASSERT(json_is_string(ref) &&
		            json_string_length(ref) == f->len &&
		            memcmp(json_string_value(ref), f->val, f->len) == 0,
		            "string %s differs", f->name);
		break;
	case JV_ESCAPED:
		quoted = xmalloc(f->len + 2);
		quoted[0] = '"';
		memcpy(quoted + 1, f->val, f->len);
		quoted[f->len + 1] = '"';
		got = load_any(quoted, f->len + 2);
		free(quoted);
		FUZZ_ASSERT(got != NULL && json_equal(got, ref),
		            "escaped string %s differs", f->name);
		break;
	case JV_NUMBER:
		got = load_any(f->val, f->len);
		FUZZ_ASSERT(json_is_number(ref) && got != NULL &&
		            json_equal(got, ref), "number %s differs", f->name);
		break;
	case JV_TRUE:
		FUZZ_ASSERT(json_is_true(ref), "%s is not true", f->name);
		break;
	case JV_FALSE:
		FUZZ_ASSERT(json_is_false(ref), "%s is not false", f->name);
		break;
	case JV_NULL:
		FUZZ_ASSERT(json_is_null(ref), "%s is not null", f->name);
		break;
	case JV_OBJECT:
	case JV_ARRAY:
		got = load_any(f->val, f->len);
		FUZZ_ASSERT(got != NULL && json_equal(got, ref),
		            "%s differs", f->name);
		FUZZ_ASSERT(f->type == JV_ARRAY ||
		            f->members == json_object_size(ref),
		            "%s: %zu members, jansson %zu", f->name,
		            f->members, json_object_size(ref));
		FUZZ_ASSERT(f->has_number == has_number(ref),
		            "%s: has_number %d", f->name, f->has_number);
		FUZZ_ASSERT(jscan_strings_only(f->val, f->len) ==
		            strings_only(ref),
		            "%s: strings only %d", f->name,
		            jscan_strings_only(f->val, f->len));
		break;
	default:
		FUZZ_ASSERT(0, "%s: type %d from jscan_fields", f->name,
		            f->type);
	}
	json_decref(got);
}

static enum jscan_type
coarse(enum jscan_type t)
{
	switch (t) {
	case JV_NUMBER: case JV_TRUE: case JV_NULL:
		return JV_OTHER;
	case JV_ESCAPED: case JV_OBJECT: case JV_ARRAY:
		return JV_COMPLEX;
	default:
		return t;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fixed[] = {
		"kafka", "ok", "target", "id", "url", "v", "",
	};
	const char *s = (const char *)data;
	struct jscan_field f[MAX_WANTED];
	size_t n = 0, i;
	char err[256], *in = fuzz_str(data, size);
	json_t *root = json_line_parse(s, size, err, sizeof err);
	enum jscan_result r;
	const char *k, *k2;
	json_t *v, *v2;

	memset(f, 0, sizeof f);
	for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		f[n++].name = fixed[i];
	f[n].name = "topic";
	f[n++].parent = "kafka";
	/* The fields jansson found, at the top and one level down. */
	if (root != NULL) {
		json_object_foreach(root, k, v) {
			if (n >= MAX_WANTED)
				break;
			/* Each name once: the scan fills one field per name. */
			for (i = 0; i < n; i++)
				if (f[i].parent == NULL && strcmp(f[i].name, k) == 0)
					break;
			if (i == n)
				f[n++].name = k;
			if (!json_is_object(v))
				continue;
			json_object_foreach(v, k2, v2) {
				if (n >= MAX_WANTED)
					break;
				if (strcmp(k, "kafka") == 0 &&
				    strcmp(k2, "topic") == 0)
					continue;
				f[n].name = k2;
				f[n++].parent = k;
			}
		}
	}
	r = jscan_fields(s, size, f, n);
	if (r == JSCAN_OBJECT) {
		FUZZ_ASSERT(root != NULL, "scan: object; jansson: %s", err);
		for (i = 0; i < n; i++)
			check_field(root, &f[i], in);
	} else if (r == JSCAN_INVALID) {
		FUZZ_ASSERT(root == NULL, "scan: invalid; jansson: an object");
	}
	/* jscan_object: the same verdict, the coarse types. */
	{
		const char *name = "target";
		struct jscan_field a, b = { .name = "ok" }, want[2];

		if (root != NULL && json_object_size(root) > 0)
			name = json_object_iter_key(json_object_iter(root));
		a = (struct jscan_field){ .name = name };
		memset(want, 0, sizeof want);
		want[0].name = name;
		want[1].name = "ok";
		FUZZ_ASSERT(jscan_object(s, size, &a, &b) == r,
		            "jscan_object's verdict differs");
		(void)jscan_fields(s, size, want, 2);
		FUZZ_ASSERT(a.type == coarse(want[0].type) &&
		            b.type == coarse(want[1].type),
		            "jscan_object's types differ");
	}
	json_decref(root);
	free(in);
	return 0;
}
