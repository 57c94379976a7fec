/* track.c - unacknowledged records per partition, and the ack stream. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sm.h"
#include "track.h"

void
tracker_init(struct tracker *t)
{
	memset(t, 0, sizeof *t);
}

void
tracker_free(struct tracker *t)
{
	size_t i;

	for (i = 0; i < t->n_parts; i++) {
		free(t->parts[i]->topic);
		free(t->parts[i]->qtopic);
		free(t->parts[i]->ring);
		free(t->parts[i]);
	}
	free(t->parts);
	memset(t, 0, sizeof *t);
}

struct part *
tracker_find(struct tracker *t, const char *topic, int32_t partition)
{
	size_t i;

	if (t->last < t->n_parts && t->parts[t->last]->partition == partition &&
	    strcmp(t->parts[t->last]->topic, topic) == 0)
		return t->parts[t->last];
	for (i = 0; i < t->n_parts; i++)
		if (t->parts[i]->partition == partition &&
		    strcmp(t->parts[i]->topic, topic) == 0) {
			t->last = i;
			return t->parts[i];
		}
	return NULL;
}

struct part *
tracker_get(struct tracker *t, const char *topic, int32_t partition)
{
	struct part *p = tracker_find(t, topic, partition);
	json_t *s;

	if (p != NULL)
		return p;
	p = xcalloc(1, sizeof *p);
	p->topic = xstrdup(topic);
	s = json_string(topic);
	p->qtopic = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
	json_decref(s);
	if (p->qtopic == NULL)
		p->qtopic = xstrdup("\"\"");
	p->partition = partition;
	p->next_commit = -1;
	p->committed = -1;
	t->parts = xrealloc(t->parts, (t->n_parts + 1) * sizeof *t->parts);
	t->parts[t->n_parts++] = p;
	return p;
}

static struct entry *
at(struct part *p, size_t i)
{
	return &p->ring[(p->head + i) % p->cap];
}

/* Pop acknowledged records off the front: they can be committed. */
static void
advance(struct part *p)
{
	while (p->count > 0 && p->ring[p->head].acked) {
		p->next_commit = p->ring[p->head].offset + 1;
		p->head = (p->head + 1) % p->cap;
		p->count--;
	}
}

static void
grow(struct part *p)
{
	size_t ncap = p->cap ? p->cap * 2 : 64, i;
	struct entry *n = xmalloc(ncap * sizeof *n);

	for (i = 0; i < p->count; i++)
		n[i] = *at(p, i);
	free(p->ring);
	p->ring = n;
	p->cap = ncap;
	p->head = 0;
}

void
part_emit(struct tracker *t, struct part *p, int64_t offset, bool acked)
{
	/* The consumer went back (a reset or a seek): what follows will be
	 * emitted again, so forget the later entries. */
	while (p->count > 0 && at(p, p->count - 1)->offset >= offset) {
		if (!at(p, p->count - 1)->acked)
			t->inflight--;
		p->count--;
	}
	if (p->count == p->cap)
		grow(p);
	*at(p, p->count) = (struct entry){ .offset = offset, .acked = acked };
	p->count++;
	if (!acked)
		t->inflight++;
	advance(p);
}

bool
part_ack(struct tracker *t, struct part *p, int64_t offset)
{
	size_t lo = 0, hi = p->count;

	if (!p->assigned)
		return false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (at(p, mid)->offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == p->count || at(p, lo)->offset != offset || at(p, lo)->acked)
		return false;
	at(p, lo)->acked = true;
	t->inflight--;
	advance(p);
	return true;
}

void
tracker_ack_all(struct tracker *t)
{
	size_t i;

	for (i = 0; i < t->n_parts; i++) {
		struct part *p = t->parts[i];

		if (p->count > 0) {
			p->next_commit = at(p, p->count - 1)->offset + 1;
			p->head = p->count = 0;
		}
	}
	t->inflight = 0;
}

void
part_reset(struct tracker *t, struct part *p)
{
	size_t i;

	for (i = 0; i < p->count; i++)
		if (!at(p, i)->acked)
			t->inflight--;
	p->head = p->count = 0;
	p->next_commit = -1;
	p->committed = -1;
	p->eof = false;
}

rd_kafka_topic_partition_list_t *
tracker_commit_list(struct tracker *t)
{
	rd_kafka_topic_partition_list_t *l = NULL;
	size_t i;

	for (i = 0; i < t->n_parts; i++) {
		struct part *p = t->parts[i];

		if (!p->assigned || p->next_commit < 0 ||
		    p->next_commit <= p->committed)
			continue;
		if (l == NULL)
			l = rd_kafka_topic_partition_list_new(8);
		rd_kafka_topic_partition_list_add(l, p->topic, p->partition)
		    ->offset = p->next_commit;
	}
	return l;
}

void
tracker_committed(struct tracker *t,
                  const rd_kafka_topic_partition_list_t *offsets)
{
	int i;

	for (i = 0; offsets != NULL && i < offsets->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
		struct part *p;

		if (tp->err || tp->offset < 0)
			continue;
		p = tracker_find(t, tp->topic, tp->partition);
		if (p == NULL || tp->offset <= p->committed)
			continue;
		/* Counted once: a sync commit comes back through the
		 * offset commit callback too, later (after a revoke, when
		 * committed was reset: hence assigned). */
		if (p->assigned)
			t->commits++;
		p->committed = tp->offset;
	}
}

bool
tracker_all_committed(const struct tracker *t)
{
	size_t i;

	for (i = 0; i < t->n_parts; i++) {
		const struct part *p = t->parts[i];

		if (p->assigned && p->next_commit >= 0 &&
		    p->next_commit > p->committed)
			return false;
	}
	return true;
}

/* ---- the ack stream -------------------------------------------------- */

struct ack_stream {
	int fd;
	char *name;
	bool pollable;    /* FIFO or socket: poll(2) tells us when to read */
	bool discarding;  /* inside the tail of a too-long line */
	bool closed;
	char *buf;
	size_t len, cap;
	unsigned long lineno;
};

struct ack_stream *
ack_stream_open(const char *path)
{
	struct ack_stream *as = xcalloc(1, sizeof *as);
	struct stat st;

	/* Non-blocking: a FIFO opens before its writer does. */
	if ((as->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) == -1)
		die(EX_NOINPUT, "--ack %s:", path);
	if (fstat(as->fd, &st) == -1)
		die(EX_NOINPUT, "--ack %s:", path);
	as->pollable = !S_ISREG(st.st_mode);
	as->name = xstrdup(path);
	as->cap = 65536;
	as->buf = xmalloc(as->cap);
	return as;
}

void
ack_stream_free(struct ack_stream **asp)
{
	struct ack_stream *as = *asp;

	if (as == NULL)
		return;
	close(as->fd);
	free(as->name);
	free(as->buf);
	free(as);
	*asp = NULL;
}

int
ack_stream_poll_fd(const struct ack_stream *as)
{
	return as->pollable && !as->closed ? as->fd : -1;
}

const char *
ack_stream_name(const struct ack_stream *as)
{
	return as->name;
}

/* Hand out every complete line in the buffer; keep the partial tail. */
static void
split_lines(struct ack_stream *as,
            void (*fn)(const char *, size_t, unsigned long, void *),
            void *arg)
{
	size_t start = 0;
	char *nl;

	while ((nl = memchr(as->buf + start, '\n', as->len - start)) != NULL) {
		size_t end = (size_t)(nl - as->buf), n = end - start;

		if (as->discarding) {
			as->discarding = false;
		} else {
			as->lineno++;
			if (n > 0 && as->buf[start + n - 1] == '\r')
				n--;
			if (n > SM_MAX_LINE) {
				warn_input(as->name, as->lineno, as->buf + start,
				           n, "line longer than %d bytes",
				           SM_MAX_LINE);
			} else {
				as->buf[start + n] = '\0';
				fn(as->buf + start, n, as->lineno, arg);
			}
		}
		start = end + 1;
	}
	memmove(as->buf, as->buf + start, as->len - start);
	as->len -= start;
	if (as->discarding) {
		as->len = 0; /* more of a too-long line */
	} else if (as->len > SM_MAX_LINE + 1 ||
	           (as->len == SM_MAX_LINE + 1 &&
	            as->buf[as->len - 1] != '\r')) {
		/* No newline yet, and longer than any record (SM_MAX_LINE
		 * bytes, then perhaps the '\r' of "\r\n"): drop it. */
		as->lineno++;
		warn_input(as->name, as->lineno, as->buf, as->len,
		           "line longer than %d bytes", SM_MAX_LINE);
		as->discarding = true;
		as->len = 0;
	} else if (as->len + 1 >= as->cap) {
		/* Room for the line, "\r\n" and nothing more. */
		as->cap = as->cap * 2 > SM_MAX_LINE + 3 ? SM_MAX_LINE + 3
		                                        : as->cap * 2;
		as->buf = xrealloc(as->buf, as->cap);
	}
}

bool
ack_stream_read(struct ack_stream *as, short revents,
                void (*fn)(const char *, size_t, unsigned long, void *),
                void *arg, size_t max_bytes)
{
	size_t total = 0;

	if (as->closed)
		return false;
	if (as->pollable && !(revents & (POLLIN | POLLHUP | POLLERR)))
		return true;
	while (total < max_bytes) {
		ssize_t r = read(as->fd, as->buf + as->len,
		                 as->cap - 1 - as->len);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			warn("--ack %s:", as->name);
			as->closed = true;
			return false;
		}
		if (r == 0) {
			/* A regular file may grow; a FIFO whose writer has come
			 * and gone reports POLLHUP (before its first writer,
			 * read(2) returns 0 too, and that means nothing). */
			if (as->pollable && (revents & POLLHUP)) {
				as->closed = true;
				return false;
			}
			return true;
		}
		total += (size_t)r;
		as->len += (size_t)r;
		split_lines(as, fn, arg);
	}
	return true;
}
