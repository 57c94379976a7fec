/*
 * ynode.h - one node of sites.yaml as config.c's streaming loader builds
 * it: a small tree per target, aliases shared by reference.  Read by the
 * parts of sm-schedule that check keys the target record does not carry
 * (alerts.c, slo.c), so their errors have line:column too.
 */
#ifndef SM_SCHEDULE_YNODE_H
#define SM_SCHEDULE_YNODE_H

#include <stdbool.h>
#include <stddef.h>

struct pos {
	unsigned long line, col; /* 1-based; 0 when unknown */
};

enum ytype { Y_SCALAR, Y_SEQ, Y_MAP };

struct ynode;

struct yref {
	struct ynode *n;
	bool alias; /* reached through an alias */
};

struct ynode {
	enum ytype type;
	bool plain;  /* a plain scalar without a tag: the core schema reads it */
	bool merge;  /* the plain key "<<" */
	bool bad;    /* an error was reported about it: converts to nothing */
	char tag;    /* a core tag: 's'tr, 'i'nt, 'f'loat, 'b'ool, 'n'ull; or 0 */
	unsigned short height; /* levels, aliases expanded (at most MAX_DEPTH) */
	unsigned refs;
	struct pos at;
	size_t size; /* nodes, aliases expanded (saturating) */
	char *s;     /* a scalar's text, NUL-terminated (it may hold NULs) */
	size_t len;
	struct yref *kids; /* items, or key, value, key, value, ... */
	size_t n, cap;
};

/* A scalar's text, or NULL for a collection or a node already refused. */
static inline const char *
ynode_text(const struct ynode *n)
{
	return n->type == Y_SCALAR && !n->bad ? n->s : NULL;
}

/*
 * Calls pair(ctx, key, value, merged) on every key and value of mapping m:
 * its own first, then those of its "<<" merge keys (a mapping or a list of
 * them, the first one winning), flagged as merged, so their keys can yield
 * to those given before.  A merge value that is not a mapping goes to
 * refuse(ctx, node) instead (node->bad: already reported); false if there
 * was one.  In config.c.
 */
typedef void ymap_pair_fn(void *ctx, const struct ynode *k,
                          const struct ynode *v, bool merged);
typedef void ymap_refuse_fn(void *ctx, const struct ynode *n);
bool ymap_foreach(const struct ynode *m, ymap_pair_fn *pair,
                  ymap_refuse_fn *refuse, void *ctx, bool merged);

#endif
