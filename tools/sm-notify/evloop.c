/*
 * evloop.c - the main loop's waiting: one epoll set holds the wake pipe,
 * stdin and every socket libcurl asks about (the multi_socket interface).
 * A finished read or write on one connection makes libcurl look at that
 * connection only, not poll all of them as curl_multi_perform does.
 *
 * The registrations follow libcurl's socket callback; a socket libcurl is
 * done with stays registered (one epoll_ctl less per delivery on a reused
 * connection) until it is reported again, with another interest, or an
 * event comes for it, or it is closed: libcurl closes the sockets it
 * opened through ev_close_socket.  Sockets not opened through
 * ev_open_socket (the threaded resolver's) are removed at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sm.h"
#include "notify.h"

enum { ST_OURS = 1, ST_REGISTERED = 2, ST_WANTED = 4 };

static int epfd = -1;
static CURLM *multi;
static int64_t curl_due_ns = -1; /* libcurl's timer; -1: none */
static struct {
	unsigned char state;
	uint32_t events; /* registered interest */
} *fds;
static size_t n_fds;

static void
fd_room(int fd)
{
	fds = xgrow_index(fds, &n_fds, (size_t)fd, sizeof *fds);
}

/* Register fd for events (0: unregister).  false on EPERM (a regular file
 * or /dev/null: always ready). */
static bool
fd_set_events(int fd, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.fd = fd};
	bool reg;

	fd_room(fd);
	reg = fds[fd].state & ST_REGISTERED;
	if (events == 0) {
		if (reg && epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) == -1 &&
		    errno != ENOENT && errno != EBADF)
			die(EX_OSERR, "epoll_ctl del:");
		fds[fd].state &= (unsigned char)~ST_REGISTERED;
		fds[fd].events = 0;
		return true;
	}
	if (reg && fds[fd].events == events)
		return true;
	if (epoll_ctl(epfd, reg ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) == -1) {
		if (errno == EPERM)
			return false;
		/* Our idea of it was out of date: try the other way. */
		if ((errno != ENOENT && errno != EEXIST) ||
		    epoll_ctl(epfd, reg ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd,
		              &ev) == -1)
			die(EX_OSERR, "epoll_ctl fd %d:", fd);
	}
	fds[fd].state |= ST_REGISTERED;
	fds[fd].events = events;
	return true;
}

static int
on_socket(CURL *easy, curl_socket_t s, int what, void *u, void *sp)
{
	uint32_t ev = 0;

	fd_room(s);
	if (what == CURL_POLL_REMOVE) {
		fds[s].state &= (unsigned char)~ST_WANTED;
		/* Kept registered while its connection waits in libcurl's
		 * cache for the next message. */
		if (!(fds[s].state & ST_OURS))
			fd_set_events(s, 0);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	fds[s].state |= ST_WANTED;
	fd_set_events(s, ev);
	return 0;
}

static int
on_timer(CURLM *m, long ms, void *u)
{
	curl_due_ns = ms < 0 ? -1 : mono_now_ns() + (int64_t)ms * 1000000;
	return 0;
}

curl_socket_t
ev_open_socket(void *u, curlsocktype purpose, struct curl_sockaddr *a)
{
	int s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

	if (s == -1)
		return CURL_SOCKET_BAD;
	fd_room(s);
	fds[s].state = ST_OURS;
	fds[s].events = 0;
	return s;
}

int
ev_close_socket(void *u, curl_socket_t s)
{
	if (s >= 0 && (size_t)s < n_fds) {
		fd_set_events(s, 0);
		fds[s].state = 0;
	}
	return close(s);
}

void
ev_init(CURLM *m)
{
	multi = m;
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		die(EX_OSERR, "epoll_create1:");
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
}

void
ev_free(void)
{
	if (epfd >= 0)
		close(epfd);
	epfd = -1;
	free(fds);
	fds = NULL;
	n_fds = 0;
}

bool
ev_watch(int fd, bool on)
{
	return fd_set_events(fd, on ? EPOLLIN : 0);
}

void
ev_curl_timer(int64_t now)
{
	int running;

	if (curl_due_ns >= 0 && now >= curl_due_ns) {
		curl_due_ns = -1;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
}

long
ev_curl_wait_ms(int64_t now)
{
	if (curl_due_ns < 0)
		return -1;
	if (curl_due_ns <= now)
		return 0;
	return (long)((curl_due_ns - now + 999999) / 1000000);
}

void
ev_wait(long ms)
{
	struct epoll_event evs[64];
	int n, running;

	n = epoll_wait(epfd, evs, 64, ms < 0 ? -1 : (int)ms);
	if (n == -1) {
		if (errno == EINTR)
			return;
		die(EX_OSERR, "epoll_wait:");
	}
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd, sel = 0;
		uint32_t e = evs[i].events;

		if ((size_t)fd >= n_fds || !(fds[fd].state & (ST_OURS | ST_WANTED)))
			continue; /* stdin, the wake pipe: the loop reads them */
		if (!(fds[fd].state & ST_WANTED)) {
			/* An idle connection in libcurl's cache: the server
			 * closed it, most likely.  Not ours to read; libcurl
			 * finds out when it tries to reuse it. */
			fd_set_events(fd, 0);
			continue;
		}
		if (e & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
			sel |= CURL_CSELECT_IN;
		if (e & EPOLLOUT)
			sel |= CURL_CSELECT_OUT;
		if (e & EPOLLERR)
			sel |= CURL_CSELECT_ERR;
		curl_multi_socket_action(multi, fd, sel, &running);
	}
}
