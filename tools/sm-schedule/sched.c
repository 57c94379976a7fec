/* sched.c - stable phases and the due-time heap (see sched.h) */
#include "sched.h"

#include <stdlib.h>

#include "sm.h"

uint64_t
sched_hash(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	return h;
}

int64_t
sched_phase(uint64_t hash, int64_t interval_ms)
{
	/* A splitmix64 finalizer, so that the phase is not correlated with
	 * the shard (hash mod N) when the interval is a multiple of N. */
	uint64_t z = hash + 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (int64_t)(z % (uint64_t)interval_ms);
}

int64_t
sched_next_due(int64_t now_ms, int64_t interval_ms, int64_t phase_ms)
{
	int64_t k = (now_ms - phase_ms) / interval_ms;
	int64_t due = k * interval_ms + phase_ms;

	while (due < now_ms)
		due += interval_ms;
	while (due - interval_ms >= now_ms)
		due -= interval_ms;
	return due;
}

static int
item_less(const struct heap_item *a, const struct heap_item *b)
{
	return a->due < b->due || (a->due == b->due && a->idx < b->idx);
}

static void
swap_items(struct heap_item *a, struct heap_item *b)
{
	struct heap_item t = *a;

	*a = *b;
	*b = t;
}

void
heap_push(struct heap *h, int64_t due, size_t idx)
{
	size_t i;

	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
	}
	i = h->n++;
	h->v[i].due = due;
	h->v[i].idx = idx;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!item_less(&h->v[i], &h->v[parent]))
			break;
		swap_items(&h->v[i], &h->v[parent]);
		i = parent;
	}
}

void
heap_sift_top(struct heap *h)
{
	size_t i = 0;

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && item_less(&h->v[l], &h->v[m]))
			m = l;
		if (r < h->n && item_less(&h->v[r], &h->v[m]))
			m = r;
		if (m == i)
			return;
		swap_items(&h->v[i], &h->v[m]);
		i = m;
	}
}

void
heap_pop(struct heap *h)
{
	if (h->n == 0)
		return;
	h->v[0] = h->v[--h->n];
	heap_sift_top(h);
}

void
heap_clear(struct heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
