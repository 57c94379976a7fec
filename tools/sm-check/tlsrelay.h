/*
 * tlsrelay.h - https connections whose TLS sm-check makes itself.
 *
 * libcurl 7.88 makes a new SSL_CTX for every connection, which costs
 * OpenSSL 3.0 more than the rest of a client's work on a handshake
 * (bench/README.md, issue 18).  For an https hop it may take over,
 * sm-check gives libcurl the URL as http (probe.c), lets it resolve the
 * name and connect the socket as for any probe, and at libcurl's
 * pre-request callback takes the connected socket: the descriptor libcurl
 * holds becomes one end of a socket pair (dup2), sm-check makes the TLS
 * handshake on the socket with an SSL of one shared SSL_CTX, and relays
 * plaintext between the pair and TLS.  libcurl speaks HTTP over the pair
 * as it would over TLS; DNS, connect, happy eyeballs, timeouts and HTTP
 * stay libcurl's.
 *
 * Each probe loop has its own relays (relays_new), in its epoll set; a
 * relay belongs to the loop of the thread that started it.
 */
#ifndef SM_CHECK_TLSRELAY_H
#define SM_CHECK_TLSRELAY_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* What a relay tells its probe.  Filled by the relay, read by the probe
 * when its transfer ends. */
struct relay_outcome {
	int64_t start_ns;     /* took over the connected socket (monotonic) */
	int64_t handshake_ns; /* the handshake ended well, or 0 */
	int64_t sent_ns;      /* the first request bytes went into TLS, or 0 */
	int64_t answer_ns;    /* the first answer bytes came out of it, or 0 */
	/* How long the loop took to read what ended the handshake, and what
	 * gave the first answer bytes, after the kernel had it (rxstamp.h);
	 * 0: nothing known. */
	int64_t handshake_wait_ns, answer_wait_ns;
	bool failed;          /* the handshake, or TLS once it had ended */
	char why[256];        /* ... and why, one line */
};

struct relays;
struct relay;

/* A loop's relays, in epoll set epfd.  rebind(ctx, fd) is
 * called when the descriptor fd of a socket the loop watches for libcurl
 * has become another file (one end of a pair): the loop adds it to epfd
 * again as it would a new socket of libcurl's. */
struct relays *relays_new(int epfd, void (*rebind)(void *ctx, int fd),
                          void *ctx);
void relays_free(struct relays **rs);
/* rs is the calling thread's from now on: relay_start() puts its relays
 * there (the loop's thread calls it before its first probe). */
void relays_attach(struct relays *rs);
/* An epoll event on fd: true if fd is a relay's (and it was served). */
bool relays_event(struct relays *rs, int fd, uint32_t events);
/* Close the descriptors of the relays freed since the last call: after
 * the events read with them have been served. */
void relays_flush(struct relays *rs);

/* Take over libcurl's connected socket fd (see above) and start the
 * handshake with ssl (owned by the relay from now on, also on failure).
 * NULL with errno when a descriptor could not be made; fd is then as it
 * was.  The calling thread's relays must exist. */
struct relay *relay_start(int fd, SSL *ssl, struct relay_outcome *out);
/* The relay's end: its socket closed, ssl freed.  Call when libcurl
 * closes its end (or when the probe ends first). */
void relay_free(struct relay **r);

#endif
