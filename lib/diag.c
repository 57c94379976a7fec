/* diag.c - diagnostics on stderr as "prog: level: message".
 *
 * Every line written here is cleaned first, whatever its parts came from:
 * URL passwords are redacted (in JSON-escaped text too), and control
 * characters, bytes that are not UTF-8 and Unicode's line breaks and bidi
 * controls are shown as \xNN.  So one message is always exactly one line,
 * and no input can make it look like several or hide a secret's escape. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

/* The longest message written (cleaned bytes); longer ones end in "...". */
#define DIAG_MAX 4096
/* How much of a bad input line warn_input shows (bytes of the line). */
#define PREFIX_MAX 80

static const char *progname = "sitemon";

void
diag_init(const char *name)
{
	const char *slash = strrchr(name, '/');

	progname = slash ? slash + 1 : name;
}

const char *
diag_progname(void)
{
	return progname;
}

/* ---- redaction -------------------------------------------------------- */

/* One character of text at s[i]: what it stands for (c; 0x100 for any
 * character past ASCII written as an escape) and how many bytes it takes.
 * With json, a JSON escape counts as the
 * character it encodes, however many times the backslash itself was
 * escaped ("\/", "\\\/", "\u0040"), so a URL inside a JSON string,
 * or inside a JSON string inside one, reads as the URL. */
struct unit {
	int c;
	size_t len;
};

static struct unit
unit_at(const char *s, size_t n, size_t i, bool json)
{
	struct unit u = { (unsigned char)s[i], 1 };
	size_t j = i;

	if (!json || s[i] != '\\')
		return u;
	while (j < n && s[j] == '\\')
		j++;
	/* Not an escape: the run of backslashes is one unit, so that a long
	 * run is walked once, not once per backslash. */
	u.len = j - i;
	if (j >= n)
		return u;
	if (s[j] == '/' || s[j] == '"') {
		u.c = (unsigned char)s[j];
	} else if (s[j] == 'u' && n - j >= 5) {
		int v = 0;

		for (size_t k = 1; k <= 4; k++) {
			int h = hex_digit((unsigned char)s[j + k]);

			if (h < 0)
				return u;
			v = v * 16 + h;
		}
		u.c = v < 0x80 ? v : 0x100;
		j += 4;
	} else {
		return u;
	}
	u.len = j + 1 - i;
	return u;
}

/* Does the authority (the text after "scheme:/") end at this character? */
static bool
authority_end(int c)
{
	return c == '/' || c == '?' || c == '#' || c <= ' ' || c == 0x7f;
}

/* Redact s[0..*n) in place: in every "scheme:/[/…]user:password@host" the
 * password becomes "***" (a shorter one as many stars as it had bytes).
 * The password runs from the authority's first ':' to its last '@', so
 * nothing of it is left whatever it holds; text without such a password
 * is not changed.  json: see unit_at. */
static void
redact(char *s, size_t *np, bool json)
{
	size_t n = *np, i = 0;

	while (i < n) {
		struct unit u = unit_at(s, n, i, json), v;
		size_t j, colon = 0, at = 0;
		bool have_colon = false, have_at = false;

		i += u.len;
		if (u.c != ':' || i >= n)
			continue;
		v = unit_at(s, n, i, json);
		if (v.c != '/')
			continue;
		j = i;
		while (j < n && (v = unit_at(s, n, j, json)).c == '/')
			j += v.len;
		/* j: the authority; up to its end, find ':' and the last '@'. */
		while (j < n) {
			v = unit_at(s, n, j, json);
			if (authority_end(v.c))
				break;
			if (v.c == ':' && !have_colon && !have_at) {
				have_colon = true;
				colon = j + v.len;
			} else if (v.c == '@' && have_colon) {
				have_at = true;
				at = j;
			}
			j += v.len;
		}
		if (have_at && at > colon) {
			size_t secret = at - colon, keep = secret < 3 ? secret : 3;

			memset(s + colon, '*', keep);
			memmove(s + colon + keep, s + at, n - at);
			n -= secret - keep;
			j -= secret - keep;
		}
		i = j;
	}
	*np = n;
}

void
redact_userinfo(char *s)
{
	size_t n = strlen(s);

	redact(s, &n, true);
	s[n] = '\0';
}

size_t
redact_userinfo_n(char *s, size_t n, bool json)
{
	redact(s, &n, json);
	return n;
}

/* ---- one printable line ----------------------------------------------- */

/* The length of the UTF-8 sequence at p (RFC 3629) if it is one to show
 * as it is: 1 for printable ASCII; 0 for a control character, a byte that
 * is not UTF-8, a C1 control, U+2028/2029 or a bidi control. */
static size_t
printable_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (c >= 0x20 && c < 0x7f)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	if (c == 0xc2 && p[1] <= 0x9f)
		return 0; /* C1 controls U+0080-U+009F */
	if (c == 0xe2 && p[1] == 0x80 &&
	    (p[2] == 0xa8 || p[2] == 0xa9 || (p[2] >= 0xaa && p[2] <= 0xae)))
		return 0; /* U+2028, U+2029, U+202A-U+202E */
	if (c == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)
		return 0; /* U+2066-U+2069 */
	return len;
}

char *
diag_clean_new(const char *s, size_t n, size_t max)
{
	char *copy = xmalloc(n + 1), *out;
	size_t i = 0, o = 0, cap;

	memcpy(copy, s, n);
	n = redact_userinfo_n(copy, n, true);
	if (max == 0 || max > n)
		max = n;
	cap = max * 4 + 4;
	out = xmalloc(cap);
	while (i < max) {
		const unsigned char *p = (const unsigned char *)copy + i;
		size_t len = printable_seq(p, n - i);

		if (len == 0) {
			snprintf(out + o, cap - o, "\\x%02x", *p);
			o += 4;
			i++;
		} else if (i + len > max) {
			break; /* never half a character */
		} else {
			memcpy(out + o, p, len);
			o += len;
			i += len;
		}
	}
	if (i < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	free(copy);
	return out;
}

/* One write per message so lines from concurrent processes do not mix. */
static void
emit(const char *level, const char *msg)
{
	char *clean = diag_clean_new(msg, strlen(msg), DIAG_MAX);

	fprintf(stderr, "%s: %s: %s\n", progname, level, clean);
	free(clean);
}

static void
vemit(const char *level, const char *fmt, va_list ap, int saved_errno)
{
	char *msg, *full;
	size_t n;

	if (vasprintf(&msg, fmt, ap) < 0) {
		fprintf(stderr, "%s: %s: out of memory\n", progname, level);
		return;
	}
	n = strlen(msg);
	if (n > 0 && msg[n - 1] == ':') {
		full = xasprintf("%s %s", msg, strerror(saved_errno));
		free(msg);
		msg = full;
	}
	emit(level, msg);
	free(msg);
}

void
die(int status, const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;

	va_start(ap, fmt);
	vemit("error", fmt, ap, saved_errno);
	va_end(ap);
	exit(status);
}

void
warn(const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;

	va_start(ap, fmt);
	vemit("error", fmt, ap, saved_errno);
	va_end(ap);
}

void
warning(const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;

	va_start(ap, fmt);
	vemit("warning", fmt, ap, saved_errno);
	va_end(ap);
}

void
info(const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;

	va_start(ap, fmt);
	vemit("info", fmt, ap, saved_errno);
	va_end(ap);
}

void
diag_log(const char *level, const char *fmt, ...)
{
	int saved_errno = errno;
	va_list ap;

	va_start(ap, fmt);
	vemit(level, fmt, ap, saved_errno);
	va_end(ap);
}

void
warn_input(const char *name, unsigned long lineno, const char *line,
           size_t len, const char *fmt, ...)
{
	char *msg, *prefix, *full;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	/* The whole line is redacted before its prefix is cut, so a long
	 * password is never cut in two and half of it shown. */
	prefix = diag_clean_new(line, len, PREFIX_MAX);
	full = xasprintf("%s:%lu: %s: %s", name, lineno,
	                 msg ? msg : "bad input", prefix);
	emit("error", full);
	free(full);
	free(prefix);
	free(msg);
}

void
usage_exit(const char *text, const char *options, int status)
{
	FILE *fp = status == 0 ? stdout : stderr;

	fputs(text, fp);
	if (status == 0 && options != NULL)
		fputs(options, fp);
	if (status == 0 && fflush(stdout) != 0)
		status = EX_IOERR;
	exit(status);
}

void
print_version_and_exit(void)
{
	printf("%s (sitemon) %s\n", progname, SM_VERSION);
	exit(fflush(stdout) == 0 ? 0 : EX_IOERR);
}
