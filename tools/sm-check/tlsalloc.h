/*
 * tlsalloc.h - OpenSSL's allocations on mimalloc.
 *
 * An https handshake makes over two thousand small allocations in
 * OpenSSL 3.0, which frees them in bursts that glibc's per-thread cache
 * does not hold; a tenth of a probe's instructions went to glibc's malloc
 * and free (bench/README.md, issue 18).  OpenSSL lets a program choose its
 * allocator (CRYPTO_set_mem_functions): sm-check gives it mimalloc's, from
 * the library loaded apart (RTLD_LOCAL), so that malloc stays glibc's for
 * everything else.  Without the library, or under AddressSanitizer (which
 * must see OpenSSL's allocations), OpenSSL keeps malloc.
 */
#ifndef SM_CHECK_TLSALLOC_H
#define SM_CHECK_TLSALLOC_H

#include <stdbool.h>

/* Before anything uses OpenSSL (curl_global_init): true if OpenSSL
 * allocates with mimalloc from now on. */
bool tlsalloc_init(void);

#endif
