/*
 * config.c - sm-schedule's input: sites.yaml through libyaml's event API
 * (every node keeps its line:column mark; targets are read one at a time)
 * or NDJSON target records, turned into JSON objects, substituted (${VAR})
 * and validated with lib's target_from_json(), the one validator, field by
 * field and then whole, so that a record accepted here is one sm-check
 * accepts.  Every error is collected and printed at the
 * end, sorted by position, through lib's diagnostics.
 */
#include "config.h"
#include "alerts.h"
#include "recenc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "sched.h"
#include "sm.h"
#include "slo.h"
#include "subst.h"
#include "suggest.h"
#include "ynode.h"

struct cerr {
	struct pos at;
	size_t seq;
	char *msg;
};

struct loader {
	const char *path;
	enum config_format fmt;
	struct cerr *errs;
	size_t nerrs, cap;
	char *re_ok;  /* the last pattern that compiled (many targets share one) */
	struct strbuf enc;      /* the record being encoded (recenc.c) */
	size_t nulls;           /* JSON nulls made from the input so far */
	bool no_targets;        /* "targets: []": worth a warning */
	struct pos no_targets_at;
};

/* One mapping of the input (defaults or a target) on its way to a record.
 * Its keys are fields[] (anything else is refused as it is read), so where
 * each one was written and whether its value was refused are kept by the
 * field's index. */
#define RAWMAP_FIELDS 32
struct rawmap {
	json_t *obj;   /* key -> value */
	struct pos kpos[RAWMAP_FIELDS], vpos[RAWMAP_FIELDS]; /* key, value */
	uint32_t placed; /* fields whose kpos and vpos are set */
	uint32_t failed; /* fields whose value was refused (and removed) */
	struct pos at;  /* the mapping itself */
	bool bad;       /* an error was reported for it */
	bool has_null;  /* a value in it (or in one of its objects) is null */
	json_t *alerts; /* "alerts", normalised by alerts.c, or NULL */
	double slo;     /* "slo", a percentage (slo.c), or 0 */
};

/* How a scalar is read: K_STR and K_DUR keep the text as written, K_BOOL
 * also takes yes/no/on/off, K_MAP is a mapping whose scalar values are
 * strings (headers, labels), K_ANY follows the YAML 1.2 core schema. */
enum kind { K_STR, K_DUR, K_BOOL, K_MAP, K_ANY };

static const struct field {
	const char *name;
	enum kind kind;
	bool ndjson_only;
} fields[] = {
	{"target", K_STR, false},
	{"name", K_STR, false},
	{"url", K_STR, false},
	{"method", K_STR, false},
	{"headers", K_MAP, false},
	{"body", K_STR, false},
	{"timeout", K_DUR, false},
	{"timeout_ms", K_ANY, false},
	{"follow_redirects", K_BOOL, false},
	{"max_redirects", K_ANY, false},
	{"expect_status", K_ANY, false},
	{"regex", K_STR, false},
	{"regex_absent", K_STR, false},
	{"tls_verify", K_BOOL, false},
	{"ca_file", K_STR, false},
	{"max_body_bytes", K_ANY, false},
	{"ip_version", K_ANY, false},
	{"labels", K_MAP, false},
	{"interval", K_DUR, false},
	/* Accepted from NDJSON so that records can be fed back. */
	{"v", K_ANY, true},
	{"scheduled_at", K_STR, true},
};

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))
_Static_assert(NFIELDS <= 32, "a rawmap keeps a bit per field");

/* The index of a field by its name (of either format), or -1. */
static int
field_index(const char *key)
{
	for (size_t i = 0; i < NFIELDS; i++)
		if (key[0] == fields[i].name[0] && !strcmp(fields[i].name, key))
			return (int)i;
	return -1;
}

static void cerr_add(struct loader *L, struct pos at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
cerr_add(struct loader *L, struct pos at, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		die(EX_SOFTWARE, "out of memory");
	va_end(ap);
	if (L->nerrs == L->cap) {
		L->cap = L->cap ? L->cap * 2 : 16;
		L->errs = xrealloc(L->errs, L->cap * sizeof(*L->errs));
	}
	L->errs[L->nerrs].at = at;
	L->errs[L->nerrs].seq = L->nerrs;
	L->errs[L->nerrs].msg = msg;
	L->nerrs++;
}

static int
cerr_cmp(const void *a, const void *b)
{
	const struct cerr *x = a, *y = b;

	if (x->at.line != y->at.line)
		return x->at.line < y->at.line ? -1 : 1;
	if (x->at.col != y->at.col)
		return x->at.col < y->at.col ? -1 : 1;
	if (strcmp(x->msg, y->msg))
		return strcmp(x->msg, y->msg);
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
cerr_clear(struct loader *L)
{
	for (size_t i = 0; i < L->nerrs; i++)
		free(L->errs[i].msg);
	free(L->errs);
	L->errs = NULL;
	L->nerrs = L->cap = 0;
}

/* Through lib's diagnostics, as every message of the program goes. */
static void
cerr_print_all(struct loader *L)
{
	size_t shown = 0;

	if (L->nerrs > 1)
		qsort(L->errs, L->nerrs, sizeof(*L->errs), cerr_cmp);
	for (size_t i = 0; i < L->nerrs; i++) {
		const struct cerr *e = &L->errs[i];

		/* A YAML alias or merge key can make one node fail twice. */
		if (i > 0 && e->at.line == e[-1].at.line &&
		    e->at.col == e[-1].at.col && !strcmp(e->msg, e[-1].msg))
			continue;
		shown++;
		/* warn() cleans the line: no password, no control
		 * characters from a key or value quoted in the message. */
		if (e->at.line)
			warn("%s:%lu:%lu: %s", L->path, e->at.line,
			     e->at.col ? e->at.col : 1, e->msg);
		else
			warn("%s: %s", L->path, e->msg);
	}
	if (shown > 1)
		warn("%s: %zu errors", L->path, shown);
	cerr_clear(L);
}

/* ---- names: lookup and did-you-mean --------------------------------- */

static const struct field *
field_find(const struct loader *L, const char *key)
{
	for (size_t i = 0; i < NFIELDS; i++)
		if (!strcmp(fields[i].name, key) &&
		    (L->fmt == CONFIG_NDJSON || !fields[i].ndjson_only))
			return &fields[i];
	return NULL;
}

static void
unknown_key(struct loader *L, struct pos at, const char *key,
            const char *const *names, size_t n)
{
	const char *s = suggest(key, names, n);

	if (s)
		cerr_add(L, at, "unknown key \"%s\" (did you mean \"%s\"?)", key,
		         s);
	else
		cerr_add(L, at, "unknown key \"%s\"", key);
}

static void
unknown_field(struct loader *L, struct pos at, const char *key)
{
	const char *names[NFIELDS];
	size_t n = 0;

	for (size_t i = 0; i < NFIELDS; i++)
		if (L->fmt == CONFIG_NDJSON || !fields[i].ndjson_only)
			names[n++] = fields[i].name;
	unknown_key(L, at, key, names, n);
}

static json_t *
string_json(struct loader *L, struct pos at, const char *s, size_t len)
{
	json_t *v = json_stringn(s, len);

	if (!v)
		cerr_add(L, at, "string is not valid UTF-8");
	return v;
}

/* ---- YAML: events into small trees ------------------------------------ */

/*
 * libyaml's document API builds the whole file as one tree before anything
 * can be checked: nothing bounds the nesting before the parser has spent
 * its time on it, and 100,000 targets cost hundreds of MiB of nodes.  Here
 * the parser's events are read one at a time: nesting deeper than
 * CONFIG_MAX_DEPTH stops the load at the event that opens it, and each
 * target becomes a small tree of its own (struct ynode) that is checked,
 * encoded and freed before the next one is read.  Only anchored nodes
 * outlive their target, since an alias may name them later.  An anchor is
 * defined once its node is complete, so aliases cannot make a cycle.
 */


/* The position of bytes already handed to libyaml, whose reader reports
 * an error (invalid UTF-8, a control character, a NUL) by byte offset
 * only.  libyaml keeps less than TRACK_WIN / 2 bytes undecoded. */
#define TRACK_WIN 65536

struct linecol {
	unsigned long line, col; /* 0-based, as libyaml's marks */
	unsigned char b1, b2;    /* the two bytes before */
};

struct track {
	unsigned char buf[TRACK_WIN];
	size_t len;
	uint64_t off;      /* the offset of buf[0] */
	struct linecol at; /* the position of buf[0] */
};

struct yload {
	struct loader *L;
	yaml_parser_t parser;
	FILE *fp;
	int depth;        /* collections open */
	bool failed;      /* an error stopped the load */
	json_t *anchors;  /* name -> index in av */
	struct ynode **av;
	size_t an, acap;
	size_t aliased;   /* nodes reached through aliases so far */
	uint64_t total;   /* bytes read */
	int read_errno;
	bool too_big;
	struct track tr;
};

static struct pos
mark_pos(yaml_mark_t m)
{
	struct pos p = {m.line + 1, m.column + 1};

	return p;
}

/* libyaml's line breaks: LF, CR, CR LF, NEL, LS, PS; columns count
 * characters. */
static void
linecol_advance(struct linecol *p, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = b[i];
		bool brk = (c == '\n' && p->b1 != '\r') || c == '\r' ||
		           (c == 0x85 && p->b1 == 0xC2) ||
		           ((c == 0xA8 || c == 0xA9) && p->b1 == 0x80 &&
		            p->b2 == 0xE2);

		if (brk) {
			p->line++;
			p->col = 0;
		} else if (c != '\n' && (c & 0xC0) != 0x80) {
			p->col++;
		}
		p->b2 = p->b1;
		p->b1 = c;
	}
}

static void
track_add(struct track *tr, const unsigned char *b, size_t n)
{
	if (n > TRACK_WIN / 2) { /* (libyaml asks for 16 KiB at most) */
		track_add(tr, b, n - TRACK_WIN / 2);
		b += n - TRACK_WIN / 2;
		n = TRACK_WIN / 2;
	}
	if (tr->len + n > TRACK_WIN) {
		size_t drop = tr->len + n - TRACK_WIN;

		linecol_advance(&tr->at, tr->buf, drop);
		memmove(tr->buf, tr->buf + drop, tr->len - drop);
		tr->len -= drop;
		tr->off += drop;
	}
	memcpy(tr->buf + tr->len, b, n);
	tr->len += n;
}

static struct pos
track_pos(const struct track *tr, uint64_t off)
{
	struct linecol p = tr->at;
	struct pos at;

	if (off < tr->off)
		off = tr->off;
	if (off > tr->off + tr->len)
		off = tr->off + tr->len;
	linecol_advance(&p, tr->buf, (size_t)(off - tr->off));
	at.line = p.line + 1;
	at.col = p.col + 1;
	return at;
}

static int
yl_read(void *data, unsigned char *buf, size_t size, size_t *size_read)
{
	struct yload *Y = data;
	size_t n = fread(buf, 1, size, Y->fp);

	if (n == 0 && ferror(Y->fp)) {
		Y->read_errno = errno ? errno : EIO;
		return 0;
	}
	if (Y->total + n > CONFIG_MAX_BYTES) {
		track_add(&Y->tr, buf, (size_t)(CONFIG_MAX_BYTES - Y->total));
		Y->total = CONFIG_MAX_BYTES;
		Y->too_big = true;
		return 0;
	}
	track_add(&Y->tr, buf, n);
	Y->total += n;
	*size_read = n;
	return 1;
}

static void
yl_parse_error(struct yload *Y)
{
	const yaml_parser_t *p = &Y->parser;
	struct loader *L = Y->L;

	if (p->error == YAML_MEMORY_ERROR)
		die(EX_SOFTWARE, "out of memory");
	if (Y->too_big)
		cerr_add(L, track_pos(&Y->tr, Y->total), "the file is larger "
		         "than %d MiB", CONFIG_MAX_BYTES >> 20);
	else if (Y->read_errno)
		cerr_add(L, track_pos(&Y->tr, Y->total), "read error: %s",
		         strerror(Y->read_errno));
	else if (p->error == YAML_READER_ERROR && p->problem_value == -1)
		cerr_add(L, track_pos(&Y->tr, p->problem_offset), "%s",
		         p->problem ? p->problem : "read error");
	else if (p->error == YAML_READER_ERROR)
		cerr_add(L, track_pos(&Y->tr, p->problem_offset),
		         p->problem_value > 0xFF || strstr(p->problem, "control")
		             ? "%s (U+%04X)" : "%s (byte 0x%02X)",
		         p->problem ? p->problem : "read error",
		         (unsigned)p->problem_value);
	else if (p->context)
		cerr_add(L, mark_pos(p->problem_mark), "%s %s (from line "
		         "%zu)", p->problem, p->context,
		         p->context_mark.line + 1);
	else
		cerr_add(L, mark_pos(p->problem_mark), "%s",
		         p->problem ? p->problem : "YAML syntax error");
}

/* The next event, with the nesting checked.  false after an error (it was
 * reported and the load stops). */
static bool
yl_next(struct yload *Y, yaml_event_t *ev)
{
	if (Y->failed)
		return false;
	if (!yaml_parser_parse(&Y->parser, ev)) {
		yl_parse_error(Y);
		Y->failed = true;
		return false;
	}
	switch (ev->type) {
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (++Y->depth > CONFIG_MAX_DEPTH) {
			cerr_add(Y->L, mark_pos(ev->start_mark), "nested more "
			         "than %d levels deep", CONFIG_MAX_DEPTH);
			yaml_event_delete(ev);
			Y->failed = true;
			return false;
		}
		break;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		Y->depth--;
		break;
	default:
		break;
	}
	return true;
}

static struct ynode *
ynode_new(enum ytype type, yaml_mark_t m)
{
	struct ynode *n = xcalloc(1, sizeof(*n));

	n->type = type;
	n->at = mark_pos(m);
	n->refs = 1;
	n->size = 1;
	n->height = 1;
	return n;
}

static void
ynode_unref(struct ynode *n)
{
	if (!n || --n->refs)
		return;
	for (size_t i = 0; i < n->n; i++)
		ynode_unref(n->kids[i].n);
	free(n->kids);
	free(n->s);
	free(n);
}

static void
ynode_add(struct ynode *n, struct yref c)
{
	if (n->n == n->cap) {
		n->cap = n->cap ? n->cap * 2 : 4;
		n->kids = xrealloc(n->kids, n->cap * sizeof(*n->kids));
	}
	n->kids[n->n++] = c;
	n->size = n->size + c.n->size < n->size ? SIZE_MAX
	                                         : n->size + c.n->size;
	if (c.n->height + 1 > n->height)
		n->height = c.n->height + 1;
}

/* The core schema's tags (YAML 1.2, 10.3) by their letter; '!' is the
 * non-specific tag of a quoted scalar; -1: a tag sitemon does not know. */
static int
core_tag(const char *tag)
{
	static const char pre[] = "tag:yaml.org,2002:";
	static const struct {
		const char *name;
		char letter;
	} tags[] = {{"str", 's'}, {"int", 'i'}, {"float", 'f'}, {"bool", 'b'},
	            {"null", 'n'}, {"map", 'M'}, {"seq", 'S'},
	            {"merge", 'm'}};

	if (!tag)
		return 0;
	if (!strcmp(tag, "!"))
		return 's';
	if (strncmp(tag, pre, sizeof(pre) - 1))
		return -1;
	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
		if (!strcmp(tag + sizeof(pre) - 1, tags[i].name))
			return tags[i].letter;
	return -1;
}

static void
anchor_set(struct yload *Y, const char *name, struct ynode *n)
{
	json_t *ix = json_object_get(Y->anchors, name);

	n->refs++;
	if (ix) {
		size_t i = (size_t)json_integer_value(ix);

		ynode_unref(Y->av[i]);
		Y->av[i] = n;
		return;
	}
	if (Y->an == Y->acap) {
		Y->acap = Y->acap ? Y->acap * 2 : 16;
		Y->av = xrealloc(Y->av, Y->acap * sizeof(*Y->av));
	}
	json_object_set_new(Y->anchors, name, json_integer((json_int_t)Y->an));
	Y->av[Y->an++] = n;
}

static struct ynode *
bad_node(yaml_mark_t m)
{
	struct ynode *n = ynode_new(Y_SCALAR, m);

	n->bad = true;
	n->s = xstrdup("");
	return n;
}

static struct yref
alias_ref(struct yload *Y, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	json_t *ix = json_object_get(Y->anchors, name);
	struct yref r = {NULL, true};

	if (!ix) {
		cerr_add(Y->L, mark_pos(ev->start_mark), "alias \"*%s\" names "
		         "no anchor defined before it", name);
		r.n = bad_node(ev->start_mark);
		return r;
	}
	r.n = Y->av[json_integer_value(ix)];
	if (Y->depth + r.n->height > CONFIG_MAX_DEPTH) {
		cerr_add(Y->L, mark_pos(ev->start_mark), "nested more than %d "
		         "levels deep once alias \"*%s\" is expanded",
		         CONFIG_MAX_DEPTH, name);
		r.n = bad_node(ev->start_mark);
		return r;
	}
	/* Aliases of aliases multiply (a "billion laughs"). */
	Y->aliased += r.n->size;
	if (Y->aliased > CONFIG_MAX_ALIASED || r.n->size > CONFIG_MAX_ALIASED) {
		cerr_add(Y->L, mark_pos(ev->start_mark), "more than %d values "
		         "once aliases are expanded", CONFIG_MAX_ALIASED);
		Y->failed = true;
		return (struct yref){NULL, false};
	}
	r.n->refs++;
	return r;
}

/* The node that starts with *ev (taken over), built whole.  {NULL} when
 * the load stopped (reported). */
static struct yref
build_node(struct yload *Y, yaml_event_t *ev)
{
	struct yref r = {NULL, false};
	const char *anchor = NULL, *tagname = NULL;
	struct ynode *n;
	int tag;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		r = alias_ref(Y, ev);
		yaml_event_delete(ev);
		return r;
	case YAML_SCALAR_EVENT:
		n = ynode_new(Y_SCALAR, ev->start_mark);
		n->len = ev->data.scalar.length;
		if (ev->data.scalar.value[n->len] == '\0') {
			/* libyaml's own copy, NUL-terminated: taken over. */
			n->s = (char *)ev->data.scalar.value;
			ev->data.scalar.value = NULL;
		} else {
			n->s = xmalloc(n->len + 1);
			memcpy(n->s, ev->data.scalar.value, n->len);
			n->s[n->len] = '\0';
		}
		anchor = (const char *)ev->data.scalar.anchor;
		tagname = (const char *)ev->data.scalar.tag;
		tag = core_tag(tagname);
		n->plain = !tagname &&
		           ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		n->merge = (n->plain && !strcmp(n->s, "<<")) || tag == 'm';
		if (tag == 'M' || tag == 'S' || tag < 0) {
			cerr_add(Y->L, n->at, "tag \"%s\" is not one sitemon "
			         "reads (it reads !!str, !!int, !!float, !!bool, "
			         "!!null)", tagname);
			n->bad = true;
		} else if (tag != 'm') {
			n->tag = (char)tag;
		}
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
		yaml_event_type_t end = seq ? YAML_SEQUENCE_END_EVENT
		                            : YAML_MAPPING_END_EVENT;

		n = ynode_new(seq ? Y_SEQ : Y_MAP, ev->start_mark);
		anchor = (const char *)(seq ? ev->data.sequence_start.anchor
		                            : ev->data.mapping_start.anchor);
		tagname = (const char *)(seq ? ev->data.sequence_start.tag
		                             : ev->data.mapping_start.tag);
		tag = core_tag(tagname);
		if (tag && tag != (seq ? 'S' : 'M')) {
			cerr_add(Y->L, n->at, "tag \"%s\" does not fit a %s",
			         tagname, seq ? "sequence" : "mapping");
			n->bad = true;
		}
		for (;;) {
			yaml_event_t cev;
			struct yref c;

			if (!yl_next(Y, &cev)) {
				ynode_unref(n);
				yaml_event_delete(ev);
				return r;
			}
			if (cev.type == end) {
				yaml_event_delete(&cev);
				break;
			}
			if (!(c = build_node(Y, &cev)).n) {
				ynode_unref(n);
				yaml_event_delete(ev);
				return r;
			}
			ynode_add(n, c);
		}
		break;
	}
	default: /* (the parser's grammar rules the others out) */
		cerr_add(Y->L, mark_pos(ev->start_mark), "unexpected YAML event");
		Y->failed = true;
		yaml_event_delete(ev);
		return r;
	}
	if (anchor)
		anchor_set(Y, anchor, n);
	yaml_event_delete(ev);
	r.n = n;
	return r;
}

/* ---- YAML scalars into JSON values -------------------------------------- */

static bool
is_null_text(const char *s, size_t len)
{
	return len == 0 || !strcmp(s, "~") || !strcmp(s, "null") ||
	       !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static bool
text_in(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (!strcmp(s, *set))
			return true;
	return false;
}

/* An integer of the YAML 1.2 core schema: [-+]?[0-9]+, 0o[0-7]+ or
 * 0x[0-9a-fA-F]+.  1: it is one (*out set, or *range when it does not fit
 * 64 bits), 0: it is not. */
static int
core_int(const char *s, long long *out, bool *range)
{
	const char *digits = "0123456789", *p = s;
	int base = 10;
	unsigned long long v;
	char *end;

	*range = false;
	if (s[0] == '0' && s[1] == 'o') {
		base = 8;
		digits = "01234567";
		p = s + 2;
	} else if (s[0] == '0' && s[1] == 'x') {
		base = 16;
		digits = "0123456789abcdefABCDEF";
		p = s + 2;
	} else if (*p == '-' || *p == '+') {
		p++;
	}
	if (!*p || strspn(p, digits) != strlen(p))
		return 0;
	errno = 0;
	if (base == 10) {
		*out = strtoll(s, &end, 10);
		*range = errno == ERANGE;
		return 1;
	}
	v = strtoull(p, &end, base);
	if (errno == ERANGE || v > (unsigned long long)LLONG_MAX)
		*range = true;
	else
		*out = (long long)v;
	return 1;
}

/* A float of the core schema; 1 with *out set, 0 if it is not one, -1 if
 * it is infinite or not a number (JSON has neither). */
static int
core_float(const char *s, double *out)
{
	const char *p = s + (*s == '-' || *s == '+');
	static const char *const special[] = {".inf", ".Inf", ".INF", ".nan",
	                                      ".NaN", ".NAN", NULL};
	size_t i = 0, digits = 0;
	char *end;

	if (text_in(p, special))
		return (p == s || p[1] == 'i' || p[1] == 'I') ? -1 : 0;
	for (; isdigit((unsigned char)p[i]); i++)
		digits++;
	if (p[i] == '.')
		for (i++; isdigit((unsigned char)p[i]); i++)
			digits++;
	if (!digits)
		return 0;
	if (p[i] == 'e' || p[i] == 'E') {
		i++;
		i += p[i] == '-' || p[i] == '+';
		if (!isdigit((unsigned char)p[i]))
			return 0;
		while (isdigit((unsigned char)p[i]))
			i++;
	}
	if (p[i])
		return 0;
	errno = 0;
	*out = strtod(s, &end);
	return errno == ERANGE && (*out > 1 || *out < -1) ? -1 : 1;
}

/* A plain scalar by the YAML 1.2 core schema (and yes/no for booleans),
 * or a tagged one by its tag.  NULL after an error (reported). */
static json_t *
resolve_scalar(struct loader *L, struct pos at, const char *s, size_t len,
               enum kind kind, char tag)
{
	static const char *const yes[] = {"true", "True", "TRUE", NULL};
	static const char *const no[] = {"false", "False", "FALSE", NULL};
	static const char *const yes11[] = {"yes", "Yes", "YES", "on", "On",
	                                    "ON", NULL};
	static const char *const no11[] = {"no", "No", "NO", "off", "Off",
	                                   "OFF", NULL};
	static const char *const what[] = {['i'] = "an integer",
	                                   ['f'] = "a number",
	                                   ['b'] = "true or false",
	                                   ['n'] = "null"};
	bool range, is_text = strlen(s) == len;
	long long n;
	double d;
	int f = 0;

	if (is_text && (!tag || tag == 'b') &&
	    (text_in(s, yes) || (kind == K_BOOL && !tag && text_in(s, yes11))))
		return json_true();
	if (is_text && (!tag || tag == 'b') &&
	    (text_in(s, no) || (kind == K_BOOL && !tag && text_in(s, no11))))
		return json_false();
	if (is_text && tag == 'n' && is_null_text(s, len)) {
		L->nulls++;
		return json_null();
	}
	if (is_text && (!tag || tag == 'i' || tag == 'f') &&
	    core_int(s, &n, &range)) {
		if (range) {
			cerr_add(L, at, "%s is too large for an integer", s);
			return NULL;
		}
		return tag == 'f' ? json_real((double)n) : json_integer(n);
	}
	if (is_text && (!tag || tag == 'f') && (f = core_float(s, &d)) > 0)
		return json_real(d);
	if (f < 0) {
		cerr_add(L, at, "%s is not a finite number", s);
		return NULL;
	}
	if (tag) {
		cerr_add(L, at, "\"%.64s\" is not %s", s, what[(int)tag]);
		return NULL;
	}
	return string_json(L, at, s, len);
}

static json_t *
scalar_to_json(struct loader *L, const struct ynode *n, enum kind kind)
{
	struct pos at = n->at;
	size_t len, bad_off;
	char *why, *s;
	json_t *v;

	if (n->tag && n->tag != 's')
		return resolve_scalar(L, at, n->s, n->len, kind, n->tag);
	if (!memchr(n->s, '$', n->len)) { /* nothing to substitute */
		s = n->s;
		len = n->len;
	} else if (!(s = subst_env(n->s, n->len, &len, &bad_off, &why))) {
		/* Exact for one-line scalars; quotes shift by one. */
		at.col += bad_off + !n->plain;
		cerr_add(L, at, "%s", why);
		free(why);
		return NULL;
	}
	if (n->plain && is_null_text(s, len)) {
		L->nulls++;
		v = json_null();
	} else if (kind == K_DUR && len && strspn(s, "0123456789") == len) {
		/* Quoted too: "30" is as ambiguous as 30. */
		cerr_add(L, at, "\"%s\" needs a unit (such as 500ms, 30s, 5m, "
		         "1h)", s);
		v = NULL;
	} else if (!n->plain || kind == K_STR || kind == K_DUR ||
	           kind == K_MAP) {
		v = string_json(L, at, s, len);
	} else {
		v = resolve_scalar(L, at, s, len, kind, 0);
	}
	if (s != n->s)
		free(s);
	return v;
}

/* The text of a mapping key, or NULL after an error (reported). */
static const char *
key_text(struct loader *L, const struct ynode *k)
{
	if (k->bad)
		return NULL;
	if (k->type != Y_SCALAR) {
		cerr_add(L, k->at, "mapping keys must be strings");
		return NULL;
	}
	if (strlen(k->s) != k->len) {
		cerr_add(L, k->at, "a key must not contain NUL");
		return NULL;
	}
	return k->s;
}

bool
ymap_foreach(const struct ynode *m, ymap_pair_fn *pair, ymap_refuse_fn *refuse,
             void *ctx, bool merged)
{
	bool ok = true;

	for (size_t i = 0; i + 1 < m->n; i += 2)
		if (!m->kids[i].n->merge)
			pair(ctx, m->kids[i].n, m->kids[i + 1].n, merged);
	for (size_t i = 0; i + 1 < m->n; i += 2) {
		const struct ynode *v = m->kids[i + 1].n;
		const struct yref *it = &m->kids[i + 1], *end = it + 1;

		if (!m->kids[i].n->merge)
			continue;
		if (v->type == Y_SEQ) {
			it = v->kids;
			end = v->kids + v->n;
		}
		for (; it < end; it++) {
			if (it->n->type == Y_MAP && !it->n->bad) {
				if (!ymap_foreach(it->n, pair, refuse, ctx, true))
					ok = false;
			} else {
				refuse(ctx, it->n);
				ok = false;
			}
		}
	}
	return ok;
}

/* The loader's own walks over a mapping (ymap_foreach with the loader). */
typedef void pair_fn(struct loader *L, void *ctx, const struct ynode *k,
                     const struct ynode *v, bool merged);

struct map_walk {
	struct loader *L;
	pair_fn *fn;
	void *ctx;
};

static void
map_walk_pair(void *w, const struct ynode *k, const struct ynode *v,
              bool merged)
{
	struct map_walk *mw = w;

	mw->fn(mw->L, mw->ctx, k, v, merged);
}

static void
map_walk_refuse(void *w, const struct ynode *n)
{
	struct map_walk *mw = w;

	if (!n->bad)
		cerr_add(mw->L, n->at, "\"<<\" merges mappings only");
}

static bool
map_foreach(struct loader *L, const struct ynode *m, pair_fn *fn, void *ctx)
{
	struct map_walk mw = { L, fn, ctx };

	return ymap_foreach(m, map_walk_pair, map_walk_refuse, &mw, false);
}

static json_t *node_to_json(struct loader *L, const struct ynode *n,
                            enum kind kind);

struct mapconv {
	json_t *obj, *lines;
	enum kind kind;
	bool ok;
};

static void
mapconv_pair(struct loader *L, void *ctx, const struct ynode *k,
             const struct ynode *v, bool merged)
{
	struct mapconv *mc = ctx;
	const char *key = key_text(L, k);
	json_t *jv, *first;

	if (!key) {
		mc->ok = false;
		return;
	}
	if ((first = json_object_get(mc->lines, key))) {
		if (!merged) {
			cerr_add(L, k->at, "duplicate key \"%s\" (first at line "
			         "%lld)", key, json_integer_value(first));
			mc->ok = false;
		}
		return;
	}
	json_object_set_new(mc->lines, key, json_integer(k->at.line));
	if (!(jv = node_to_json(L, v, mc->kind == K_MAP ? K_STR : K_ANY))) {
		mc->ok = false;
		return;
	}
	if (json_object_set_new(mc->obj, key, jv) < 0) {
		cerr_add(L, k->at, "key is not valid UTF-8");
		mc->ok = false;
	}
}

/* NULL when an error was reported. */
static json_t *
node_to_json(struct loader *L, const struct ynode *n, enum kind kind)
{
	struct mapconv mc;
	json_t *arr;
	bool ok = true;

	if (n->bad)
		return NULL;
	switch (n->type) {
	case Y_SCALAR:
		return scalar_to_json(L, n, kind);
	case Y_SEQ:
		arr = json_array();
		for (size_t i = 0; i < n->n; i++) {
			json_t *jv = node_to_json(L, n->kids[i].n, K_ANY);

			if (jv)
				json_array_append_new(arr, jv);
			else
				ok = false;
		}
		if (!ok)
			json_decref(arr);
		return ok ? arr : NULL;
	case Y_MAP:
		mc.obj = json_object();
		mc.lines = json_object();
		mc.kind = kind;
		mc.ok = map_foreach(L, n, mapconv_pair, &mc);
		json_decref(mc.lines);
		if (!mc.ok)
			json_decref(mc.obj);
		return mc.ok ? mc.obj : NULL;
	}
	return NULL;
}

static void
rawmap_init(struct rawmap *rm, struct pos at)
{
	rm->obj = json_object();
	rm->placed = rm->failed = 0;
	rm->at = at;
	rm->bad = false;
	rm->has_null = false;
	rm->alerts = NULL;
	rm->slo = 0;
}

static void
rawmap_clear(struct rawmap *rm)
{
	json_decref(rm->obj);
	json_decref(rm->alerts);
	rm->obj = rm->alerts = NULL;
	rm->placed = rm->failed = 0;
}

/* An error was reported about key's value: drop it, so that the checks
 * that follow neither repeat the error nor stumble on it. */
static void
rawmap_fail(struct rawmap *rm, const char *key)
{
	int i = field_index(key);

	rm->bad = true;
	if (i >= 0)
		rm->failed |= UINT32_C(1) << i;
	json_object_del(rm->obj, key);
}

static bool
rawmap_failed(const struct rawmap *rm, const char *key)
{
	int i = field_index(key);

	return i >= 0 && (rm->failed >> i & 1);
}

static void
rawmap_setpos(struct rawmap *rm, const char *key, struct pos k, struct pos v)
{
	int i = field_index(key);

	if (i < 0)
		return;
	rm->kpos[i] = k;
	rm->vpos[i] = v;
	rm->placed |= UINT32_C(1) << i;
}

/* Takes over val. */
static void
rawmap_set(struct rawmap *rm, const char *key, json_t *val, struct pos k,
           struct pos v)
{
	json_object_set_new(rm->obj, key, val);
	rawmap_setpos(rm, key, k, v);
}

static bool
rawmap_placed(const struct rawmap *rm, const char *key)
{
	int i = field_index(key);

	return i >= 0 && (rm->placed >> i & 1);
}

/* to's position becomes from's (in another mapping, or the same one) or
 * stays as it was if from has none; drop: from's is forgotten. */
static void
rawmap_copypos(struct rawmap *dst, const char *to, const struct rawmap *src,
               const char *from)
{
	int t = field_index(to), f = to == from ? t : field_index(from);

	if (t < 0 || f < 0 || !(src->placed >> f & 1))
		return;
	dst->kpos[t] = src->kpos[f];
	dst->vpos[t] = src->vpos[f];
	dst->placed |= UINT32_C(1) << t;
}

static void
rawmap_droppos(struct rawmap *rm, const char *key)
{
	int i = field_index(key);

	if (i >= 0)
		rm->placed &= ~(UINT32_C(1) << i);
}

static struct pos
rawmap_pos(const struct rawmap *rm, const char *key, bool value)
{
	int i = field_index(key);

	if (i < 0 || !(rm->placed >> i & 1))
		return rm->at;
	return value ? rm->vpos[i] : rm->kpos[i];
}

static void
alerts_err(void *L, unsigned long line, unsigned long col, const char *msg)
{
	cerr_add(L, (struct pos){line, col}, "%s", msg);
}

/* One key: value of a target or defaults mapping.  merged: it comes from
 * a "<<" merge key and yields to keys given in the mapping itself. */
static void
rawmap_pair(struct loader *L, void *ctx, const struct ynode *k,
            const struct ynode *v, bool merged)
{
	struct rawmap *rm = ctx;
	const struct field *f;
	const char *key;
	json_t *jv;

	if (!(key = key_text(L, k))) {
		rm->bad = true;
		return;
	}
	if (!strcmp(key, "alerts")) { /* sm-alert's rules: alerts.c */
		if (rm->alerts && !merged) {
			cerr_add(L, k->at, "duplicate key \"alerts\"");
			rm->bad = true;
		} else if (!rm->alerts &&
		           !(rm->alerts = alerts_from_yaml(v, alerts_err, L))) {
			rm->bad = true;
		}
		return;
	}
	if (rawmap_placed(rm, key) || rawmap_failed(rm, key)) {
		if (!merged) {
			cerr_add(L, k->at, "duplicate key \"%s\" (first at line "
			         "%lu)", key, rawmap_pos(rm, key, false).line);
			rm->bad = true;
		}
		return;
	}
	if (slo_key(key)) { /* for sm-report, not the record: slo.c */
		char why[160];

		if (rm->slo && !merged) {
			cerr_add(L, k->at, "duplicate key \"slo\"");
			rm->bad = true;
		} else if (!rm->slo &&
		           slo_check(v, &rm->slo, why, sizeof(why)) != 0) {
			cerr_add(L, v->at, "%s", why);
			rm->bad = true;
		}
		return;
	}
	if (!(f = field_find(L, key))) {
		unknown_field(L, k->at, key);
		rm->bad = true;
		return;
	}
	if (!(jv = node_to_json(L, v, f->kind))) {
		rawmap_fail(rm, key);
		rawmap_setpos(rm, key, k->at, v->at);
		return;
	}
	rawmap_set(rm, key, jv, k->at, v->at);
}

static void
rawmap_from_yaml(struct loader *L, const struct ynode *n, struct rawmap *rm,
                 const char *what)
{
	size_t nulls = L->nulls;

	rawmap_init(rm, n->at);
	if (n->bad) {
		rm->bad = true;
	} else if (n->type != Y_MAP) {
		cerr_add(L, rm->at, "%s must be a mapping", what);
		rm->bad = true;
	} else if (!map_foreach(L, n, rawmap_pair, rm)) {
		rm->bad = true;
	}
	rm->has_null = L->nulls != nulls;
}

/* ---- validation shared by both formats -------------------------------- */

static void
rename_key(struct loader *L, struct rawmap *rm, const char *from,
           const char *to)
{
	json_t *v = json_object_get(rm->obj, from);

	if (!v)
		return;
	if (json_object_get(rm->obj, to)) {
		cerr_add(L, rawmap_pos(rm, from, false),
		         "both \"%s\" and \"%s\" given", from, to);
		rm->bad = true;
	} else {
		json_object_set(rm->obj, to, v);
		rawmap_copypos(rm, to, rm, from);
	}
	json_object_del(rm->obj, from);
	rawmap_droppos(rm, from);
}

/* "timeout: 5s" becomes "timeout_ms: 5000" (null stays null: unset). */
static void
duration_key(struct loader *L, struct rawmap *rm, const char *from,
             const char *to)
{
	json_t *v = json_object_get(rm->obj, from);
	int64_t ms = -1;

	if (!v)
		return;
	if (json_object_get(rm->obj, to)) {
		cerr_add(L, rawmap_pos(rm, from, false),
		         "both \"%s\" and \"%s\" given", from, to);
		rm->bad = true;
		goto drop;
	}
	if (json_is_string(v)) {
		if (parse_duration_ms(json_string_value(v), &ms) < 0)
			ms = -1;
	} else if (json_is_null(v)) {
		ms = 0;
	}
	if (ms < 0 || (ms == 0 && !json_is_null(v))) {
		cerr_add(L, rawmap_pos(rm, from, true),
		         "field \"%s\": not a duration (write e.g. 500ms, 10s, "
		         "5m, 1h)", from);
		rawmap_fail(rm, to);
		goto drop;
	}
	json_object_set_new(rm->obj, to,
	                    json_is_null(v) ? json_null() : json_integer(ms));
	rawmap_copypos(rm, to, rm, from);
drop:
	json_object_del(rm->obj, from);
	rawmap_droppos(rm, from);
}

static void
check_regex(struct loader *L, struct rawmap *rm, const char *key,
            const char *pattern)
{
	char msg[512];
	pcre2_code *re;

	if (L->re_ok && !strcmp(L->re_ok, pattern))
		return;
	if ((re = regex_compile(pattern, msg, sizeof msg))) {
		pcre2_code_free(re);
		free(L->re_ok);
		L->re_ok = xstrdup(pattern);
		return;
	}
	cerr_add(L, rawmap_pos(rm, key, true), "field \"%s\": %s", key, msg);
	rawmap_fail(rm, key);
}

static void drop_nulls(json_t *obj);

/* The defaults' headers and labels, validated once (check_defaults()),
 * that a target took as they are (the same object): lib's validator need
 * not check and copy them again for every target.  They are taken out of
 * rm->obj for the run over the rest and put back by shared_restore(). */
static const char *const shared_keys[] = {"headers", "labels"};

static void
shared_take(json_t *obj, const json_t *defs, json_t *taken[2])
{
	for (size_t i = 0; i < 2; i++) {
		json_t *v = json_object_get(obj, shared_keys[i]);

		taken[i] = NULL;
		if (!defs || !v || v != json_object_get(defs, shared_keys[i]))
			continue;
		taken[i] = json_incref(v);
		json_object_del(obj, shared_keys[i]);
	}
}

/* Puts them back, and into t (if any) as the validator would have. */
static void
shared_restore(json_t *obj, json_t *taken[2], struct target *t)
{
	for (size_t i = 0; i < 2; i++) {
		if (!taken[i])
			continue;
		if (t) {
			json_t **field = i == 0 ? &t->headers : &t->labels;

			json_decref(*field);
			*field = json_incref(taken[i]);
		}
		json_object_set_new(obj, shared_keys[i], taken[i]);
	}
}

/* Most mappings are valid, and one run of lib's validator over all their
 * fields together says so; check_fields() then needs no run per field.
 * When the mapping has its url, that run's target is kept in *whole.
 * defs: the checked defaults' fields, or NULL. */
static bool
fields_valid_together(const struct rawmap *rm, const json_t *defs,
                      struct target **whole)
{
	json_t *o, *val, *taken[2];
	const char *key;
	struct target *t = NULL;
	char err[256];
	bool ok, url = json_is_string(json_object_get(rm->obj, "url"));

	/* A target merged with its defaults has no nulls left: as it is. */
	if (url) {
		shared_take(rm->obj, defs, taken);
		t = target_from_json(rm->obj, err, sizeof(err));
		shared_restore(rm->obj, taken, t);
	}
	if (!t) {
		o = json_object();
		json_object_foreach(rm->obj, key, val) {
			if (json_is_null(val))
				continue;
			if (json_is_object(val)) {
				json_t *c = json_copy(val);

				drop_nulls(c);
				json_object_set_new(o, key, c);
			} else {
				json_object_set(o, key, val);
			}
		}
		if (!json_object_get(o, "url"))
			json_object_set_new(o, "url",
			                    json_string("http://localhost/"));
		t = target_from_json(o, err, sizeof(err));
		json_decref(o);
		if (!t)
			return false;
	}
	val = json_object_get(rm->obj, "interval");
	ok = !val || json_is_null(val) ||
	     (t->interval_ms >= CONFIG_MIN_INTERVAL_MS &&
	      t->interval_ms <= CONFIG_MAX_INTERVAL_MS);
	if (ok && url && whole)
		*whole = t;
	else
		target_free(&t);
	return ok;
}

/* Each field alone, so that one mapping can yield several errors, each at
 * its own value: lib's validator on a minimal record plus that field. */
static void
check_fields(struct loader *L, struct rawmap *rm, const json_t *defs,
             struct target **whole)
{
	const char *key;
	json_t *val;
	void *tmp;

	if (fields_valid_together(rm, defs, whole)) {
		static const char *const res[] = {"regex", "regex_absent"};

		for (size_t i = 0; i < 2; i++)
			if (json_is_string(val = json_object_get(rm->obj, res[i])))
				check_regex(L, rm, res[i], json_string_value(val));
		if (whole && *whole && rawmap_failed(rm, "regex"))
			target_free(whole);
		if (whole && *whole && rawmap_failed(rm, "regex_absent"))
			target_free(whole);
		return;
	}
	json_object_foreach_safe(rm->obj, tmp, key, val) {
		/* rawmap_fail() frees key (it is rm->obj's): ask first. */
		bool is_interval = !strcmp(key, "interval");
		bool is_regex = !strcmp(key, "regex") ||
		                !strcmp(key, "regex_absent");
		char err[256];
		struct target *t;
		json_t *o;

		if (json_is_null(val))
			continue;
		o = json_pack("{s:s, s:s}", "target", "x", "url",
		              "http://localhost/");
		/* Nulls inside headers or labels unset a default. */
		json_object_set_new(o, key, json_is_object(val) ? json_copy(val)
		                                                : json_incref(val));
		if (json_is_object(val))
			drop_nulls(json_object_get(o, key));
		t = target_from_json(o, err, sizeof(err));
		json_decref(o);
		if (!t) {
			cerr_add(L, rawmap_pos(rm, key, true), "%s", err);
			rawmap_fail(rm, key);
			continue;
		}
		if (is_interval &&
		    (t->interval_ms < CONFIG_MIN_INTERVAL_MS ||
		     t->interval_ms > CONFIG_MAX_INTERVAL_MS)) {
			cerr_add(L, rawmap_pos(rm, key, true),
			         "field \"interval\" must be between 100ms and "
			         "31d");
			target_free(&t);
			/* rawmap_fail frees key (json_object_del): no use of
			 * it after this. */
			rawmap_fail(rm, key);
			continue;
		}
		target_free(&t);
		if (is_regex && json_is_string(val))
			check_regex(L, rm, key, json_string_value(val));
	}
}

static void
normalize(struct loader *L, struct rawmap *rm)
{
	static const char *const durs[] = {"interval", "timeout"};

	/* NDJSON strings; YAML scalars were refused as they were read. */
	for (size_t i = 0; i < 2; i++) {
		json_t *v = json_object_get(rm->obj, durs[i]);
		const char *d = json_string_value(v);

		if (!d || !*d || strspn(d, "0123456789") != strlen(d))
			continue;
		cerr_add(L, rawmap_pos(rm, durs[i], true), "\"%s\" needs a unit "
		         "(such as 500ms, 30s, 5m, 1h)", d);
		rawmap_fail(rm, durs[i]);
	}
	rename_key(L, rm, "name", "target");
	duration_key(L, rm, "timeout", "timeout_ms");
	/* Records fed back from --once output: when is decided here. */
	json_object_del(rm->obj, "scheduled_at");
}

static void
drop_nulls(json_t *obj)
{
	const char *key;
	json_t *val;
	void *tmp;

	json_object_foreach_safe(obj, tmp, key, val) {
		if (json_is_null(val))
			json_object_del(obj, key);
	}
}

/* Defaults fill what the target leaves out; headers and labels merge key
 * by key.  A null in the target (or in its headers/labels) unsets; the
 * defaults hold none (check_defaults). */
static void
merge_defaults(struct rawmap *rm, const struct rawmap *defs)
{
	const char *key;
	json_t *dval = alerts_merge(defs->alerts, rm->alerts);

	json_decref(rm->alerts);
	rm->alerts = dval;
	if (!rm->slo)
		rm->slo = defs->slo;
	json_object_foreach(defs->obj, key, dval) {
		json_t *tval = json_object_get(rm->obj, key);

		if (!tval) {
			json_object_set(rm->obj, key, dval);
			rawmap_copypos(rm, key, defs, key);
		} else if (json_is_object(tval) && json_is_object(dval)) {
			json_t *m = json_copy(dval);

			json_object_update(m, tval);
			json_object_set_new(rm->obj, key, m);
		}
	}
	if (!rm->has_null)
		return;
	json_object_foreach(rm->obj, key, dval) {
		if (json_is_object(dval))
			drop_nulls(dval);
	}
	drop_nulls(rm->obj);
}

/* The field a validator message is about, if it names one. */
static const char *
field_in_message(const char *msg)
{
	const char *best = NULL, *best_at = NULL;

	for (size_t i = 0; i < NFIELDS; i++) {
		char quoted[64];
		const char *at;

		snprintf(quoted, sizeof(quoted), "\"%s\"", fields[i].name);
		if ((at = strstr(msg, quoted)) && (!best_at || at < best_at)) {
			best = fields[i].name;
			best_at = at;
		}
	}
	return best;
}

struct named {
	char *name;
	struct pos at;
};

/* Every name (of valid and invalid targets alike, in input order) appears
 * once: a hash set of the names seen, each duplicate reported against the
 * first. */
static void
check_unique(struct loader *L, struct named *v, size_t n)
{
	size_t cap = 16, mask, *slot;

	while (cap < 2 * n)
		cap *= 2;
	mask = cap - 1;
	slot = xmalloc(cap * sizeof(*slot));
	for (size_t i = 0; i < cap; i++)
		slot[i] = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		size_t h = (size_t)sched_hash(v[i].name) & mask, first;

		while ((first = slot[h]) != SIZE_MAX &&
		       strcmp(v[first].name, v[i].name))
			h = (h + 1) & mask;
		if (first == SIZE_MAX) {
			slot[h] = i;
			continue;
		}
		if (v[i].at.line == v[first].at.line &&
		    v[i].at.col == v[first].at.col)
			cerr_add(L, v[i].at, "target \"%s\" is listed more than "
			         "once (through a YAML alias)", v[i].name);
		else
			cerr_add(L, v[i].at, "duplicate target name \"%s\" "
			         "(first at line %lu)", v[i].name,
			         v[first].at.line);
	}
	free(slot);
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
}

/* ,"scheduled_at":"2026-11-23T10:49:56.123Z"} and the newline, which the
 * scheduler appends to each record. */
#define SCHEDULED_AT_BYTES (sizeof(",\"scheduled_at\":\"\"}\n") - 1 + \
                            TIME_STR_LEN - 1)

/* The target as the rest of the pipeline will see it: its record encoded
 * once, as the scheduler writes it.  It was validated by lib's
 * target_from_json(), the code sm-check decodes it with, which refuses
 * what JSON text could not carry to sm-check (a NUL); what remains is the
 * size sm-check, Kafka and the result records can take.  false (reported
 * at at) if it cannot travel. */
static bool
config_add(struct loader *L, struct config *cfg, const struct target *t,
           struct pos at)
{
	struct config_target *ct;
	size_t len;

	if (!target_record_encode(&L->enc, t))
		die(EX_SOFTWARE, "cannot encode target \"%s\"", t->target);
	len = L->enc.len;
	if (len + SCHEDULED_AT_BYTES > CONFIG_MAX_RECORD) {
		cerr_add(L, at, "target \"%.64s\": its record would be %zu "
		         "bytes, more than the %d a target record may take",
		         t->target, len + SCHEDULED_AT_BYTES, CONFIG_MAX_RECORD);
		return false;
	}
	if (cfg->n == cfg->cap) {
		cfg->cap = cfg->cap ? cfg->cap * 2 : 64;
		cfg->v = xrealloc(cfg->v, cfg->cap * sizeof(*cfg->v));
	}
	ct = &cfg->v[cfg->n++];
	ct->name = xstrdup(t->target);
	ct->json_len = len - 1; /* without its closing brace */
	ct->json = xmalloc(len);
	memcpy(ct->json, L->enc.s, ct->json_len);
	ct->json[ct->json_len] = '\0';
	ct->interval_ms = t->interval_ms;
	ct->timeout_ms = t->timeout_ms;
	ct->hash = sched_hash(ct->name);
	ct->line = at.line;
	ct->alerts = NULL;
	ct->slo = 0;
	return true;
}

static void
check_defaults(struct loader *L, struct rawmap *defs)
{
	static const char *const per_target[] = {"target", "name"};
	const char *key;
	json_t *val;

	for (size_t i = 0; i < 2; i++) {
		if (!json_object_get(defs->obj, per_target[i]))
			continue;
		cerr_add(L, rawmap_pos(defs, per_target[i], false),
		         "\"%s\" cannot be a default: every target needs its "
		         "own", per_target[i]);
		rawmap_fail(defs, per_target[i]);
	}
	normalize(L, defs);
	check_fields(L, defs, NULL, NULL);
	/* A null among the defaults unsets nothing: gone, so that targets
	 * without a null of their own skip the search for nulls. */
	drop_nulls(defs->obj);
	json_object_foreach(defs->obj, key, val) {
		if (json_is_object(val))
			drop_nulls(val);
	}
}

/* The whole target, once its fields passed one by one: what only the
 * whole can tell (a missing url, interval against timeout, its name). */
static struct target *
check_target(struct loader *L, struct rawmap *rm, struct named *nm,
             struct target *t)
{
	char err[256], a[32], b[32];
	int64_t interval;

	/* A refused url was reported: stand in for it, check the rest. */
	if (!t && rawmap_failed(rm, "url"))
		json_object_set_new(rm->obj, "url",
		                    json_string("http://localhost/"));
	if (!t && !(t = target_from_json(rm->obj, err, sizeof(err)))) {
		const char *f = field_in_message(err);

		cerr_add(L, f ? rawmap_pos(rm, f, true) : rm->at, "%s", err);
		rm->bad = true;
		return NULL;
	}
	interval = t->interval_ms ? t->interval_ms : CONFIG_DEFAULT_INTERVAL_MS;
	if (interval < t->timeout_ms && !rawmap_failed(rm, "interval") &&
	    !rawmap_failed(rm, "timeout_ms")) {
		config_format_duration(interval, a, sizeof(a));
		config_format_duration(t->timeout_ms, b, sizeof(b));
		cerr_add(L, rawmap_pos(rm, "interval", true),
		         "interval %s is shorter than timeout %s", a, b);
		rm->bad = true;
	}
	t->interval_ms = interval;
	if (!rawmap_failed(rm, "target") &&
	    (json_object_get(rm->obj, "target") || !rawmap_failed(rm, "url"))) {
		nm->name = xstrdup(t->target);
		nm->at = json_object_get(rm->obj, "target")
		             ? rawmap_pos(rm, "target", true)
		             : rawmap_pos(rm, "url", true);
	}
	return t;
}

/* Targets are checked one at a time as they are read, so that only one
 * target's intermediate JSON is alive at once (100,000 targets at once
 * cost hundreds of MiB and most of the load time in malloc). */
struct builder {
	struct config *cfg;
	struct rawmap *defs; /* or NULL */
	struct named *names;
	size_t nn, cap, idx;
};

static void
build_begin(struct loader *L, struct builder *B, struct rawmap *defs)
{
	memset(B, 0, sizeof(*B));
	B->cfg = xcalloc(1, sizeof(*B->cfg));
	B->defs = defs;
	if (defs)
		check_defaults(L, defs);
}

/* One target; clears rm. */
static void
build_one(struct loader *L, struct builder *B, struct rawmap *rm)
{
	struct rawmap *defs = B->defs;
	struct target *t = NULL;

	/* Merged first: the defaults' fields were checked (and any refused
	 * one dropped) once, so each field is checked alone only when the
	 * whole is refused, and then only the target's own ones can fail. */
	normalize(L, rm);
	if (defs)
		merge_defaults(rm, defs);
	else if (rm->has_null)
		drop_nulls(rm->obj);
	check_fields(L, rm, defs && !defs->bad ? defs->obj : NULL, &t);
	if (B->nn == B->cap) {
		B->cap = B->cap ? B->cap * 2 : 64;
		B->names = xrealloc(B->names, B->cap * sizeof(*B->names));
	}
	memset(&B->names[B->nn], 0, sizeof(*B->names));
	B->idx++;
	if ((t = check_target(L, rm, &B->names[B->nn], t))) {
		if (B->names[B->nn].name)
			B->nn++;
		if (!rm->bad && !(defs && defs->bad) &&
		    config_add(L, B->cfg, t, rm->at)) {
			struct config_target *ct = &B->cfg->v[B->cfg->n - 1];

			ct->alerts = json_incref(rm->alerts);
			ct->slo = rm->slo;
		}
		target_free(&t);
	}
	rawmap_clear(rm);
}

static struct config *
build_end(struct loader *L, struct builder *B)
{
	check_unique(L, B->names, B->nn);
	free(B->names);
	B->names = NULL;
	return B->cfg;
}

/* ---- YAML: the document, targets streamed ------------------------------ */

/* One item of "targets"; false when the load must stop. */
static bool
yaml_target(struct yload *Y, struct builder *B, const struct ynode *n)
{
	struct rawmap rm;

	if (B->idx >= CONFIG_MAX_TARGETS) {
		cerr_add(Y->L, n->at, "more than %d targets", CONFIG_MAX_TARGETS);
		Y->failed = true;
		return false;
	}
	rawmap_from_yaml(Y->L, n, &rm, "a target");
	build_one(Y->L, B, &rm);
	return true;
}

static bool
is_null_node(const struct ynode *n)
{
	return n->type == Y_SCALAR && n->plain && is_null_text(n->s, n->len);
}

/* The value of "targets": a list read one item at a time (unless it has an
 * anchor, then whole, as an alias may name it again). */
static void
yaml_targets(struct yload *Y, struct builder *B)
{
	struct loader *L = Y->L;
	yaml_event_t ev;
	struct yref v;
	struct pos at;
	size_t n = 0;

	if (!yl_next(Y, &ev))
		return;
	at = mark_pos(ev.start_mark);
	if (ev.type == YAML_SEQUENCE_START_EVENT &&
	    !ev.data.sequence_start.anchor &&
	    !core_tag((const char *)ev.data.sequence_start.tag)) {
		yaml_event_delete(&ev);
		for (;; n++) {
			if (!yl_next(Y, &ev))
				return;
			if (ev.type == YAML_SEQUENCE_END_EVENT) {
				yaml_event_delete(&ev);
				break;
			}
			if (!(v = build_node(Y, &ev)).n)
				return;
			yaml_target(Y, B, v.n);
			ynode_unref(v.n);
			if (Y->failed)
				return;
		}
	} else {
		if (!(v = build_node(Y, &ev)).n)
			return;
		if (v.n->type == Y_SEQ && !v.n->bad) {
			for (; n < v.n->n; n++)
				if (!yaml_target(Y, B, v.n->kids[n].n))
					break;
		} else if (is_null_node(v.n)) {
			cerr_add(L, at, "\"targets\" is empty: list the targets "
			         "(write \"targets: []\" for none)");
			n = 1;
		} else if (!v.n->bad) {
			cerr_add(L, at, "\"targets\" must be a list of mappings");
			n = 1;
		}
		ynode_unref(v.n);
	}
	if (n == 0) {
		L->no_targets = true;
		L->no_targets_at = at;
	}
}

static void
yaml_begin(struct loader *L, struct builder *B, const struct ynode *defs,
           struct rawmap *drm)
{
	bool have = defs && !is_null_node(defs);

	if (have)
		rawmap_from_yaml(L, defs, drm, "\"defaults\"");
	build_begin(L, B, have ? drm : NULL);
}

/*
 * One pass over the file.  Targets are checked as they are read, with the
 * defaults known by then.  When "defaults" comes after "targets", the pass
 * stops and returns the defaults in *late_defs: the caller reads the file
 * again with them (known_defs).
 */
static struct config *
load_yaml_pass(struct loader *L, FILE *fp, struct ynode *known_defs,
               struct ynode **late_defs)
{
	struct yload Y = {.L = L, .fp = fp};
	struct ynode *defs = known_defs;
	unsigned long defs_line = 0, targets_line = 0;
	struct builder B;
	struct rawmap drm = {0};
	struct config *cfg = NULL;
	bool begun = false;
	yaml_event_t ev;
	struct pos root_at;

	Y.anchors = json_object();
	if (!yaml_parser_initialize(&Y.parser))
		die(EX_SOFTWARE, "out of memory");
	yaml_parser_set_input(&Y.parser, yl_read, &Y);
	if (!yl_next(&Y, &ev)) /* the stream's start */
		goto out;
	yaml_event_delete(&ev);
	if (!yl_next(&Y, &ev))
		goto out;
	if (ev.type == YAML_STREAM_END_EVENT) {
		cerr_add(L, (struct pos){1, 1}, "empty configuration (expected "
		         "a mapping with \"targets\")");
		yaml_event_delete(&ev);
		goto out;
	}
	yaml_event_delete(&ev); /* the document's start */
	if (!yl_next(&Y, &ev))
		goto out;
	root_at = mark_pos(ev.start_mark);
	if (ev.type != YAML_MAPPING_START_EVENT) {
		bool empty = ev.type == YAML_SCALAR_EVENT &&
		             ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		             is_null_text((const char *)ev.data.scalar.value,
		                          ev.data.scalar.length);

		cerr_add(L, root_at, empty ? "empty configuration (expected a "
		         "mapping with \"targets\")" : "expected a mapping with "
		         "\"defaults\" and \"targets\"");
		yaml_event_delete(&ev);
		goto out;
	}
	yaml_event_delete(&ev);
	for (;;) {
		static const char *const top[] = {"defaults", "targets"};
		struct yref k, v;
		const char *key;

		if (!yl_next(&Y, &ev))
			goto out;
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (!(k = build_node(&Y, &ev)).n)
			goto out;
		key = key_text(L, k.n);
		if (key && !k.n->merge && !strcmp(key, "targets") &&
		    !targets_line) {
			targets_line = k.n->at.line;
			ynode_unref(k.n);
			if (!begun)
				yaml_begin(L, &B, defs, &drm);
			begun = true;
			yaml_targets(&Y, &B);
			if (Y.failed)
				goto out;
			continue;
		}
		if (!yl_next(&Y, &ev) || !(v = build_node(&Y, &ev)).n) {
			ynode_unref(k.n);
			goto out;
		}
		if (!key) {
			/* reported */
		} else if (k.n->merge) {
			cerr_add(L, k.n->at, "\"<<\" merges keys into defaults, "
			         "a target, headers or labels, not at the top "
			         "level");
		} else if (!strcmp(key, "defaults") || !strcmp(key, "targets")) {
			unsigned long *first = key[0] == 'd' ? &defs_line
			                                     : &targets_line;

			if (*first) {
				cerr_add(L, k.n->at, "duplicate key \"%s\" (first "
				         "at line %lu)", key, *first);
			} else if (begun && !known_defs) {
				/* Read again, now that they are known. */
				*late_defs = v.n;
				v.n = NULL;
				*first = k.n->at.line;
				ynode_unref(k.n);
				goto out;
			} else {
				*first = k.n->at.line;
				if (!known_defs) {
					defs = v.n;
					v.n = NULL;
				}
			}
		} else if (strncmp(key, "x-", 2)) {
			/* ("x-" keys are a place for anchors, as in compose
			 * files) */
			unknown_key(L, k.n->at, key, top, 2);
		}
		ynode_unref(k.n);
		ynode_unref(v.n);
	}
	if (!yl_next(&Y, &ev)) /* the document's end */
		goto out;
	yaml_event_delete(&ev);
	if (!yl_next(&Y, &ev))
		goto out;
	if (ev.type == YAML_DOCUMENT_START_EVENT)
		cerr_add(L, mark_pos(ev.start_mark), "only one YAML document is "
		         "allowed");
	yaml_event_delete(&ev);
	if (!targets_line)
		cerr_add(L, root_at, "no \"targets\" list");
out:
	if (!begun && !*late_defs) {
		yaml_begin(L, &B, Y.failed ? NULL : defs, &drm);
		begun = true;
	}
	if (begun)
		cfg = build_end(L, &B);
	if (drm.obj)
		rawmap_clear(&drm);
	if (defs != known_defs)
		ynode_unref(defs);
	for (size_t i = 0; i < Y.an; i++)
		ynode_unref(Y.av[i]);
	free(Y.av);
	json_decref(Y.anchors);
	yaml_parser_delete(&Y.parser);
	return cfg;
}

static struct config *
load_yaml(struct loader *L, FILE *fp)
{
	struct ynode *defs = NULL;
	struct config *cfg;
	struct stat st;

	/* A regular file says its size before a byte is parsed (the reader
	 * counts what it reads of any other kind of file). */
	if (fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size > CONFIG_MAX_BYTES) {
		cerr_add(L, (struct pos){1, 1}, "the file is larger than %d MiB",
		         CONFIG_MAX_BYTES >> 20);
		return NULL;
	}
	cfg = load_yaml_pass(L, fp, NULL, &defs);

	if (defs) {
		/* Nothing of the first pass counts but the defaults. */
		config_free(&cfg);
		cerr_clear(L);
		L->no_targets = false;
		if (fseek(fp, 0, SEEK_SET) < 0) {
			cerr_add(L, defs->at, "\"defaults\" must come before "
			         "\"targets\" in a file that cannot be read "
			         "twice");
		} else {
			clearerr(fp);
			cfg = load_yaml_pass(L, fp, defs, NULL);
		}
		ynode_unref(defs);
	}
	return cfg;
}

/* ---- NDJSON ----------------------------------------------------------- */

/* Column (1-based) of "key" (or of its value) in a raw JSON line. */
static unsigned long
find_key_col(const char *line, size_t len, const char *key, bool value)
{
	size_t kl = strlen(key);

	for (size_t i = 0; i + kl + 2 <= len; i++) {
		size_t j;

		if (line[i] != '"' || memcmp(line + i + 1, key, kl) ||
		    line[i + kl + 1] != '"')
			continue;
		for (j = i + kl + 2; j < len && isspace((unsigned char)line[j]);
		     j++)
			;
		if (j >= len || line[j] != ':')
			continue;
		if (!value)
			return i + 1;
		for (j++; j < len && isspace((unsigned char)line[j]); j++)
			;
		return j + 1;
	}
	return 1;
}

/* ${VAR} in every string; a new reference, or NULL after an error. */
static json_t *
subst_json(struct loader *L, struct pos at, json_t *v)
{
	const char *key;
	json_t *out, *item, *jv;
	size_t i, len, bad_off;
	char *s, *why;
	bool ok = true;

	switch (json_typeof(v)) {
	case JSON_STRING:
		s = subst_env(json_string_value(v), json_string_length(v), &len,
		              &bad_off, &why);
		if (!s) {
			cerr_add(L, at, "%s", why);
			free(why);
			return NULL;
		}
		out = string_json(L, at, s, len);
		free(s);
		return out;
	case JSON_OBJECT:
		out = json_object();
		json_object_foreach(v, key, item) {
			if ((jv = subst_json(L, at, item)))
				json_object_set_new(out, key, jv);
			else
				ok = false;
		}
		break;
	case JSON_ARRAY:
		out = json_array();
		json_array_foreach(v, i, item) {
			if ((jv = subst_json(L, at, item)))
				json_array_append_new(out, jv);
			else
				ok = false;
		}
		break;
	default:
		if (json_is_null(v))
			L->nulls++;
		return json_incref(v);
	}
	if (!ok)
		json_decref(out);
	return ok ? out : NULL;
}

static void
rawmap_from_json(struct loader *L, json_t *obj, const char *line, size_t len,
                 unsigned long lineno, struct rawmap *rm)
{
	const char *key;
	json_t *val;
	size_t nulls = L->nulls;

	rawmap_init(rm, (struct pos){lineno, 1});
	json_object_foreach(obj, key, val) {
		struct pos kat = {lineno, find_key_col(line, len, key, false)};
		struct pos vat = {lineno, find_key_col(line, len, key, true)};
		json_t *jv;

		if (!field_find(L, key)) {
			unknown_field(L, kat, key);
			rm->bad = true;
		} else if (!(jv = subst_json(L, vat, val))) {
			rm->bad = true;
		} else {
			rawmap_set(rm, key, jv, kat, vat);
		}
	}
	rm->has_null = L->nulls != nulls;
}

static struct config *
load_ndjson(struct loader *L, int fd)
{
	struct line_reader *lr = line_reader_new(fd, L->path, SM_MAX_LINE);
	struct rawmap rm;
	struct builder B;

	build_begin(L, &B, NULL);

	for (;;) {
		enum line_status st;
		unsigned long lineno;
		char *line, err[256];
		size_t len, skip;
		json_t *obj;

		st = line_reader_next(lr, &line, &len);
		if (st == LINE_EOF)
			break;
		if (st == LINE_ERROR) {
			cerr_add(L, (struct pos){0, 0}, "read error: %s",
			         strerror(errno));
			break;
		}
		if (st == LINE_AGAIN)
			continue;
		lineno = line_reader_lineno(lr);
		if (st == LINE_TOO_LONG) {
			cerr_add(L, (struct pos){lineno, 1}, "line longer than "
			         "%d bytes", SM_MAX_LINE);
			continue;
		}
		skip = strspn(line, " \t\r");
		if (skip == len || line[skip] == '#')
			continue;
		if (!(obj = json_line_parse(line, len, err, sizeof(err)))) {
			const char *c = strstr(err, "at column ");
			unsigned long col = c ? strtoul(c + 10, NULL, 10) : 0;

			cerr_add(L, (struct pos){lineno, col ? col : 1}, "%s",
			         err);
			continue;
		}
		rawmap_from_json(L, obj, line, len, lineno, &rm);
		json_decref(obj);
		build_one(L, &B, &rm);
	}
	line_reader_free(&lr);
	return build_end(L, &B);
}

/* ---- public ----------------------------------------------------------- */

struct config *
config_load(const char *path, enum config_format fmt)
{
	struct loader L = {.path = path, .fmt = fmt};
	struct config *cfg = NULL;

	if (fmt == CONFIG_YAML) {
		FILE *fp = fopen(path, "rb");

		if (!fp) {
			warn("%s:", path);
			return NULL;
		}
		cfg = load_yaml(&L, fp);
		fclose(fp);
	} else {
		int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC)
		                           : STDIN_FILENO;

		if (fd < 0) {
			warn("%s:", path);
			return NULL;
		}
		if (fd == STDIN_FILENO)
			L.path = "<stdin>";
		cfg = load_ndjson(&L, fd);
		if (fd != STDIN_FILENO)
			close(fd);
	}
	free(L.re_ok);
	strbuf_free(&L.enc);
	if (L.nerrs) {
		cerr_print_all(&L);
		config_free(&cfg);
		return NULL;
	}
	free(L.errs);
	if (L.no_targets)
		warning("%s:%lu:%lu: \"targets\" is an empty list: nothing "
		        "will be checked", L.path, L.no_targets_at.line,
		        L.no_targets_at.col);
	cfg->path = xstrdup(L.path);
	return cfg;
}

void
config_free(struct config **cp)
{
	struct config *c = *cp;

	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].name);
		free(c->v[i].json);
		json_decref(c->v[i].alerts);
	}
	free(c->v);
	free(c->path);
	free(c);
	*cp = NULL;
}

void
config_format_duration(int64_t ms, char *buf, size_t len)
{
	long long s = (long long)(ms / 1000);
	size_t n = 0;

	if (ms % 1000 || ms == 0) {
		snprintf(buf, len, "%lldms", (long long)ms);
		return;
	}
	buf[0] = '\0';
	if (s >= 3600)
		n += (size_t)snprintf(buf + n, len - n, "%lldh", s / 3600);
	if (s % 3600 >= 60 && n < len)
		n += (size_t)snprintf(buf + n, len - n, "%lldm", s % 3600 / 60);
	if (s % 60 && n < len)
		snprintf(buf + n, len - n, "%llds", s % 60);
}
