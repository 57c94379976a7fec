/*
 * mialloc.h - OpenSSL's and libcurl's allocations on mimalloc.
 *
 * An https handshake makes over two thousand small allocations in
 * OpenSSL 3.0, which frees them in bursts that glibc's per-thread cache
 * does not hold, and libcurl makes dozens for every transfer: a tenth of
 * a probe's instructions went to glibc's malloc and free (bench/README.md,
 * issue 18).  Both libraries let a program choose their allocator
 * (CRYPTO_set_mem_functions, curl_global_init_mem): sm-check gives them
 * mimalloc's, from the library loaded apart (RTLD_LOCAL), so that malloc
 * stays glibc's for everything else.  Without the library, or under
 * AddressSanitizer (which must see their allocations), they keep malloc.
 */
#ifndef SM_CHECK_MIALLOC_H
#define SM_CHECK_MIALLOC_H

#include <stdbool.h>

/* Instead of curl_global_init(CURL_GLOBAL_DEFAULT), before anything uses
 * OpenSSL or libcurl: false if libcurl's global init failed. */
bool mialloc_curl_global_init(void);

#endif
