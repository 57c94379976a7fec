/*
 * addrcache.h - the addresses of curl's sockets, asked of the kernel once
 * (see addrcache.c: sm-check's own getsockname and getpeername).
 */
#ifndef SM_CHECK_ADDRCACHE_H
#define SM_CHECK_ADDRCACHE_H

/* fd is a socket curl just opened: cache its addresses from now on. */
void addrcache_open(int fd);
/* fd is about to be closed: forget what was kept for it. */
void addrcache_close(int fd);

#endif
