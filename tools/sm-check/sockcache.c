/*
 * sockcache.c - answer libcurl's repeated questions about a probe's
 * socket from memory: getsockname(), getpeername(), fcntl(F_GETFL/F_SETFL).
 *
 * libcurl 7.88 asks the kernel, for every new connection, for its
 * addresses five times (three getsockname, two getpeername: for the local
 * address, the primary IP and the connection info, each on its own), and
 * makes the socket non-blocking with F_GETFL and F_SETFL even when it is
 * already.  On this path a system call costs more than the work libcurl
 * does around it, so sm-check defines these functions itself: the
 * dynamic linker binds libcurl's calls to them (the executable comes
 * first in the lookup order).  The socket is made non-blocking when it is
 * created (curl's opensocket callback, sockcache_socket), so the F_SETFL
 * that asks for what is already set changes nothing and is answered at
 * once; the first successful answer for an address is kept until libcurl
 * closes the socket.  Later libcurl versions ask less; this then simply
 * answers less.
 *
 * Only sockets made by sockcache_socket() are answered from memory,
 * and only with what cannot have changed: the peer of a connected socket,
 * a local address bound to a specific address and port (after connect(),
 * never before), the file status flags for libcurl's first F_GETFL and
 * F_SETFL.
 * Every other call goes to the kernel as it would have.
 *
 * The table is a fixed array (no realloc), so that a call from another
 * thread (libcurl's resolver threads, through some NSS module) never
 * reads freed memory; a descriptor past its end is not cached.  Only the
 * main thread writes it, and an fd's entry changes only while that fd is
 * one of curl's open sockets, which no other thread can be using.
 */

/* The Makefile defines _GNU_SOURCE, under which <sys/socket.h> declares
 * the address functions with a transparent union; the plain POSIX
 * prototypes are the ones defined here. */
#undef _GNU_SOURCE
#define _DEFAULT_SOURCE     /* syscall() */
#define _LARGEFILE64_SOURCE /* fcntl64(), glibc's fcntl() by another name */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sockcache.h"

#define SOCKCACHE_FDS 65536

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
	bool open;  /* a socket of curl's, between open and close */
	int flags;  /* its file status flags (F_GETFL) until libcurl's F_SETFL,
	             * then -1: ask the kernel */
	struct kept local, peer;
};

static struct entry table[SOCKCACHE_FDS];

static struct entry *
entry_of(int fd)
{
	if (fd < 0 || fd >= SOCKCACHE_FDS || !table[fd].open)
		return NULL;
	return &table[fd];
}

int
sockcache_socket(int family, int type, int protocol)
{
	int fd = socket(family, type | SOCK_NONBLOCK, protocol);

	/* What F_GETFL says of a socket made non-blocking (sockets are
	 * always open for reading and writing). */
	if (fd >= 0 && fd < SOCKCACHE_FDS)
		table[fd] = (struct entry){ .open = true,
		                            .flags = O_RDWR | O_NONBLOCK };
	return fd;
}

void
sockcache_close(int fd)
{
	if (fd >= 0 && fd < SOCKCACHE_FDS)
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
 * answer in k when it is final and was copied out whole. */
static int
ask(long nr, int fd, struct sockaddr *addr, socklen_t *len, struct kept *k,
    bool peer)
{
	socklen_t room = *len;
	int rc = (int)syscall(nr, fd, addr, len);

	if (rc == 0 && k != NULL && *len <= room && *len <= sizeof k->a) {
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

/* A name of fd (peer or local) from memory if known, else the kernel's. */
static int
name_of(long nr, bool peer, int fd, struct sockaddr *addr, socklen_t *len)
{
	struct entry *e = entry_of(fd);
	struct kept *k = e == NULL ? NULL : peer ? &e->peer : &e->local;

	if (k != NULL && k->len != 0)
		return give(k, addr, len);
	return ask(nr, fd, addr, len, k, peer);
}

int
getsockname(int fd, struct sockaddr *restrict addr, socklen_t *restrict len)
{
	return name_of(SYS_getsockname, false, fd, addr, len);
}

int
getpeername(int fd, struct sockaddr *restrict addr, socklen_t *restrict len)
{
	return name_of(SYS_getpeername, true, fd, addr, len);
}

int
fcntl(int fd, int cmd, ...)
{
	struct entry *e = entry_of(fd);
	va_list ap;
	void *arg;

	/* One argument or none: read as glibc's fcntl reads it, a pointer's
	 * worth, whatever the command (none: a value never used). */
	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (e != NULL && e->flags != -1) {
		if (cmd == F_GETFL)
			return e->flags;
		if (cmd == F_SETFL && (long)arg == e->flags) {
			/* Nothing to change.  libcurl asks right after making
			 * the socket; from then on the kernel answers. */
			e->flags = -1;
			return 0;
		}
	}
	if (e != NULL && cmd == F_SETFL)
		e->flags = -1;
	return fcntl64(fd, cmd, arg);
}
