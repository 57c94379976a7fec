/* fuzz.h - what the libFuzzer targets in fuzz/ share. */
#ifndef SM_FUZZ_H
#define SM_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken promise: say which, then abort so that libFuzzer keeps the
 * input as a crash. */
#define FUZZ_ASSERT(cond, ...)                                             \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "fuzz: %s:%d: %s: ", __FILE__,     \
			        __LINE__, #cond);                          \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
			abort();                                           \
		}                                                          \
	} while (0)

/* data[0..size) as a NUL-terminated copy (NUL bytes inside kept). */
static inline char *
fuzz_str(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);

	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#endif
