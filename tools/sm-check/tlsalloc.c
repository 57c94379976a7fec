/*
 * tlsalloc.c - OpenSSL's allocations on mimalloc (see tlsalloc.h).
 */
#include <dlfcn.h>
#include <stddef.h>

#include <openssl/crypto.h>

#include "tlsalloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* Debian's package libmimalloc2.0. */
#define MIMALLOC_SONAME "libmimalloc.so.2"

static void *(*mi_malloc_fn)(size_t);
static void *(*mi_realloc_fn)(void *, size_t);
static void (*mi_free_fn)(void *);

static void *
tls_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return mi_malloc_fn(n);
}

static void *
tls_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return mi_realloc_fn(p, n);
}

static void
tls_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	mi_free_fn(p);
}

bool
tlsalloc_init(void)
{
#ifdef UNDER_ASAN
	return false;
#else
	void *lib = dlopen(MIMALLOC_SONAME, RTLD_NOW | RTLD_LOCAL);

	if (lib == NULL)
		return false;
	/* dlsym's object pointers as function pointers (POSIX allows it). */
	*(void **)&mi_malloc_fn = dlsym(lib, "mi_malloc");
	*(void **)&mi_realloc_fn = dlsym(lib, "mi_realloc");
	*(void **)&mi_free_fn = dlsym(lib, "mi_free");
	/* OpenSSL refuses once it has allocated anything. */
	if (mi_malloc_fn == NULL || mi_realloc_fn == NULL || mi_free_fn == NULL ||
	    !CRYPTO_set_mem_functions(tls_malloc, tls_realloc, tls_free)) {
		dlclose(lib);
		return false;
	}
	return true;
#endif
}
