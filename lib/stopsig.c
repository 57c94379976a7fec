/*
 * stopsig.c - the stop signals of the programs that drain before they
 * exit (sm-pg-write, sm-alert, sm-notify): the first SIGTERM or SIGINT is
 * noted for the main loop, which finishes what it holds; a second one
 * exits at once.  stdin is made non-blocking for the loops and put back as
 * it was, at exit or before that second signal's _exit: its open file
 * description may be shared with a terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm.h"
#include "stopsig.h"

volatile sig_atomic_t stop_signal;
volatile sig_atomic_t hup_signal;

static int wake_pipe[2] = { -1, -1 };
static int stdin_flags = -1;

static void
on_signal(int sig)
{
	int saved = errno;

	if (sig == SIGHUP) {
		hup_signal = 1;
	} else if (sig != SIGCHLD) {
		if (stop_signal) {
			stdin_restore();
			_exit(128 + sig);
		}
		stop_signal = sig;
	}
	if (wake_pipe[1] >= 0)
		(void)!write(wake_pipe[1], "", 1);
	errno = saved;
}

int
stop_signals_install(unsigned flags)
{
	struct sigaction sa;

	signal(SIGPIPE, SIG_IGN);
	if (pipe2(wake_pipe, O_NONBLOCK | O_CLOEXEC) == -1)
		die(EX_OSERR, "pipe:");
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: sleeps and polls wake up */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (flags & STOPSIG_HUP)
		sigaction(SIGHUP, &sa, NULL);
	if (flags & STOPSIG_CHLD) {
		/* Children only wake the loop; their reads and writes go on. */
		sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
		sigaction(SIGCHLD, &sa, NULL);
	}
	return wake_pipe[0];
}

void
stop_signals_drain(void)
{
	char buf[64];

	while (wake_pipe[0] >= 0 && read(wake_pipe[0], buf, sizeof buf) > 0)
		;
}

void
stdin_nonblock(void)
{
	int flags = fcntl(STDIN_FILENO, F_GETFL);

	if (flags == -1)
		die(EX_OSERR, "stdin:");
	stdin_flags = flags;
	atexit(stdin_restore);
	if (fcntl(STDIN_FILENO, F_SETFL, flags | O_NONBLOCK) == -1)
		die(EX_OSERR, "stdin:");
}

void
stdin_restore(void)
{
	if (stdin_flags != -1)
		(void)fcntl(STDIN_FILENO, F_SETFL, stdin_flags);
}
