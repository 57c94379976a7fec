/*
 * config.c - sm-schedule's input: sites.yaml through libyaml's document
 * API (every node keeps its line:column mark) or NDJSON target records,
 * turned into JSON objects, substituted (${VAR}) and validated with lib's
 * target_from_json(), the one validator, field by field and then whole.
 * Every error is collected and printed at the end, sorted by position.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "sched.h"
#include "sm.h"
#include "slo.h"
#include "subst.h"
#include "suggest.h"

/* A YAML alias may point at its own ancestor; stop before the stack does. */
#define MAX_DEPTH 64
/* Aliases of aliases multiply (a "billion laughs"): cap what they expand to. */
#define MAX_NODES 1000000

struct pos {
	unsigned long line, col; /* 1-based; 0 when unknown */
};

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
	yaml_document_t *doc;
	size_t nodes; /* YAML nodes converted so far, aliases expanded */
	char *re_ok;  /* the last pattern that compiled (many targets share one) */
};

/* One mapping of the input (defaults or a target) on its way to a record. */
struct rawmap {
	json_t *obj;   /* key -> value */
	json_t *pos;   /* key -> [key line, key col, value line, value col] */
	json_t *failed; /* keys whose value was refused (and removed) */
	struct pos at;  /* the mapping itself */
	bool bad;       /* an error was reported for it */
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
		redact_userinfo(e->msg); /* a name may be a url with a password */
		if (e->at.line)
			fprintf(stderr, "%s: error: %s:%lu:%lu: %s\n",
			        diag_progname(), L->path, e->at.line,
			        e->at.col ? e->at.col : 1, e->msg);
		else
			fprintf(stderr, "%s: error: %s: %s\n",
			        diag_progname(), L->path, e->msg);
	}
	for (size_t i = 0; i < L->nerrs; i++)
		free(L->errs[i].msg);
	if (shown > 1)
		fprintf(stderr, "%s: error: %s: %zu errors\n", diag_progname(),
		        L->path, shown);
	free(L->errs);
	L->errs = NULL;
	L->nerrs = L->cap = 0;
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

/* ---- YAML ------------------------------------------------------------- */

static struct pos
mark_pos(yaml_mark_t m)
{
	struct pos p = {m.line + 1, m.column + 1};

	return p;
}

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

/* A plain scalar by the YAML 1.2 core schema (and yes/no for booleans). */
static json_t *
resolve_plain(struct loader *L, struct pos at, const char *s, size_t len,
              enum kind kind)
{
	static const char *const yes[] = {"true", "True", "TRUE", NULL};
	static const char *const no[] = {"false", "False", "FALSE", NULL};
	static const char *const yes11[] = {"yes", "Yes", "YES", "on", "On",
	                                    "ON", NULL};
	static const char *const no11[] = {"no", "No", "NO", "off", "Off",
	                                   "OFF", NULL};
	const char *p = s;
	char *end;

	if (text_in(s, yes) || (kind == K_BOOL && text_in(s, yes11)))
		return json_true();
	if (text_in(s, no) || (kind == K_BOOL && text_in(s, no11)))
		return json_false();
	if (*p == '-' || *p == '+')
		p++;
	if (*p && strspn(p, "0123456789") == strlen(p)) {
		long long v;

		errno = 0;
		v = strtoll(s, &end, 10);
		if (!errno && *end == '\0')
			return json_integer(v);
	} else if (*p && strspn(p, "0123456789.eE+-") == strlen(p) &&
	           strpbrk(p, "0123456789")) {
		double d;

		errno = 0;
		d = strtod(s, &end);
		if (!errno && *end == '\0')
			return json_real(d);
	}
	return string_json(L, at, s, len);
}

static json_t *
scalar_to_json(struct loader *L, yaml_node_t *n, enum kind kind)
{
	struct pos at = mark_pos(n->start_mark);
	size_t len, bad_off;
	char *why, *s;
	json_t *v;
	bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
	             n->data.scalar.style == YAML_ANY_SCALAR_STYLE;

	s = subst_env((const char *)n->data.scalar.value, n->data.scalar.length,
	              &len, &bad_off, &why);
	if (!s) {
		/* Exact for one-line scalars; quotes shift by one. */
		at.col += bad_off + !plain;
		cerr_add(L, at, "%s", why);
		free(why);
		return NULL;
	}
	if (plain && is_null_text(s, len)) {
		v = json_null();
	} else if (kind == K_DUR && len && strspn(s, "0123456789") == len) {
		/* Quoted too: "30" is as ambiguous as 30. */
		cerr_add(L, at, "\"%s\" needs a unit (such as 500ms, 30s, 5m, "
		         "1h)", s);
		v = NULL;
	}
	else if (!plain || kind == K_STR || kind == K_DUR || kind == K_MAP)
		v = string_json(L, at, s, len);
	else
		v = resolve_plain(L, at, s, len, kind);
	free(s);
	return v;
}

static json_t *node_to_json(struct loader *L, yaml_node_t *n, enum kind kind,
                            int depth);

static json_t *
mapping_to_json(struct loader *L, yaml_node_t *n, enum kind kind, int depth)
{
	json_t *obj = json_object(), *lines = json_object();
	bool ok = true;

	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start;
	     pr < n->data.mapping.pairs.top; pr++) {
		yaml_node_t *k = yaml_document_get_node(L->doc, pr->key);
		yaml_node_t *v = yaml_document_get_node(L->doc, pr->value);
		struct pos kat = mark_pos(k->start_mark);
		const char *key;
		json_t *jv, *first;

		if (k->type != YAML_SCALAR_NODE) {
			cerr_add(L, kat, "mapping keys must be strings");
			ok = false;
			continue;
		}
		key = (const char *)k->data.scalar.value;
		if ((first = json_object_get(lines, key))) {
			cerr_add(L, kat, "duplicate key \"%s\" (first at line "
			         "%lld)", key, json_integer_value(first));
			ok = false;
			continue;
		}
		json_object_set_new(lines, key, json_integer(kat.line));
		jv = node_to_json(L, v, kind == K_MAP ? K_STR : K_ANY,
		                  depth + 1);
		if (!jv) {
			ok = false;
			continue;
		}
		if (json_object_set_new(obj, key, jv) < 0) {
			cerr_add(L, kat, "key is not valid UTF-8");
			ok = false;
		}
	}
	json_decref(lines);
	if (!ok)
		json_decref(obj);
	return ok ? obj : NULL;
}

/* NULL when an error was reported. */
static json_t *
node_to_json(struct loader *L, yaml_node_t *n, enum kind kind, int depth)
{
	json_t *arr;
	bool ok = true;

	if (depth > MAX_DEPTH) {
		cerr_add(L, mark_pos(n->start_mark), "nested too deeply");
		return NULL;
	}
	if (++L->nodes > MAX_NODES) {
		if (L->nodes == MAX_NODES + 1)
			cerr_add(L, mark_pos(n->start_mark), "more than %d "
			         "values once aliases are expanded", MAX_NODES);
		return NULL;
	}
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return scalar_to_json(L, n, kind);
	case YAML_SEQUENCE_NODE:
		arr = json_array();
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++) {
			json_t *jv = node_to_json(
			    L, yaml_document_get_node(L->doc, *it), K_ANY,
			    depth + 1);

			if (jv)
				json_array_append_new(arr, jv);
			else
				ok = false;
		}
		if (!ok)
			json_decref(arr);
		return ok ? arr : NULL;
	case YAML_MAPPING_NODE:
		return mapping_to_json(L, n, kind, depth);
	default:
		cerr_add(L, mark_pos(n->start_mark), "empty node");
		return NULL;
	}
}

static void
rawmap_init(struct rawmap *rm, struct pos at)
{
	rm->obj = json_object();
	rm->pos = json_object();
	rm->failed = json_object();
	rm->at = at;
	rm->bad = false;
}

static void
rawmap_clear(struct rawmap *rm)
{
	json_decref(rm->obj);
	json_decref(rm->pos);
	json_decref(rm->failed);
	rm->obj = rm->pos = rm->failed = NULL;
}

/* An error was reported about key's value: drop it, so that the checks
 * that follow neither repeat the error nor stumble on it. */
static void
rawmap_fail(struct rawmap *rm, const char *key)
{
	rm->bad = true;
	json_object_set_new(rm->failed, key, json_true());
	json_object_del(rm->obj, key);
}

static bool
rawmap_failed(const struct rawmap *rm, const char *key)
{
	return json_object_get(rm->failed, key) != NULL;
}

/* Takes over val. */
static void
rawmap_set(struct rawmap *rm, const char *key, json_t *val, struct pos k,
           struct pos v)
{
	json_object_set_new(rm->obj, key, val);
	json_object_set_new(rm->pos, key,
	                    json_pack("[IIII]", (json_int_t)k.line,
	                              (json_int_t)k.col, (json_int_t)v.line,
	                              (json_int_t)v.col));
}

static struct pos
rawmap_pos(const struct rawmap *rm, const char *key, bool value)
{
	json_t *a = json_object_get(rm->pos, key);
	struct pos p = rm->at;
	size_t o = value ? 2 : 0;

	if (a) {
		p.line = (unsigned long)json_integer_value(json_array_get(a, o));
		p.col = (unsigned long)json_integer_value(json_array_get(a, o + 1));
	}
	return p;
}

/* One key: value of a target or defaults mapping.  merged: it comes from
 * a "<<" merge key and yields to keys given in the mapping itself. */
static void
rawmap_add_yaml(struct loader *L, struct rawmap *rm, yaml_node_t *k,
                yaml_node_t *v, bool merged)
{
	struct pos kat = mark_pos(k->start_mark), vat = mark_pos(v->start_mark);
	const struct field *f;
	const char *key;
	json_t *jv;

	if (k->type != YAML_SCALAR_NODE) {
		cerr_add(L, kat, "mapping keys must be strings");
		rm->bad = true;
		return;
	}
	key = (const char *)k->data.scalar.value;
	if (json_object_get(rm->pos, key)) {
		if (!merged) {
			cerr_add(L, kat, "duplicate key \"%s\" (first at line "
			         "%lu)", key, rawmap_pos(rm, key, false).line);
			rm->bad = true;
		}
		return;
	}
	if (slo_key(key)) { /* for sm-report, not the record: slo.c */
		char why[160];

		if (slo_check(v, why, sizeof(why)) != 0) {
			cerr_add(L, vat, "%s", why);
			rm->bad = true;
		}
		return;
	}
	if (!(f = field_find(L, key))) {
		unknown_field(L, kat, key);
		rm->bad = true;
		return;
	}
	if (!(jv = node_to_json(L, v, f->kind, 1))) {
		rawmap_fail(rm, key);
		return;
	}
	rawmap_set(rm, key, jv, kat, vat);
}

static void
rawmap_from_yaml(struct loader *L, yaml_node_t *n, struct rawmap *rm,
                 const char *what)
{
	yaml_node_pair_t *pr;

	rawmap_init(rm, mark_pos(n->start_mark));
	if (n->type != YAML_MAPPING_NODE) {
		cerr_add(L, rm->at, "%s must be a mapping", what);
		rm->bad = true;
		return;
	}
	for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = yaml_document_get_node(L->doc, pr->key);

		if (k->type == YAML_SCALAR_NODE &&
		    !strcmp((const char *)k->data.scalar.value, "<<"))
			continue;
		rawmap_add_yaml(L, rm, k,
		                yaml_document_get_node(L->doc, pr->value), false);
	}
	/* "<<: *anchor" (or a list of them): keys not given here. */
	for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = yaml_document_get_node(L->doc, pr->key);
		yaml_node_t *v = yaml_document_get_node(L->doc, pr->value);
		yaml_node_item_t one = pr->value, *it, *end;

		if (k->type != YAML_SCALAR_NODE ||
		    strcmp((const char *)k->data.scalar.value, "<<"))
			continue;
		if (v->type == YAML_SEQUENCE_NODE) {
			it = v->data.sequence.items.start;
			end = v->data.sequence.items.top;
		} else {
			it = &one;
			end = &one + 1;
		}
		for (; it < end; it++) {
			yaml_node_t *m = yaml_document_get_node(L->doc, *it);

			if (m->type != YAML_MAPPING_NODE) {
				cerr_add(L, mark_pos(m->start_mark),
				         "\"<<\" merges mappings only");
				rm->bad = true;
				continue;
			}
			for (yaml_node_pair_t *q = m->data.mapping.pairs.start;
			     q < m->data.mapping.pairs.top; q++)
				rawmap_add_yaml(
				    L, rm, yaml_document_get_node(L->doc, q->key),
				    yaml_document_get_node(L->doc, q->value),
				    true);
		}
	}
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
		json_object_set(rm->pos, to, json_object_get(rm->pos, from));
	}
	json_object_del(rm->obj, from);
	json_object_del(rm->pos, from);
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
	json_object_set(rm->pos, to, json_object_get(rm->pos, from));
drop:
	json_object_del(rm->obj, from);
	json_object_del(rm->pos, from);
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

/* Most mappings are valid, and one run of lib's validator over all their
 * fields together says so; check_fields() then needs no run per field. */
static bool
fields_valid_together(const struct rawmap *rm)
{
	json_t *o = json_object(), *val;
	const char *key;
	struct target *t;
	char err[256];
	bool ok;

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
	if (!json_object_get(o, "target"))
		json_object_set_new(o, "target", json_string("x"));
	if (!json_object_get(o, "url"))
		json_object_set_new(o, "url", json_string("http://localhost/"));
	t = target_from_json(o, err, sizeof(err));
	json_decref(o);
	if (!t)
		return false;
	val = json_object_get(rm->obj, "interval");
	ok = !val || json_is_null(val) ||
	     (t->interval_ms >= CONFIG_MIN_INTERVAL_MS &&
	      t->interval_ms <= CONFIG_MAX_INTERVAL_MS);
	target_free(&t);
	return ok;
}

/* Each field alone, so that one mapping can yield several errors, each at
 * its own value: lib's validator on a minimal record plus that field. */
static void
check_fields(struct loader *L, struct rawmap *rm)
{
	const char *key;
	json_t *val;
	void *tmp;

	if (fields_valid_together(rm)) {
		static const char *const res[] = {"regex", "regex_absent"};

		for (size_t i = 0; i < 2; i++)
			if (json_is_string(val = json_object_get(rm->obj, res[i])))
				check_regex(L, rm, res[i], json_string_value(val));
		return;
	}
	json_object_foreach_safe(rm->obj, tmp, key, val) {
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
		if (!strcmp(key, "interval") &&
		    (t->interval_ms < CONFIG_MIN_INTERVAL_MS ||
		     t->interval_ms > CONFIG_MAX_INTERVAL_MS)) {
			cerr_add(L, rawmap_pos(rm, key, true),
			         "field \"interval\" must be between 100ms and "
			         "31d");
			rawmap_fail(rm, key);
		}
		target_free(&t);
		if ((!strcmp(key, "regex") || !strcmp(key, "regex_absent")) &&
		    json_is_string(val))
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
 * by key.  A null in the target (or in its headers/labels) unsets. */
static void
merge_defaults(struct rawmap *rm, const struct rawmap *defs)
{
	const char *key;
	json_t *dval;

	json_object_foreach(defs->obj, key, dval) {
		json_t *tval = json_object_get(rm->obj, key);

		if (!tval) {
			json_object_set(rm->obj, key, dval);
			json_object_set(rm->pos, key,
			                json_object_get(defs->pos, key));
		} else if (json_is_object(tval) && json_is_object(dval)) {
			json_t *m = json_copy(dval);

			json_object_update(m, tval);
			json_object_set_new(rm->obj, key, m);
		}
	}
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
	size_t idx;
};

static int
named_cmp(const void *a, const void *b)
{
	const struct named *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Every name (of valid and invalid targets alike) appears once. */
static void
check_unique(struct loader *L, struct named *v, size_t n)
{
	if (n > 1) /* (qsort(NULL, 0, ...) is undefined) */
		qsort(v, n, sizeof(*v), named_cmp);
	for (size_t i = 1, first = 0; i < n; i++) {
		if (strcmp(v[first].name, v[i].name)) {
			first = i;
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
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
}

static void
config_add(struct config *cfg, struct target *t, int64_t interval_ms,
           unsigned long line)
{
	struct config_target *ct;
	json_t *rec;

	if (cfg->n == cfg->cap) {
		cfg->cap = cfg->cap ? cfg->cap * 2 : 64;
		cfg->v = xrealloc(cfg->v, cfg->cap * sizeof(*cfg->v));
	}
	ct = &cfg->v[cfg->n++];
	ct->name = xstrdup(t->target);
	/* Encoded now, once: 100,000 JSON trees kept until the end of the
	 * load would cost far more than their text. */
	rec = target_to_json(t);
	if (!(ct->json = json_dumps(rec, JSON_COMPACT)))
		die(EX_SOFTWARE, "cannot encode target \"%s\"", t->target);
	json_decref(rec);
	ct->json_len = strlen(ct->json) - 1;
	ct->json[ct->json_len] = '\0';
	ct->interval_ms = interval_ms;
	ct->timeout_ms = t->timeout_ms;
	ct->hash = sched_hash(ct->name);
	ct->line = line;
}

static void
check_defaults(struct loader *L, struct rawmap *defs)
{
	static const char *const per_target[] = {"target", "name"};

	for (size_t i = 0; i < 2; i++) {
		if (!json_object_get(defs->obj, per_target[i]))
			continue;
		cerr_add(L, rawmap_pos(defs, per_target[i], false),
		         "\"%s\" cannot be a default: every target needs its "
		         "own", per_target[i]);
		rawmap_fail(defs, per_target[i]);
	}
	normalize(L, defs);
	check_fields(L, defs);
	drop_nulls(defs->obj);
}

/* The whole target, once its fields passed one by one: what only the
 * whole can tell (a missing url, interval against timeout, its name). */
static struct target *
check_target(struct loader *L, struct rawmap *rm, struct named *nm)
{
	struct target *t;
	char err[256], a[32], b[32];
	int64_t interval;

	/* A refused url was reported: stand in for it, check the rest. */
	if (rawmap_failed(rm, "url"))
		json_object_set_new(rm->obj, "url",
		                    json_string("http://localhost/"));
	t = target_from_json(rm->obj, err, sizeof(err));
	if (!t) {
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
	struct target *t;

	normalize(L, rm);
	check_fields(L, rm);
	if (defs)
		merge_defaults(rm, defs);
	else
		drop_nulls(rm->obj);
	if (B->nn == B->cap) {
		B->cap = B->cap ? B->cap * 2 : 64;
		B->names = xrealloc(B->names, B->cap * sizeof(*B->names));
	}
	memset(&B->names[B->nn], 0, sizeof(*B->names));
	B->names[B->nn].idx = B->idx++;
	if ((t = check_target(L, rm, &B->names[B->nn]))) {
		if (B->names[B->nn].name)
			B->nn++;
		if (!rm->bad && !(defs && defs->bad))
			config_add(B->cfg, t, t->interval_ms, rm->at.line);
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

static struct config *
load_yaml(struct loader *L, FILE *fp)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	yaml_node_t *root, *defs_node = NULL, *targets_node = NULL;
	struct rawmap defs, rm;
	struct builder B;
	struct config *cfg = NULL;
	bool have_defs = false;

	if (!yaml_parser_initialize(&parser))
		die(EX_SOFTWARE, "out of memory");
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, &doc))
		goto parse_error;
	L->doc = &doc;
	if (!(root = yaml_document_get_root_node(&doc))) {
		cerr_add(L, (struct pos){1, 1}, "empty configuration (expected "
		         "a mapping with \"targets\")");
		goto out;
	}
	if (!yaml_parser_load(&parser, &extra)) {
		yaml_document_delete(&doc);
		L->doc = NULL;
		goto parse_error;
	}
	if (yaml_document_get_root_node(&extra))
		cerr_add(L, mark_pos(extra.start_mark),
		         "only one YAML document is allowed");
	yaml_document_delete(&extra);
	if (root->type != YAML_MAPPING_NODE) {
		cerr_add(L, mark_pos(root->start_mark), "expected a mapping "
		         "with \"defaults\" and \"targets\"");
		goto out;
	}
	for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
	     pr < root->data.mapping.pairs.top; pr++) {
		static const char *const top[] = {"defaults", "targets"};
		yaml_node_t *k = yaml_document_get_node(&doc, pr->key);
		yaml_node_t *v = yaml_document_get_node(&doc, pr->value);
		yaml_node_t **slot;
		const char *key;

		if (k->type != YAML_SCALAR_NODE) {
			cerr_add(L, mark_pos(k->start_mark),
			         "mapping keys must be strings");
			continue;
		}
		key = (const char *)k->data.scalar.value;
		if (!strcmp(key, "defaults")) {
			slot = &defs_node;
		} else if (!strcmp(key, "targets")) {
			slot = &targets_node;
		} else if (!strncmp(key, "x-", 2)) {
			continue; /* a place for anchors, as in compose files */
		} else {
			unknown_key(L, mark_pos(k->start_mark), key, top, 2);
			continue;
		}
		if (*slot)
			cerr_add(L, mark_pos(k->start_mark),
			         "duplicate key \"%s\" (first at line %zu)", key,
			         (*slot)->start_mark.line + 1);
		else
			*slot = v;
	}
	if (!targets_node) {
		cerr_add(L, mark_pos(root->start_mark), "no \"targets\" list");
		goto out;
	}
	if (defs_node && !(defs_node->type == YAML_SCALAR_NODE &&
	                   is_null_text((const char *)defs_node->data.scalar.value,
	                                defs_node->data.scalar.length))) {
		rawmap_from_yaml(L, defs_node, &defs, "\"defaults\"");
		have_defs = true;
	}
	build_begin(L, &B, have_defs ? &defs : NULL);
	if (targets_node->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *it = targets_node->data.sequence.items.start;
		     it < targets_node->data.sequence.items.top; it++) {
			rawmap_from_yaml(L, yaml_document_get_node(&doc, *it),
			                 &rm, "a target");
			build_one(L, &B, &rm);
		}
	} else if (!(targets_node->type == YAML_SCALAR_NODE &&
	             is_null_text(
	                 (const char *)targets_node->data.scalar.value,
	                 targets_node->data.scalar.length))) {
		cerr_add(L, mark_pos(targets_node->start_mark),
		         "\"targets\" must be a list of mappings");
	}
	cfg = build_end(L, &B);
	if (have_defs)
		rawmap_clear(&defs);
out:
	yaml_document_delete(&doc);
	L->doc = NULL;
	yaml_parser_delete(&parser);
	return cfg;

parse_error:
	if (parser.error == YAML_MEMORY_ERROR)
		die(EX_SOFTWARE, "out of memory");
	if (parser.error == YAML_READER_ERROR)
		cerr_add(L, (struct pos){0, 0}, "%s",
		         parser.problem ? parser.problem : "read error");
	else if (parser.context)
		cerr_add(L, mark_pos(parser.problem_mark), "%s %s (from line "
		         "%zu)", parser.problem, parser.context,
		         parser.context_mark.line + 1);
	else
		cerr_add(L, mark_pos(parser.problem_mark), "%s",
		         parser.problem ? parser.problem : "YAML syntax error");
	yaml_parser_delete(&parser);
	return NULL;
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
			fprintf(stderr, "%s: error: %s: %s\n", diag_progname(),
			        path, strerror(errno));
			return NULL;
		}
		cfg = load_yaml(&L, fp);
		fclose(fp);
	} else {
		int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC)
		                           : STDIN_FILENO;

		if (fd < 0) {
			fprintf(stderr, "%s: error: %s: %s\n", diag_progname(),
			        path, strerror(errno));
			return NULL;
		}
		if (fd == STDIN_FILENO)
			L.path = "<stdin>";
		cfg = load_ndjson(&L, fd);
		if (fd != STDIN_FILENO)
			close(fd);
	}
	free(L.re_ok);
	if (L.nerrs) {
		cerr_print_all(&L);
		config_free(&cfg);
		return NULL;
	}
	free(L.errs);
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
