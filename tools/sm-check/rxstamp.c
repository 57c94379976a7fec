/*
 * rxstamp.c - receive times of waiting TCP segments (see rxstamp.h).
 */
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "rxstamp.h"

/* More than a TLS record with its header, and than a handshake's flight
 * of a usual certificate chain. */
#define PEEK_MAX 65536

void
rxstamp_enable(int fd)
{
	static const int one = 1;

	(void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
}

/* Peek up to len bytes of fd into buf: the stamp of the segment of the
 * last byte read, or -1; *got is how many bytes there were. */
static int64_t
peek_stamp(int fd, void *buf, size_t len, ssize_t *got)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct timespec))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
	                      .msg_control = ctl.buf,
	                      .msg_controllen = sizeof ctl.buf };

	if ((*got = recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT)) <= 0)
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

	return peek_stamp(fd, &byte, 1, &got);
}

int64_t
rxstamp_last(int fd)
{
	static _Thread_local char buf[PEEK_MAX];
	ssize_t got;
	int64_t at = peek_stamp(fd, buf, sizeof buf, &got);

	return got == (ssize_t)sizeof buf ? -1 : at;
}

int64_t
rxstamp_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
