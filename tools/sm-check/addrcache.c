/*
 * addrcache.c - answer libcurl's repeated getsockname()/getpeername() on
 * a probe's socket from memory.
 *
 * libcurl 7.88 asks the kernel for the addresses of every new connection
 * five times (three getsockname, two getpeername: for the local address,
 * the primary IP and the connection info, each on its own).  On this
 * path a system call costs more than the work libcurl does around it, so
 * sm-check defines both functions itself: the dynamic linker binds
 * libcurl's calls to these (the executable comes first in the lookup
 * order), and the first successful answer for a socket is kept until
 * libcurl closes it.  Later libcurl versions ask fewer times; this then
 * simply keeps fewer answers.
 *
 * Only sockets opened through addrcache_open() (curl's opensocket
 * callback) are cached, and only answers that cannot change any more:
 * the peer of a connected socket, and a local address that is bound to a
 * specific address and port (after connect(), never before).  Every
 * other call goes straight to the kernel.
 *
 * The table is a fixed array (no realloc), so that a call from another
 * thread (libcurl's resolver threads, through some NSS module) never
 * reads freed memory; a descriptor past its end is not cached.  Only the
 * main thread writes it, and an fd's entry changes only while that fd is
 * one of curl's open sockets, which no other thread can be using.
 */

/* The Makefile defines _GNU_SOURCE, under which <sys/socket.h> declares
 * these functions with a transparent union; the plain POSIX prototypes
 * are the ones defined here. */
#undef _GNU_SOURCE
#define _DEFAULT_SOURCE /* syscall() */
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "addrcache.h"

#define ADDRCACHE_FDS 65536

union addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct kept {
	socklen_t len; /* 0: nothing kept yet */
	union addr a;
};

struct entry {
	bool open; /* a socket of curl's, between open and close */
	struct kept local, peer;
};

static struct entry table[ADDRCACHE_FDS];

static struct entry *
entry_of(int fd)
{
	if (fd < 0 || fd >= ADDRCACHE_FDS || !table[fd].open)
		return NULL;
	return &table[fd];
}

void
addrcache_open(int fd)
{
	if (fd >= 0 && fd < ADDRCACHE_FDS)
		table[fd] = (struct entry){ .open = true };
}

void
addrcache_close(int fd)
{
	if (fd >= 0 && fd < ADDRCACHE_FDS)
		table[fd].open = false;
}

/* A local address that no later call can change: a specific address and
 * a port (before connect() the socket has neither). */
static bool
local_is_final(const union addr *a, socklen_t len)
{
	if (a->sa.sa_family == AF_INET && len >= sizeof a->in)
		return a->in.sin_port != 0 &&
		       a->in.sin_addr.s_addr != htonl(INADDR_ANY);
	if (a->sa.sa_family == AF_INET6 && len >= sizeof a->in6)
		return a->in6.sin6_port != 0 &&
		       !IN6_IS_ADDR_UNSPECIFIED(&a->in6.sin6_addr);
	return false;
}

/* What the kernel would copy out: at most *len bytes, *len set to the
 * address's full length. */
static int
give(const struct kept *k, struct sockaddr *addr, socklen_t *len)
{
	memcpy(addr, &k->a, k->len < *len ? k->len : *len);
	*len = k->len;
	return 0;
}

/* Ask the kernel (nr: SYS_getsockname or SYS_getpeername) and keep the
 * answer in k when it is final. */
static int
ask(long nr, int fd, struct sockaddr *addr, socklen_t *len, struct kept *k,
    bool peer)
{
	int rc = (int)syscall(nr, fd, addr, len);

	if (rc == 0 && k != NULL && *len <= sizeof k->a) {
		union addr a;

		memset(&a, 0, sizeof a);
		memcpy(&a, addr, *len);
		if (peer || local_is_final(&a, *len)) {
			k->a = a;
			k->len = *len;
		}
	}
	return rc;
}

int
getsockname(int fd, struct sockaddr *restrict addr, socklen_t *restrict len)
{
	struct entry *e = entry_of(fd);

	if (e != NULL && e->local.len != 0)
		return give(&e->local, addr, len);
	return ask(SYS_getsockname, fd, addr, len, e ? &e->local : NULL, false);
}

int
getpeername(int fd, struct sockaddr *restrict addr, socklen_t *restrict len)
{
	struct entry *e = entry_of(fd);

	if (e != NULL && e->peer.len != 0)
		return give(&e->peer, addr, len);
	return ask(SYS_getpeername, fd, addr, len, e ? &e->peer : NULL, true);
}
