/*
 * mialloc.c - OpenSSL's and libcurl's allocations on mimalloc (see
 * mialloc.h).
 */
#include <dlfcn.h>
#include <stddef.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "mialloc.h"

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
static void *(*mi_calloc_fn)(size_t, size_t);
static void *(*mi_realloc_fn)(void *, size_t);
static void (*mi_free_fn)(void *);
static char *(*mi_strdup_fn)(const char *);

static void *
ossl_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return mi_malloc_fn(n);
}

static void *
ossl_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return mi_realloc_fn(p, n);
}

static void
ossl_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	mi_free_fn(p);
}

/* mimalloc's functions, if its library loads and has them all. */
static bool
mimalloc_load(void)
{
#ifdef UNDER_ASAN
	return false;
#else
	void *lib = dlopen(MIMALLOC_SONAME, RTLD_NOW | RTLD_LOCAL);

	if (lib == NULL)
		return false;
	/* dlsym's object pointers as function pointers (POSIX allows it). */
	*(void **)&mi_malloc_fn = dlsym(lib, "mi_malloc");
	*(void **)&mi_calloc_fn = dlsym(lib, "mi_calloc");
	*(void **)&mi_realloc_fn = dlsym(lib, "mi_realloc");
	*(void **)&mi_free_fn = dlsym(lib, "mi_free");
	*(void **)&mi_strdup_fn = dlsym(lib, "mi_strdup");
	if (mi_malloc_fn == NULL || mi_calloc_fn == NULL ||
	    mi_realloc_fn == NULL || mi_free_fn == NULL || mi_strdup_fn == NULL) {
		dlclose(lib);
		return false;
	}
	return true;
#endif
}

bool
mialloc_curl_global_init(void)
{
	if (!mimalloc_load())
		return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
	/* OpenSSL refuses once it has allocated anything: then it keeps
	 * malloc, and libcurl may still have mimalloc. */
	(void)CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free);
	return curl_global_init_mem(CURL_GLOBAL_DEFAULT, mi_malloc_fn,
	                            mi_free_fn, mi_realloc_fn, mi_strdup_fn,
	                            mi_calloc_fn) == CURLE_OK;
}
