/*
 * tlsrelay.c - https connections whose TLS sm-check makes itself (see
 * tlsrelay.h).
 *
 * A relay has two descriptors of its own in the loop's epoll set, both
 * edge-triggered for both directions and never modified: the TCP socket
 * (TLS) and its end of the pair (plaintext, libcurl's HTTP).  An event it
 * waits for runs it until each side would block (or has nothing to move),
 * so that no edge is missed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "sm.h"
#include "rxstamp.h"
#include "tlsrelay.h"

struct relays {
	int epfd;
	void (*rebind)(void *ctx, int fd);
	void *ctx;
	struct relay **by_fd; /* the relay of each of our descriptors */
	size_t n_by_fd;
	int *closing;         /* descriptors of freed relays (relays_flush) */
	size_t n_closing, cap_closing;
};

struct relay {
	struct relays *rs;
	int net_fd;            /* the TCP socket: TLS */
	int app_fd;            /* our end of the pair: libcurl's plaintext */
	SSL *ssl;
	struct relay_outcome *out;
	bool handshaken;
	bool stopped;          /* failed: nothing more is read or written */
	bool net_eof;          /* the server's side ended */
	bool app_eof;          /* libcurl's side ended */
	bool app_shut;         /* libcurl has been told the end (SHUT_WR) */
	uint32_t wait_net;     /* EPOLLIN, EPOLLOUT: what the relay waits */
	uint32_t wait_app;     /* for on each side (other events change
	                        * nothing, and cost a system call) */
	int64_t rx_last;       /* stamp of the last segment read (rxstamp.h) */
	size_t up_off, up_len;     /* request bytes read from libcurl */
	size_t down_off, down_len; /* response bytes read from TLS */
	char up[4096];
	char down[16384];      /* one TLS record at most */
};

/* by_fd's mark of a descriptor whose relay is gone but which is still
 * open, so that an event of it already read is not taken for libcurl's. */
static struct relay gone;

/* Each loop thread's relays (relay_start is called from libcurl's
 * callback, which knows only the probe). */
static _Thread_local struct relays *thread_relays;

struct relays *
relays_new(int epfd, void (*rebind)(void *ctx, int fd), void *ctx)
{
	struct relays *rs = xcalloc(1, sizeof *rs);

	rs->epfd = epfd;
	rs->rebind = rebind;
	rs->ctx = ctx;
	return rs;
}

void
relays_attach(struct relays *rs)
{
	thread_relays = rs;
}

void
relays_free(struct relays **rsp)
{
	struct relays *rs = *rsp;

	if (rs == NULL)
		return;
	for (size_t i = 0; i < rs->n_by_fd; i++)
		if (rs->by_fd[i] != NULL && rs->by_fd[i] != &gone) {
			struct relay *r = rs->by_fd[i];

			relay_free(&r);
		}
	relays_flush(rs);
	free(rs->closing);
	free(rs->by_fd);
	if (thread_relays == rs)
		thread_relays = NULL;
	free(rs);
	*rsp = NULL;
}

static void
by_fd_set(struct relays *rs, int fd, struct relay *r)
{
	rs->by_fd = xgrow_index(rs->by_fd, &rs->n_by_fd, (size_t)fd,
	                        sizeof *rs->by_fd);
	rs->by_fd[fd] = r;
}

/* The reason of a failed TLS call, one line, into out->why. */
static void
relay_fail(struct relay *r, int ssl_error)
{
	unsigned long e = ERR_get_error();
	int saved = errno;

	r->stopped = true;
	r->out->failed = true;
	if (e != 0)
		ERR_error_string_n(e, r->out->why, sizeof r->out->why);
	else if (ssl_error == SSL_ERROR_SYSCALL && saved != 0)
		snprintf(r->out->why, sizeof r->out->why, "%s", strerror(saved));
	else if (ssl_error == SSL_ERROR_SYSCALL ||
	         ssl_error == SSL_ERROR_ZERO_RETURN)
		snprintf(r->out->why, sizeof r->out->why,
		         "the server closed the connection");
	else
		snprintf(r->out->why, sizeof r->out->why, "SSL error %d",
		         ssl_error);
	ERR_clear_error();
}

/* libcurl reads the end of the answer: after all of it, or at once when
 * TLS failed (libcurl then has no answer, and the probe says why). */
static void
app_shutdown(struct relay *r)
{
	if (r->app_shut)
		return;
	r->app_shut = true;
	(void)shutdown(r->app_fd, SHUT_WR);
}

/* What OpenSSL waits for on the socket. */
static uint32_t
ssl_wait(int ssl_error)
{
	return ssl_error == SSL_ERROR_WANT_READ ? EPOLLIN
	       : ssl_error == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0;
}

/* Whether the handshake has ended (false: it waits, or it failed). */
static bool
handshake(struct relay *r)
{
	int rc, e;

	if (r->handshaken)
		return true;
	ERR_clear_error();
	if ((rc = SSL_connect(r->ssl)) == 1) {
		r->handshaken = true;
		r->out->handshake_ns = mono_now_ns();
		return true;
	}
	e = SSL_get_error(r->ssl, rc);
	if ((r->wait_net |= ssl_wait(e)) == 0) {
		relay_fail(r, e);
		app_shutdown(r);
	}
	return false;
}

/* libcurl's request (and any body) into TLS, until one side blocks. */
static void
pump_up(struct relay *r)
{
	bool drained = false;

	while (!r->stopped) {
		int w, e;

		if (r->up_len == 0) {
			ssize_t n;

			/* A read shorter than asked emptied the socket: the
			 * next bytes make a new edge. */
			if (r->app_eof)
				return;
			if (drained) {
				r->wait_app |= EPOLLIN;
				return;
			}
			n = read(r->app_fd, r->up, sizeof r->up);
			if (n <= 0) {
				if (n == 0 || (errno != EAGAIN && errno != EINTR))
					r->app_eof = true;
				else
					r->wait_app |= EPOLLIN;
				return;
			}
			drained = (size_t)n < sizeof r->up;
			r->up_off = 0;
			r->up_len = (size_t)n;
		}
		ERR_clear_error();
		w = SSL_write(r->ssl, r->up + r->up_off,
		              (int)(r->up_len - r->up_off));
		if (w > 0) {
			if (r->out->sent_ns == 0)
				r->out->sent_ns = mono_now_ns();
			r->up_off += (size_t)w;
			if (r->up_off == r->up_len)
				r->up_len = 0;
			continue;
		}
		e = SSL_get_error(r->ssl, w);
		if ((r->wait_net |= ssl_wait(e)) == 0) {
			relay_fail(r, e);
			app_shutdown(r);
		}
		return;
	}
}

/* The answer out of TLS to libcurl, until one side blocks.  An end of
 * the connection, clean or not, is passed on as the end of the pair:
 * libcurl judges whether the answer was whole, as it does over TLS. */
static void
pump_down(struct relay *r)
{
	while (!r->stopped && !r->app_eof) {
		ssize_t w;

		if (r->down_len == 0) {
			int n, e;

			if (r->net_eof)
				break;
			ERR_clear_error();
			n = SSL_read(r->ssl, r->down, sizeof r->down);
			if (n <= 0) {
				e = SSL_get_error(r->ssl, n);
				if (ssl_wait(e) != 0) {
					r->wait_net |= ssl_wait(e);
					return;
				}
				if (e != SSL_ERROR_ZERO_RETURN)
					relay_fail(r, e);
				r->net_eof = true;
				break;
			}
			if (r->out->answer_ns == 0)
				r->out->answer_ns = mono_now_ns();
			r->down_off = 0;
			r->down_len = (size_t)n;
		}
		w = send(r->app_fd, r->down + r->down_off,
		         r->down_len - r->down_off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				r->wait_app |= EPOLLOUT;
			else
				r->app_eof = true; /* libcurl is gone */
			return;
		}
		r->down_off += (size_t)w;
		if (r->down_off == r->down_len)
			r->down_len = 0;
	}
	if (r->net_eof && r->down_len == 0)
		app_shutdown(r);
}

static void
relay_run(struct relay *r)
{
	r->wait_net = r->wait_app = 0;
	if (r->stopped || !handshake(r))
		return;
	pump_up(r);
	pump_down(r);
}

/* Whether the relay waits for bytes whose arrival is one of its timers:
 * the end of the handshake, the first bytes of the answer. */
static bool
waits_for_net(const struct relay *r)
{
	return !r->handshaken ||
	       (r->out->sent_ns != 0 && r->out->answer_ns == 0);
}

/* relay_run, noting how long the bytes that ended the handshake or
 * started the answer had waited for the loop: from the stamp of the last
 * segment the run read (the relay's BIO keeps it) to the run's start.
 * What the step needed had come by then, so the wait taken is never
 * more than the loop's. */
static void
relay_run_stamped(struct relay *r)
{
	struct relay_outcome *o = r->out;
	bool handshaken = r->handshaken, answered = o->answer_ns != 0;
	int64_t now_real = rxstamp_now(), now = mono_now_ns(), waited;

	r->rx_last = -1;
	relay_run(r);
	if (r->rx_last < 0 || now_real <= r->rx_last)
		return; /* nothing read, or it came during the run */
	waited = now_real - r->rx_last;
	if (!handshaken && r->handshaken)
		o->handshake_wait_ns = waited;
	/* Bytes from before the request are no answer to it. */
	if (!answered && o->answer_ns != 0 && now - waited >= o->sent_ns)
		o->answer_wait_ns = waited;
}

bool
relays_event(struct relays *rs, int fd, uint32_t events)
{
	struct relay *r;
	uint32_t wait;

	if (fd < 0 || (size_t)fd >= rs->n_by_fd || (r = rs->by_fd[fd]) == NULL)
		return false;
	if (r == &gone)
		return true;
	/* Each run tries each side until it would block: only an event
	 * the relay waits for can let it go further. */
	wait = (fd == r->net_fd ? r->wait_net : r->wait_app) |
	       EPOLLERR | EPOLLHUP | EPOLLRDHUP;
	if (!(events & wait))
		return true;
	/* Either side's event may be the run that reads the server's
	 * bytes (libcurl's request can wake the relay first). */
	if (waits_for_net(r))
		relay_run_stamped(r);
	else
		relay_run(r);
	return true;
}

void
relays_flush(struct relays *rs)
{
	for (size_t i = 0; i < rs->n_closing; i++) {
		by_fd_set(rs, rs->closing[i], NULL);
		close(rs->closing[i]);
	}
	rs->n_closing = 0;
}

/* Closed at the next relays_flush(), gone from by_fd until then. */
static void
close_later(struct relays *rs, int fd)
{
	if (rs->n_closing == rs->cap_closing) {
		rs->cap_closing = rs->cap_closing ? 2 * rs->cap_closing : 64;
		rs->closing = xrealloc(rs->closing,
		                       rs->cap_closing * sizeof *rs->closing);
	}
	rs->closing[rs->n_closing++] = fd;
	by_fd_set(rs, fd, &gone);
}

#define RELAY_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

struct relay *
relay_start(int fd, SSL *ssl, struct relay_outcome *out)
{
	struct relays *rs = thread_relays;
	struct relay *r;
	struct epoll_event ev;
	int net_fd, pair[2];
	BIO *bio;

	if (rs == NULL)
		die(EX_SOFTWARE, "relay_start: no relays attached to this thread");

	if ((net_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		SSL_free(ssl);
		return NULL;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	               pair) < 0) {
		int saved = errno;

		close(net_fd);
		SSL_free(ssl);
		errno = saved;
		return NULL;
	}
	/* The loop's registration of fd is the TCP socket's (epoll keeps a
	 * registration with the open file, found by the descriptor it was
	 * made with).  Made the relay's (net_fd) before fd names the pair,
	 * it stays the TCP socket's until net_fd, its last descriptor, is
	 * closed; the loop then registers the pair anew. */
	ev = (struct epoll_event){ .events = RELAY_EVENTS, .data.fd = net_fd };
	if (epoll_ctl(rs->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 &&
	    (errno != ENOENT || epoll_ctl(rs->epfd, EPOLL_CTL_ADD, net_fd, &ev) < 0))
		die(EX_OSERR, "epoll_ctl:");
	if (dup3(pair[0], fd, O_CLOEXEC) < 0)
		die(EX_OSERR, "dup3:");
	close(pair[0]);
	rs->rebind(rs->ctx, fd);

	r = xcalloc(1, sizeof *r);
	r->rs = rs;
	r->net_fd = net_fd;
	r->app_fd = pair[1];
	r->ssl = ssl;
	r->out = out;
	*out = (struct relay_outcome){ .start_ns = mono_now_ns() };
	/* OpenSSL reads through a BIO that keeps the receive times; if
	 * it cannot be made, through its own socket BIO, without them. */
	r->rx_last = -1;
	if ((bio = rxstamp_bio_new(net_fd, &r->rx_last)) != NULL)
		SSL_set_bio(ssl, bio, bio);
	else
		SSL_set_fd(ssl, net_fd);
	ev = (struct epoll_event){ .events = RELAY_EVENTS, .data.fd = r->app_fd };
	if (epoll_ctl(rs->epfd, EPOLL_CTL_ADD, r->app_fd, &ev) < 0)
		die(EX_OSERR, "epoll_ctl:");
	by_fd_set(rs, net_fd, r);
	by_fd_set(rs, r->app_fd, r);
	relay_run(r);
	return r;
}

void
relay_free(struct relay **rp)
{
	struct relay *r = *rp;

	if (r == NULL)
		return;
	SSL_free(r->ssl);
	/* Their last descriptors: closing takes them out of epoll.  Events
	 * of them may have been read already: closed once those are
	 * served, so that no other socket has their numbers meanwhile. */
	close_later(r->rs, r->net_fd);
	close_later(r->rs, r->app_fd);
	free(r);
	*rp = NULL;
}
