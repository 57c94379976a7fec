/*
 * workers.h - a few threads that run the work a probe loop must not wait
 * for (a regex on a body), and hand each result back to the loop that
 * submitted it, through a descriptor that loop polls.
 *
 * One pool serves every probe loop; each loop has its own completion
 * queue (struct wq).
 */
#ifndef SM_CHECK_WORKERS_H
#define SM_CHECK_WORKERS_H

#include <stddef.h>

struct wq;

/* Prepare (no thread yet: they start with the first job).  The jobs
 * run fn(arg); n_threads at most at once. */
void workers_init(size_t n_threads, void (*fn)(void *));
/* A completion queue for one probe loop, and its end (no job of it may
 * be pending). */
struct wq *workers_queue_new(void);
void workers_queue_free(struct wq **q);
/* The descriptor that becomes readable when a job of q is done. */
int workers_fd(const struct wq *q);
/* Queue arg for a thread; its completion goes to q. */
void workers_submit(struct wq *q, void *arg);
/* A finished job's arg of q, or NULL when none is left (the descriptor
 * is drained first). */
void *workers_take(struct wq *q);
/* Stop and join the threads (no job may be pending). */
void workers_stop(void);

#endif
