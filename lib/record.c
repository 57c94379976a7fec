/*
 * record.c - schema v1 records: the one implementation every program uses
 * to decode, validate and encode target records and to validate results.
 * schema/target.schema.json and schema/result.schema.json say the same in
 * JSON Schema; tests check real output against both.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "jsonscan.h"
#include "sm.h"

static const char *const error_kinds[] = {
	[ERR_NONE] = NULL, [ERR_DNS] = "dns", [ERR_CONNECT] = "connect",
	[ERR_TIMEOUT] = "timeout", [ERR_TLS] = "tls",
	[ERR_HTTP_STATUS] = "http_status", [ERR_BODY_MISMATCH] = "body_mismatch",
	[ERR_REDIRECTS] = "redirects", [ERR_PROTOCOL] = "protocol",
	[ERR_TOO_LARGE] = "too_large", [ERR_OTHER] = "other",
};

const char *
error_kind_name(enum error_kind k)
{
	if ((size_t)k >= sizeof error_kinds / sizeof error_kinds[0])
		return "other";
	return error_kinds[k];
}

int
error_kind_parse(const char *s, enum error_kind *out)
{
	for (size_t i = 1; i < sizeof error_kinds / sizeof error_kinds[0]; i++) {
		if (strcmp(s, error_kinds[i]) == 0) {
			*out = (enum error_kind)i;
			return 0;
		}
	}
	return -1;
}

int
url_check(const char *url, const char **reason)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL;
	int rc = -1;

	for (const char *p = url; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			*reason = "must not contain spaces or control characters";
			return -1;
		}
	}
	u = curl_url();
	if (u == NULL)
		die(EX_SOFTWARE, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) !=
	    CURLUE_OK) {
		*reason = "is not a valid URL";
	} else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	           (strcasecmp(scheme, "http") != 0 &&
	            strcasecmp(scheme, "https") != 0)) {
		*reason = "scheme must be http or https";
	} else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	           *host == '\0') {
		*reason = "has no host";
	} else {
		rc = 0;
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}

/* The URL's password per libcurl (what it would send), or NULL; *parsed
 * tells whether libcurl reads it as a URL at all. */
static char *
url_password(const char *url, bool *parsed)
{
	CURLU *u;
	char *pw = NULL;

	if ((u = curl_url()) == NULL)
		die(EX_SOFTWARE, "out of memory");
	*parsed = curl_url_set(u, CURLUPART_URL, url,
	                       CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK;
	if (!*parsed || curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) !=
	                    CURLUE_OK)
		pw = NULL;
	curl_url_cleanup(u);
	return pw;
}

/*
 * Only the password changes: the rest of the URL stays byte for byte as it
 * was (never normalised, never given an empty user).  A URL without a
 * password, such as one with an '@' in its path or query, comes back as it
 * is.  The textual redaction is checked with libcurl's reading of the
 * result; should they ever disagree, libcurl's own rebuild is used.
 */
char *
url_redact_new(const char *url)
{
	char *pw, *copy, *left, *out = NULL;
	bool parsed;
	size_t n;
	CURLU *u;

	if (strchr(url, '@') == NULL) /* no userinfo: the common case */
		return xstrdup(url);
	copy = xstrdup(url);
	n = redact_userinfo_n(copy, strlen(copy), false);
	copy[n] = '\0';
	if ((pw = url_password(url, &parsed)) == NULL) {
		/* libcurl sees no password: nothing to hide, or not a URL it
		 * reads (then the textual scrub is all there is). */
		if (parsed) {
			free(copy);
			return xstrdup(url);
		}
		return copy;
	}
	left = url_password(copy, &parsed);
	if (left != NULL && strspn(left, "*") == strlen(left) && *left &&
	    strlen(left) <= 3) {
		curl_free(left);
		curl_free(pw);
		return copy;
	}
	curl_free(left);
	curl_free(pw);
	free(copy);
	if ((u = curl_url()) == NULL)
		die(EX_SOFTWARE, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) ==
	        CURLUE_OK &&
	    curl_url_set(u, CURLUPART_PASSWORD, "***", 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK)
		copy = xstrdup(out);
	else
		copy = xstrdup("(a URL with a password)");
	curl_free(out);
	curl_url_cleanup(u);
	return copy;
}

/* Parses a non-negative decimal of exactly ndigits digits. */
static int
status_code(const char *s, size_t n, int *out)
{
	int v = 0;

	if (n != 3)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + s[i] - '0';
	}
	if (v < 100 || v > 599)
		return -1;
	*out = v;
	return 0;
}

int
status_range_parse(const json_t *v, struct status_range *out)
{
	const char *s, *dash;

	if (json_is_integer(v)) {
		json_int_t n = json_integer_value(v);

		if (n < 100 || n > 599)
			return -1;
		out->lo = out->hi = (int)n;
		return 0;
	}
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	if (strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' &&
	    tolower((unsigned char)s[1]) == 'x' &&
	    tolower((unsigned char)s[2]) == 'x') {
		out->lo = (s[0] - '0') * 100;
		out->hi = out->lo + 99;
		return 0;
	}
	dash = strchr(s, '-');
	if (dash == NULL)
		return status_code(s, strlen(s), &out->lo) < 0 ? -1 :
		       (out->hi = out->lo, 0);
	if (status_code(s, (size_t)(dash - s), &out->lo) < 0 ||
	    status_code(dash + 1, strlen(dash + 1), &out->hi) < 0 ||
	    out->lo > out->hi)
		return -1;
	return 0;
}

bool
status_expected(const struct target *t, long status)
{
	if (t->n_expect_status == 0)
		return status >= 200 && status <= 299;
	for (size_t i = 0; i < t->n_expect_status; i++)
		if (status >= t->expect_status[i].lo &&
		    status <= t->expect_status[i].hi)
			return true;
	return false;
}

struct target *
target_new(const char *name, const char *url)
{
	struct target *t = xcalloc(1, sizeof *t);

	/* A target named after its url is named without its password. */
	t->target = strcmp(name, url) == 0 ? url_redact_new(url) : xstrdup(name);
	t->url = xstrdup(url);
	t->method = xstrdup("GET");
	t->timeout_ms = SM_DEFAULT_TIMEOUT_MS;
	t->follow_redirects = true;
	t->max_redirects = SM_DEFAULT_MAX_REDIRECTS;
	t->tls_verify = true;
	return t;
}

void
target_free(struct target **tp)
{
	struct target *t = *tp;

	if (t == NULL)
		return;
	free(t->target);
	free(t->url);
	free(t->method);
	json_decref(t->headers);
	free(t->body);
	free(t->expect_status);
	free(t->regex);
	free(t->regex_absent);
	free(t->ca_file);
	json_decref(t->labels);
	free(t);
	*tp = NULL;
}

/* ---- decoding: one small checker per kind of field ---------------------- */

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

static int
get_string(const json_t *v, const char *key, char **out, bool nonempty,
           char *err, size_t errlen)
{
	if (!json_is_string(v))
		FAIL("field \"%s\" must be a string", key);
	if (nonempty && json_string_length(v) == 0)
		FAIL("field \"%s\" must not be empty", key);
	if (strlen(json_string_value(v)) != json_string_length(v))
		FAIL("field \"%s\" must not contain NUL", key);
	free(*out);
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int
get_int(const json_t *v, const char *key, int64_t min, int64_t max,
        int64_t *out, char *err, size_t errlen)
{
	json_int_t n;

	if (!json_is_integer(v))
		FAIL("field \"%s\" must be an integer", key);
	n = json_integer_value(v);
	if (n < min || n > max)
		FAIL("field \"%s\" must be between %lld and %lld", key,
		     (long long)min, (long long)max);
	*out = n;
	return 0;
}

static int
get_bool(const json_t *v, const char *key, bool *out, char *err,
         size_t errlen)
{
	if (!json_is_boolean(v))
		FAIL("field \"%s\" must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int
get_string_object(const json_t *v, const char *key, json_t **out,
                  char *err, size_t errlen)
{
	const char *k;
	json_t *val;

	if (!json_is_object(v))
		FAIL("field \"%s\" must be an object", key);
	/* A NUL could not be written as JSON that the record's next reader
	 * accepts (json_line_parse refuses \u0000): refused here too. */
	json_object_foreach((json_t *)v, k, val) {
		if (!json_is_string(val))
			FAIL("field \"%s\": value of \"%.64s\" must be a string",
			     key, k);
		if (strlen(json_string_value(val)) != json_string_length(val))
			FAIL("field \"%s\": value of \"%.64s\" must not contain "
			     "NUL", key, k);
	}
	json_decref(*out);
	*out = json_deep_copy(v);
	return 0;
}

/* Header names are RFC 9110 tokens and values hold no line break: a
 * target must not be able to smuggle a second request into a probe. */
static int
get_headers(const json_t *v, json_t **out, char *err, size_t errlen)
{
	static const char token[] = "!#$%&'*+-.^_`|~0123456789"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	const char *name;
	json_t *val;

	if (get_string_object(v, "headers", out, err, errlen) < 0)
		return -1;
	json_object_foreach(*out, name, val) {
		if (*name == '\0' || strspn(name, token) != strlen(name))
			FAIL("field \"headers\": \"%.64s\" is not a header name",
			     name);
		if (strpbrk(json_string_value(val), "\r\n") != NULL)
			FAIL("field \"headers\": value of \"%.64s\" holds a line "
			     "break", name);
	}
	return 0;
}

static int
get_expect_status(const json_t *v, struct target *t, char *err,
                  size_t errlen)
{
	size_t n = json_is_array(v) ? json_array_size(v) : 1;

	if (n == 0 || n > 64)
		FAIL("field \"expect_status\" must list 1 to 64 codes or ranges");
	free(t->expect_status);
	t->expect_status = xcalloc(n, sizeof *t->expect_status);
	t->n_expect_status = n;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;

		if (status_range_parse(e, &t->expect_status[i]) < 0)
			FAIL("field \"expect_status\": not a status code or range "
			     "(200, \"2xx\", \"301-308\")");
	}
	return 0;
}

static int
get_ip_version(const json_t *v, enum ip_version *out, char *err,
               size_t errlen)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;

	if ((s && strcmp(s, "any") == 0) || n == 0)
		*out = IP_ANY;
	else if ((s && strcmp(s, "4") == 0) || n == 4)
		*out = IP_V4;
	else if ((s && strcmp(s, "6") == 0) || n == 6)
		*out = IP_V6;
	else
		FAIL("field \"ip_version\" must be \"any\", 4 or 6");
	return 0;
}

static int
get_method(const json_t *v, char **out, char *err, size_t errlen)
{
	const char *s;

	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > 16)
		FAIL("field \"method\" must be an HTTP method such as \"GET\"");
	for (s = json_string_value(v); *s; s++)
		if (!isupper((unsigned char)*s))
			FAIL("field \"method\" must be upper-case letters");
	free(*out);
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int
get_time(const json_t *v, const char *key, int64_t *out, char *err,
         size_t errlen)
{
	if (!json_is_string(v) || time_parse_ms(json_string_value(v), out) < 0)
		FAIL("field \"%s\" must be an RFC 3339 time", key);
	return 0;
}

static int
get_interval(const json_t *v, int64_t *out, char *err, size_t errlen)
{
	/* Whole seconds; more than INT64_MAX ms would overflow. */
	if (json_is_integer(v) && json_integer_value(v) > 0 &&
	    json_integer_value(v) <= INT64_MAX / 1000) {
		*out = json_integer_value(v) * 1000;
		return 0;
	}
	/* A string needs its unit: "30" could mean seconds or milliseconds. */
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    isdigit((unsigned char)json_string_value(v)[json_string_length(v) - 1]) ||
	    parse_duration_ms(json_string_value(v), out) < 0 || *out <= 0)
		FAIL("field \"interval\" must be a duration such as \"30s\"");
	return 0;
}

/* Applies one field of a target record; unknown fields are refused so a
 * typo never silently becomes a default. */
static int
target_set_field(struct target *t, const char *key, const json_t *v,
                 char *err, size_t errlen)
{
	int64_t n;
	const char *reason;

	if (strcmp(key, "v") == 0) {
		if (!json_is_integer(v) || json_integer_value(v) != SM_SCHEMA_VERSION)
			FAIL("field \"v\" must be 1 (schema version)");
		return 0;
	}
	if (strcmp(key, "target") == 0) {
		if (json_is_string(v) &&
		    json_string_length(v) > SM_MAX_TARGET_NAME)
			FAIL("field \"target\" is %zu bytes, more than the %d a "
			     "name may take", json_string_length(v),
			     SM_MAX_TARGET_NAME);
		return get_string(v, key, &t->target, true, err, errlen);
	}
	if (strcmp(key, "url") == 0) {
		if (get_string(v, key, &t->url, true, err, errlen) < 0)
			return -1;
		if (url_check(t->url, &reason) < 0)
			FAIL("field \"url\" %s", reason);
		return 0;
	}
	if (strcmp(key, "method") == 0)
		return get_method(v, &t->method, err, errlen);
	if (strcmp(key, "headers") == 0)
		return get_headers(v, &t->headers, err, errlen);
	if (strcmp(key, "labels") == 0)
		return get_string_object(v, key, &t->labels, err, errlen);
	if (strcmp(key, "body") == 0)
		return get_string(v, key, &t->body, false, err, errlen);
	if (strcmp(key, "timeout_ms") == 0)
		return get_int(v, key, 1, 3600000, &t->timeout_ms, err, errlen);
	if (strcmp(key, "follow_redirects") == 0)
		return get_bool(v, key, &t->follow_redirects, err, errlen);
	if (strcmp(key, "max_redirects") == 0) {
		if (get_int(v, key, 0, 50, &n, err, errlen) < 0)
			return -1;
		t->max_redirects = (int)n;
		return 0;
	}
	if (strcmp(key, "expect_status") == 0)
		return get_expect_status(v, t, err, errlen);
	if (strcmp(key, "regex") == 0)
		return get_string(v, key, &t->regex, true, err, errlen);
	if (strcmp(key, "regex_absent") == 0)
		return get_string(v, key, &t->regex_absent, true, err, errlen);
	if (strcmp(key, "tls_verify") == 0)
		return get_bool(v, key, &t->tls_verify, err, errlen);
	if (strcmp(key, "ca_file") == 0)
		return get_string(v, key, &t->ca_file, true, err, errlen);
	if (strcmp(key, "max_body_bytes") == 0)
		return get_int(v, key, 1, INT64_C(1) << 30, &t->max_body_bytes,
		               err, errlen);
	if (strcmp(key, "ip_version") == 0)
		return get_ip_version(v, &t->ip_version, err, errlen);
	if (strcmp(key, "scheduled_at") == 0)
		return get_time(v, key, &t->scheduled_at_ms, err, errlen);
	if (strcmp(key, "interval") == 0)
		return get_interval(v, &t->interval_ms, err, errlen);
	FAIL("unknown field \"%s\"", key);
}

struct target *
target_from_json(const json_t *obj, char *err, size_t errlen)
{
	const json_t *url = json_object_get(obj, "url");
	const json_t *name = json_object_get(obj, "target");
	struct target *t;
	const char *key;
	json_t *v;

	if (!json_is_object(obj)) {
		snprintf(err, errlen, "a target record must be a JSON object");
		return NULL;
	}
	if (!json_is_string(url)) {
		snprintf(err, errlen, "field \"url\" is required");
		return NULL;
	}
	t = target_new(json_is_string(name) ? json_string_value(name) : "",
	               json_string_value(url));
	json_object_foreach((json_t *)obj, key, v) {
		if (target_set_field(t, key, v, err, errlen) < 0) {
			target_free(&t);
			return NULL;
		}
	}
	if (*t->target == '\0') { /* unnamed: the url names it, sans password */
		free(t->target);
		t->target = url_redact_new(t->url);
	}
	/* Named after a url too long to be a name (the name is a key of
	 * the storage's indexes: SM_MAX_TARGET_NAME). */
	if (strlen(t->target) > SM_MAX_TARGET_NAME) {
		snprintf(err, errlen, "field \"url\" names the target, and at "
		         "%zu bytes it is longer than the %d a name may take: "
		         "give the target a shorter name", strlen(t->target),
		         SM_MAX_TARGET_NAME);
		target_free(&t);
		return NULL;
	}
	return t;
}

/* ---- encoding ------------------------------------------------------------ */

static json_t *
status_range_to_json(const struct status_range *r)
{
	if (r->lo == r->hi)
		return json_integer(r->lo);
	if (r->lo % 100 == 0 && r->hi == r->lo + 99)
		return json_sprintf("%dxx", r->lo / 100);
	return json_sprintf("%d-%d", r->lo, r->hi);
}

json_t *
target_to_json(const struct target *t)
{
	json_t *o = json_object();
	char ts[TIME_STR_LEN];

	/* json_object_set_new steals each new value's reference. */
	json_object_set_new(o, "v", json_integer(SM_SCHEMA_VERSION));
	json_object_set_new(o, "target", json_string(t->target));
	json_object_set_new(o, "url", json_string(t->url));
	if (strcmp(t->method, "GET") != 0)
		json_object_set_new(o, "method", json_string(t->method));
	if (t->headers)
		json_object_set(o, "headers", t->headers);
	if (t->body)
		json_object_set_new(o, "body", json_string(t->body));
	if (t->timeout_ms != SM_DEFAULT_TIMEOUT_MS)
		json_object_set_new(o, "timeout_ms", json_integer(t->timeout_ms));
	if (!t->follow_redirects)
		json_object_set_new(o, "follow_redirects", json_false());
	if (t->max_redirects != SM_DEFAULT_MAX_REDIRECTS)
		json_object_set_new(o, "max_redirects",
		                    json_integer(t->max_redirects));
	if (t->n_expect_status > 0) {
		json_t *a = json_array();

		for (size_t i = 0; i < t->n_expect_status; i++)
			json_array_append_new(a,
			    status_range_to_json(&t->expect_status[i]));
		json_object_set_new(o, "expect_status", a);
	}
	if (t->regex)
		json_object_set_new(o, "regex", json_string(t->regex));
	if (t->regex_absent)
		json_object_set_new(o, "regex_absent",
		                    json_string(t->regex_absent));
	if (!t->tls_verify)
		json_object_set_new(o, "tls_verify", json_false());
	if (t->ca_file)
		json_object_set_new(o, "ca_file", json_string(t->ca_file));
	if (t->max_body_bytes)
		json_object_set_new(o, "max_body_bytes",
		                    json_integer(t->max_body_bytes));
	if (t->ip_version != IP_ANY)
		json_object_set_new(o, "ip_version", json_integer(t->ip_version));
	if (t->labels)
		json_object_set(o, "labels", t->labels);
	if (t->scheduled_at_ms) {
		time_format_ms(t->scheduled_at_ms, ts);
		json_object_set_new(o, "scheduled_at", json_string(ts));
	}
	return o;
}

/* ---- result validation ---------------------------------------------------- */

bool
tls_error_valid(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
			return false;
	return true;
}

/* Upper-case hex digits, as a table: the check runs on every https
 * result sm-pg-write and sm-alert read. */
static bool
hex_upper(unsigned char c)
{
	static const bool table[256] = {
		['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
		['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
		['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
		['F'] = 1,
	};

	return table[c];
}

bool
result_scan_strings_sure(const struct jscan_field *labels,
                         const struct jscan_field *tls_error,
                         const struct jscan_field *cert_sans,
                         const struct jscan_field *cert_sha256)
{
	/* An escaped tls_error or fingerprint is left to the tree, which
	 * decodes it. */
	if (tls_error->type == JV_ESCAPED || cert_sha256->type == JV_ESCAPED)
		return false;
	if (tls_error->type == JV_STRING &&
	    !tls_error_valid(tls_error->val, tls_error->len))
		return false;
	if (cert_sha256->type == JV_STRING &&
	    !sha256_fingerprint_valid(cert_sha256->val, cert_sha256->len))
		return false;
	return (labels->type != JV_OBJECT ||
	        jscan_strings_only(labels->val, labels->len)) &&
	       (cert_sans->type != JV_ARRAY ||
	        jscan_strings_only(cert_sans->val, cert_sans->len));
}

bool
sha256_fingerprint_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	if (len != 32 * 3 - 1)
		return false;
	for (size_t i = 0; i < len; i += 3)
		if (!hex_upper(u[i]) || !hex_upper(u[i + 1]) ||
		    (i + 2 < len && u[i + 2] != ':'))
			return false;
	return true;
}

enum jtype { J_STR = 1, J_INT = 2, J_NUM = 4, J_BOOL = 8, J_NULL = 16,
             J_OBJ = 32, J_TIME = 64, J_ARR = 128 };

static bool
type_ok(const json_t *v, unsigned types)
{
	int64_t ms;

	return ((types & J_STR) && json_is_string(v)) ||
	       ((types & J_INT) && json_is_integer(v)) ||
	       ((types & J_NUM) && json_is_number(v)) ||
	       ((types & J_BOOL) && json_is_boolean(v)) ||
	       ((types & J_NULL) && json_is_null(v)) ||
	       ((types & J_OBJ) && json_is_object(v)) ||
	       ((types & J_ARR) && json_is_array(v)) ||
	       ((types & J_TIME) && json_is_string(v) &&
	        time_parse_ms(json_string_value(v), &ms) == 0);
}

static const char *
type_words(unsigned types)
{
	if (types & J_TIME)
		return types & J_NULL ? "an RFC 3339 time or null" :
		       "an RFC 3339 time";
	if (types == (J_INT | J_NULL))
		return "an integer or null";
	if (types & J_NUM)
		return types & J_NULL ? "a number or null" : "a number";
	if (types & J_INT)
		return "an integer";
	if (types & J_BOOL)
		return "true or false";
	if (types & J_OBJ)
		return types & J_NULL ? "an object or null" : "an object";
	if (types & J_ARR)
		return types & J_NULL ? "an array or null" : "an array";
	return types & J_NULL ? "a string or null" : "a string";
}

static const struct field_rule {
	const char *name;
	unsigned types;
	bool required;
} result_rules[] = {
	{ "id", J_STR, true },
	{ "target", J_STR, true },
	{ "url", J_STR, true },
	{ "probe", J_STR, true },
	{ "started_at", J_TIME, true },
	{ "ok", J_BOOL, true },
	{ "status", J_INT | J_NULL, true },
	{ "error_kind", J_STR | J_NULL, true },
	{ "error", J_STR | J_NULL, false },
	{ "duration_ms", J_NUM, true },
	{ "scheduled_at", J_TIME | J_NULL, false },
	{ "labels", J_OBJ | J_NULL, false },
	{ "phases", J_OBJ | J_NULL, false },
	{ "tls_error", J_STR | J_NULL, false },
	{ "bytes", J_INT | J_NULL, false },
	{ "truncated", J_BOOL, false },
	{ "content_length", J_INT | J_NULL, false },
	{ "wire_bytes", J_INT | J_NULL, false },
	{ "http_version", J_STR | J_NULL, false },
	{ "remote_ip", J_STR | J_NULL, false },
	{ "redirects", J_INT | J_NULL, false },
	{ "final_url", J_STR | J_NULL, false },
	{ "hops", J_ARR, false },
	{ "final_phases", J_OBJ | J_NULL, false },
	{ "regex", J_OBJ | J_NULL, false },
	{ "tls", J_OBJ | J_NULL, false },
	{ "kafka", J_OBJ, false },
};

/* The members of regex and of tls (schema/result.schema.json): those
 * sm-pg-write stores in columns of their own, and cert_days_left. */
static const struct field_rule regex_rules[] = {
	{ "pattern", J_STR, false },
	{ "matched", J_BOOL, false },
};

static const struct field_rule tls_rules[] = {
	{ "version", J_STR | J_NULL, false },
	{ "cert_not_after", J_TIME | J_NULL, false },
	{ "cert_not_before", J_TIME | J_NULL, false },
	{ "chain_not_after", J_TIME | J_NULL, false },
	{ "cert_days_left", J_INT | J_NULL, false },
	{ "cert_issuer", J_STR | J_NULL, false },
	{ "cert_subject", J_STR | J_NULL, false },
	{ "cert_sans", J_ARR | J_NULL, false },
	{ "cert_sha256", J_STR | J_NULL, false },
};

/* obj's fields by rules; parent: the object obj is a member of, to name
 * a field in the error ("tls.version"), or NULL. */
static int
validate_rules(const json_t *obj, const char *parent,
               const struct field_rule *rules, size_t n, char *err,
               size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		const struct field_rule *r = &rules[i];
		const json_t *f = json_object_get(obj, r->name);

		if (f == NULL) {
			if (r->required)
				FAIL("field \"%s%s%s\" is required",
				     parent ? parent : "", parent ? "." : "",
				     r->name);
			continue;
		}
		if (!type_ok(f, r->types))
			FAIL("field \"%s%s%s\" must be %s",
			     parent ? parent : "", parent ? "." : "", r->name,
			     type_words(r->types));
	}
	return 0;
}

static int
validate_tls(const json_t *tls, char *err, size_t errlen)
{
	const json_t *sans, *san, *sha;
	size_t i;

	if (validate_rules(tls, "tls", tls_rules,
	                   sizeof tls_rules / sizeof tls_rules[0], err,
	                   errlen) < 0)
		return -1;
	sans = json_object_get(tls, "cert_sans");
	json_array_foreach((json_t *)sans, i, san)
		if (!json_is_string(san))
			FAIL("field \"tls.cert_sans\" must hold strings only");
	sha = json_object_get(tls, "cert_sha256");
	if (json_is_string(sha) &&
	    !sha256_fingerprint_valid(json_string_value(sha),
	                              json_string_length(sha)))
		FAIL("field \"tls.cert_sha256\" must be a SHA-256 fingerprint "
		     "(AB:CD:... in 32 pairs)");
	return 0;
}

/* phases or final_phases (name): the error names the one it is. */
static int
validate_phases(const json_t *phases, const char *name, char *err,
                size_t errlen)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)phases, k, v)
		if (!type_ok(v, J_NUM | J_NULL) ||
		    (json_is_number(v) && json_number_value(v) < 0))
			FAIL("field \"%s.%s\" must be a non-negative number",
			     name, k);
	return 0;
}

/* hops: each {url, status, location, time_ms}. */
static int
validate_hops(const json_t *hops, char *err, size_t errlen)
{
	size_t i;
	json_t *h, *t;

	json_array_foreach((json_t *)hops, i, h) {
		t = json_object_get(h, "time_ms");
		if (!json_is_object(h) ||
		    !json_is_string(json_object_get(h, "url")) ||
		    !json_is_integer(json_object_get(h, "status")) ||
		    !json_is_string(json_object_get(h, "location")) ||
		    !type_ok(t, J_NUM | J_NULL) ||
		    (json_is_number(t) && json_number_value(t) < 0))
			FAIL("field \"hops[%zu]\" must hold url, status, location "
			     "and a non-negative time_ms", i);
	}
	return 0;
}

static int
validate_kafka(const json_t *k, char *err, size_t errlen)
{
	if (!json_is_string(json_object_get(k, "topic")) ||
	    !json_is_integer(json_object_get(k, "partition")) ||
	    !json_is_integer(json_object_get(k, "offset")))
		FAIL("field \"kafka\" must hold topic, partition and offset");
	if (json_integer_value(json_object_get(k, "partition")) < 0 ||
	    json_integer_value(json_object_get(k, "offset")) < 0)
		FAIL("field \"kafka\" must not hold a negative partition or "
		     "offset");
	return 0;
}

/* labels: strings only, as a target's (target_from_json). */
static int
validate_labels(const json_t *labels, char *err, size_t errlen)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)labels, k, v)
		if (!json_is_string(v))
			FAIL("field \"labels.%s\" must be a string", k);
	return 0;
}

/* A name: not empty (no target or location is named so), and not longer
 * than the storage's index keys allow, which PostgreSQL would refuse on
 * every retry; refused here, where the line can be named.  Lengths in
 * bytes, as the indexes count them. */
static bool
name_invalid(const json_t *obj, const char *field, size_t max, char *err,
             size_t errlen)
{
	size_t len = json_string_length(json_object_get(obj, field));

	if (len == 0) {
		snprintf(err, errlen, "field \"%s\" must be a non-empty string",
		         field);
		return true;
	}
	if (len <= max)
		return false;
	snprintf(err, errlen, "field \"%s\" is %zu bytes, more than the %zu "
	         "it may take", field, len, max);
	return true;
}

int
result_validate(const json_t *obj, char *err, size_t errlen)
{
	/* Counts: integers (or null), never below zero. */
	static const char *const counts[] = { "bytes", "content_length",
	                                      "wire_bytes", "redirects" };
	const json_t *v = json_object_get(obj, "v");
	enum error_kind kind;
	const json_t *ek, *te, *phases, *kafka, *rx, *tls;

	if (!json_is_integer(v) || json_integer_value(v) != SM_SCHEMA_VERSION)
		FAIL("field \"v\" must be 1 (schema version)");
	if (validate_rules(obj, NULL, result_rules,
	                   sizeof result_rules / sizeof result_rules[0], err,
	                   errlen) < 0)
		return -1;
	if (!uuid_is_valid(json_string_value(json_object_get(obj, "id"))))
		FAIL("field \"id\" must be a UUID");
	if (name_invalid(obj, "target", SM_MAX_TARGET_NAME, err, errlen) ||
	    name_invalid(obj, "probe", SM_MAX_PROBE_NAME, err, errlen))
		return -1;
	te = json_object_get(obj, "tls_error");
	if (json_is_string(te) &&
	    !tls_error_valid(json_string_value(te), json_string_length(te)))
		FAIL("field \"tls_error\" must be a word of a-z and _");
	ek = json_object_get(obj, "error_kind");
	if (json_is_string(ek) && error_kind_parse(json_string_value(ek), &kind) < 0)
		FAIL("field \"error_kind\": unknown kind \"%s\"",
		     json_string_value(ek));
	if (json_number_value(json_object_get(obj, "duration_ms")) < 0)
		FAIL("field \"duration_ms\" must not be negative");
	phases = json_object_get(obj, "phases");
	if (json_is_object(phases) &&
	    validate_phases(phases, "phases", err, errlen) < 0)
		return -1;
	phases = json_object_get(obj, "final_phases");
	if (json_is_object(phases) &&
	    validate_phases(phases, "final_phases", err, errlen) < 0)
		return -1;
	if (json_is_array(json_object_get(obj, "hops")) &&
	    validate_hops(json_object_get(obj, "hops"), err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
		if (json_integer_value(json_object_get(obj, counts[i])) < 0)
			FAIL("field \"%s\" must not be negative", counts[i]);
	if (validate_labels(json_object_get(obj, "labels"), err, errlen) < 0)
		return -1;
	kafka = json_object_get(obj, "kafka");
	if (kafka && validate_kafka(kafka, err, errlen) < 0)
		return -1;
	rx = json_object_get(obj, "regex");
	if (json_is_object(rx) &&
	    validate_rules(rx, "regex", regex_rules,
	                   sizeof regex_rules / sizeof regex_rules[0], err,
	                   errlen) < 0)
		return -1;
	tls = json_object_get(obj, "tls");
	if (json_is_object(tls) && validate_tls(tls, err, errlen) < 0)
		return -1;
	return 0;
}
