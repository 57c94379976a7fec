/*
 * jsonscan.h - a one-pass check that a line is a JSON object, and where
 * two of its top-level fields are, without building a tree.
 *
 * jansson (json_line_parse) stays the reference: the scan answers "yes,
 * certainly valid" only for input where jansson agrees (RFC 8259 grammar,
 * UTF-8, no duplicate keys, depth at most 2048); anything it cannot be sure
 * of (\u escapes of NUL or surrogates, keys with escapes, long numbers that
 * jansson may find out of range) is "unsure", and the caller asks jansson.
 */
#ifndef SM_JSONSCAN_H
#define SM_JSONSCAN_H

#include <stdbool.h>
#include <stddef.h>

enum jscan_type {
	JV_NONE = 0,  /* field absent */
	JV_STRING,    /* span is the raw text between the quotes, no escapes */
	JV_OTHER,     /* span is the raw JSON text of a number, true or null */
	JV_FALSE,
	JV_COMPLEX,   /* an escaped string, an object or an array */
};

struct jscan_field {
	const char *name;       /* in: the top-level field to find */
	enum jscan_type type;   /* out */
	const char *val;        /* out: see enum jscan_type */
	size_t len;
};

enum jscan_result {
	JSCAN_OBJECT,   /* certainly a valid JSON object */
	JSCAN_UNSURE,   /* ask jansson (the grammar may still be fine) */
};

/* Scan s[0..len) and fill the two fields.  Not thread-safe: one scratch
 * buffer for keys is kept between calls. */
enum jscan_result jscan_object(const char *s, size_t len,
                               struct jscan_field *a, struct jscan_field *b);

#endif
