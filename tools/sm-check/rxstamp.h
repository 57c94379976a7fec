/*
 * rxstamp.h - when a TCP socket's waiting bytes came into the kernel.
 *
 * libcurl and the relay take their timers when the loop serves a socket;
 * a busy loop serves it late.  The kernel stamps each segment as it
 * comes (SO_TIMESTAMPNS): the difference is the loop's own wait, which
 * sm-check leaves out of a probe's timings (probe.c, "waits of the
 * loop").  libcurl reads its sockets itself, so a peek reads the stamp
 * before it; the relay's OpenSSL reads through rxstamp_bio_new()'s BIO,
 * which has the stamps with the bytes.
 *
 * A peek at an empty queue returns a pending error (a reset) and clears
 * it, so that the real read would see only the end of the stream: peek
 * only on an event without EPOLLERR or EPOLLHUP.  With bytes waiting, a
 * peek returns them and leaves any error for the read after them.
 */
#ifndef SM_CHECK_RXSTAMP_H
#define SM_CHECK_RXSTAMP_H

#include <stdint.h>

/* Stamp fd's segments from now on.  A failure is not an error: its
 * stamps are then missing. */
void rxstamp_enable(int fd);
/* The stamp (CLOCK_REALTIME, ns) of the first waiting segment, or -1. */
int64_t rxstamp_first(int fd);
/* CLOCK_REALTIME now, ns: the stamps' clock. */
int64_t rxstamp_now(void);

/* A socket BIO for OpenSSL on fd (not closed with it; its stamps
 * enabled) that reads with recvmsg, keeping in *last the stamp of the
 * last segment each read took (untouched by a read that has none): the
 * receive times come with the bytes, without a peek.  NULL if it cannot
 * be made. */
struct bio_st;
struct bio_st *rxstamp_bio_new(int fd, int64_t *last);

#endif
