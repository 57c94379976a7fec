/* diag.c - diagnostics on stderr as "prog: level: message". */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sm.h"

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

/* One write per message so lines from concurrent processes do not mix. */
static void
vemit(const char *level, const char *fmt, va_list ap, int saved_errno)
{
	char msg[2048];
	size_t n;

	vsnprintf(msg, sizeof msg, fmt, ap);
	n = strlen(msg);
	if (n > 0 && msg[n - 1] == ':')
		snprintf(msg + n, sizeof msg - n, " %s", strerror(saved_errno));
	fprintf(stderr, "%s: %s: %s\n", progname, level, msg);
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
redact_userinfo(char *s)
{
	char *p = s;

	while ((p = strstr(p, "://")) != NULL) {
		char *user = p + 3, *end = user + strcspn(user, "/@\" \t?#");
		char *colon = memchr(user, ':', (size_t)(end - user));

		p = user;
		if (*end != '@' || colon == NULL)
			continue;
		/* "user:secret@" becomes "user:***@" (never longer). */
		size_t secret = (size_t)(end - colon - 1);
		size_t keep = secret < 3 ? secret : 3;
		memset(colon + 1, '*', keep);
		memmove(colon + 1 + keep, end, strlen(end) + 1);
	}
}

/* The first bytes of a bad line, printable and without URL passwords, so
 * the operator can find it and nobody learns a secret from the log. */
static void
line_prefix(const char *raw, size_t len, char *out, size_t outlen)
{
	const size_t max = 80;
	char line[256];
	size_t i, o = 0;

	if (len > sizeof line - 1)
		len = sizeof line - 1;
	memcpy(line, raw, len);
	line[len] = '\0';
	redact_userinfo(line);
	len = strnlen(line, len);
	for (i = 0; i < len && i < max && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	if (len > max && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

void
warn_input(const char *name, unsigned long lineno, const char *line,
           size_t len, const char *fmt, ...)
{
	char msg[1024], prefix[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	line_prefix(line, len, prefix, sizeof prefix);
	fprintf(stderr, "%s: error: %s:%lu: %s: %s\n", progname, name, lineno,
	        msg, prefix);
}

void
usage_exit(const char *text, int status)
{
	FILE *fp = status == 0 ? stdout : stderr;

	fputs(text, fp);
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
