/*
 * dlog.c - the durable log of confirmed deliveries, so that sm-notify never
 * resends what a receiver confirmed, also after a crash.
 *
 * One line per confirmed delivery, "RECEIVER<TAB>EVENT-ID\n", appended and
 * fdatasync'd (dlog_sync, once per loop turn, before the events are
 * acknowledged).  In memory a hash set of the newest `max` entries; the
 * file is rewritten with just those (write, fsync, rename, fsync the
 * directory) when it holds twice as many lines.  A torn last line (a crash
 * mid-write) is cut off at open.  An flock keeps a second sm-notify off
 * the same file.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sm.h"
#include "notify.h"

struct node {
	struct node *next;
	uint64_t hash;
	char key[]; /* "recv\tid" */
};

struct dlog {
	char *path;
	int fd;          /* -1: memory only */
	struct node **buckets;
	size_t n_buckets;
	struct node **ring; /* insertion order, for eviction */
	size_t max, head, count;
	size_t file_lines;
	char *pending;   /* appended text not yet written */
	size_t pend_len, pend_cap;
};

static uint64_t
fnv(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static struct node **
find(const struct dlog *d, const char *key, size_t n, uint64_t h)
{
	struct node **p = &d->buckets[h % d->n_buckets];

	for (; *p; p = &(*p)->next)
		if ((*p)->hash == h && !strncmp((*p)->key, key, n) &&
		    (*p)->key[n] == '\0')
			return p;
	return p;
}

static void
evict_oldest(struct dlog *d)
{
	struct node *old = d->ring[d->head], **p;

	p = find(d, old->key, strlen(old->key), old->hash);
	if (*p == old)
		*p = old->next;
	free(old);
	d->ring[d->head] = NULL;
	d->head = (d->head + 1) % d->max;
	d->count--;
}

/* Add a key (n bytes); false if it was there. */
static bool
set_add(struct dlog *d, const char *key, size_t n)
{
	uint64_t h = fnv(key, n);
	struct node **p = find(d, key, n, h), *nd;

	if (*p)
		return false;
	if (d->count == d->max)
		evict_oldest(d);
	p = find(d, key, n, h); /* eviction may have changed the chain */
	nd = xmalloc(sizeof *nd + n + 1);
	memcpy(nd->key, key, n);
	nd->key[n] = '\0';
	nd->hash = h;
	nd->next = NULL;
	*p = nd;
	d->ring[(d->head + d->count) % d->max] = nd;
	d->count++;
	return true;
}

static void
load(struct dlog *d)
{
	FILE *fp = fdopen(dup(d->fd), "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	off_t good = 0;

	if (!fp)
		die(EX_OSERR, "%s:", d->path);
	while ((n = getline(&line, &cap, fp)) > 0) {
		if (line[n - 1] != '\n')
			break; /* torn by a crash: cut below */
		good += n;
		d->file_lines++;
		if (memchr(line, '\t', (size_t)n) && n > 2)
			set_add(d, line, (size_t)n - 1);
	}
	if (ferror(fp))
		die(EX_IOERR, "%s:", d->path);
	free(line);
	fclose(fp);
	if (ftruncate(d->fd, good) == -1 || lseek(d->fd, 0, SEEK_END) == -1)
		die(EX_IOERR, "%s:", d->path);
}

struct dlog *
dlog_open(const char *path, size_t max)
{
	struct dlog *d = xcalloc(1, sizeof *d);

	d->max = max;
	d->n_buckets = max < 1024 ? 1024 : max;
	d->buckets = xcalloc(d->n_buckets, sizeof *d->buckets);
	d->ring = xcalloc(max, sizeof *d->ring);
	d->fd = -1;
	if (!path)
		return d;
	d->path = xstrdup(path);
	d->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->fd == -1)
		die(EX_CANTCREAT, "delivered log %s:", path);
	if (flock(d->fd, LOCK_EX | LOCK_NB) == -1)
		die(EX_UNAVAILABLE, "delivered log %s: %s", path,
		    errno == EWOULDBLOCK ? "in use by another sm-notify"
		                         : strerror(errno));
	load(d);
	return d;
}

bool
dlog_has(const struct dlog *d, const char *recv, const char *id)
{
	char stack[512], *key = stack;
	size_t rl = strlen(recv), il = strlen(id), n = rl + 1 + il;
	bool found;

	if (n >= sizeof stack)
		key = xmalloc(n + 1);
	memcpy(key, recv, rl);
	key[rl] = '\t';
	memcpy(key + rl + 1, id, il);
	found = *find(d, key, n, fnv(key, n)) != NULL;
	if (key != stack)
		free(key);
	return found;
}

void
dlog_add(struct dlog *d, const char *recv, const char *id)
{
	size_t rl = strlen(recv), il = strlen(id), n = rl + 1 + il;
	char *key;

	if (d->pend_len + n + 1 > d->pend_cap) {
		d->pend_cap = (d->pend_len + n + 1) * 2;
		d->pending = xrealloc(d->pending, d->pend_cap);
	}
	key = d->pending + d->pend_len;
	memcpy(key, recv, rl);
	key[rl] = '\t';
	memcpy(key + rl + 1, id, il);
	if (!set_add(d, key, n))
		return;
	key[n] = '\n';
	d->pend_len += n + 1;
}

static void
write_all(int fd, const char *p, size_t n, const char *path)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			die(EX_IOERR, "delivered log %s:", path);
		p += w;
		n -= (size_t)w;
	}
}

/* Rewrite the file with the entries held in memory. */
static void
compact(struct dlog *d)
{
	char *tmp = xasprintf("%s.tmp", d->path), *dcopy, *dir;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int dfd;
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (fd == -1)
		die(EX_IOERR, "delivered log %s:", tmp);
	for (size_t i = 0; i < d->count; i++) {
		const char *k = d->ring[(d->head + i) % d->max]->key;
		size_t n = strlen(k);

		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2 + 65536;
			buf = xrealloc(buf, cap);
		}
		memcpy(buf + len, k, n);
		buf[len + n] = '\n';
		len += n + 1;
	}
	write_all(fd, buf ? buf : "", len, tmp);
	free(buf);
	if (fsync(fd) == -1)
		die(EX_IOERR, "delivered log %s:", tmp);
	/* The lock moves to the new file before it replaces the old one. */
	if (flock(fd, LOCK_EX | LOCK_NB) == -1)
		die(EX_IOERR, "delivered log %s: lock:", tmp);
	if (rename(tmp, d->path) == -1)
		die(EX_IOERR, "delivered log %s:", d->path);
	dcopy = xstrdup(d->path);
	dir = dirname(dcopy);
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(dfd);
		close(dfd);
	}
	free(dcopy);
	close(d->fd);
	d->fd = fd;
	if (lseek(d->fd, 0, SEEK_END) == -1)
		die(EX_IOERR, "delivered log %s:", d->path);
	d->file_lines = d->count;
	free(tmp);
}

void
dlog_sync(struct dlog *d)
{
	size_t lines = 0;

	if (d->pend_len == 0)
		return;
	if (d->fd == -1) {
		d->pend_len = 0;
		return;
	}
	for (size_t i = 0; i < d->pend_len; i++)
		lines += d->pending[i] == '\n';
	write_all(d->fd, d->pending, d->pend_len, d->path);
	if (fdatasync(d->fd) == -1)
		die(EX_IOERR, "delivered log %s:", d->path);
	d->pend_len = 0;
	d->file_lines += lines;
	if (d->file_lines > 2 * d->max)
		compact(d);
}

bool
dlog_pending(const struct dlog *d)
{
	return d->pend_len > 0;
}

size_t
dlog_count(const struct dlog *d)
{
	return d->count;
}

void
dlog_free(struct dlog **dp)
{
	struct dlog *d = *dp;

	if (!d)
		return;
	for (size_t i = 0; i < d->count; i++)
		free(d->ring[(d->head + i) % d->max]);
	free(d->ring);
	free(d->buckets);
	free(d->pending);
	if (d->fd != -1)
		close(d->fd);
	free(d->path);
	free(d);
	*dp = NULL;
}
