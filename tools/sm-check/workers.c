/*
 * workers.c - a small thread pool with an eventfd per completion queue.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sm.h"
#include "rxcache.h"
#include "workers.h"

struct node {
	struct node *next;
	struct wq *q;
	void *arg;
};

struct list {
	struct node *head, *tail;
};

struct wq {
	struct list done; /* under mu */
	int efd;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct list todo;
static void (*job_fn)(void *);
static pthread_t *threads;
static size_t n_threads, max_threads, n_idle;
static bool stopping;

static void
push(struct list *l, struct node *n)
{
	n->next = NULL;
	if (l->tail != NULL)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
}

static struct node *
pop(struct list *l)
{
	struct node *n = l->head;

	if (n != NULL && (l->head = n->next) == NULL)
		l->tail = NULL;
	return n;
}

static void *
worker(void *unused)
{
	static const uint64_t one = 1;
	struct node *n;

	pthread_mutex_lock(&mu);
	for (;;) {
		while (todo.head == NULL && !stopping) {
			n_idle++;
			pthread_cond_wait(&cv, &mu);
			n_idle--;
		}
		if ((n = pop(&todo)) == NULL)
			break; /* stopping, nothing left */
		pthread_mutex_unlock(&mu);
		job_fn(n->arg);
		pthread_mutex_lock(&mu);
		push(&n->q->done, n);
		/* The counter cannot overflow: the loop reads it down. */
		(void)!write(n->q->efd, &one, sizeof one);
	}
	pthread_mutex_unlock(&mu);
	rx_thread_end();
	return NULL;
}

void
workers_init(size_t n, void (*fn)(void *))
{
	max_threads = n > 0 ? n : 1;
	job_fn = fn;
	threads = xcalloc(max_threads, sizeof *threads);
}

struct wq *
workers_queue_new(void)
{
	struct wq *q = xcalloc(1, sizeof *q);

	if ((q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		die(EX_SOFTWARE, "eventfd:");
	return q;
}

void
workers_queue_free(struct wq **q)
{
	if (*q == NULL)
		return;
	close((*q)->efd);
	free(*q);
	*q = NULL;
}

int
workers_fd(const struct wq *q)
{
	return q->efd;
}

void
workers_submit(struct wq *q, void *arg)
{
	struct node *n = xmalloc(sizeof *n);
	int rc;

	n->arg = arg;
	n->q = q;
	pthread_mutex_lock(&mu);
	push(&todo, n);
	/* A new thread when every one is busy, up to the maximum. */
	if (n_idle == 0 && n_threads < max_threads) {
		if ((rc = pthread_create(&threads[n_threads], NULL, worker,
		                         NULL)) != 0) {
			errno = rc;
			if (n_threads == 0)
				die(EX_SOFTWARE, "pthread_create:");
		} else {
			n_threads++;
		}
	}
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

void *
workers_take(struct wq *q)
{
	uint64_t count;
	struct node *n;
	void *arg = NULL;

	(void)!read(q->efd, &count, sizeof count);
	pthread_mutex_lock(&mu);
	if ((n = pop(&q->done)) != NULL)
		arg = n->arg;
	pthread_mutex_unlock(&mu);
	free(n);
	return arg;
}

void
workers_stop(void)
{
	pthread_mutex_lock(&mu);
	stopping = true;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (size_t i = 0; i < n_threads; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	threads = NULL;
	n_threads = 0;
}
