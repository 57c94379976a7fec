/* jsonscan.c - is this line certainly a JSON object, and where are some
 * of its fields?  (See jsonscan.h.) */
#include <string.h>

#include "jsonscan.h"
#include "sm.h"

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct key {
	const unsigned char *p;
	size_t len;
};

/* Keys of the objects being scanned, innermost last (for duplicates). */
static struct key *keys;
static size_t n_keys, cap_keys;

struct scan {
	const unsigned char *p, *end;
	int depth;
	struct jscan_field *f;
	size_t n;
	const struct jscan_names *nm; /* the wanted names' lengths and masks */
	size_t hint;            /* where to start looking for the next key */
	unsigned long numbers;  /* numbers scanned so far */
	size_t members;         /* of the object that ended last */
	bool too_deep;          /* past MAX_DEPTH: jansson decides */
};

/* Bytes that a string holds as they are: printable ASCII but '"' and
 * '\\'.  The loop in string() skips runs of them at once. */
static const unsigned char plain[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
	R16(0), R16(0),                 /* 0x00-0x1f: control */
	1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x20: '"' */
	R16(1), R16(1),
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* 0x5c: '\\' */
	R16(1), R16(1),
	R16(0), R16(0), R16(0), R16(0), /* 0x80-0xff: UTF-8, checked */
	R16(0), R16(0), R16(0), R16(0),
#undef R16
};

static void
ws(struct scan *sc)
{
	const unsigned char *p = sc->p, *end = sc->end;

	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	sc->p = p;
}

/* Past the plain bytes from p: in a local pointer, four at a time (the
 * bytes read could alias sc->p, so a loop on sc->p would store it each
 * time round). */
static inline const unsigned char *
plain_run(const unsigned char *p, const unsigned char *end)
{
	while (end - p >= 4 && (plain[p[0]] & plain[p[1]] & plain[p[2]] &
	                        plain[p[3]]))
		p += 4;
	while (p < end && plain[*p])
		p++;
	return p;
}

/* One UTF-8 sequence of 2-4 bytes at p (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF); its length or 0. */
static size_t
utf8_seq(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* A string at the opening quote.  1 valid, 0 invalid, -1 unsure. */
static int
string(struct scan *sc, const unsigned char **start, size_t *len,
       bool *escaped)
{
	const unsigned char *s = ++sc->p;
	int sure = 1;

	*escaped = false;
	while (sc->p < sc->end) {
		unsigned char c;

		sc->p = plain_run(sc->p, sc->end);
		if (sc->p >= sc->end)
			break;
		c = *sc->p;

		if (c == '"') {
			*start = s;
			*len = (size_t)(sc->p - s);
			sc->p++;
			return sure;
		}
		if (c == '\\') {
			*escaped = true;
			if (++sc->p >= sc->end)
				return 0;
			switch (*sc->p) {
			case '"': case '\\': case '/': case 'b': case 'f':
			case 'n': case 'r': case 't':
				sc->p++;
				break;
			case 'u': {
				int i, v = 0;

				if (sc->end - sc->p < 5)
					return 0;
				for (i = 1; i <= 4; i++) {
					int h = hex_digit(sc->p[i]);

					if (h < 0)
						return 0;
					v = v * 16 + h;
				}
				/* NUL and surrogate pairs: jansson decides. */
				if (v == 0 || (v >= 0xd800 && v <= 0xdfff))
					sure = -1;
				sc->p += 5;
				break;
			}
			default:
				return 0;
			}
			continue;
		}
		if (c < 0x20)
			return 0;
		if (c < 0x80) {
			sc->p++;
			continue;
		}
		{
			size_t n = utf8_seq(sc->p, sc->end);

			if (n == 0)
				return 0;
			sc->p += n;
		}
	}
	return 0;
}

static int
digits(struct scan *sc)
{
	const unsigned char *s = sc->p;

	while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9')
		sc->p++;
	return sc->p > s;
}

/* RFC 8259 number.  1 valid, 0 invalid, -1 unsure: it may be out of range
 * for jansson's json_int_t or double (long, or with an exponent: 1e400). */
static int
number(struct scan *sc)
{
	const unsigned char *s = sc->p;
	bool exponent = false;

	if (*sc->p == '-')
		sc->p++;
	if (sc->p < sc->end && *sc->p == '0')
		sc->p++;
	else if (sc->p < sc->end && *sc->p >= '1' && *sc->p <= '9')
		digits(sc);
	else
		return 0;
	if (sc->p < sc->end && *sc->p == '.') {
		sc->p++;
		if (!digits(sc))
			return 0;
	}
	if (sc->p < sc->end && (*sc->p == 'e' || *sc->p == 'E')) {
		exponent = true;
		sc->p++;
		if (sc->p < sc->end && (*sc->p == '+' || *sc->p == '-'))
			sc->p++;
		if (!digits(sc))
			return 0;
	}
	sc->numbers++;
	return exponent || sc->p - s > 15 ? -1 : 1;
}

static int
literal(struct scan *sc, const char *word, size_t n)
{
	if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0)
		return 0;
	sc->p += n;
	return 1;
}

static int value(struct scan *sc, struct jscan_field *f,
                 const unsigned char *key, size_t klen);

/* Combine "sure" verdicts: invalid wins, then unsure. */
static int
worst(int a, int b)
{
	return a == 0 || b == 0 ? 0 : (a < 0 || b < 0 ? -1 : 1);
}

/* A bit for the key k[0..klen) by its length and its first and last
 * bytes: keys with different bits differ. */
static inline uint64_t
key_bit(const unsigned char *k, size_t klen)
{
	size_t h = klen ? klen * 7 + k[0] * 3 + k[klen - 1] : 0;

	return 1ULL << (h & 63);
}

/* The wanted field named k[0..klen) in the object that is the value of
 * the top-level key that is parent number pi of sc->nm (-1: in the
 * top-level object). */
static struct jscan_field *
wanted(struct scan *sc, int pi, const unsigned char *k, size_t klen)
{
	const struct jscan_names *nm = sc->nm;
	size_t i = sc->hint, j;

	/* Most keys are not wanted, and most of those differ from every
	 * wanted name in length or first or last byte. */
	if (!((pi < 0 ? nm->top_names : nm->inner_names) & key_bit(k, klen)))
		return NULL;
	/* From the hint (the field after the last one found: keys usually
	 * come in the order they are wanted), wrapping by hand: no division
	 * per comparison. */
	for (j = 0; j < sc->n; j++, i++) {
		if (i >= sc->n)
			i = 0;
		if (nm->name_len[i] != klen || nm->parent_of[i] != pi ||
		    memcmp(nm->name[i], k, klen) != 0)
			continue;
		sc->hint = i + 1;
		return &sc->f[i];
	}
	return NULL;
}

/* Which parent of wanted fields parent[0..plen) is, or -1. */
static int
parent_wanted(const struct scan *sc, const unsigned char *parent, size_t plen)
{
	const struct jscan_names *nm = sc->nm;

	for (size_t i = 0; i < nm->nparents; i++)
		if (nm->parents_len[i] == plen &&
		    memcmp(nm->parents[i], parent, plen) == 0)
			return (int)i;
	return -1;
}

/* An object; parent[0..plen) is its key when it is the value of a
 * top-level key (its fields may be wanted), else NULL. */
static int
object(struct scan *sc, const unsigned char *parent, size_t plen)
{
	size_t base = n_keys, i, members = 0;
	uint64_t seen[2] = {0, 0}; /* key_bit()s of the keys so far, two
	                              halves by the key's second byte */
	bool top = sc->depth == 1;
	int inner = sc->depth == 2 && parent != NULL && sc->nm->inner_names
	            ? parent_wanted(sc, parent, plen) : -1;
	int sure = 1, r;

	sc->p++; /* '{' */
	ws(sc);
	if (sc->p < sc->end && *sc->p == '}') {
		sc->p++;
		sc->members = 0;
		return 1;
	}
	for (;;) {
		const unsigned char *k;
		struct jscan_field *f = NULL;
		size_t klen;
		bool esc;

		if (sc->p >= sc->end || *sc->p != '"')
			return 0;
		if ((r = string(sc, &k, &klen, &esc)) == 0)
			return 0;
		sure = worst(sure, r);
		members++;
		if (esc) {
			sure = -1; /* cannot compare escaped keys raw */
		} else {
			uint64_t kb = key_bit(k, klen);
			int half = klen > 1 && (k[1] & 1);

			/* a key whose bit is new is no duplicate */
			if (seen[half] & kb) {
				for (i = base; i < n_keys; i++)
					if (keys[i].len == klen &&
					    (klen == 0 || keys[i].p[0] == k[0]) &&
					    memcmp(keys[i].p, k, klen) == 0)
						return 0; /* duplicate key */
			}
			seen[half] |= kb;
			if (n_keys == cap_keys) {
				cap_keys = cap_keys ? cap_keys * 2 : 64;
				keys = xrealloc(keys, cap_keys * sizeof *keys);
			}
			keys[n_keys].p = k;
			keys[n_keys++].len = klen;
			if (top)
				f = wanted(sc, -1, k, klen);
			else if (inner >= 0)
				f = wanted(sc, inner, k, klen);
		}
		ws(sc);
		if (sc->p >= sc->end || *sc->p != ':')
			return 0;
		sc->p++;
		ws(sc);
		if ((r = value(sc, f, top && !esc ? k : NULL, klen)) == 0)
			return 0;
		sure = worst(sure, r);
		ws(sc);
		if (sc->p >= sc->end)
			return 0;
		if (*sc->p == '}') {
			sc->p++;
			n_keys = base;
			sc->members = members;
			return sure;
		}
		if (*sc->p != ',')
			return 0;
		sc->p++;
		ws(sc);
	}
}

static int
array(struct scan *sc)
{
	int sure = 1, r;

	sc->p++; /* '[' */
	ws(sc);
	if (sc->p < sc->end && *sc->p == ']') {
		sc->p++;
		return 1;
	}
	for (;;) {
		if ((r = value(sc, NULL, NULL, 0)) == 0)
			return 0;
		sure = worst(sure, r);
		ws(sc);
		if (sc->p >= sc->end)
			return 0;
		if (*sc->p == ']') {
			sc->p++;
			return sure;
		}
		if (*sc->p != ',')
			return 0;
		sc->p++;
		ws(sc);
	}
}

/* Any value; f (or NULL) receives where it is.  key[0..klen): the
 * top-level key whose value this is, or NULL. */
static int
value(struct scan *sc, struct jscan_field *f, const unsigned char *key,
      size_t klen)
{
	const unsigned char *start = sc->p;
	unsigned long numbers = sc->numbers;
	enum jscan_type type;
	int r;

	if (sc->p >= sc->end)
		return 0;
	switch (*sc->p) {
	case '{':
	case '[':
		if (++sc->depth > MAX_DEPTH) {
			sc->too_deep = true;
			return -1;
		}
		if (*sc->p == '{') {
			r = object(sc, key, klen);
			type = JV_OBJECT;
		} else {
			r = array(sc);
			type = JV_ARRAY;
		}
		sc->depth--;
		break;
	case '"': {
		const unsigned char *s;
		size_t n;
		bool esc;

		r = string(sc, &s, &n, &esc);
		if (f != NULL && r != 0) {
			f->type = esc ? JV_ESCAPED : JV_STRING;
			f->val = (const char *)s;
			f->len = n;
		}
		return r;
	}
	case 't':
		r = literal(sc, "true", 4);
		type = JV_TRUE;
		break;
	case 'f':
		r = literal(sc, "false", 5);
		type = JV_FALSE;
		break;
	case 'n':
		r = literal(sc, "null", 4);
		type = JV_NULL;
		break;
	default:
		r = number(sc);
		type = JV_NUMBER;
		break;
	}
	if (f != NULL && r != 0) {
		f->type = type;
		f->val = (const char *)start;
		f->len = (size_t)(sc->p - start);
		f->members = type == JV_OBJECT ? sc->members : 0;
		f->has_number = type != JV_NUMBER && sc->numbers > numbers;
	}
	return r;
}

void
jscan_names_init(struct jscan_names *nm, const struct jscan_field *fields,
                 size_t n)
{
	size_t i, j;

	if (n > JSCAN_MAX_FIELDS)
		die(EX_SOFTWARE, "jscan_fields: more than %d fields",
		    JSCAN_MAX_FIELDS);
	nm->n = n;
	nm->top_names = nm->inner_names = 0;
	nm->nparents = 0;
	for (i = 0; i < n; i++) {
		const char *p = fields[i].parent;
		size_t plen = p != NULL ? strlen(p) : 0;

		nm->name[i] = fields[i].name;
		nm->name_len[i] = strlen(fields[i].name);
		nm->parent_of[i] = -1;
		if (p == NULL) {
			nm->top_names |= key_bit((const unsigned char *)
			                         fields[i].name, nm->name_len[i]);
			continue;
		}
		nm->inner_names |= key_bit((const unsigned char *)
		                           fields[i].name, nm->name_len[i]);
		for (j = 0; j < nm->nparents; j++)
			if (nm->parents_len[j] == plen &&
			    memcmp(nm->parents[j], p, plen) == 0)
				break;
		if (j == nm->nparents) {
			nm->parents[j] = p;
			nm->parents_len[j] = plen;
			nm->nparents++;
		}
		nm->parent_of[i] = (int)j;
	}
}

enum jscan_result
jscan_fields(const char *s, size_t len, struct jscan_field *fields, size_t n)
{
	struct jscan_names nm;

	jscan_names_init(&nm, fields, n);
	return jscan_fields_named(s, len, fields, &nm);
}

enum jscan_result
jscan_fields_named(const char *s, size_t len, struct jscan_field *fields,
                   const struct jscan_names *nm)
{
	struct scan sc = {
		.p = (const unsigned char *)s,
		.end = (const unsigned char *)s + len,
		.f = fields,
		.n = nm->n,
		.nm = nm,
	};
	size_t i;
	int r;

	for (i = 0; i < nm->n; i++)
		fields[i].type = JV_NONE;
	n_keys = 0;
	ws(&sc);
	if (sc.p >= sc.end || *sc.p != '{')
		return JSCAN_UNSURE;
	sc.depth = 1;
	r = object(&sc, NULL, 0);
	ws(&sc);
	if (sc.too_deep)
		return JSCAN_UNSURE;
	if (r == 0 || (r == 1 && sc.p != sc.end))
		return JSCAN_INVALID;
	return r == 1 ? JSCAN_OBJECT : JSCAN_UNSURE;
}

int
jscan_array_next(const char *s, size_t len, size_t *pos,
                 struct jscan_field *fields, const struct jscan_names *nm)
{
	struct scan sc = {
		.p = (const unsigned char *)s + *pos,
		.end = (const unsigned char *)s + len,
		.f = fields,
		.n = nm->n,
		.nm = nm,
	};
	int r;

	if (*pos == 0) {
		if (sc.p >= sc.end || *sc.p != '[')
			return -1;
		sc.p++;
	}
	ws(&sc);
	if (sc.p < sc.end && *sc.p == ']') {
		*pos = len;
		return 0;
	}
	if (sc.p >= sc.end || *sc.p != '{')
		return -1;
	for (size_t i = 0; i < nm->n; i++)
		fields[i].type = JV_NONE;
	n_keys = 0;
	sc.depth = 1; /* the element's keys are the ones looked for */
	if ((r = object(&sc, NULL, 0)) != 1 || sc.too_deep)
		return -1;
	ws(&sc);
	/* The array itself was scanned whole: a ',' or the ']' follows. */
	if (sc.p < sc.end && *sc.p == ',')
		sc.p++;
	*pos = (size_t)(sc.p - (const unsigned char *)s);
	return 1;
}

/* Past the string that starts at sc->p (its opening quote): false if
 * there is none.  The span is valid JSON already: inside a string a quote
 * is escaped, so it ends at the first quote not after a backslash. */
static bool
skip_string(struct scan *sc)
{
	if (sc->p >= sc->end || *sc->p++ != '"')
		return false;
	while (sc->p < sc->end && *sc->p != '"')
		sc->p += *sc->p == '\\' ? 2 : 1;
	if (sc->p >= sc->end)
		return false;
	sc->p++;
	return true;
}

bool
jscan_strings_only(const char *s, size_t len)
{
	struct scan sc = {
		.p = (const unsigned char *)s,
		.end = (const unsigned char *)s + len,
	};
	bool object;

	if (sc.p >= sc.end || (*sc.p != '[' && *sc.p != '{'))
		return false;
	object = *sc.p++ == '{';
	for (;;) {
		ws(&sc);
		if (sc.p < sc.end && *sc.p == (object ? '}' : ']'))
			return true;
		if (object) {
			if (!skip_string(&sc))
				return false;
			ws(&sc);
			if (sc.p >= sc.end || *sc.p++ != ':')
				return false;
			ws(&sc);
		}
		if (!skip_string(&sc))
			return false;
		ws(&sc);
		if (sc.p < sc.end && *sc.p == ',')
			sc.p++;
	}
}

/* jscan_fields' exact types as jscan_object's coarse ones. */
static enum jscan_type
coarse(enum jscan_type t)
{
	switch (t) {
	case JV_NUMBER:
	case JV_TRUE:
	case JV_NULL:
		return JV_OTHER;
	case JV_ESCAPED:
	case JV_OBJECT:
	case JV_ARRAY:
		return JV_COMPLEX;
	default:
		return t;
	}
}

enum jscan_result
jscan_object(const char *s, size_t len, struct jscan_field *a,
             struct jscan_field *b)
{
	struct jscan_field f[2];
	size_t n = 0, ia = 2, ib = 2;
	enum jscan_result res;

	if (a->name != NULL) {
		f[n] = (struct jscan_field){ .name = a->name };
		ia = n++;
	}
	if (b->name != NULL) {
		f[n] = (struct jscan_field){ .name = b->name };
		ib = n++;
	}
	res = jscan_fields(s, len, f, n);
	a->type = b->type = JV_NONE;
	if (ia < 2) {
		a->type = coarse(f[ia].type);
		a->val = f[ia].val;
		a->len = f[ia].len;
	}
	if (ib < 2) {
		b->type = coarse(f[ib].type);
		b->val = f[ib].val;
		b->len = f[ib].len;
	}
	return res;
}
