/*
 * sockcache.h - curl's sockets, made here, so that what libcurl asks of
 * them again and again is answered without a system call (sockcache.c:
 * sm-check's own getsockname, getpeername and fcntl).
 */
#ifndef SM_CHECK_SOCKCACHE_H
#define SM_CHECK_SOCKCACHE_H

/* socket(2), non-blocking (which libcurl then asks for), and known here
 * until sockcache_close(). */
int sockcache_socket(int family, int type, int protocol);
/* fd is about to be closed: forget what was kept for it. */
void sockcache_close(int fd);

#endif
