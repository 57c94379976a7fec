/* output.c - stdout as an owned buffer; see output.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "output.h"
#include "sm.h"

void
output_init(struct output *o, int fd, bool nonblock)
{
	memset(o, 0, sizeof *o);
	o->fd = fd;
	o->saved_flags = -1;
	o->cap = 1 << 16;
	o->buf = xmalloc(o->cap);
	if (nonblock) {
		int flags = fcntl(fd, F_GETFL);

		if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
			die(EX_OSERR, "stdout: O_NONBLOCK:");
		o->saved_flags = flags;
	}
}

void
output_free(struct output *o)
{
	if (o->saved_flags != -1)
		(void)fcntl(o->fd, F_SETFL, o->saved_flags);
	free(o->buf);
	o->buf = NULL;
}

void
output_append(struct output *o, const void *data, size_t n)
{
	if (o->len + n > o->cap) {
		/* Reclaim what was written before growing. */
		if (o->off > 0) {
			memmove(o->buf, o->buf + o->off, o->len - o->off);
			o->len -= o->off;
			o->off = 0;
		}
		while (o->len + n > o->cap)
			o->cap *= 2;
		o->buf = xrealloc(o->buf, o->cap);
	}
	memcpy(o->buf + o->len, data, n);
	o->len += n;
}

size_t
output_pending(const struct output *o)
{
	return o->len - o->off;
}

static int
write_upto(struct output *o, size_t end)
{
	while (o->off < end) {
		ssize_t r = write(o->fd, o->buf + o->off, end - o->off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		o->off += (size_t)r;
	}
	if (o->off == o->len)
		o->off = o->len = 0;
	return 0;
}

int
output_flush(struct output *o)
{
	return write_upto(o, o->len);
}

int
output_flush_line(struct output *o)
{
	char *nl = memchr(o->buf + o->off, '\n', o->len - o->off);

	return write_upto(o, nl ? (size_t)(nl - o->buf) + 1 : o->len);
}

bool
output_at_line_end(const struct output *o)
{
	return o->off == 0 || o->buf[o->off - 1] == '\n';
}

void
output_discard(struct output *o)
{
	o->off = o->len = 0;
}
