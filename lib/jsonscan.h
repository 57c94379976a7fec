/*
 * jsonscan.h - a one-pass check that a line is a JSON object, and where
 * some of its fields are, without building a tree.
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
#include <stdint.h>

enum jscan_type {
	JV_NONE = 0,  /* field absent */
	JV_STRING,    /* span is the raw text between the quotes, no escapes */
	JV_OTHER,     /* span is the raw JSON text of a number, true or null */
	JV_FALSE,
	JV_COMPLEX,   /* an escaped string (span: between the quotes), an
	                 object or an array (span: the raw text) */
	/* jscan_fields tells these apart where jscan_object says
	 * JV_OTHER or JV_COMPLEX: */
	JV_ESCAPED,   /* span is the raw text between the quotes, escapes in */
	JV_NUMBER,    /* span is the number's text */
	JV_TRUE,
	JV_NULL,
	JV_OBJECT,    /* span is the raw text, braces included */
	JV_ARRAY,
};

struct jscan_field {
	const char *name;       /* in: the field to find */
	const char *parent;     /* in: NULL for a top-level field, else the
	                           top-level object that holds it */
	enum jscan_type type;   /* out */
	const char *val;        /* out: see enum jscan_type */
	size_t len;
	size_t members;         /* out: JV_OBJECT's member count */
	bool has_number;        /* out: a number somewhere in JV_OBJECT or
	                           JV_ARRAY */
};

enum jscan_result {
	JSCAN_OBJECT,   /* certainly a valid JSON object */
	JSCAN_UNSURE,   /* ask jansson (the grammar may still be fine) */
	JSCAN_INVALID,  /* certainly not valid JSON: jansson refuses it too
	                   (callers may treat it as JSCAN_UNSURE) */
};

/* Scan s[0..len) and fill the two top-level fields (a name may be NULL:
 * not wanted), with the coarse types JV_STRING, JV_OTHER, JV_FALSE and
 * JV_COMPLEX.  Not thread-safe: one scratch buffer for keys is kept
 * between calls. */
enum jscan_result jscan_object(const char *s, size_t len,
                               struct jscan_field *a, struct jscan_field *b);

/* Scan s[0..len) and fill fields[0..n), each with its exact type (never
 * JV_OTHER or JV_COMPLEX).  Not thread-safe, as jscan_object. */
enum jscan_result jscan_fields(const char *s, size_t len,
                               struct jscan_field *fields, size_t n);

#define JSCAN_MAX_FIELDS 64

/* What jscan_fields works out from the wanted names alone (their lengths,
 * a mask of them, the parents), for a caller that scans many lines for
 * the same names: worked out once, it costs nothing per line. */
struct jscan_names {
	size_t n;
	const char *name[JSCAN_MAX_FIELDS];
	size_t name_len[JSCAN_MAX_FIELDS];
	int parent_of[JSCAN_MAX_FIELDS]; /* index in parents, -1: top */
	uint64_t top_names;     /* bit key_bit(name) of each top-level name */
	uint64_t inner_names;   /* the same for names with a parent */
	const char *parents[JSCAN_MAX_FIELDS]; /* each parent once */
	size_t parents_len[JSCAN_MAX_FIELDS], nparents;
};

/* The names of fields[0..n) (only .name and .parent are read; they must
 * outlive nm). */
void jscan_names_init(struct jscan_names *nm, const struct jscan_field *fields,
                      size_t n);
/* jscan_fields for the names of nm: fields[i] is filled for the i-th
 * (its .name and .parent are not read, and need not be set). */
enum jscan_result jscan_fields_named(const char *s, size_t len,
                                     struct jscan_field *fields,
                                     const struct jscan_names *nm);
/* The elements of an array that jscan_fields found (s[0..len), the
 * JV_ARRAY span of a line it called JSCAN_OBJECT), one per call from *pos
 * (0 at first): 1 with fields filled from the next element, an object, as
 * jscan_fields_named fills them from a line; 0 at the end of the array;
 * -1 when the element is not an object, or the scan is unsure of it (a
 * key with escapes). */
int jscan_array_next(const char *s, size_t len, size_t *pos,
                     struct jscan_field *fields,
                     const struct jscan_names *nm);
/* Whether an array or an object that jscan_fields found (its JV_ARRAY or
 * JV_OBJECT span) holds strings only (or nothing): an array's elements,
 * an object's values. */
bool jscan_strings_only(const char *s, size_t len);

#endif
