/*
 * castore.h - CA bundles parsed once and shared by every probe of every
 * probe loop (an X509_STORE per file, reference counted by OpenSSL).
 */
#ifndef SM_CHECK_CASTORE_H
#define SM_CHECK_CASTORE_H

#include <stddef.h>

#include <openssl/x509.h>

/* The store of the CA bundle at path (NULL: libcurl's default bundle),
 * loaded on first use and again once a day, with a reference for the
 * caller (X509_STORE_free it, or hand it to SSL_CTX_set0/1).  NULL with a
 * reason in err when the file cannot be read or holds no certificate. */
X509_STORE *castore_get(const char *path, char *err, size_t errlen);
/* Once, before threads: the default bundle's path (libcurl's). */
void castore_init(const char *default_path);
/* Drop every store (at exit). */
void castore_clear(void);

#endif
