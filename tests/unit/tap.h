/* tap.h - the TAP output of the unit test programs: "ok N - what" or
 * "not ok N - what (file:line)", then "1..N" from the caller. */
#ifndef TAP_H
#define TAP_H

#include <stdbool.h>
#include <stdio.h>

static int n_run, n_failed;

#define CHECK(cond) check((cond), #cond, __FILE__, __LINE__)

static void
check(bool ok, const char *what, const char *file, int line)
{
	n_run++;
	if (ok) {
		printf("ok %d - %s\n", n_run, what);
	} else {
		n_failed++;
		printf("not ok %d - %s (%s:%d)\n", n_run, what, file, line);
	}
}

#endif
