/*
 * sched.h - sm-schedule's clock arithmetic and its min-heap of due times.
 *
 * Due times live in the unix-millisecond frame: a target with interval I
 * and phase P is due at every k*I + P, so its rhythm does not depend on
 * when the process started and survives restarts and reloads.
 */
#ifndef SM_SCHEDULE_SCHED_H
#define SM_SCHEDULE_SCHED_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a (64 bit) of a target name: the shard key and the phase seed.
 * Stable across versions and hosts; --shard relies on it. */
uint64_t sched_hash(const char *name);
/* The target's fixed offset within its interval, in [0, interval_ms). */
int64_t sched_phase(uint64_t hash, int64_t interval_ms);
/* The first k*interval_ms + phase_ms that is >= now_ms. */
int64_t sched_next_due(int64_t now_ms, int64_t interval_ms, int64_t phase_ms);

struct heap_item {
	int64_t due; /* unix ms */
	size_t idx;  /* into the caller's array; breaks ties (input order) */
};

/* Binary min-heap on (due, idx). */
struct heap {
	struct heap_item *v;
	size_t n, cap;
};

void heap_push(struct heap *h, int64_t due, size_t idx);
/* Restore the order after the caller changed v[0].due. */
void heap_sift_top(struct heap *h);
/* Remove v[0]. */
void heap_pop(struct heap *h);
void heap_clear(struct heap *h); /* frees the storage */

#endif
