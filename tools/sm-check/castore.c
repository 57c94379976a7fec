/*
 * castore.c - parse each CA bundle once, not once per connection.
 *
 * libcurl 7.88 makes a new SSL_CTX for every connection and fills its
 * certificate store from CURLOPT_CAINFO.  It keeps one parsed store per
 * multi handle (CURLOPT_CA_CACHE_TIMEOUT), for one file: a probe whose
 * ca_file differs from the previous probe's parses its bundle again, and
 * parsing the system bundle (about 140 certificates, OpenSSL 3's PEM
 * decoders) costs some 30 ms of CPU, 30 times a whole https probe.  So
 * sm-check gives libcurl no CA file at all and sets the store itself in
 * its SSL_CTX callback (probe.c), from this cache: a few stores, by path,
 * shared by every loop.  Verification is unchanged: OpenSSL verifies the
 * chain against the store, libcurl checks the host name, every probe
 * makes its full handshake.
 *
 * The store gets the flags libcurl 7.88 sets on the stores it makes:
 * trusted certificates first, and partial chains (a trusted intermediate
 * or leaf ends the chain).  Like libcurl's cache, an entry is reloaded
 * after a day, so that a replaced bundle is read again.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "sm.h"
#include "castore.h"

#define CA_SLOTS 16
#define CA_MAX_AGE_MS (24 * 3600 * 1000LL)

struct slot {
	char *path;
	X509_STORE *store;
	int64_t loaded_ms;
	uint64_t last_use;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[CA_SLOTS]; /* under mu */
static uint64_t use_clock;          /* under mu */
static char *default_ca;

void
castore_init(const char *default_path)
{
	free(default_ca);
	default_ca = default_path != NULL ? xstrdup(default_path) : NULL;
}

static X509_STORE *
load(const char *path, char *err, size_t errlen)
{
	X509_STORE *s = X509_STORE_new();

	if (s == NULL)
		die(EX_SOFTWARE, "out of memory");
	ERR_set_mark();
	if (X509_STORE_load_file(s, path) != 1) {
		ERR_pop_to_mark();
		X509_STORE_free(s);
		snprintf(err, errlen,
		         "error setting certificate file: %s", path);
		return NULL;
	}
	ERR_pop_to_mark();
	X509_STORE_set_flags(s, X509_V_FLAG_TRUSTED_FIRST |
	                            X509_V_FLAG_PARTIAL_CHAIN);
	return s;
}

X509_STORE *
castore_get(const char *path, char *err, size_t errlen)
{
	struct slot *hit = NULL, *victim = &slots[0];
	int64_t now = time_now_ms();
	X509_STORE *s;

	if (path == NULL && (path = default_ca) == NULL) {
		/* No bundle at all: an empty store, which trusts nothing
		 * (as libcurl without a CA file). */
		if ((s = X509_STORE_new()) == NULL)
			die(EX_SOFTWARE, "out of memory");
		return s;
	}
	pthread_mutex_lock(&mu);
	for (int i = 0; i < CA_SLOTS; i++) {
		if (slots[i].path != NULL && strcmp(slots[i].path, path) == 0) {
			hit = &slots[i];
			break;
		}
		if (slots[i].path == NULL ||
		    (victim->path != NULL && slots[i].last_use < victim->last_use))
			victim = &slots[i];
	}
	if (hit != NULL && now - hit->loaded_ms < CA_MAX_AGE_MS) {
		hit->last_use = ++use_clock;
		X509_STORE_up_ref(hit->store);
		s = hit->store;
		pthread_mutex_unlock(&mu);
		return s;
	}
	/* Loaded under the lock: the others that want it wait for it,
	 * instead of each parsing it. */
	if ((s = load(path, err, errlen)) == NULL) {
		pthread_mutex_unlock(&mu);
		return NULL;
	}
	if (hit == NULL) {
		hit = victim;
		free(hit->path);
		hit->path = xstrdup(path);
	}
	X509_STORE_free(hit->store); /* probes that hold it keep theirs */
	hit->store = s;
	hit->loaded_ms = now;
	hit->last_use = ++use_clock;
	X509_STORE_up_ref(s);
	pthread_mutex_unlock(&mu);
	return s;
}

void
castore_clear(void)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < CA_SLOTS; i++) {
		free(slots[i].path);
		X509_STORE_free(slots[i].store);
		slots[i] = (struct slot){ 0 };
	}
	pthread_mutex_unlock(&mu);
	free(default_ca);
	default_ca = NULL;
}
