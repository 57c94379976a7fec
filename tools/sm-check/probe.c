/*
 * probe.c - set up one curl easy handle per target and turn the finished
 * transfer into a result record (schema v1).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sm.h"
#include "castore.h"
#include "probe.h"
#include "rxcache.h"
#include "rxstamp.h"
#include "jtext.h"
#include "tlsrelay.h"

/* A response that asked for a redirect. */
struct hop {
	char *url;      /* the URL asked (password hidden) */
	char *location; /* where it sent us, made absolute (password hidden) */
	long status;
	int64_t us;     /* from the hop's start to its response's headers */
};

/* The accumulated curl timers (each the sum over the hops so far, each
 * hop's relative to that hop's start). */
struct timers {
	curl_off_t nl, ct, ac, pt, st;
};

/* Phases in microseconds, -1 for one that never ran. */
struct phase_us {
	int64_t dns, connect, tls, ttfb;
};

/* Certificate facts of a TLS connection, taken while OpenSSL verifies it
 * (so also when it fails). */
struct certfacts {
	bool seen;          /* a certificate came */
	int verify_err;     /* the first X509_V_ERR_* of the chain, 0: none */
	bool alert_version; /* a protocol_version alert, sent or received */
	char *subject, *issuer, *sans_json, *sha256;
	int64_t not_before_ms, not_after_ms, chain_ms;
	bool not_before_ok, not_after_ok, chain_ok;
};

#define MAX_HOPS 64

struct probe {
	struct target *t;
	CURL *easy;
	struct curl_slist *headers;
	char errbuf[CURL_ERROR_SIZE];
	char ca_err[256];        /* the CA bundle could not be loaded */
	char id[UUID_STR_LEN];
	const struct probe_opts *opts;
	int64_t started_ms;      /* wall clock, for started_at */
	int64_t started_ns;      /* monotonic, for duration when curl has none */

	int64_t max_body;        /* the body is cut past this many bytes */
	int64_t bytes;           /* body bytes of the last response */
	bool truncated;          /* ... and the rest was not read */
	bool encoded;            /* the last response had a Content-Encoding */
	bool keep_body;          /* a regex needs the body */
	char *body;
	size_t body_len, body_cap;
	struct rx *rx, *rx_absent; /* the compiled regex and regex_absent */

	/* Redirects: each hop, and the timers as the last one ended. */
	struct hop hops[MAX_HOPS];
	size_t n_hops;
	int64_t hop_start_ns;
	char *location;          /* Location of the response being read */
	struct timers at_redirect;
	struct phase_us hop_sum; /* the phases of the hops before the last */

	char tls_version[32];    /* SSL_get_version() of the last TLS connection */
	struct certfacts cert;

	/* https whose TLS sm-check makes (tlsrelay.h; own_url_new()). */
	uint64_t origin_key;     /* the https URL's host:port, 0: not https */
	bool own;                /* libcurl has the URL as http */
	char *own_host;          /* its host as written ([] for IPv6), under
	                          * 256 bytes */
	long own_port;
	bool own_port_written;   /* the URL writes its port (":443") */
	bool hop_own;            /* this hop's connection is a relay's */
	int fds[4];              /* libcurl's open sockets of this probe */
	size_t n_fds;
	struct relay *relay;     /* the relay of this hop, or NULL */
	int relay_fd;            /* ... on libcurl's descriptor */
	struct relay_outcome rout;
	CURLcode own_code;       /* refused before the relay, CURLE_OK: not */

	/* sm-check's own waits, taken out of the phases (see "waits of the
	 * loop" below): this hop's, and every hop's so far. */
	int64_t wait_connect_us, wait_ttfb_us, waited_us;
	int await_fd;            /* a plain http hop's socket before its
	                          * first byte, or -1 */
	int64_t sent_real_ns;    /* wall clock as its request went */

	/* The transfer's outcome (probe_transfer_done). */
	CURLcode code;
	long status, redirects, httpver;
	char *ip, *final_url;
	struct timers sum;
	curl_off_t total_us, redirect_us, content_length, wire_bytes;
	enum error_kind kind;
	char msg[CURL_ERROR_SIZE + 512];

	/* The regexes (probe_eval, on a worker thread). */
	enum rx_result rx_res, rx_absent_res;
	bool rx_ran, rx_absent_ran;
	size_t rx_searched;
	char rx_err[256];
	int64_t regex_us;        /* -1: no regex ran */
};

/* Of relayed https (below, with the relay's other parts). */
static char *shown_url_new(const struct probe *p, const char *url);
static void own_phases(const struct probe *p, struct phase_us *ph);
/* Of the loop's waits (below). */
static void wait_connect_note(struct probe *p, int fd);
static void wait_answer_arm(struct probe *p, int fd);
static int64_t wait_phases(struct probe *p, struct phase_us *ph);

/* ---- curl callbacks --------------------------------------------------- */

static bool
is_https(const char *url)
{
	return url != NULL && strncasecmp(url, "https:", 6) == 0;
}

static curl_off_t
info_time(CURL *e, CURLINFO what)
{
	curl_off_t v = 0;

	if (curl_easy_getinfo(e, what, &v) != CURLE_OK)
		return 0;
	return v;
}

static void
timers_now(CURL *e, struct timers *t)
{
	t->nl = info_time(e, CURLINFO_NAMELOOKUP_TIME_T);
	t->ct = info_time(e, CURLINFO_CONNECT_TIME_T);
	t->ac = info_time(e, CURLINFO_APPCONNECT_TIME_T);
	t->pt = info_time(e, CURLINFO_PRETRANSFER_TIME_T);
	t->st = info_time(e, CURLINFO_STARTTRANSFER_TIME_T);
}

static int64_t
clamp0(curl_off_t v)
{
	return v > 0 ? (int64_t)v : 0;
}

/* The phases of one hop, from the timers before it (a) and after (b). */
static void
hop_phases(const struct timers *a, const struct timers *b,
           struct phase_us *ph)
{
	struct timers d = { b->nl - a->nl, b->ct - a->ct, b->ac - a->ac,
	                    b->pt - a->pt, b->st - a->st };
	curl_off_t sent = d.pt > 0 ? d.pt : d.ac > 0 ? d.ac : d.ct;

	ph->dns = d.nl > 0 ? d.nl : -1;
	ph->connect = d.ct > 0 ? clamp0(d.ct - d.nl) : -1;
	ph->tls = d.ac > 0 ? clamp0(d.ac - d.ct) : -1;
	ph->ttfb = d.st > 0 ? clamp0(d.st - sent) : -1;
}

static int64_t
add_us(int64_t a, int64_t b)
{
	return a < 0 ? b : b < 0 ? a : a + b;
}

static void
phases_add(struct phase_us *sum, const struct phase_us *ph)
{
	sum->dns = add_us(sum->dns, ph->dns);
	sum->connect = add_us(sum->connect, ph->connect);
	sum->tls = add_us(sum->tls, ph->tls);
	sum->ttfb = add_us(sum->ttfb, ph->ttfb);
}

/* A header's value, trimmed, if the line is "name: value". */
static bool
header_is(const char *buf, size_t len, const char *name, const char **val,
          size_t *vlen)
{
	size_t n = strlen(name);

	if (len <= n || strncasecmp(buf, name, n) != 0 || buf[n] != ':')
		return false;
	buf += n + 1;
	len -= n + 1;
	while (len > 0 && (*buf == ' ' || *buf == '\t'))
		buf++, len--;
	while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n' ||
	                   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	*val = buf;
	*vlen = len;
	return true;
}

/* Location resolved against the URL that sent it, password hidden. */
static char *
absolute_location(const char *base, const char *loc)
{
	CURLU *u = curl_url();
	char *abs = NULL, *shown;

	if (u == NULL)
		return url_redact_new(loc);
	if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_URL, loc, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &abs, 0) != CURLUE_OK) {
		curl_url_cleanup(u);
		return url_redact_new(loc);
	}
	shown = url_redact_new(abs);
	curl_free(abs);
	curl_url_cleanup(u);
	return shown;
}

/* The end of a response's headers: a redirect to follow is a hop. */
static void
headers_done(struct probe *p)
{
	long status = 0;
	char *url = NULL;
	int64_t now = mono_now_ns();
	struct hop *h;
	struct timers now_t;
	struct phase_us ph;

	curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 300 || status > 399 || p->location == NULL ||
	    !p->t->follow_redirects || p->n_hops == MAX_HOPS)
		return;
	curl_easy_getinfo(p->easy, CURLINFO_EFFECTIVE_URL, &url);
	h = &p->hops[p->n_hops++];
	h->status = status;
	h->url = shown_url_new(p, url != NULL ? url : "");
	h->location = absolute_location(url != NULL ? url : "", p->location);
	if (p->own) {
		char *shown = shown_url_new(p, h->location);

		free(h->location);
		h->location = shown;
	}
	h->us = (now - p->hop_start_ns) / 1000;
	p->hop_start_ns = now;
	/* Every phase of this hop has been added to the timers by now,
	 * and none of the next: this hop's phases are what the timers
	 * gained since the previous hop, the final hop's what they gain
	 * after this. */
	timers_now(p->easy, &now_t);
	hop_phases(&p->at_redirect, &now_t, &ph);
	own_phases(p, &ph);
	h->us -= wait_phases(p, &ph);
	if (h->us < 0)
		h->us = 0;
	phases_add(&p->hop_sum, &ph);
	p->at_redirect = now_t;
	p->hop_own = false; /* the next hop says its own */
}

static size_t
on_header(char *buf, size_t size, size_t n, void *userdata)
{
	struct probe *p = userdata;
	size_t len = size * n, vlen;
	const char *v;

	/* A new status line starts a new response (after a redirect or a
	 * 100 Continue): count and keep only the last response's body. */
	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		p->await_fd = -1; /* read without a look at its arrival */
		p->bytes = 0;
		p->body_len = 0;
		p->truncated = false;
		p->encoded = false;
		free(p->location);
		p->location = NULL;
	} else if (header_is(buf, len, "Location", &v, &vlen)) {
		free(p->location);
		p->location = xstrndup(v, vlen);
	} else if (header_is(buf, len, "Content-Encoding", &v, &vlen)) {
		p->encoded = vlen > 0 && !(vlen == 8 && strncasecmp(v, "identity", 8) == 0);
	} else if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
		headers_done(p);
	}
	return len;
}

static size_t
on_body(char *buf, size_t size, size_t n, void *userdata)
{
	struct probe *p = userdata;
	size_t len = size * n, keep = len;

	if (p->bytes + (int64_t)len > p->max_body) {
		/* Keep what fits, then stop reading: returning short makes
		 * curl end the transfer (CURLE_WRITE_ERROR), which
		 * probe_transfer_done() knows for a cut, not a failure. */
		keep = (size_t)(p->max_body - p->bytes);
		p->truncated = true;
	}
	p->bytes += (int64_t)keep;
	if (p->keep_body && keep > 0) {
		if (p->body_len + keep > p->body_cap) {
			size_t cap = p->body_cap ? p->body_cap : 16384;

			while (cap < p->body_len + keep)
				cap *= 2;
			p->body = xrealloc(p->body, cap);
			p->body_cap = cap;
		}
		memcpy(p->body + p->body_len, buf, keep);
		p->body_len += keep;
	}
	return p->truncated ? 0 : len;
}

/* ---- certificates ------------------------------------------------------ */

/* The SSL_CTX ex_data slot that holds the probe (see on_ssl_ctx); made
 * once, by probe_global_init(). */
static int ctx_slot = -1;
/* The SSL ex_data slot of a relay's SSL, which holds the probe; and the
 * one SSL_CTX of every relay (own_ssl_new). */
static int ssl_slot = -1;
static SSL_CTX *own_ctx;
/* Connections whose TLS sm-check made, for the stats line. */
static atomic_ulong n_relayed;
static atomic_ullong n_waited_us; /* see "waits of the loop" */

static void
certfacts_clear(struct certfacts *c)
{
	free(c->subject);
	free(c->issuer);
	free(c->sans_json);
	free(c->sha256);
	memset(c, 0, sizeof *c);
}

/* SHA-256, fetched once (probe_global_init): X509_digest() with
 * EVP_sha256() looks it up in the provider store at every call. */
static EVP_MD *sha256_md;

/* A name as one line, in the form libcurl's certinfo gives it
 * ("CN = example.com, O = ..."), printed into b (a memory BIO, emptied
 * after). */
static char *
name_text(X509_NAME *name, BIO *b)
{
	char *data, *s;
	long n;

	if (b == NULL || name == NULL ||
	    X509_NAME_print_ex(b, name, 0, XN_FLAG_ONELINE) < 0) {
		if (b != NULL)
			(void)BIO_reset(b);
		return NULL;
	}
	n = BIO_get_mem_data(b, &data);
	s = n >= 0 ? xstrndup(data, (size_t)n) : NULL;
	(void)BIO_reset(b);
	return s;
}

static bool
asn1_ms(const ASN1_TIME *t, int64_t *ms)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return false;
	*ms = (int64_t)timegm(&tm) * 1000;
	return true;
}

/* Append s[0..n) to the JSON text being built in js; as_text: s goes
 * inside a string (printable ASCII; anything else becomes '?'). */
static void
json_append(char **js, size_t *len, size_t *cap, const char *s, size_t n,
            bool as_text)
{
	if (*len + n + 8 > *cap) {
		*cap = (*len + n + 8) * 2;
		*js = xrealloc(*js, *cap);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		(*js)[(*len)++] = as_text && (c < 0x20 || c >= 0x7f ||
		                              c == '"' || c == '\\')
		                      ? '?' : (char)c;
	}
	(*js)[*len] = '\0';
}

/* The subject alternative names as a JSON array of "DNS:name" and
 * "IP:address" strings (as openssl x509 -text shows them), at most 100. */
static char *
sans_json(X509 *x)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
	                                        NULL);
	char *js = NULL, ip[INET6_ADDRSTRLEN];
	size_t len = 0, cap = 0;
	int n = names != NULL ? sk_GENERAL_NAME_num(names) : 0;

	json_append(&js, &len, &cap, "[", 1, false);
	for (int i = 0, out = 0; i < n && out < 100; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		const char *pfx = NULL, *val = NULL;
		size_t vlen = 0;

		if (g->type == GEN_DNS || g->type == GEN_EMAIL ||
		    g->type == GEN_URI) {
			pfx = g->type == GEN_DNS ? "DNS:" :
			      g->type == GEN_EMAIL ? "email:" : "URI:";
			val = (const char *)ASN1_STRING_get0_data(g->d.ia5);
			vlen = (size_t)ASN1_STRING_length(g->d.ia5);
		} else if (g->type == GEN_IPADD) {
			int alen = ASN1_STRING_length(g->d.ip);
			const unsigned char *a = ASN1_STRING_get0_data(g->d.ip);

			if ((alen == 4 && inet_ntop(AF_INET, a, ip, sizeof ip)) ||
			    (alen == 16 && inet_ntop(AF_INET6, a, ip, sizeof ip))) {
				pfx = "IP:";
				val = ip;
				vlen = strlen(ip);
			}
		}
		if (pfx == NULL || vlen > 253)
			continue;
		if (out++ > 0)
			json_append(&js, &len, &cap, ",", 1, false);
		json_append(&js, &len, &cap, "\"", 1, false);
		json_append(&js, &len, &cap, pfx, strlen(pfx), true);
		json_append(&js, &len, &cap, val, vlen, true);
		json_append(&js, &len, &cap, "\"", 1, false);
	}
	json_append(&js, &len, &cap, "]", 1, false);
	GENERAL_NAMES_free(names);
	return js;
}

static char *
sha256_text(X509 *x)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	char *s;

	if (X509_digest(x, sha256_md != NULL ? sha256_md : EVP_sha256(), md,
	                &n) != 1 || n == 0)
		return NULL;
	s = xmalloc(n * 3);
	for (unsigned i = 0; i < n; i++)
		snprintf(s + 3 * i, 4, "%02X%s", md[i], i + 1 < n ? ":" : "");
	return s;
}

/* The SSL's probe: its own (a relay's SSL) or its SSL_CTX's (libcurl
 * makes an SSL_CTX per connection). */
static struct probe *
probe_of_ssl(const SSL *ssl)
{
	struct probe *p = ssl_slot >= 0 ? SSL_get_ex_data(ssl, ssl_slot) : NULL;

	return p != NULL ? p : SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_slot);
}

/* The relayed host in host, without an IPv6 address's brackets; whether
 * it is an address. */
static bool
own_host_bare(const struct probe *p, char host[static 256])
{
	size_t n = strlen(p->own_host); /* under 256: own_host_ok() */
	unsigned char addr[16];

	if (p->own_host[0] == '[' && n >= 2) {
		memcpy(host, p->own_host + 1, n - 2);
		host[n - 2] = '\0';
	} else {
		memcpy(host, p->own_host, n + 1);
	}
	return inet_pton(AF_INET, host, addr) == 1 ||
	       inet_pton(AF_INET6, host, addr) == 1;
}

/* Whether the leaf certificate is for the host of the relay's URL, as
 * libcurl 7.88 decides: an address against the certificate's IP names,
 * a name against its DNS names (its subject's CN when it has none), a
 * wildcard only as a whole first label. */
static bool
own_host_matches(const struct probe *p, X509 *leaf)
{
	char host[256];

	if (leaf == NULL)
		return false;
	if (own_host_bare(p, host))
		return X509_check_ip_asc(leaf, host, 0) == 1;
	return X509_check_host(leaf, host, 0,
	                       X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

/* OpenSSL's verify callback: the outcome is OpenSSL's (ok is returned
 * as it came); the probe keeps the leaf's facts and the first error. */
static int
on_verify(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x,
	                                      SSL_get_ex_data_X509_STORE_CTX_idx());
	struct probe *p = ssl != NULL ? probe_of_ssl(ssl) : NULL;
	struct certfacts *c;

	if (p == NULL)
		return ok;
	c = &p->cert;
	/* The last call, the leaf's, once its chain has verified: the
	 * host, as libcurl checks it after a handshake (a chain that fails
	 * says so first). */
	if (ok && p->hop_own && p->t->tls_verify &&
	    X509_STORE_CTX_get_error_depth(x) == 0 &&
	    !own_host_matches(p, X509_STORE_CTX_get0_cert(x))) {
		X509_STORE_CTX_set_error(x, X509_V_ERR_HOSTNAME_MISMATCH);
		ok = 0;
	}
	/* Without tls_verify OpenSSL still verifies, but decides nothing:
	 * its errors are not why a handshake failed. */
	if (!ok && c->verify_err == 0 && p->t->tls_verify)
		c->verify_err = X509_STORE_CTX_get_error(x);
	if (!c->seen) {
		X509 *leaf = X509_STORE_CTX_get0_cert(x);
		STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(x);
		BIO *b;

		if (leaf == NULL)
			return ok;
		c->seen = true;
		/* Known once the server's hello came, before its
		 * certificate; libcurl says it only after a handshake that
		 * succeeded. */
		if (p->tls_version[0] == '\0')
			snprintf(p->tls_version, sizeof p->tls_version, "%s",
			         SSL_get_version(ssl));
		b = BIO_new(BIO_s_mem());
		c->subject = name_text(X509_get_subject_name(leaf), b);
		c->issuer = name_text(X509_get_issuer_name(leaf), b);
		BIO_free(b);
		c->sans_json = sans_json(leaf);
		c->sha256 = sha256_text(leaf);
		c->not_before_ok = asn1_ms(X509_get0_notBefore(leaf),
		                           &c->not_before_ms);
		c->not_after_ok = asn1_ms(X509_get0_notAfter(leaf),
		                          &c->not_after_ms);
		/* The earliest expiry of what the server sent (the leaf
		 * first), unknown if one of them has no date that reads. */
		c->chain_ok = c->not_after_ok;
		c->chain_ms = c->not_after_ms;
		for (int i = 0; sent != NULL && i < sk_X509_num(sent) && c->chain_ok;
		     i++) {
			int64_t ms;

			if (!asn1_ms(X509_get0_notAfter(sk_X509_value(sent, i)),
			             &ms))
				c->chain_ok = false;
			else if (ms < c->chain_ms)
				c->chain_ms = ms;
		}
	}
	return ok;
}

/* The end of the handshake: the version agreed on.  (The verify
 * callback has taken it already when a certificate came, so that a
 * certificate refused still has it.)  Alerts: a protocol_version one says
 * the two sides share no version.  This replaces libcurl's verbose mode,
 * whose "SSL connection using" line once gave the version: that mode
 * formats every message and every TLS record of every probe. */
static void
on_ssl_info(const SSL *ssl, int where, int ret)
{
	struct probe *p;

	if (where & SSL_CB_HANDSHAKE_DONE) {
		p = probe_of_ssl(ssl);
		if (p != NULL)
			snprintf(p->tls_version, sizeof p->tls_version, "%s",
			         SSL_get_version(ssl));
		return;
	}
	if (!(where & SSL_CB_ALERT) || (ret & 0xff) != SSL_AD_PROTOCOL_VERSION)
		return;
	p = probe_of_ssl(ssl);
	if (p != NULL)
		p->cert.alert_version = true;
}

/* CURLOPT_SSL_CTX_FUNCTION: libcurl made a new SSL_CTX for a connection
 * (each probe, each hop has its own) and set its verify mode; the probe
 * adds its callbacks, which leave every decision to OpenSSL and
 * libcurl. */
static CURLcode
on_ssl_ctx(CURL *e, void *sslctx, void *userptr)
{
	SSL_CTX *ctx = sslctx;
	struct probe *p = userptr;

	if (ctx_slot < 0)
		return CURLE_OK;
	/* The CA bundle, parsed once for every probe (castore.c): libcurl
	 * was given none.  It is the store OpenSSL verifies the server's
	 * chain against (the verify store, which comes before the
	 * SSL_CTX's own): libcurl 7.88 sets up the SSL_CTX's store after
	 * this callback, from its cache in the multi handle (an empty store
	 * here), and sets flags on it, so the shared store must not be that
	 * one.  Without tls_verify, libcurl would load none. */
	if (p->t->tls_verify) {
		X509_STORE *store = castore_get(p->t->ca_file, p->ca_err,
		                                sizeof p->ca_err);

		if (store == NULL)
			return CURLE_SSL_CACERT_BADFILE;
		if (SSL_CTX_set1_verify_cert_store(ctx, store) != 1) {
			X509_STORE_free(store);
			return CURLE_OUT_OF_MEMORY;
		}
		X509_STORE_free(store); /* the SSL_CTX holds its own reference */
	}
	/* The facts are those of the last connection (the final hop). */
	certfacts_clear(&p->cert);
	p->tls_version[0] = '\0';
	SSL_CTX_set_ex_data(ctx, ctx_slot, p);
	SSL_CTX_set_verify(ctx, SSL_CTX_get_verify_mode(ctx), on_verify);
	SSL_CTX_set_info_callback(ctx, on_ssl_info);
	return CURLE_OK;
}

/* The tls_error sub-kind of a TLS failure, from the verify result and
 * libcurl's code, never from message text. */
static const char *
tls_error_of(const struct probe *p)
{
	switch (p->cert.verify_err) {
	case X509_V_OK:
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return "expired";
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return "not_yet_valid";
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return "self_signed";
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		return "unknown_issuer";
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return "hostname_mismatch";
	case X509_V_ERR_CERT_REVOKED:
		return "revoked";
	default:
		return "invalid_certificate";
	}
	switch (p->code) {
	case CURLE_PEER_FAILED_VERIFICATION:
		/* The chain verified: libcurl's own host name check
		 * failed. */
		return p->cert.seen ? "hostname_mismatch" : "invalid_certificate";
	case CURLE_SSL_CACERT_BADFILE:
		return "ca_file";
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CIPHER:
		return p->cert.alert_version ? "protocol_version" : "handshake";
	default:
		return "other";
	}
}

/* ---- https whose TLS sm-check makes (tlsrelay.h) ----------------------- */

/* Which https origins (host:port) answered a probe made all by libcurl
 * over HTTP/1.x lately: those sm-check then makes the TLS of.  The relay
 * offers only http/1.1 in ALPN (libcurl, given an http URL, speaks
 * HTTP/1.1), so a server that takes HTTP/2 stays libcurl's, and a server
 * that begins to take it is seen within MEMO_TTL_NS.  One table of 64-bit
 * keys for every probe loop (what one learns, all use), emptied when half
 * full. */
#define MEMO_SLOTS 8192
#define MEMO_TTL_NS (3600 * INT64_C(1000000000))

struct memo_slot {
	uint64_t key;   /* 0: empty */
	int64_t at_ns;  /* learnt (monotonic) */
};

static pthread_mutex_t memo_mu = PTHREAD_MUTEX_INITIALIZER;
static struct memo_slot *memo; /* under memo_mu */
static size_t memo_used;

static uint64_t
origin_key(const char *host, long port)
{
	uint64_t h = 14695981039346656037u; /* FNV-1a */
	char ps[24];

	for (const char *c = host; *c; c++)
		h = (h ^ (unsigned char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c)) *
		    1099511628211u;
	snprintf(ps, sizeof ps, ":%ld", port);
	for (const char *c = ps; *c; c++)
		h = (h ^ (unsigned char)*c) * 1099511628211u;
	return h != 0 ? h : 1;
}

static struct memo_slot *
memo_find(uint64_t key)
{
	size_t i = (size_t)key & (MEMO_SLOTS - 1);

	if (memo == NULL)
		return NULL;
	while (memo[i].key != 0 && memo[i].key != key)
		i = (i + 1) & (MEMO_SLOTS - 1);
	return &memo[i];
}

static bool
memo_knows(uint64_t key)
{
	struct memo_slot *s;
	bool known;

	pthread_mutex_lock(&memo_mu);
	s = memo_find(key);
	known = s != NULL && s->key == key &&
	        mono_now_ns() - s->at_ns < MEMO_TTL_NS;
	pthread_mutex_unlock(&memo_mu);
	return known;
}

static void
memo_learn(uint64_t key)
{
	struct memo_slot *s;

	pthread_mutex_lock(&memo_mu);
	if (memo == NULL)
		memo = xcalloc(MEMO_SLOTS, sizeof *memo);
	if (memo_used >= MEMO_SLOTS / 2) {
		memset(memo, 0, MEMO_SLOTS * sizeof *memo);
		memo_used = 0;
	}
	s = memo_find(key);
	if (s->key == 0)
		memo_used++;
	s->key = key;
	s->at_ns = mono_now_ns();
	pthread_mutex_unlock(&memo_mu);
}

/* Whether a host (as a URL writes it) is one a relay may verify and name
 * in SNI as libcurl would: ASCII, no zone, not too long. */
static bool
own_host_ok(const char *host)
{
	size_t n = strlen(host);

	if (n == 0 || n >= 256)
		return false;
	for (const char *c = host; *c; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f ||
		    *c == '%')
			return false;
	return true;
}

/* Whether u's URL writes its port. */
static bool
url_writes_port(CURLU *u)
{
	char *port = NULL;
	bool written = curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK;

	curl_free(port);
	return written;
}

/* A string of libcurl's (curl_free) as one of ours (free), or NULL. */
static char *
curl_string_take(char *s)
{
	char *copy = s != NULL ? xstrdup(s) : NULL;

	curl_free(s);
	return copy;
}

/* The URL libcurl gets: for an https URL whose origin answered over
 * HTTP/1.x lately (memo) the same URL as http with its port written out
 * (a new string, p->own set), else NULL (the target's URL). */
static char *
own_url_new(struct probe *p)
{
	CURLU *u;
	char *host = NULL, *port = NULL, *url = NULL;

	if (!is_https(p->t->url) || p->opts->proxy_env || own_ctx == NULL ||
	    (u = curl_url()) == NULL)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, p->t->url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
	        CURLUE_OK ||
	    !own_host_ok(host))
		goto out;
	p->own_port = strtol(port, NULL, 10);
	p->origin_key = origin_key(host, p->own_port);
	/* Shown again as written: libcurl keeps an explicit :443. */
	p->own_port_written = url_writes_port(u);
	if (!memo_knows(p->origin_key))
		goto out;
	if (curl_url_set(u, CURLUPART_SCHEME, "http", 0) != CURLUE_OK ||
	    curl_url_set(u, CURLUPART_PORT, port, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
		goto out;
	p->own = true;
	p->own_host = xstrdup(host);
out:
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return curl_string_take(url);
}

/* Whether url is on the relayed origin: the http form of the https URL
 * (the first hop, or a redirect relative to it). */
static bool
own_origin(const struct probe *p, CURLU *u)
{
	char *scheme = NULL, *host = NULL, *port = NULL;
	bool same;

	same = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	       curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	       curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
	           CURLUE_OK &&
	       strcasecmp(scheme, "http") == 0 &&
	       strcasecmp(host, p->own_host) == 0 &&
	       strtol(port, NULL, 10) == p->own_port;
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	return same;
}

/* url as the result shows it (a new string, password hidden): on the
 * relayed origin, https again. */
static char *
shown_url_new(const struct probe *p, const char *url)
{
	CURLU *u;
	char *https = NULL, *shown;

	if (!p->own || (u = curl_url()) == NULL)
		return url_redact_new(url);
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    own_origin(p, u) &&
	    curl_url_set(u, CURLUPART_SCHEME, "https", 0) == CURLUE_OK &&
	    (p->own_port != 443 || p->own_port_written ||
	     curl_url_set(u, CURLUPART_PORT, NULL, 0) == CURLUE_OK))
		(void)curl_url_get(u, CURLUPART_URL, &https, 0);
	curl_url_cleanup(u);
	shown = url_redact_new(https != NULL ? https : url);
	curl_free(https);
	return shown;
}

/* Whether this hop's connection is to the relayed origin. */
static bool
hop_is_own(const struct probe *p)
{
	char *url = NULL;
	CURLU *u;
	bool own;

	if (!p->own ||
	    curl_easy_getinfo(p->easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK ||
	    url == NULL || (u = curl_url()) == NULL)
		return false;
	own = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	      own_origin(p, u);
	curl_url_cleanup(u);
	return own;
}

/* Whether this hop's connection is plain TCP all along: http, not
 * relayed, not through a proxy that may be an https one (an own
 * probe's http URLs are not told apart here). */
static bool
hop_is_plain(const struct probe *p)
{
	char *url = NULL;

	if (p->own || p->opts->proxy_env ||
	    curl_easy_getinfo(p->easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK ||
	    url == NULL)
		return false;
	return strncasecmp(url, "http:", 5) == 0;
}

/* Of libcurl's open sockets of this probe, the connected one (the loser
 * of a happy-eyeballs race may still be open). */
static int
connected_fd(const struct probe *p, const char *ip, int port)
{
	if (p->n_fds == 1)
		return p->fds[0];
	for (size_t i = 0; i < p->n_fds; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		char text[INET6_ADDRSTRLEN];
		const void *a;
		int peer_port;

		if (getpeername(p->fds[i], (struct sockaddr *)&ss, &len) < 0)
			continue;
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *in = (const void *)&ss;

			a = &in->sin_addr;
			peer_port = ntohs(in->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (const void *)&ss;

			a = &in6->sin6_addr;
			peer_port = ntohs(in6->sin6_port);
		} else {
			continue;
		}
		if (peer_port == port &&
		    inet_ntop(ss.ss_family, a, text, sizeof text) != NULL &&
		    strcmp(text, ip) == 0)
			return p->fds[i];
	}
	return -1;
}

/* A relay's SSL for this probe: the shared SSL_CTX, the probe's CA
 * store and callbacks.  NULL with the reason in errbuf when the CA
 * bundle cannot be loaded. */
static SSL *
own_ssl_new(struct probe *p)
{
	SSL *ssl;
	char host[256];

	if ((ssl = SSL_new(own_ctx)) == NULL)
		die(EX_SOFTWARE, "SSL_new failed");
	SSL_set_ex_data(ssl, ssl_slot, p);
	/* Without tls_verify OpenSSL still verifies, for the facts, and
	 * decides nothing (on_verify). */
	SSL_set_verify(ssl, p->t->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
	               on_verify);
	if (p->t->tls_verify) {
		X509_STORE *store = castore_get(p->t->ca_file, p->ca_err,
		                                sizeof p->ca_err);

		if (store == NULL || SSL_set1_verify_cert_store(ssl, store) != 1) {
			X509_STORE_free(store);
			SSL_free(ssl);
			return NULL;
		}
		X509_STORE_free(store); /* the SSL holds its own reference */
	}
	/* SNI names a host, never an address (RFC 6066, 3). */
	if (!own_host_bare(p, host))
		(void)SSL_set_tlsext_host_name(ssl, host);
	return ssl;
}

/* CURLOPT_PREREQFUNCTION: libcurl has connected this hop and is about to
 * send the request.  On the relayed origin, the relay takes the socket
 * and makes the TLS handshake first. */
static int
on_prereq(void *clientp, char *ip, char *local_ip, int port, int local_port)
{
	struct probe *p = clientp;
	SSL *ssl;
	int fd;

	(void)local_ip;
	(void)local_port;
	p->hop_own = false;
	if (!hop_is_own(p)) {
		/* Over libcurl's TLS the handshake has run by now. */
		if (hop_is_plain(p)) {
			fd = connected_fd(p, ip, port);
			wait_connect_note(p, fd);
			wait_answer_arm(p, fd);
		}
		return CURL_PREREQFUNC_OK;
	}
	relay_free(&p->relay);
	if ((fd = connected_fd(p, ip, port)) < 0) {
		p->own_code = CURLE_SSL_CONNECT_ERROR;
		snprintf(p->errbuf, sizeof p->errbuf,
		         "sm-check lost the socket of %s port %d", ip, port);
		return CURL_PREREQFUNC_ABORT;
	}
	wait_connect_note(p, fd);
	certfacts_clear(&p->cert);
	p->tls_version[0] = '\0';
	p->hop_own = true;
	if ((ssl = own_ssl_new(p)) == NULL) {
		p->own_code = CURLE_SSL_CACERT_BADFILE;
		return CURL_PREREQFUNC_ABORT;
	}
	if ((p->relay = relay_start(fd, ssl, &p->rout)) == NULL) {
		p->own_code = CURLE_SSL_CONNECT_ERROR;
		snprintf(p->errbuf, sizeof p->errbuf,
		         "cannot relay the connection to %s port %d: %s", ip, port,
		         strerror(errno));
		return CURL_PREREQFUNC_ABORT;
	}
	p->relay_fd = fd;
	atomic_fetch_add_explicit(&n_relayed, 1, memory_order_relaxed);
	return CURL_PREREQFUNC_OK;
}

/* CURLOPT_CLOSESOCKETFUNCTION: libcurl is done with a socket (with the
 * relay's, its end of the pair). */
static int
on_closesocket(void *clientp, curl_socket_t fd)
{
	struct probe *p = clientp;

	for (size_t i = 0; i < p->n_fds; i++)
		if (p->fds[i] == fd) {
			p->fds[i] = p->fds[--p->n_fds];
			break;
		}
	if (p->relay != NULL && p->relay_fd == fd)
		relay_free(&p->relay);
	if (p->await_fd == fd)
		p->await_fd = -1;
	return close(fd);
}

/* A relayed hop's failure as libcurl would have reported it over its own
 * TLS: libcurl saw only the end of the pair. */
static void
own_outcome(struct probe *p)
{
	int v = p->cert.verify_err;

	if (p->own_code != CURLE_OK) {
		p->code = p->own_code; /* errbuf says why */
		return;
	}
	if (!p->hop_own || !p->rout.failed)
		return;
	if (p->rout.handshake_ns != 0) {
		/* The answer broke off: libcurl saw it end early. */
		if (p->code == CURLE_GOT_NOTHING || p->code == CURLE_PARTIAL_FILE ||
		    p->code == CURLE_RECV_ERROR) {
			p->code = CURLE_RECV_ERROR;
			snprintf(p->errbuf, sizeof p->errbuf,
			         "TLS read from %.80s port %ld failed: %.120s", p->own_host,
			         p->own_port, p->rout.why);
		}
		return;
	}
	if (v == X509_V_ERR_HOSTNAME_MISMATCH) {
		p->code = CURLE_PEER_FAILED_VERIFICATION;
		snprintf(p->errbuf, sizeof p->errbuf,
		         "SSL: no alternative certificate subject name matches "
		         "target host name '%.180s'", p->own_host);
	} else if (v != X509_V_OK) {
		p->code = CURLE_PEER_FAILED_VERIFICATION;
		snprintf(p->errbuf, sizeof p->errbuf,
		         "SSL certificate problem: %s",
		         X509_verify_cert_error_string(v));
	} else {
		p->code = CURLE_SSL_CONNECT_ERROR;
		snprintf(p->errbuf, sizeof p->errbuf,
		         "TLS handshake with %.80s port %ld failed: %.120s", p->own_host,
		         p->own_port, p->rout.why);
	}
}

/* A relayed hop's phases: libcurl saw a plain http connection, whose
 * wait for the first byte held the handshake.  The relay's clock has
 * both: the handshake from the socket's take-over (libcurl's connect
 * end) to its end, the first byte from the request's first bytes into
 * TLS to the answer's first bytes out of it. */
static void
own_phases(const struct probe *p, struct phase_us *ph)
{
	const struct relay_outcome *o = &p->rout;

	if (!p->hop_own)
		return;
	ph->tls = o->handshake_ns != 0 ? (o->handshake_ns - o->start_ns) / 1000
	                               : -1;
	if (ph->ttfb >= 0)
		ph->ttfb = o->sent_ns != 0 && o->answer_ns >= o->sent_ns
		               ? (o->answer_ns - o->sent_ns) / 1000 : -1;
}

unsigned long
probe_relayed(void)
{
	return atomic_load_explicit(&n_relayed, memory_order_relaxed);
}

/* ---- waits of the loop ------------------------------------------------
 *
 * libcurl takes its timers when the loop serves a socket, so a busy loop
 * would add its own queue to a probe's phases: a connect seen late, an
 * answer read late.  The kernel has both moments: the SYN's round trip
 * (TCP_INFO) and the arrival of the answer's first segment (its receive
 * time, SO_TIMESTAMPNS, read by a peek).  What libcurl counted beyond
 * them was the loop's wait, and is taken out of the phase and of the
 * duration.  Only where the kernel's moment is certain: a connection
 * whose SYN went once, seen at the pre-request callback right after the
 * connect (plain http, or a relay's before its handshake); and a plain
 * http answer whose first segment was still unread. */

/* How much longer than the SYN's round trip libcurl took to see this
 * hop's connect. */
static void
wait_connect_note(struct probe *p, int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;
	struct timers now_t;
	curl_off_t connect_us;

	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_total_retrans) +
	              sizeof ti.tcpi_total_retrans)
		return;
	/* A SYN sent again: its round trip is not the connect's. */
	if (ti.tcpi_total_retrans != 0 || ti.tcpi_rtt == 0)
		return;
	timers_now(p->easy, &now_t);
	connect_us = (now_t.ct - p->at_redirect.ct) -
	             (now_t.nl - p->at_redirect.nl);
	if (connect_us > (curl_off_t)ti.tcpi_rtt)
		p->wait_connect_us = connect_us - (curl_off_t)ti.tcpi_rtt;
}

/* A plain http hop's request goes now on fd: watch for its answer. */
static void
wait_answer_arm(struct probe *p, int fd)
{
	p->await_fd = fd;
	p->sent_real_ns = rxstamp_now();
}

void
probe_socket_readable(CURL *easy, int fd)
{
	struct probe *p = NULL;
	int64_t came, now;

	if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&p) != CURLE_OK ||
	    p == NULL || p->await_fd != fd)
		return;
	p->await_fd = -1;
	if ((came = rxstamp_first(fd)) < p->sent_real_ns)
		return; /* none, or from before the request: not the answer */
	now = rxstamp_now();
	if (now > came)
		p->wait_ttfb_us = (now - came) / 1000;
}

/* At most wait of a phase's time (-1: it never ran) is taken out of
 * it: how much was. */
static int64_t
take_wait(int64_t *phase_us, int64_t wait_us)
{
	int64_t taken;

	if (*phase_us <= 0 || wait_us <= 0)
		return 0;
	taken = wait_us < *phase_us ? wait_us : *phase_us;
	*phase_us -= taken;
	return taken;
}

/* This hop's waits out of its phases; how much was taken (µs). */
static int64_t
wait_phases(struct probe *p, struct phase_us *ph)
{
	int64_t taken = take_wait(&ph->connect, p->wait_connect_us);

	if (p->hop_own) {
		/* The relay's timers (own_phases). */
		taken += take_wait(&ph->tls, p->rout.handshake_wait_ns / 1000);
		taken += take_wait(&ph->ttfb, p->rout.answer_wait_ns / 1000);
	} else {
		taken += take_wait(&ph->ttfb, p->wait_ttfb_us);
	}
	p->wait_connect_us = p->wait_ttfb_us = 0;
	p->await_fd = -1;
	p->waited_us += taken;
	if (taken > 0)
		atomic_fetch_add_explicit(&n_waited_us, (unsigned long long)taken,
		                          memory_order_relaxed);
	return taken;
}

unsigned long long
probe_waited_us(void)
{
	return atomic_load_explicit(&n_waited_us, memory_order_relaxed);
}

/* ---- sockets ---------------------------------------------------------- */

/* Whether a connection of this probe needs TCP_NODELAY.
 *
 * Nagle's algorithm holds back a small segment only while an earlier
 * small one is unacknowledged.  A plain http request without a body goes
 * out in one write on a new connection, which it never delays, so such a
 * connection is spared the setsockopt (a system call per probe).  TLS
 * writes its Finished and then the request, and a body may follow the
 * headers in a write of its own: those get TCP_NODELAY, as with
 * libcurl's default, so that no timing includes a wait for an ACK.  The
 * URL asked is that of this connection (after a redirect, the new one);
 * with a proxy from the environment (perhaps an https one), always. */
static bool
needs_nodelay(const struct probe *p, bool plain)
{
	if (p->opts->proxy_env || p->t->body != NULL || p->own)
		return true;
	return !plain;
}

/* CURLOPT_SOCKOPTFUNCTION: TCP_NODELAY where it matters (libcurl's own
 * is off), and receive times on plain http (see "waits of the loop").
 * As with libcurl's options, a failure is not an error. */
static int
on_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	static const int one = 1;
	struct probe *p = clientp;
	bool plain;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKOPT_OK;
	/* A relay takes one of them over; plain http is watched. */
	if (p->n_fds < sizeof p->fds / sizeof p->fds[0])
		p->fds[p->n_fds++] = fd;
	plain = hop_is_plain(p);
	if (plain)
		rxstamp_enable(fd);
	if (needs_nodelay(p, plain))
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		                 sizeof one);
	return CURL_SOCKOPT_OK;
}

/* ---- setup ------------------------------------------------------------ */

#define SETOPT(e, opt, val)                                                   \
	do {                                                                  \
		CURLcode rc_ = curl_easy_setopt((e), (opt), (val));           \
		if (rc_ != CURLE_OK)                                          \
			die(EX_SOFTWARE, "curl_easy_setopt(%s): %s", #opt,    \
			    curl_easy_strerror(rc_));                         \
	} while (0)

static void
add_headers(struct probe *p)
{
	const char *name;
	json_t *val;
	bool have_ua = false, have_connection = false, have_host = false;

	if (p->t->headers != NULL) {
		json_object_foreach(p->t->headers, name, val) {
			const char *v = json_string_value(val);
			char *line;

			if (v == NULL)
				continue;
			if (strcasecmp(name, "User-Agent") == 0)
				have_ua = true;
			if (strcasecmp(name, "Connection") == 0)
				have_connection = true;
			if (strcasecmp(name, "Host") == 0)
				have_host = true;
			/* "Name;" is curl's way to send an empty value. */
			line = *v ? xasprintf("%s: %s", name, v)
			          : xasprintf("%s;", name);
			p->headers = curl_slist_append(p->headers, line);
			free(line);
			if (p->headers == NULL)
				die(EX_SOFTWARE, "out of memory");
		}
	}
	/* The connection is never reused, and a client that does not keep
	 * connections says so (RFC 9112, 9.6).  The server then closes
	 * first, so its TIME_WAIT is not left on the prober's ports.
	 * libcurl leaves this header out of HTTP/2 requests. */
	if (!have_connection) {
		p->headers = curl_slist_append(p->headers, "Connection: close");
		if (p->headers == NULL)
			die(EX_SOFTWARE, "out of memory");
	}
	/* The http form of a relayed URL names port 443, which an https
	 * request leaves out of Host (libcurl sends this one to that host
	 * only, as any Host of the target's). */
	if (p->own && p->own_port == 443 && !have_host) {
		char *line = xasprintf("Host: %s", p->own_host);

		p->headers = curl_slist_append(p->headers, line);
		free(line);
		if (p->headers == NULL)
			die(EX_SOFTWARE, "out of memory");
	}
	if (!have_ua && p->opts->user_agent != NULL)
		SETOPT(p->easy, CURLOPT_USERAGENT, p->opts->user_agent);
	if (p->headers != NULL)
		SETOPT(p->easy, CURLOPT_HTTPHEADER, p->headers);
}

static void
setup_easy(struct probe *p)
{
	CURL *e = p->easy;
	const struct target *t = p->t;

	char *own = own_url_new(p);

	SETOPT(e, CURLOPT_PRIVATE, p);
	SETOPT(e, CURLOPT_URL, own != NULL ? own : t->url);
	free(own);
	SETOPT(e, CURLOPT_PREREQFUNCTION, on_prereq);
	SETOPT(e, CURLOPT_PREREQDATA, p);
	SETOPT(e, CURLOPT_CLOSESOCKETFUNCTION, on_closesocket);
	SETOPT(e, CURLOPT_CLOSESOCKETDATA, p);
	if (p->own)
		SETOPT(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SETOPT(e, CURLOPT_NOSIGNAL, 1L);
	SETOPT(e, CURLOPT_TCP_NODELAY, 0L);
	SETOPT(e, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
	SETOPT(e, CURLOPT_SOCKOPTDATA, p);
	if (!p->opts->proxy_env) {
		/* No proxy in the environment (looked at once, at start):
		 * say so, and libcurl stops reading it for every probe. */
		SETOPT(e, CURLOPT_PROXY, "");
		SETOPT(e, CURLOPT_NOPROXY, "");
	}
	SETOPT(e, CURLOPT_ERRORBUFFER, p->errbuf);
	SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(e, CURLOPT_HEADERDATA, p);
	SETOPT(e, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(e, CURLOPT_WRITEDATA, p);

	/* Only http and https, redirects included. */
	SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");

	/* Every probe measures a cold start: its own DNS lookup, connection
	 * and TLS handshake. */
	SETOPT(e, CURLOPT_FRESH_CONNECT, 1L);
	SETOPT(e, CURLOPT_FORBID_REUSE, 1L);
	SETOPT(e, CURLOPT_DNS_CACHE_TIMEOUT, 0L);
	SETOPT(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);

	SETOPT(e, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
	SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, (long)t->timeout_ms);
	SETOPT(e, CURLOPT_FOLLOWLOCATION, t->follow_redirects ? 1L : 0L);
	SETOPT(e, CURLOPT_MAXREDIRS, (long)t->max_redirects);
	/* Ask for what a browser gets; regexes see the decoded body and
	 * max_body_bytes bounds the decoded size.  A larger body is cut
	 * there (on_body), not refused: no CURLOPT_MAXFILESIZE. */
	SETOPT(e, CURLOPT_ACCEPT_ENCODING, "");

	switch (t->ip_version) {
	case IP_V4:
		SETOPT(e, CURLOPT_IPRESOLVE, (long)CURL_IPRESOLVE_V4);
		break;
	case IP_V6:
		SETOPT(e, CURLOPT_IPRESOLVE, (long)CURL_IPRESOLVE_V6);
		break;
	default:
		break;
	}

	SETOPT(e, CURLOPT_SSL_VERIFYPEER, t->tls_verify ? 1L : 0L);
	SETOPT(e, CURLOPT_SSL_VERIFYHOST, t->tls_verify ? 2L : 0L);
	/* No CA file or directory for libcurl: on_ssl_ctx sets the store of
	 * the bundle (the default one or ca_file) from castore.c, parsed
	 * once for every probe of every loop, whatever the mix of
	 * ca_files.  Connections, sessions and DNS are still fresh for
	 * every probe. */
	SETOPT(e, CURLOPT_CAINFO, (char *)NULL);
	SETOPT(e, CURLOPT_CAPATH, (char *)NULL);
	/* The certificate facts come from OpenSSL's verification itself
	 * (on_ssl_ctx), so that they are there when it fails too. */
	SETOPT(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
	SETOPT(e, CURLOPT_SSL_CTX_DATA, p);

	if (t->body != NULL) {
		SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE,
		       (curl_off_t)strlen(t->body));
		SETOPT(e, CURLOPT_COPYPOSTFIELDS, t->body);
	}
	/* A POST with a body is curl's own POST, which turns into a GET on
	 * a 301, 302 or 303 as browsers do; any other method is sent as is
	 * to every hop. */
	if (strcmp(t->method, "HEAD") == 0)
		SETOPT(e, CURLOPT_NOBODY, 1L);
	else if (!(strcmp(t->method, "POST") == 0 && t->body != NULL) &&
	         (strcmp(t->method, "GET") != 0 || t->body != NULL))
		SETOPT(e, CURLOPT_CUSTOMREQUEST, t->method);

	add_headers(p);
}

/* Easy handles of finished probes, reset (curl_easy_reset) for the next
 * ones: allocating and freeing a handle per probe was a noticeable share
 * of sm-check's own CPU.  Connections and DNS entries do not live in the
 * easy handle but in the multi, and every probe forbids their reuse.
 * Each probe loop thread has its own pool. */
static _Thread_local CURL **idle;
static _Thread_local size_t n_idle, cap_idle;

static CURL *
easy_get(void)
{
	CURL *e;

	if (n_idle > 0)
		return idle[--n_idle];
	if ((e = curl_easy_init()) == NULL)
		die(EX_SOFTWARE, "curl_easy_init failed");
	return e;
}

static void
easy_put(CURL *e)
{
	if (n_idle == cap_idle) {
		cap_idle = cap_idle ? 2 * cap_idle : 64;
		idle = xrealloc(idle, cap_idle * sizeof *idle);
	}
	curl_easy_reset(e);
	idle[n_idle++] = e;
}

/* The relays' one SSL_CTX: OpenSSL's defaults (the system's minimum
 * version and ciphers, as libcurl leaves them), no session cache or
 * tickets (every probe makes a full handshake), HTTP/1.1 in ALPN,
 * records read whole. */
static void
own_ctx_init(void)
{
	static const unsigned char alpn[] = "\x08http/1.1";

	if ((own_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		die(EX_SOFTWARE, "SSL_CTX_new failed");
	SSL_CTX_set_session_cache_mode(own_ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(own_ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(own_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* A record in one read(2), not its header and then its body. */
	SSL_CTX_set_read_ahead(own_ctx, 1);
	SSL_CTX_set_info_callback(own_ctx, on_ssl_info);
	if (SSL_CTX_set_alpn_protos(own_ctx, alpn, sizeof alpn - 1) != 0)
		die(EX_SOFTWARE, "SSL_CTX_set_alpn_protos failed");
}

void
probe_global_init(void)
{
	CURL *e = curl_easy_init();
	char *ca = NULL;

	/* libcurl's default CA bundle, which castore.c loads for targets
	 * without a ca_file. */
	if (e == NULL)
		die(EX_SOFTWARE, "curl_easy_init failed");
	if (curl_easy_getinfo(e, CURLINFO_CAINFO, &ca) != CURLE_OK)
		ca = NULL;
	castore_init(ca);
	curl_easy_cleanup(e);
	if (ctx_slot < 0)
		ctx_slot = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (ssl_slot < 0)
		ssl_slot = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (own_ctx == NULL)
		own_ctx_init();
	if (sha256_md == NULL)
		sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* lib's uuid7_new() keeps its state (random pool, sequence) in statics:
 * one thread at a time. */
static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER;

void
probe_global_end(void)
{
	free(memo);
	memo = NULL;
	memo_used = 0;
	if (own_ctx != NULL)
		SSL_CTX_free(own_ctx);
	own_ctx = NULL;
}

void
probe_pool_clear(void)
{
	while (n_idle > 0)
		curl_easy_cleanup(idle[--n_idle]);
	free(idle);
	idle = NULL;
	cap_idle = 0;
}

struct probe *
probe_new(struct target *t, const struct probe_opts *o, char *err,
          size_t errlen)
{
	struct probe *p;
	char rxerr[256];
	const char *field = NULL;
	struct rx *rx = NULL, *rx_absent = NULL;

	if (t->regex != NULL &&
	    (rx = rx_get(t->regex, rxerr, sizeof rxerr)) == NULL)
		field = "regex";
	else if (t->regex_absent != NULL &&
	         (rx_absent = rx_get(t->regex_absent, rxerr,
	                             sizeof rxerr)) == NULL)
		field = "regex_absent";
	if (field != NULL) {
		snprintf(err, errlen, "field \"%s\": %s", field, rxerr);
		rx_put(&rx);
		target_free(&t);
		return NULL;
	}

	p = xcalloc(1, sizeof *p);
	p->t = t;
	p->rx = rx;
	p->rx_absent = rx_absent;
	p->regex_us = -1;
	p->hop_sum = (struct phase_us){ -1, -1, -1, -1 };
	p->await_fd = -1;
	p->opts = o;
	p->max_body = t->max_body_bytes > 0 ? t->max_body_bytes
	                                    : SM_DEFAULT_MAX_BODY;
	p->keep_body = t->regex != NULL || t->regex_absent != NULL;
	p->easy = easy_get();
	setup_easy(p);
	pthread_mutex_lock(&id_mu);
	uuid7_new(p->id);
	pthread_mutex_unlock(&id_mu);
	return p;
}

void
probe_free(struct probe **pp)
{
	struct probe *p = *pp;

	if (p == NULL)
		return;
	/* libcurl has closed its sockets by now (the handle left the multi);
	 * a relay still here has lost its probe. */
	relay_free(&p->relay);
	free(p->own_host);
	easy_put(p->easy);
	curl_slist_free_all(p->headers);
	target_free(&p->t);
	free(p->body);
	rx_put(&p->rx);
	rx_put(&p->rx_absent);
	for (size_t i = 0; i < p->n_hops; i++) {
		free(p->hops[i].url);
		free(p->hops[i].location);
	}
	free(p->location);
	certfacts_clear(&p->cert);
	free(p->ip);
	free(p->final_url);
	free(p);
	*pp = NULL;
}

CURL *
probe_easy(const struct probe *p)
{
	return p->easy;
}

void
probe_start(struct probe *p)
{
	p->started_ms = time_now_ms();
	p->started_ns = mono_now_ns();
	p->hop_start_ns = p->started_ns;
}

/* ---- the result record ------------------------------------------------ */

static enum error_kind
kind_of(const struct probe *p, CURLcode code, long status)
{
	/* The body was cut at max_body_bytes (on_body): the transfer ended
	 * there by sm-check's doing (CURLE_WRITE_ERROR, whatever the
	 * protocol), not the server's. */
	if (p->truncated)
		return ERR_NONE;
	switch (code) {
	case CURLE_OK:
		return ERR_NONE;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return ERR_DNS;
	case CURLE_COULDNT_CONNECT:
		return ERR_CONNECT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		/* Refused, unreachable or reset before the connection was
		 * made is connect; once connected (bad chunked framing, a
		 * reset in the middle of a body) it is the exchange that
		 * failed. */
		return p->sum.ct > p->at_redirect.ct ? ERR_PROTOCOL
		                                     : ERR_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return ERR_TIMEOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_USE_SSL_FAILED:
		return ERR_TLS;
	case CURLE_TOO_MANY_REDIRECTS:
		return ERR_REDIRECTS;
	case CURLE_UNSUPPORTED_PROTOCOL:
		/* The input's url was checked before probing, so this is a
		 * redirect to a refused scheme, or an HTTP/0.9 reply (which
		 * libcurl reports with the same code). */
		return status >= 300 && status <= 399 ? ERR_REDIRECTS
		                                      : ERR_PROTOCOL;
	case CURLE_FILESIZE_EXCEEDED:
		return ERR_TOO_LARGE;
	case CURLE_GOT_NOTHING:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_PARTIAL_FILE:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
	case CURLE_QUIC_CONNECT_ERROR:
	case CURLE_RANGE_ERROR:
	case CURLE_BAD_DOWNLOAD_RESUME:
		return ERR_PROTOCOL;
	default:
		return ERR_OTHER;
	}
}

static void
phase(struct jtext *j, const char *k, int64_t us)
{
	jt_key(j, k);
	if (us < 0)
		jt_null(j); /* that phase never ran */
	else
		jt_ms(j, us);
}

/* The phases ph, and transfer_us (-1: none) and regex_us (-1: no regex
 * ran, and no member). */
static void
phases_of(struct jtext *j, const char *key, const struct phase_us *ph,
          int64_t transfer_us, int64_t regex_us)
{
	jt_key(j, key);
	jt_open(j);
	phase(j, "dns_ms", ph->dns);
	phase(j, "connect_ms", ph->connect);
	phase(j, "tls_ms", ph->tls);
	phase(j, "ttfb_ms", ph->ttfb);
	phase(j, "transfer_ms", transfer_us);
	if (regex_us >= 0)
		phase(j, "regex_ms", regex_us);
	jt_close(j);
}

static void
put_empty_object(struct jtext *j)
{
	jt_open(j);
	jt_close(j);
}

/* One printable line: control characters become spaces, trailing
 * whitespace goes. */
static void
one_line(char *s)
{
	size_t n;

	for (char *c = s; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
	n = strlen(s);
	while (n > 0 && s[n - 1] == ' ')
		s[--n] = '\0';
}

static void
expected_str(const struct target *t, char *buf, size_t len)
{
	size_t off = 0;

	if (t->n_expect_status == 0) {
		snprintf(buf, len, "2xx");
		return;
	}
	buf[0] = '\0';
	for (size_t i = 0; i < t->n_expect_status && off < len; i++) {
		const struct status_range *r = &t->expect_status[i];
		const char *sep = i ? "," : "";
		int w;

		if (r->lo == r->hi)
			w = snprintf(buf + off, len - off, "%s%d", sep, r->lo);
		else if (r->lo % 100 == 0 && r->hi == r->lo + 99)
			w = snprintf(buf + off, len - off, "%s%dxx", sep,
			             r->lo / 100);
		else
			w = snprintf(buf + off, len - off, "%s%d-%d", sep,
			             r->lo, r->hi);
		if (w < 0)
			break;
		off += (size_t)w;
	}
}

static const char *
http_version_name(long v)
{
	switch (v) {
	case CURL_HTTP_VERSION_1_0: return "1.0";
	case CURL_HTTP_VERSION_1_1: return "1.1";
	case CURL_HTTP_VERSION_2_0: return "2";
	case CURL_HTTP_VERSION_3: return "3";
	default: return NULL;
	}
}

static void
ms_time(struct jtext *j, const char *k, bool known, int64_t ms)
{
	char buf[TIME_STR_LEN];

	jt_key(j, k);
	if (!known) {
		jt_null(j);
		return;
	}
	time_format_ms(ms, buf);
	jt_str(j, buf, false);
}

static void
tls_of(struct probe *p, struct jtext *j)
{
	const struct certfacts *c = &p->cert;

	jt_key(j, "tls");
	jt_open(j);
	jt_kstr(j, "version", p->tls_version, true);
	ms_time(j, "cert_not_after", c->not_after_ok, c->not_after_ms);
	ms_time(j, "cert_not_before", c->not_before_ok, c->not_before_ms);
	jt_key(j, "cert_days_left");
	if (c->not_after_ok) {
		int64_t left = c->not_after_ms - p->started_ms;

		/* Whole days, rounded down: -1 once it has expired. */
		jt_int(j, left >= 0 ? left / 86400000
		                    : -((-left + 86399999) / 86400000));
	} else {
		jt_null(j);
	}
	jt_kstr(j, "cert_issuer", c->issuer, true);
	/* An intermediate that expires before the leaf takes the site down
	 * first. */
	ms_time(j, "chain_not_after", c->chain_ok, c->chain_ms);
	jt_kstr(j, "cert_subject", c->subject, true);
	jt_key(j, "cert_sans");
	if (c->sans_json != NULL) {
		/* JSON text made by sans_json(). */
		jt_raw(j, c->sans_json);
	} else {
		jt_null(j);
	}
	jt_kstr(j, "cert_sha256", c->sha256, true);
	jt_close(j);
}

/* Truncate a pattern for an error message. */
static void
short_pattern(const char *pat, char *buf, size_t len)
{
	size_t n = strlen(pat);

	if (n < len) {
		memcpy(buf, pat, n + 1);
		return;
	}
	snprintf(buf, len, "%.*s...", (int)(len - 4), pat);
}

static json_t *
base_record(struct probe *p)
{
	const struct target *t = p->t;
	char started[TIME_STR_LEN], sched[TIME_STR_LEN];
	char *url = url_redact_new(t->url);
	json_t *r;

	time_format_ms(p->started_ms, started);
	if (t->scheduled_at_ms != 0)
		time_format_ms(t->scheduled_at_ms, sched);
	r = json_pack("{s:i,s:s,s:s,s:s,s:o,s:s,s:o,s:s}",
	              "v", SM_SCHEMA_VERSION,
	              "id", p->id,
	              "target", t->target,
	              "url", url,
	              "labels", t->labels != NULL ? json_incref(t->labels)
	                                          : json_object(),
	              "probe", p->opts->location,
	              "scheduled_at",
	              t->scheduled_at_ms != 0 ? json_string(sched) : json_null(),
	              "started_at", started);
	free(url);
	if (r == NULL)
		die(EX_SOFTWARE, "cannot build a result record");
	return r;
}

/* The members every result starts with, as base_record() has them. */
static void
base_text(struct probe *p, struct jtext *j)
{
	const struct target *t = p->t;
	char when[TIME_STR_LEN];
	char *url = url_redact_new(t->url);

	jt_open(j);
	jt_kint(j, "v", SM_SCHEMA_VERSION);
	jt_kstr(j, "id", p->id, false);
	jt_kstr(j, "target", t->target, false);
	jt_kstr(j, "url", url, false);
	free(url);
	jt_key(j, "labels");
	if (t->labels != NULL)
		jt_json(j, t->labels);
	else
		put_empty_object(j);
	jt_kstr(j, "probe", p->opts->location, false);
	jt_key(j, "scheduled_at");
	if (t->scheduled_at_ms != 0) {
		time_format_ms(t->scheduled_at_ms, when);
		jt_str(j, when, false);
	} else {
		jt_null(j);
	}
	time_format_ms(p->started_ms, when);
	jt_kstr(j, "started_at", when, false);
}

bool
probe_transfer_done(struct probe *p, CURLcode code)
{
	const struct target *t = p->t;
	CURL *e = p->easy;
	char *ip = NULL, *url = NULL;

	p->code = code;
	own_outcome(p);
	code = p->code;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &p->status);
	curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &p->redirects);
	curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &p->httpver);
	curl_easy_getinfo(e, CURLINFO_PRIMARY_IP, &ip);
	curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &url);
	p->ip = ip != NULL && *ip ? xstrdup(ip) : NULL;
	p->final_url = url != NULL ? shown_url_new(p, url) : NULL;
	timers_now(e, &p->sum);
	p->total_us = info_time(e, CURLINFO_TOTAL_TIME_T);
	if (p->total_us <= 0)
		p->total_us = (curl_off_t)((mono_now_ns() - p->started_ns) / 1000);
	p->redirect_us = info_time(e, CURLINFO_REDIRECT_TIME_T);
	if (curl_easy_getinfo(e, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
	                      &p->content_length) != CURLE_OK)
		p->content_length = -1;
	/* libcurl counts the body's bytes as they came, before decoding. */
	if (curl_easy_getinfo(e, CURLINFO_SIZE_DOWNLOAD_T, &p->wire_bytes) !=
	    CURLE_OK)
		p->wire_bytes = -1;

	p->kind = kind_of(p, code, p->status);
	/* An https origin libcurl reached over HTTP/1.x, all by itself: the
	 * relay may make its next handshakes. */
	if (!p->own && p->origin_key != 0 && code == CURLE_OK &&
	    p->redirects == 0 && p->tls_version[0] != '\0' &&
	    (p->httpver == CURL_HTTP_VERSION_1_1 ||
	     p->httpver == CURL_HTTP_VERSION_1_0))
		memo_learn(p->origin_key);
	p->msg[0] = '\0';
	if (p->kind != ERR_NONE) {
		snprintf(p->msg, sizeof p->msg, "%s",
		         code == CURLE_SSL_CACERT_BADFILE && p->ca_err[0]
		             ? p->ca_err
		         : p->errbuf[0] ? p->errbuf : curl_easy_strerror(code));
		if (p->kind == ERR_REDIRECTS && code == CURLE_UNSUPPORTED_PROTOCOL)
			snprintf(p->msg, sizeof p->msg,
			         "redirect to a refused scheme (only http and "
			         "https): %s",
			         p->errbuf[0] ? p->errbuf
			                      : curl_easy_strerror(code));
		if (p->kind == ERR_TLS &&
		    strcmp(tls_error_of(p), "hostname_mismatch") == 0 &&
		    p->cert.sans_json != NULL) {
			size_t n = strlen(p->msg), o;

			o = n + (size_t)snprintf(p->msg + n, sizeof p->msg - n,
			                         " (the certificate is for %s)",
			                         p->cert.sans_json);
			/* ["DNS:a","IP:b"] as DNS:a, IP:b */
			for (size_t i = n, w = n; i <= o && i < sizeof p->msg; i++) {
				char c = p->msg[i];

				if (c == '[' || c == ']' || c == '"')
					continue;
				p->msg[w++] = c;
				if (c == ',')
					p->msg[w++] = ' ';
				if (c == '\0')
					break;
			}
		}
	} else if (!status_expected(t, p->status)) {
		char exp[256];

		expected_str(t, exp, sizeof exp);
		p->kind = ERR_HTTP_STATUS;
		snprintf(p->msg, sizeof p->msg, "status %ld, expected %s",
		         p->status, exp);
	}
	/* The regexes run on any body that came (whole, or cut at
	 * max_body_bytes), so that "matched" is reported even when the
	 * status was already wrong: on a worker thread (probe_eval). */
	return (code == CURLE_OK || p->truncated) &&
	       (p->rx != NULL || p->rx_absent != NULL);
}

void
probe_eval(void *arg)
{
	struct probe *p = arg;
	int64_t t0 = mono_now_ns();
	int64_t deadline = p->started_ns + p->t->timeout_ms * 1000000;
	size_t searched = 0;

	if (p->rx != NULL) {
		p->rx_ran = true;
		p->rx_res = rx_eval(p->rx, p->body, p->body_len, p->truncated,
		                    deadline, &p->rx_searched, p->rx_err,
		                    sizeof p->rx_err);
	}
	/* regex_absent decides only when nothing has failed yet. */
	if (p->rx_absent != NULL && p->kind == ERR_NONE &&
	    (!p->rx_ran || p->rx_res == RX_MATCH)) {
		p->rx_absent_ran = true;
		p->rx_absent_res = rx_eval(p->rx_absent, p->body, p->body_len,
		                           p->truncated, deadline, &searched,
		                           p->rx_err, sizeof p->rx_err);
		p->rx_searched = searched;
	}
	p->regex_us = (mono_now_ns() - t0) / 1000;
}

/* What a regex's answer makes of a result that has not failed yet. */
static void
regex_verdict(struct probe *p, enum rx_result r, bool absent)
{
	const char *field = absent ? "regex_absent" : "regex";
	const char *pattern = absent ? p->t->regex_absent : p->t->regex;
	char pat[96];

	if (p->kind != ERR_NONE)
		return;
	short_pattern(pattern, pat, sizeof pat);
	switch (r) {
	case RX_MATCH:
		if (absent) {
			p->kind = ERR_BODY_MISMATCH;
			snprintf(p->msg, sizeof p->msg,
			         "body matches regex_absent \"%s\"", pat);
		}
		break;
	case RX_NOMATCH:
		if (!absent) {
			p->kind = ERR_BODY_MISMATCH;
			snprintf(p->msg, sizeof p->msg,
			         "body does not match regex \"%s\"", pat);
		}
		break;
	case RX_UNDECIDED:
		p->kind = ERR_TOO_LARGE;
		snprintf(p->msg, sizeof p->msg,
		         "body cut at max_body_bytes (%lld) before %s \"%s\" "
		         "could be decided",
		         (long long)p->max_body, field, pat);
		break;
	case RX_DEADLINE:
		p->kind = ERR_TIMEOUT;
		snprintf(p->msg, sizeof p->msg,
		         "%s \"%s\" undecided at the deadline (timeout_ms %lld): "
		         "searched %zu of %zu bytes",
		         field, pat, (long long)p->t->timeout_ms, p->rx_searched,
		         p->body_len);
		break;
	case RX_ERROR:
		p->kind = ERR_OTHER;
		snprintf(p->msg, sizeof p->msg, "%s", p->rx_err);
		break;
	}
}

static void
kint_or_null(struct jtext *j, const char *k, bool known, int64_t v)
{
	jt_key(j, k);
	if (known)
		jt_int(j, v);
	else
		jt_null(j);
}

enum error_kind
probe_result(struct probe *p, struct jtext *j)
{
	const struct target *t = p->t;
	bool ok, https = is_https(t->url) || is_https(p->final_url);
	struct phase_us fin, all;
	int64_t duration;

	if (p->rx_ran)
		regex_verdict(p, p->rx_res, false);
	if (p->rx_absent_ran)
		regex_verdict(p, p->rx_absent_res, true);
	ok = p->kind == ERR_NONE;
	one_line(p->msg);

	jt_reset(j);
	base_text(p, j);
	jt_key(j, "ok");
	jt_bool(j, ok);
	kint_or_null(j, "status", p->status > 0, p->status);
	jt_kstr(j, "error_kind", error_kind_name(p->kind), true);
	jt_kstr(j, "error", ok ? NULL : p->msg, false);
	if (https)
		jt_kstr(j, "tls_error",
		        p->kind == ERR_TLS ? tls_error_of(p) : NULL, true);
	/* Each phase summed over the hops; transfer_ms is the rest of each
	 * hop after its first byte, and so the total less every hop's
	 * time to its first byte. */
	hop_phases(&p->at_redirect, &p->sum, &fin);
	own_phases(p, &fin);
	(void)wait_phases(p, &fin);
	/* The regexes' time is the probe's too; the loop's waits are not. */
	duration = p->total_us - p->waited_us;
	if (duration < 0)
		duration = 0;
	duration += p->regex_us > 0 ? p->regex_us : 0;
	jt_key(j, "duration_ms");
	jt_ms(j, duration);
	all = p->hop_sum;
	phases_add(&all, &fin);
	phases_of(j, "phases", &all,
	          p->sum.st > 0 ? clamp0(p->total_us - p->sum.st) : -1,
	          p->regex_us);
	jt_kint(j, "bytes", p->bytes);
	jt_key(j, "truncated");
	jt_bool(j, p->truncated);
	kint_or_null(j, "content_length", p->content_length >= 0,
	             p->content_length);
	/* Bytes as they came, when they were decoded into bytes. */
	kint_or_null(j, "wire_bytes", p->encoded && p->wire_bytes >= 0,
	             p->wire_bytes);
	jt_kstr(j, "http_version", http_version_name(p->httpver), true);
	jt_kstr(j, "remote_ip", p->ip, true);
	jt_kint(j, "redirects", p->redirects);
	jt_kstr(j, "final_url", p->final_url, true);
	if (p->n_hops > 0) {
		curl_off_t hop_total = p->total_us > p->redirect_us
		                           ? p->total_us - p->redirect_us : 0;
		curl_off_t fin_st = p->sum.st - p->at_redirect.st;

		jt_key(j, "hops");
		jt_arr_open(j);
		for (size_t i = 0; i < p->n_hops; i++) {
			jt_elem(j);
			jt_open(j);
			jt_kstr(j, "url", p->hops[i].url, false);
			jt_kint(j, "status", p->hops[i].status);
			jt_kstr(j, "location", p->hops[i].location, false);
			jt_key(j, "time_ms");
			jt_ms(j, p->hops[i].us);
			jt_close(j);
		}
		jt_arr_close(j);
		/* The last hop alone (when a redirect was followed to it):
		 * its own clock starts where libcurl's redirect time ends. */
		if (p->redirects > 0)
			phases_of(j, "final_phases", &fin,
			          fin_st > 0 ? clamp0(hop_total - fin_st) : -1, -1);
	}
	/* The regex was not decided (no body, a limit, the deadline): no
	 * "matched". */
	if (t->regex != NULL) {
		jt_key(j, "regex");
		jt_open(j);
		jt_kstr(j, "pattern", t->regex, false);
		if (p->rx_ran && (p->rx_res == RX_MATCH || p->rx_res == RX_NOMATCH)) {
			jt_key(j, "matched");
			jt_bool(j, p->rx_res == RX_MATCH);
		}
		jt_close(j);
	}
	if (https)
		tls_of(p, j);
	jt_close(j);
	return p->kind;
}

json_t *
probe_result_error(struct probe *p, enum error_kind kind, const char *msg)
{
	json_t *r = base_record(p);

	json_object_set_new(r, "ok", json_false());
	json_object_set_new(r, "status", json_null());
	json_object_set_new(r, "error_kind", json_string(error_kind_name(kind)));
	json_object_set_new(r, "error", json_string(msg));
	json_object_set_new(r, "duration_ms", json_real(0));
	json_object_set_new(r, "phases",
	                    json_pack("{s:n,s:n,s:n,s:n,s:n}", "dns_ms",
	                              "connect_ms", "tls_ms", "ttfb_ms",
	                              "transfer_ms"));
	json_object_set_new(r, "bytes", json_integer(0));
	json_object_set_new(r, "http_version", json_null());
	json_object_set_new(r, "remote_ip", json_null());
	json_object_set_new(r, "redirects", json_integer(0));
	json_object_set_new(r, "final_url", json_null());
	return r;
}
