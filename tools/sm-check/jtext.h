/*
 * jtext.h - write a JSON object as text straight into a buffer, for the
 * result records that sm-check writes thousands of times a second: no
 * json_t tree, no formatting through stdio.  The text is what
 * json_line_write() would print for the same record (compact, keys in the
 * order written, reals as with JSON_REAL_PRECISION(15)).
 */
#ifndef SM_CHECK_JTEXT_H
#define SM_CHECK_JTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct jtext {
	char *buf;
	size_t len, cap;
	bool first; /* no member yet in the object being written */
};

/* Empty the buffer (kept allocated for the next record). */
void jt_reset(struct jtext *j);
void jt_free(struct jtext *j);

void jt_raw_newline(struct jtext *j);       /* "\n", to end the line */
void jt_open(struct jtext *j);              /* "{" */
void jt_close(struct jtext *j);             /* "}" */
void jt_key(struct jtext *j, const char *k); /* [","] "k": (k plain ASCII) */
/* Arrays: "[" and "]"; jt_elem before each element (the "," between). */
void jt_arr_open(struct jtext *j);
void jt_arr_close(struct jtext *j);
void jt_elem(struct jtext *j);
/* A value given as JSON text, written as it is. */
void jt_raw(struct jtext *j, const char *json);
void jt_null(struct jtext *j);
void jt_bool(struct jtext *j, bool v);
void jt_int(struct jtext *j, int64_t v);
/* A string, escaped; invalid UTF-8 becomes U+FFFD.  NULL or "" is null
 * when empty_is_null. */
void jt_str(struct jtext *j, const char *s, bool empty_is_null);
/* Microseconds as milliseconds: 20136 -> 20.136, 12000 -> 12.0. */
void jt_ms(struct jtext *j, int64_t us);
/* Any jansson value (labels). */
void jt_json(struct jtext *j, const json_t *v);

/* Shorthands: "k": value. */
void jt_kstr(struct jtext *j, const char *k, const char *s, bool empty_is_null);
void jt_kint(struct jtext *j, const char *k, int64_t v);

#endif
