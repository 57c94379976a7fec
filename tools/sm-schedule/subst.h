/* subst.h - ${NAME} references in configuration strings */
#ifndef SM_SCHEDULE_SUBST_H
#define SM_SCHEDULE_SUBST_H

#include <stddef.h>

/* Expands ${NAME} from the environment, and ${NAME:-default} to default
 * (taken literally) when NAME is unset or empty; "$${" stands for a
 * literal "${", any other '$' is kept.  s need not be NUL-terminated.
 * Returns a new string of *outlen bytes (NUL-terminated), or NULL with
 * *bad_off at the offending reference and a new message in *why (it names
 * the variable, never a value). */
char *subst_env(const char *s, size_t len, size_t *outlen, size_t *bad_off,
                char **why);

#endif
