/*
 * rxstamp.c - receive times of waiting TCP segments (see rxstamp.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <openssl/bio.h>

#include "rxstamp.h"

void
rxstamp_enable(int fd)
{
	static const int one = 1;

	(void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
}

/* Read (flags 0) or peek up to len bytes of fd into buf: the stamp of
 * the segment of the last byte read, or -1; *got is recvmsg's return. */
static int64_t
recv_stamp(int fd, void *buf, size_t len, int flags, ssize_t *got)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct timespec))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
	                      .msg_control = ctl.buf,
	                      .msg_controllen = sizeof ctl.buf };

	if ((*got = recvmsg(fd, &msg, flags | MSG_DONTWAIT)) <= 0)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL;
	     c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;

			memcpy(&ts, CMSG_DATA(c), sizeof ts);
			return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
		}
	return -1;
}

int64_t
rxstamp_first(int fd)
{
	char byte;
	ssize_t got;

	return recv_stamp(fd, &byte, 1, MSG_PEEK, &got);
}

int64_t
rxstamp_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the BIO ------------------------------------------------------------
 * OpenSSL's socket BIO, less what a connected TCP socket of ours never
 * needs: reads by recvmsg (for the stamp), writes by send (MSG_NOSIGNAL),
 * EAGAIN and EINTR as retries, errno left for SSL_ERROR_SYSCALL. */

struct stamp_bio {
	int fd;
	int64_t *last;
};

static int
bio_retry(BIO *b, ssize_t n, int retry_flag)
{
	BIO_clear_retry_flags(b);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_flags(b, BIO_FLAGS_SHOULD_RETRY | retry_flag);
	return (int)n;
}

static int
stamp_bio_read(BIO *b, char *buf, int len)
{
	struct stamp_bio *sb = BIO_get_data(b);
	ssize_t got;
	int64_t at;

	if (buf == NULL || len <= 0)
		return 0;
	at = recv_stamp(sb->fd, buf, (size_t)len, 0, &got);
	if (at >= 0)
		*sb->last = at;
	if (got == 0)
		BIO_set_flags(b, BIO_FLAGS_IN_EOF);
	return bio_retry(b, got, BIO_FLAGS_READ);
}

static int
stamp_bio_write(BIO *b, const char *buf, int len)
{
	struct stamp_bio *sb = BIO_get_data(b);

	return bio_retry(b, send(sb->fd, buf, (size_t)len, MSG_NOSIGNAL),
	                 BIO_FLAGS_WRITE);
}

static int
stamp_bio_puts(BIO *b, const char *s)
{
	return stamp_bio_write(b, s, (int)strlen(s));
}

static long
stamp_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct stamp_bio *sb = BIO_get_data(b);

	(void)num;
	switch (cmd) {
	case BIO_C_GET_FD:
		if (ptr != NULL)
			*(int *)ptr = sb->fd;
		return sb->fd;
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
	default:
		return 0;
	}
}

static int
stamp_bio_destroy(BIO *b)
{
	free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	return 1;
}

static BIO_METHOD *stamp_method;
static pthread_once_t stamp_once = PTHREAD_ONCE_INIT;

static void
stamp_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
	                                 BIO_TYPE_DESCRIPTOR,
	                             "sm-check socket");

	if (m == NULL || !BIO_meth_set_read(m, stamp_bio_read) ||
	    !BIO_meth_set_write(m, stamp_bio_write) ||
	    !BIO_meth_set_puts(m, stamp_bio_puts) ||
	    !BIO_meth_set_ctrl(m, stamp_bio_ctrl) ||
	    !BIO_meth_set_destroy(m, stamp_bio_destroy)) {
		BIO_meth_free(m);
		return;
	}
	stamp_method = m;
}

BIO *
rxstamp_bio_new(int fd, int64_t *last)
{
	struct stamp_bio *sb;
	BIO *b;

	pthread_once(&stamp_once, stamp_method_init);
	if (stamp_method == NULL || (b = BIO_new(stamp_method)) == NULL)
		return NULL;
	rxstamp_enable(fd);
	if ((sb = malloc(sizeof *sb)) == NULL) {
		BIO_free(b);
		return NULL;
	}
	*sb = (struct stamp_bio){ .fd = fd, .last = last };
	BIO_set_data(b, sb);
	BIO_set_init(b, 1);
	return b;
}
