/*
 * sm.h - what two or more sitemon programs share.
 *
 * One header, one section per lib/ file (as kcat.h does).  Ownership is in
 * the names: x_new() returns something the caller frees with x_free(&x),
 * which also sets the pointer to NULL.
 */
#ifndef SM_H
#define SM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sysexits.h>

#include <jansson.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define SM_VERSION "0.1.0"
#define SM_SCHEMA_VERSION 1

/* Longest input line any program accepts (a result record is ~1-2 KiB). */
#define SM_MAX_LINE (1024 * 1024)

/* ---- diag.c: diagnostics on stderr, "prog: level: message" ------------ */

/* Set once from main(); every message is prefixed with it. */
void diag_init(const char *progname);
const char *diag_progname(void);
/* A message whose format ends in ':' gets ": strerror(errno)" appended. */
void die(int status, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));
/* warn: something failed ("error:"); warning: something worth a look that
 * the program handled ("warning:"); info: a plain event ("info:"). */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same with any level ("debug", for librdkafka's log lines). */
void diag_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "prog: error: NAME:LINE: message: PREFIX" where PREFIX is the first
 * 80 bytes of the offending line, cleaned as diag_clean_new does (the
 * whole line is redacted before it is cut). */
void warn_input(const char *name, unsigned long lineno, const char *line,
                size_t len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Replace the password of every "scheme://user:password@" in s with
 * "***" (shorter passwords with as many stars), in place.  Also where the
 * text is JSON with the URL's characters escaped ("http:\/\/", "\u0040");
 * the password runs from the authority's first ':' to its last '@'. */
void redact_userinfo(char *s);
/* The same on s[0..n), which may hold NUL bytes; json false reads
 * backslashes as they are (for a decoded value).  Returns the new length. */
size_t redact_userinfo_n(char *s, size_t n, bool json);
/* s[0..n) as one printable line, in a new string: passwords redacted as
 * redact_userinfo does, then control characters, DEL, bytes that are not
 * UTF-8, C1 controls, U+2028/2029 and bidi controls as \xNN; at most max
 * bytes of s (0: all), then "..." if cut.  Every diagnostic goes through
 * it. */
char *diag_clean_new(const char *s, size_t n, size_t max);
/* --help (status 0: text and options, if any, on stdout) or a usage error
 * (64: text alone on stderr). */
void usage_exit(const char *text, const char *options, int status)
    __attribute__((noreturn));
/* Print the --version line and exit 0. */
void print_version_and_exit(void) __attribute__((noreturn));

/* ---- xalloc.c: allocation that exits 70 on out-of-memory ------------- */

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* arr (*n elements of elem bytes) grown, by doubling, to hold arr[index];
 * the new elements zeroed, *n updated.  For tables indexed by a file
 * descriptor. */
void *xgrow_index(void *arr, size_t *n, size_t index, size_t elem);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Like asprintf, exits on failure. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- linereader.c: bounded NDJSON line reader ------------------------ */

enum line_status {
	LINE_OK,       /* *line is a NUL-terminated line, newline stripped */
	LINE_AGAIN,    /* non-blocking fd and no complete line yet */
	LINE_EOF,      /* end of input, nothing pending */
	LINE_TOO_LONG, /* line exceeded the maximum; *line is its prefix and
	                  the rest up to the next newline is discarded */
	LINE_ERROR,    /* read(2) failed; errno is set */
};

struct line_reader;

/* Reads fd (not owned; may be O_NONBLOCK) with a reused buffer that never
 * grows past max_line bytes.  name is used in error messages ("<stdin>"). */
struct line_reader *line_reader_new(int fd, const char *name, size_t max_line);
void line_reader_free(struct line_reader **lr);
/* The returned line stays valid until the next call. */
enum line_status line_reader_next(struct line_reader *lr, char **line,
                                  size_t *len);
/* Line number of the line last returned (1-based). */
unsigned long line_reader_lineno(const struct line_reader *lr);
const char *line_reader_name(const struct line_reader *lr);
/* True when a partial line is buffered (for readers draining at EOF). */
bool line_reader_pending(const struct line_reader *lr);
/* True when line_reader_next() would return a line without reading: a
 * whole one is buffered (for readers that stop reading but take what
 * they have already read). */
bool line_reader_has_line(const struct line_reader *lr);

/* ---- uuid7.c ---------------------------------------------------------- */

#define UUID_STR_LEN 37 /* 36 characters and the NUL */
/* A UUIDv7 (RFC 9562): 48-bit unix ms, then random bits; monotonic within
 * the process even when several are minted in one millisecond. */
void uuid7_new(char out[UUID_STR_LEN]);
/* s is a UUID (either case); false for NULL. */
bool uuid_is_valid(const char *s);
/* s[0..n) as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (either case) into its
 * 16 bytes; false if it is not that. */
bool uuid_parse(const char *s, size_t n, unsigned char out[16]);
/* The value of a hexadecimal digit, or -1. */
int hex_digit(int c);

/* ---- timefmt.c: RFC 3339 UTC with milliseconds ------------------------ */

#define TIME_STR_LEN 25 /* "2026-11-23T10:49:56.123Z" and the NUL */
int64_t time_now_ms(void);   /* wall clock, unix ms */
int64_t mono_now_ns(void);   /* CLOCK_MONOTONIC, ns */
void time_format_ms(int64_t unix_ms, char out[TIME_STR_LEN]);
/* Accepts "YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)" from TIME_MIN_MS to
 * TIME_MAX_MS (years 0001 to 9999 in UTC); returns 0 or -1. */
#define TIME_MIN_MS INT64_C(-62135596800000) /* 0001-01-01T00:00:00Z */
#define TIME_MAX_MS INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */
int time_parse_ms(const char *s, int64_t *unix_ms);

/* ---- numparse.c: bounded number parsing (strtonum style) -------------- */

/* Returns 0 and sets *out, or -1 with *errstr "invalid", "too small" or
 * "too large". */
int parse_ll(const char *s, long long min, long long max, long long *out,
             const char **errstr);
/* For command-line options: on error dies with 64 naming the option, as
 * "sm-check: error: -c: 0 is too small (1..100000)". */
long long opt_ll(const char *optname, const char *s, long long min,
                 long long max);
/* "250ms", "30s", "5m", "1h", "2d", or bare milliseconds; -1 on error. */
int parse_duration_ms(const char *s, int64_t *out_ms);
int64_t opt_duration_ms(const char *optname, const char *s, int64_t min_ms,
                        int64_t max_ms);

/* ---- record.c: schema v1 records, the one implementation -------------- */

/* expect_status: list of inclusive ranges; "2xx" is 200-299. */
struct status_range {
	int lo, hi;
};

enum ip_version { IP_ANY = 0, IP_V4 = 4, IP_V6 = 6 };

struct target {
	char *target;   /* unique name */
	char *url;      /* http or https */
	char *method;   /* default "GET" */
	json_t *headers; /* object of string values, or NULL */
	char *body;     /* or NULL */
	int64_t timeout_ms;     /* default 10000 */
	bool follow_redirects;  /* default true */
	int max_redirects;      /* default 5 */
	struct status_range *expect_status; /* NULL: 2xx */
	size_t n_expect_status;
	char *regex;            /* or NULL */
	char *regex_absent;     /* or NULL */
	bool tls_verify;        /* default true */
	char *ca_file;          /* or NULL */
	int64_t max_body_bytes; /* 0: default (SM_DEFAULT_MAX_BODY) */
	enum ip_version ip_version;
	json_t *labels;         /* object, or NULL */
	int64_t scheduled_at_ms; /* 0 when absent */
	int64_t interval_ms;     /* sm-schedule input only; 0 when absent */
};

/* The longest target name, in bytes: PostgreSQL's btree indexes on the
 * name (checks, targets, outages, rollups; with the probe name beside it
 * in the last two) refuse index rows over 2704 bytes, which an
 * incompressible name reaches at about 2680 bytes. */
#define SM_MAX_TARGET_NAME 1024
/* The longest probe location name, in bytes: it sits beside the target
 * name in the rollup and outage index keys, so the two together must stay
 * under that 2704-byte limit. */
#define SM_MAX_PROBE_NAME 256

#define SM_DEFAULT_TIMEOUT_MS 10000
#define SM_DEFAULT_MAX_REDIRECTS 5
#define SM_DEFAULT_MAX_BODY (10 * 1024 * 1024)

/* A target with every default applied and the given name and url copied. */
struct target *target_new(const char *name, const char *url);
void target_free(struct target **t);
/* Decode and validate a target record.  On error returns NULL and writes a
 * one-line reason ("field \"url\": scheme must be http or https") into err.
 * A record without "target" is named after its url.  "v" must be 1 when
 * present.  Regexes are not compiled here (PCRE2 is sm-check's and
 * sm-schedule's business); everything else is checked. */
struct target *target_from_json(const json_t *obj, char *err, size_t errlen);
/* Encode with only the fields that differ from the defaults, plus v,
 * target, url, and scheduled_at when set.  Returns a new reference. */
json_t *target_to_json(const struct target *t);

/* Parses "200", 200, "2xx", "301-308" into a range; -1 if invalid. */
int status_range_parse(const json_t *v, struct status_range *out);
bool status_expected(const struct target *t, long status);
/* http:// or https:// with a host; returns 0 or -1 with a reason. */
int url_check(const char *url, const char **reason);

enum error_kind {
	ERR_NONE = 0, ERR_DNS, ERR_CONNECT, ERR_TIMEOUT, ERR_TLS,
	ERR_HTTP_STATUS, ERR_BODY_MISMATCH, ERR_REDIRECTS, ERR_PROTOCOL,
	ERR_TOO_LARGE, ERR_OTHER,
};
const char *error_kind_name(enum error_kind k); /* NULL for ERR_NONE */
int error_kind_parse(const char *s, enum error_kind *out);

/* Validate a result record (sm-check's output) as schema v1
 * (schema/result.schema.json): required fields present, every field and
 * member of its type and range.  0, or -1 with a reason in err. */
int result_validate(const json_t *obj, char *err, size_t errlen);
/* The checks of result_validate on labels (strings only), tls_error, and
 * the certificate's names (strings only) and fingerprint, made on a scan's
 * fields (jsonscan.h): true when the scan is sure result_validate takes
 * them; false sends the line to the tree. */
struct jscan_field;
bool result_scan_strings_sure(const struct jscan_field *labels,
                              const struct jscan_field *tls_error,
                              const struct jscan_field *cert_sans,
                              const struct jscan_field *cert_sha256);
/* s[0..len) is a tls_error as sm-check writes it: a word of a-z and _. */
bool tls_error_valid(const char *s, size_t len);
/* s[0..len) is a SHA-256 fingerprint as sm-check writes it (and openssl
 * x509 -fingerprint prints it): 32 upper-case hex pairs, colons between. */
bool sha256_fingerprint_valid(const char *s, size_t len);

/* The url with any password replaced by "***" (a new string). */
char *url_redact_new(const char *url);

/* ---- event.c: event records (sm-alert -> sm-notify) ------------------ */

/* down up reminder stale cert_expiring slow flapping resolved */
bool event_kind_valid(const char *s);
/* Validate an event record as schema v1 (schema/event.schema.json): v,
 * id "<incident>/<event>[/<n>]", event, incident (32 lowercase hex or a
 * UUID), target, at, since, locations; resolution exactly on resolved.
 * 0, or -1 with a reason in err. */
int event_validate(const json_t *obj, char *err, size_t errlen);

/* ---- stats.c: the periodic stats line --------------------------------- */

/* Each long-running program takes --stats-interval DURATION (default from
 * SM_STATS_INTERVAL, 0 = off) and, when the clock is due, writes one line
 * info("stats: key=value ...") with its counters. */
struct stats_clock {
	int64_t interval_ns; /* 0: off */
	int64_t next_ns;     /* CLOCK_MONOTONIC */
};
#define STATS_INTERVAL_MAX_MS 86400000 /* a day */
void stats_clock_init(struct stats_clock *c, int64_t interval_ms);
/* The default: SM_STATS_INTERVAL, or 0.  A bad value exits 64. */
int64_t stats_interval_default_ms(void);
/* The value of --stats-interval.  A bad value exits 64. */
int64_t stats_interval_option_ms(const char *arg);
/* True once per interval; call it from the main loop. */
bool stats_clock_due(struct stats_clock *c);
/* Milliseconds until due (for poll), or -1 when off. */
int stats_clock_timeout_ms(const struct stats_clock *c);

/* ---- regex.c: PCRE2 patterns ------------------------------------------ */

/* Compile with the options every program uses (UTF, invalid UTF matched
 * around).  NULL with "invalid PCRE2 pattern at offset N: why" in err. */
pcre2_code *regex_compile(const char *pattern, char *err, size_t errlen);

/* ---- jsonline.c: one JSON object per line ----------------------------- */

/* Parse a line as one JSON object.  NULL with a reason in err otherwise. */
json_t *json_line_parse(const char *line, size_t len, char *err,
                        size_t errlen);
/* Write obj compactly with a trailing newline; -1 on write error. */
int json_line_write(FILE *fp, const json_t *obj);

#endif
