/*
 * probe.c - set up one curl easy handle per target and turn the finished
 * transfer into a result record (schema v1).
 */
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sm.h"
#include "sockcache.h"
#include "probe.h"
#include "rxcache.h"
#include "jtext.h"

struct probe {
	struct target *t;
	CURL *easy;
	struct curl_slist *headers;
	char errbuf[CURL_ERROR_SIZE];
	char id[UUID_STR_LEN];
	const struct probe_opts *opts;
	int64_t started_ms;      /* wall clock, for started_at */
	int64_t started_ns;      /* monotonic, for duration when curl has none */

	int64_t max_body;        /* too_large past this many body bytes */
	int64_t bytes;           /* body bytes of the last response */
	bool too_large;
	bool keep_body;          /* a regex needs the body */
	char *body;
	size_t body_len, body_cap;

	char tls_version[32];    /* from curl's "SSL connection using" line */
	bool verbose;            /* the debug callback is on */
};

/* ---- curl callbacks --------------------------------------------------- */

/* OpenSSL's SSL_get_version(), found in the libssl that libcurl loaded
 * (sm-check does not link OpenSSL itself); NULL with another TLS library. */
typedef const char *ssl_version_fn(const void *ssl);

static ssl_version_fn *
ssl_get_version_fn(void)
{
	static bool looked;
	static ssl_version_fn *fn;

	if (!looked) {
		void *sym = dlsym(RTLD_DEFAULT, "SSL_get_version");

		looked = true;
		memcpy(&fn, &sym, sizeof fn);
	}
	return fn;
}

/* The TLS version of the connection in use, while it is in use. */
static void
tls_version_from_ssl(struct probe *p)
{
	struct curl_tlssessioninfo *ti = NULL;
	ssl_version_fn *fn;
	const char *v;

	if (curl_easy_getinfo(p->easy, CURLINFO_TLS_SSL_PTR, &ti) != CURLE_OK ||
	    ti == NULL || ti->backend != CURLSSLBACKEND_OPENSSL ||
	    ti->internals == NULL || (fn = ssl_get_version_fn()) == NULL ||
	    (v = fn(ti->internals)) == NULL)
		return;
	snprintf(p->tls_version, sizeof p->tls_version, "%s", v);
}

static size_t
on_header(char *buf, size_t size, size_t n, void *userdata)
{
	struct probe *p = userdata;
	size_t len = size * n;

	/* A new status line starts a new response (after a redirect or a
	 * 100 Continue): count and keep only the last response's body. */
	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		p->bytes = 0;
		p->body_len = 0;
		/* An http probe runs without the debug callback; a redirect
		 * may still take it to https. */
		if (!p->verbose)
			tls_version_from_ssl(p);
	}
	return len;
}

static size_t
on_body(char *buf, size_t size, size_t n, void *userdata)
{
	struct probe *p = userdata;
	size_t len = size * n;

	if (p->bytes + (int64_t)len > p->max_body) {
		/* Returning short makes curl stop with CURLE_WRITE_ERROR,
		 * which probe_result() reports as too_large. */
		p->bytes = p->max_body + 1;
		p->too_large = true;
		return 0;
	}
	p->bytes += (int64_t)len;
	if (p->keep_body) {
		if (p->body_len + len > p->body_cap) {
			size_t cap = p->body_cap ? p->body_cap : 16384;

			while (cap < p->body_len + len)
				cap *= 2;
			p->body = xrealloc(p->body, cap);
			p->body_cap = cap;
		}
		memcpy(p->body + p->body_len, buf, len);
		p->body_len += len;
	}
	return len;
}

/* Verbose mode is on, for https URLs, only to learn the negotiated TLS
 * version, which libcurl reports nowhere else without OpenSSL's own
 * functions, and that also when the handshake is done but the certificate
 * then refused.  It costs some formatting in libcurl on every probe, so an
 * http URL (most of them) goes without, and learns the version of a
 * redirect to https from the connection itself (tls_version_from_ssl). */
static int
on_debug(CURL *easy, curl_infotype type, char *data, size_t size,
         void *userdata)
{
	static const char pfx[] = "SSL connection using ";
	struct probe *p = userdata;
	size_t i, n = sizeof pfx - 1;

	if (type != CURLINFO_TEXT || size <= n || memcmp(data, pfx, n) != 0)
		return 0;
	for (i = 0; n + i < size && i < sizeof p->tls_version - 1; i++) {
		char c = data[n + i];

		if (c == ' ' || c == '\n' || c == '\r' || c == '/')
			break;
		p->tls_version[i] = c;
	}
	p->tls_version[i] = '\0';
	return 0;
}

/* ---- sockets ---------------------------------------------------------- */

/* CURLOPT_OPENSOCKETFUNCTION: the socket libcurl would make, made by
 * sockcache.c so that libcurl's questions about it cost no system call. */
static curl_socket_t
on_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	int fd = sockcache_socket(a->family, a->socktype, a->protocol);

	return fd >= 0 ? fd : CURL_SOCKET_BAD;
}

static int
on_closesocket(void *clientp, curl_socket_t fd)
{
	sockcache_close(fd);
	return close(fd);
}

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
needs_nodelay(const struct probe *p)
{
	char *url = NULL;

	if (p->opts->proxy_env || p->t->body != NULL)
		return true;
	if (curl_easy_getinfo(p->easy, CURLINFO_EFFECTIVE_URL, &url) !=
	        CURLE_OK || url == NULL)
		return true;
	return strncasecmp(url, "http:", 5) != 0;
}

/* CURLOPT_SOCKOPTFUNCTION: TCP_NODELAY where it matters (libcurl's own
 * is off).  As with libcurl's, a failure is not an error. */
static int
on_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	static const int one = 1;

	if (purpose == CURLSOCKTYPE_IPCXN && needs_nodelay(clientp))
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
	bool have_ua = false, have_connection = false;

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

	SETOPT(e, CURLOPT_PRIVATE, p);
	SETOPT(e, CURLOPT_URL, t->url);
	SETOPT(e, CURLOPT_NOSIGNAL, 1L);
	SETOPT(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
	SETOPT(e, CURLOPT_CLOSESOCKETFUNCTION, on_closesocket);
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
	if (strncasecmp(t->url, "https:", 6) == 0) {
		p->verbose = true;
		SETOPT(e, CURLOPT_VERBOSE, 1L);
		SETOPT(e, CURLOPT_DEBUGFUNCTION, on_debug);
		SETOPT(e, CURLOPT_DEBUGDATA, p);
	}

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
	 * max_body_bytes bounds the decoded size. */
	SETOPT(e, CURLOPT_ACCEPT_ENCODING, "");
	SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)p->max_body);

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
	if (t->ca_file != NULL)
		SETOPT(e, CURLOPT_CAINFO, t->ca_file);
	/* Only the CA bundle (the default one or ca_file), no CA directory:
	 * libcurl then keeps the parsed bundle in the multi handle
	 * (CURLOPT_CA_CACHE_TIMEOUT) instead of parsing every certificate
	 * of the bundle again for each probe.  Connections, sessions and
	 * DNS are still fresh for every probe. */
	SETOPT(e, CURLOPT_CAPATH, (char *)NULL);
	SETOPT(e, CURLOPT_CERTINFO, 1L);

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
 * easy handle but in the multi, and every probe forbids their reuse. */
static CURL **idle;
static size_t n_idle, cap_idle;

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

	if (t->regex != NULL && rx_check(t->regex, rxerr, sizeof rxerr) < 0)
		field = "regex";
	else if (t->regex_absent != NULL &&
	         rx_check(t->regex_absent, rxerr, sizeof rxerr) < 0)
		field = "regex_absent";
	if (field != NULL) {
		snprintf(err, errlen, "field \"%s\": %s", field, rxerr);
		target_free(&t);
		return NULL;
	}

	p = xcalloc(1, sizeof *p);
	p->t = t;
	p->opts = o;
	p->max_body = t->max_body_bytes > 0 ? t->max_body_bytes
	                                    : SM_DEFAULT_MAX_BODY;
	p->keep_body = t->regex != NULL || t->regex_absent != NULL;
	p->easy = easy_get();
	setup_easy(p);
	uuid7_new(p->id);
	return p;
}

void
probe_free(struct probe **pp)
{
	struct probe *p = *pp;

	if (p == NULL)
		return;
	easy_put(p->easy);
	curl_slist_free_all(p->headers);
	target_free(&p->t);
	free(p->body);
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
}

/* ---- the result record ------------------------------------------------ */

static enum error_kind
kind_of(const struct probe *p, CURLcode code, long status)
{
	switch (code) {
	case CURLE_OK:
		return ERR_NONE;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return ERR_DNS;
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		return ERR_CONNECT;
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
	case CURLE_WRITE_ERROR:
		return p->too_large ? ERR_TOO_LARGE : ERR_OTHER;
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

static curl_off_t
info_time(CURL *e, CURLINFO what)
{
	curl_off_t v = 0;

	if (curl_easy_getinfo(e, what, &v) != CURLE_OK)
		return 0;
	return v;
}

static void
phase(struct jtext *j, const char *k, curl_off_t end, curl_off_t start)
{
	jt_key(j, k);
	if (end <= 0)
		jt_null(j); /* that phase never ran */
	else
		jt_ms(j, end > start ? end - start : 0);
}

/* Timers accumulate over redirect hops in libcurl, so each difference is
 * that phase's total over every hop. */
static void
phases_of(CURL *e, struct jtext *j)
{
	curl_off_t nl = info_time(e, CURLINFO_NAMELOOKUP_TIME_T);
	curl_off_t ct = info_time(e, CURLINFO_CONNECT_TIME_T);
	curl_off_t ac = info_time(e, CURLINFO_APPCONNECT_TIME_T);
	curl_off_t pt = info_time(e, CURLINFO_PRETRANSFER_TIME_T);
	curl_off_t st = info_time(e, CURLINFO_STARTTRANSFER_TIME_T);
	curl_off_t tt = info_time(e, CURLINFO_TOTAL_TIME_T);
	curl_off_t sent = pt > 0 ? pt : ac > 0 ? ac : ct;

	jt_key(j, "phases");
	jt_open(j);
	phase(j, "dns_ms", nl, 0);
	phase(j, "connect_ms", ct, nl);
	phase(j, "tls_ms", ac > 0 ? ac : 0, ct);
	phase(j, "ttfb_ms", st, sent);
	phase(j, "transfer_ms", st > 0 ? tt : 0, st);
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

/* "Nov 23 10:53:35 2027 GMT" (OpenSSL's ASN1_TIME_print) to unix ms. */
static int
parse_cert_time(const char *s, int64_t *ms)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof tm);
	end = strptime(s, "%b %d %H:%M:%S %Y", &tm);
	if (end == NULL)
		return -1;
	*ms = (int64_t)timegm(&tm) * 1000;
	return 0;
}

static void
cert_time(struct jtext *j, const char *k, const char *s, int64_t *ms)
{
	char buf[TIME_STR_LEN];

	jt_key(j, k);
	if (s == NULL || parse_cert_time(s, ms) < 0) {
		jt_null(j);
		return;
	}
	time_format_ms(*ms, buf);
	jt_str(j, buf, false);
}

/* Field "name" of certificate i (0: the leaf) from CURLINFO_CERTINFO. */
static const char *
certinfo_field(struct curl_certinfo *ci, int i, const char *name)
{
	size_t n = strlen(name);

	if (ci == NULL || i >= ci->num_of_certs)
		return NULL;
	for (struct curl_slist *s = ci->certinfo[i]; s; s = s->next)
		if (strncmp(s->data, name, n) == 0 && s->data[n] == ':')
			return s->data + n + 1;
	return NULL;
}

/* The earliest "Expire date" among the certificates the server sent, as
 * the text certinfo holds it; NULL if any of them has none that parses,
 * since the earliest is then unknown. */
static const char *
chain_not_after(struct curl_certinfo *ci)
{
	const char *earliest = NULL;
	int64_t min = 0, ms;

	if (ci == NULL)
		return NULL;
	for (int i = 0; i < ci->num_of_certs; i++) {
		const char *na = certinfo_field(ci, i, "Expire date");

		if (na == NULL || parse_cert_time(na, &ms) < 0)
			return NULL;
		if (earliest == NULL || ms < min) {
			earliest = na;
			min = ms;
		}
	}
	return earliest;
}

static void
tls_of(struct probe *p, struct jtext *j)
{
	struct curl_certinfo *ci = NULL;
	int64_t not_after = 0, not_before = 0, chain_ms = 0;
	const char *na;

	if (curl_easy_getinfo(p->easy, CURLINFO_CERTINFO, &ci) != CURLE_OK)
		ci = NULL;
	jt_key(j, "tls");
	jt_open(j);
	jt_kstr(j, "version", p->tls_version, true);
	na = certinfo_field(ci, 0, "Expire date");
	cert_time(j, "cert_not_after", na, &not_after);
	cert_time(j, "cert_not_before", certinfo_field(ci, 0, "Start date"),
	          &not_before);
	jt_key(j, "cert_days_left");
	if (na != NULL && parse_cert_time(na, &not_after) == 0) {
		int64_t left = not_after - p->started_ms;

		/* Whole days, rounded down: -1 once it has expired. */
		jt_int(j, left >= 0 ? left / 86400000
		                    : -((-left + 86399999) / 86400000));
	} else {
		jt_null(j);
	}
	jt_kstr(j, "cert_issuer", certinfo_field(ci, 0, "Issuer"), true);
	/* An intermediate that expires before the leaf takes the site down
	 * first. */
	cert_time(j, "chain_not_after", chain_not_after(ci), &chain_ms);
	jt_close(j);
}

static bool
is_https(const char *url)
{
	return url != NULL && strncasecmp(url, "https:", 6) == 0;
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

enum error_kind
probe_result(struct probe *p, CURLcode code, struct jtext *j)
{
	const struct target *t = p->t;
	CURL *e = p->easy;
	long status = 0, redirects = 0, httpver = 0;
	char *ip = NULL, *final_url = NULL, *shown;
	curl_off_t total;
	enum error_kind kind;
	char msg[CURL_ERROR_SIZE + 512];
	bool ok, rx_done = false, rx_matched = false;

	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &redirects);
	curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &httpver);
	curl_easy_getinfo(e, CURLINFO_PRIMARY_IP, &ip);
	curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &final_url);
	total = info_time(e, CURLINFO_TOTAL_TIME_T);
	if (total <= 0)
		total = (curl_off_t)((mono_now_ns() - p->started_ns) / 1000);

	kind = kind_of(p, code, status);
	msg[0] = '\0';
	if (kind == ERR_TOO_LARGE) {
		snprintf(msg, sizeof msg, "body larger than %lld bytes",
		         (long long)p->max_body);
	} else if (kind != ERR_NONE) {
		snprintf(msg, sizeof msg, "%s",
		         p->errbuf[0] ? p->errbuf : curl_easy_strerror(code));
		if (kind == ERR_REDIRECTS && code == CURLE_UNSUPPORTED_PROTOCOL)
			snprintf(msg, sizeof msg,
			         "redirect to a refused scheme (only http and "
			         "https): %s",
			         p->errbuf[0] ? p->errbuf
			                      : curl_easy_strerror(code));
	} else if (!status_expected(t, status)) {
		char exp[256];

		expected_str(t, exp, sizeof exp);
		kind = ERR_HTTP_STATUS;
		snprintf(msg, sizeof msg, "status %ld, expected %s", status,
		         exp);
	}

	/* The regexes run on any complete body, so that "matched" is
	 * reported even when the status was already wrong. */
	if (code == CURLE_OK) {
		char err[256], pat[96];
		enum rx_result m;

		if (t->regex != NULL) {
			m = rx_match(t->regex, p->body, p->body_len, err,
			             sizeof err);
			if (m != RX_ERROR) {
				rx_done = true;
				rx_matched = m == RX_MATCH;
			}
			if (kind == ERR_NONE && m == RX_ERROR) {
				kind = ERR_OTHER;
				snprintf(msg, sizeof msg, "%s", err);
			} else if (kind == ERR_NONE && m == RX_NOMATCH) {
				kind = ERR_BODY_MISMATCH;
				short_pattern(t->regex, pat, sizeof pat);
				snprintf(msg, sizeof msg,
				         "body does not match regex \"%s\"", pat);
			}
		}
		if (t->regex_absent != NULL && kind == ERR_NONE) {
			m = rx_match(t->regex_absent, p->body, p->body_len, err,
			             sizeof err);
			if (m == RX_ERROR) {
				kind = ERR_OTHER;
				snprintf(msg, sizeof msg, "%s", err);
			} else if (m == RX_MATCH) {
				kind = ERR_BODY_MISMATCH;
				short_pattern(t->regex_absent, pat, sizeof pat);
				snprintf(msg, sizeof msg,
				         "body matches regex_absent \"%s\"", pat);
			}
		}
	}
	ok = kind == ERR_NONE;
	one_line(msg);

	jt_reset(j);
	base_text(p, j);
	jt_key(j, "ok");
	jt_bool(j, ok);
	jt_key(j, "status");
	if (status > 0)
		jt_int(j, status);
	else
		jt_null(j);
	jt_kstr(j, "error_kind", error_kind_name(kind), true);
	jt_kstr(j, "error", ok ? NULL : msg, false);
	jt_key(j, "duration_ms");
	jt_ms(j, total);
	phases_of(e, j);
	jt_kint(j, "bytes", p->bytes);
	jt_kstr(j, "http_version", http_version_name(httpver), true);
	jt_kstr(j, "remote_ip", ip, true);
	jt_kint(j, "redirects", redirects);
	shown = url_redact_new(final_url);
	jt_kstr(j, "final_url", shown, true);
	free(shown);
	/* No complete body: the regex was never tried, so there is no
	 * "matched". */
	if (t->regex != NULL) {
		jt_key(j, "regex");
		jt_open(j);
		jt_kstr(j, "pattern", t->regex, false);
		if (rx_done) {
			jt_key(j, "matched");
			jt_bool(j, rx_matched);
		}
		jt_close(j);
	}
	if (is_https(t->url) || is_https(final_url))
		tls_of(p, j);
	jt_close(j);
	return kind;
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
