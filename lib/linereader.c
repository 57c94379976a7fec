/*
 * linereader.c - NDJSON lines from a file descriptor, one reused buffer that
 * grows to at most max_line bytes (and room for "\r\n").  A line of
 * max_line bytes is taken, its terminator not counted; a longer line is
 * reported once (with its prefix) and the rest of it is thrown away, so
 * memory stays bounded however hostile the input.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "sm.h"

struct line_reader {
	int fd;
	char *name;
	char *buf;
	size_t cap;      /* allocated bytes, at most BUF_MAX(max_line) */
	size_t max_line;
	size_t start;    /* first unreturned byte */
	size_t end;      /* one past the last byte read */
	size_t scanned;  /* bytes after start known to hold no newline */
	unsigned long lineno;
	bool discarding; /* inside the tail of a too-long line */
	bool eof;
};

/* The line, "\r\n", and the NUL written after a last line without one. */
#define BUF_MAX(max_line) ((max_line) + 3)

struct line_reader *
line_reader_new(int fd, const char *name, size_t max_line)
{
	struct line_reader *lr = xcalloc(1, sizeof *lr);

	lr->fd = fd;
	lr->name = xstrdup(name);
	lr->max_line = max_line;
	lr->cap = BUF_MAX(max_line < 65536 ? max_line : 65536);
	lr->buf = xmalloc(lr->cap);
	return lr;
}

void
line_reader_free(struct line_reader **lrp)
{
	struct line_reader *lr = *lrp;

	if (lr == NULL)
		return;
	free(lr->name);
	free(lr->buf);
	free(lr);
	*lrp = NULL;
}

unsigned long
line_reader_lineno(const struct line_reader *lr)
{
	return lr->lineno;
}

const char *
line_reader_name(const struct line_reader *lr)
{
	return lr->name;
}

bool
line_reader_pending(const struct line_reader *lr)
{
	return lr->end > lr->start;
}

bool
line_reader_has_line(const struct line_reader *lr)
{
	const char *p = lr->buf + lr->start, *end = lr->buf + lr->end;
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	/* The tail of a too-long line ends at its newline: not a line. */
	if (nl != NULL && lr->discarding)
		nl = memchr(nl + 1, '\n', (size_t)(end - nl - 1));
	return nl != NULL || (lr->eof && lr->end > lr->start && !lr->discarding);
}

/* Hand out buf[start, nl) as a line and move past the newline. */
static enum line_status
take_line(struct line_reader *lr, size_t nl, size_t skip, char **line,
          size_t *len)
{
	size_t n = nl - lr->start;

	*line = lr->buf + lr->start;
	if (n > 0 && (*line)[n - 1] == '\r')
		n--;
	lr->start = nl + skip;
	lr->scanned = 0;
	lr->lineno++;
	if (n > lr->max_line) { /* whole in the buffer, yet too long */
		*len = lr->max_line;
		return LINE_TOO_LONG;
	}
	(*line)[n] = '\0';
	*len = n;
	return LINE_OK;
}

/* Make room at the end of the buffer: compact, then grow up to the limit. */
static void
make_room(struct line_reader *lr)
{
	if (lr->start > 0) {
		memmove(lr->buf, lr->buf + lr->start, lr->end - lr->start);
		lr->end -= lr->start;
		lr->start = 0;
	}
	if (lr->end + 1 >= lr->cap && lr->cap < BUF_MAX(lr->max_line)) {
		size_t ncap = lr->cap * 2;

		if (ncap > BUF_MAX(lr->max_line))
			ncap = BUF_MAX(lr->max_line);
		lr->buf = xrealloc(lr->buf, ncap);
		lr->cap = ncap;
	}
}

/* No newline in what is buffered, and already more than a line can
 * hold: max_line bytes, then perhaps the '\r' of a "\r\n". */
static bool
too_long(const struct line_reader *lr)
{
	size_t n = lr->end - lr->start;

	return n > lr->max_line + 1 ||
	       (n == lr->max_line + 1 && lr->buf[lr->end - 1] != '\r');
}

enum line_status
line_reader_next(struct line_reader *lr, char **line, size_t *len)
{
	for (;;) {
		char *nl = memchr(lr->buf + lr->start + lr->scanned, '\n',
		                  lr->end - lr->start - lr->scanned);

		if (nl != NULL) {
			size_t at = (size_t)(nl - lr->buf);

			if (!lr->discarding)
				return take_line(lr, at, 1, line, len);
			lr->discarding = false;
			lr->start = at + 1;
			lr->scanned = 0;
			continue;
		}
		lr->scanned = lr->end - lr->start;
		if (lr->discarding) {
			lr->start = lr->end = lr->scanned = 0;
		} else if (too_long(lr)) {
			/* Report the prefix once, drop the rest of the line. */
			*line = lr->buf + lr->start;
			*len = lr->end - lr->start;
			lr->discarding = true;
			lr->lineno++;
			lr->start = lr->end;
			lr->scanned = 0;
			return LINE_TOO_LONG;
		}
		if (lr->eof) {
			if (lr->end > lr->start && !lr->discarding)
				return take_line(lr, lr->end, 0, line, len);
			return LINE_EOF;
		}
		make_room(lr);
		ssize_t r = read(lr->fd, lr->buf + lr->end, lr->cap - 1 - lr->end);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return LINE_AGAIN;
			return LINE_ERROR;
		}
		if (r == 0)
			lr->eof = true;
		lr->end += (size_t)r;
	}
}
