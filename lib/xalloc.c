/* xalloc.c - allocation that never returns NULL: out of memory is fatal. */
#include <stdlib.h>
#include <string.h>

#include "sm.h"

static void *
check(void *p)
{
	if (p == NULL)
		die(EX_SOFTWARE, "out of memory");
	return p;
}

void *
xmalloc(size_t n)
{
	return check(malloc(n ? n : 1));
}

void *
xcalloc(size_t nmemb, size_t size)
{
	return check(calloc(nmemb ? nmemb : 1, size ? size : 1));
}

void *
xrealloc(void *p, size_t n)
{
	return check(realloc(p, n ? n : 1));
}

void *
xgrow_index(void *arr, size_t *n, size_t index, size_t elem)
{
	size_t grown = *n ? *n : 64;

	if (index < *n)
		return arr;
	while (grown <= index)
		grown *= 2;
	arr = xrealloc(arr, grown * elem);
	memset((char *)arr + *n * elem, 0, (grown - *n) * elem);
	*n = grown;
	return arr;
}

char *
xstrdup(const char *s)
{
	return check(strdup(s));
}

char *
xstrndup(const char *s, size_t n)
{
	return check(strndup(s, n));
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		die(EX_SOFTWARE, "out of memory");
	return s;
}
