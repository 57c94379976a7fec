/*
 * stopsig.h - SIGTERM and SIGINT for the programs that drain before they
 * exit, and their non-blocking stdin (stopsig.c).
 */
#ifndef SM_STOPSIG_H
#define SM_STOPSIG_H

#include <signal.h>

/* The first SIGTERM or SIGINT (0: none yet); a second one puts stdin back
 * (stdin_restore) and exits 128 + its number at once. */
extern volatile sig_atomic_t stop_signal;
/* Set by SIGHUP with STOPSIG_HUP; the program clears it. */
extern volatile sig_atomic_t hup_signal;
enum { STOPSIG_HUP = 1u << 0, STOPSIG_CHLD = 1u << 1 };
/* Installs the handlers (SIGPIPE ignored; STOPSIG_CHLD: SIGCHLD only wakes)
 * and returns the read end of a non-blocking pipe that every signal makes
 * readable, for the main loop's poll; stop_signals_drain empties it. */
int stop_signals_install(unsigned flags);
void stop_signals_drain(void);
/* stdin made O_NONBLOCK; its old flags come back at exit, on a second
 * signal, or by stdin_restore. */
void stdin_nonblock(void);
void stdin_restore(void);

#endif
