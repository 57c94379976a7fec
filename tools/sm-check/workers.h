/*
 * workers.h - a few threads that run the work sm-check's single loop must
 * not wait for (a regex on a body), and hand the results back through a
 * descriptor the loop polls.
 */
#ifndef SM_CHECK_WORKERS_H
#define SM_CHECK_WORKERS_H

#include <stddef.h>

/* Prepare (no thread yet: they start with the first job).  The jobs
 * run fn(arg); n_threads at most at once. */
void workers_init(size_t n_threads, void (*fn)(void *));
/* The descriptor that becomes readable when a job is done. */
int workers_fd(void);
/* Queue arg for a thread. */
void workers_submit(void *arg);
/* A finished job's arg, or NULL when none is left (the descriptor is
 * drained first). */
void *workers_take(void);
/* Jobs queued or running, not yet taken. */
size_t workers_pending(void);
/* Stop and join the threads (no job may be pending). */
void workers_stop(void);

#endif
