/* suggest.c - "did you mean": the nearest known name to a misspelt one */
#include "suggest.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

static int
fold(int c)
{
	return c == '-' ? '_' : tolower(c);
}

/* Levenshtein distance, case-insensitive, '-' the same as '_'. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *row = xcalloc(lb + 1, sizeof(*row));
	size_t d;

	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (fold(a[i - 1]) != fold(b[j - 1]));

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	d = row[lb];
	free(row);
	return d;
}

const char *
suggest(const char *key, const char *const *names, size_t n)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1, klen = strlen(key);

	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(key, names[i]);

		if (d < best_d) {
			best_d = d;
			best = names[i];
		}
	}
	if (best && (best_d <= 2 || best_d * 4 <= klen) && best_d < klen)
		return best;
	return NULL;
}
