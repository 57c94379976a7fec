/*
 * fuzz_url - URL checking and redaction (lib/record.c, lib/diag.c).
 *
 * The input is a URL (up to the first newline) and a message (the rest).
 * url_redact_new never changes a URL that has no password and leaves none
 * in one that has; a diagnostic that quotes the URL, raw or JSON-escaped
 * in any of the ways a record may write it, never shows the password; and
 * every diagnostic is exactly one line of printable UTF-8, whatever the
 * bytes it quotes.
 */
#include <curl/curl.h>

#include "fuzz.h"

/* libcurl's reading of url: its password (NULL: none, or no URL). */
static char *
password_of(const char *url, bool *parsed)
{
	CURLU *u = curl_url();
	char *pw = NULL;

	*parsed = curl_url_set(u, CURLUPART_URL, url,
	                       CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK;
	if (!*parsed || curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) !=
	                    CURLUE_OK)
		pw = NULL;
	curl_url_cleanup(u);
	return pw;
}

/* What warn_input writes for this line and message. */
static char *
warn_input_text(const char *line, size_t len, const char *msg)
{
	FILE *saved = stderr;
	char *buf = NULL;
	size_t n = 0;

	stderr = open_memstream(&buf, &n);
	FUZZ_ASSERT(stderr != NULL, "open_memstream");
	warn_input("<fuzz>", 1, line, len, "%s", msg);
	fclose(stderr);
	stderr = saved;
	return buf;
}

/* Exactly one line: printable UTF-8 and one '\n', at the end. */
static void
one_clean_line(const char *out)
{
	size_t n = strlen(out);
	json_t *utf8;

	FUZZ_ASSERT(n > 0 && out[n - 1] == '\n', "no newline at the end");
	for (size_t i = 0; i + 1 < n; i++)
		FUZZ_ASSERT((unsigned char)out[i] >= 0x20 && out[i] != 0x7f,
		            "control byte 0x%02x at %zu: %s", out[i], i, out);
	utf8 = json_stringn(out, n);
	FUZZ_ASSERT(utf8 != NULL, "not UTF-8: %s", out);
	json_decref(utf8);
}

/* pw is a password worth looking for in text: long enough not to turn
 * up by chance, plain enough to read the same raw and escaped, and not
 * elsewhere in the URL. */
static bool
findable(const char *pw, const char *url)
{
	const char *first;

	if (strlen(pw) < 4 || strspn(pw, "*") == strlen(pw))
		return false;
	for (const char *p = pw; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '-' && *p != '_')
			return false;
	first = strstr(url, pw);
	return first != NULL && strstr(first + 1, pw) == NULL;
}

/* url as a JSON string in a record, escaped as flags say; with at_escaped
 * its '@' and ':' as \u escapes too. */
static char *
record_line(const char *url, size_t flags, bool at_escaped)
{
	json_t *o = json_pack("{s:s}", "url", url);
	char *line, *out, *w;

	if (o == NULL)
		return NULL; /* not UTF-8 */
	line = json_dumps(o, JSON_COMPACT | flags);
	json_decref(o);
	if (!at_escaped)
		return line;
	out = w = xmalloc(strlen(line) * 6 + 1);
	for (const char *p = line; *p; p++) {
		if (*p == '@' || (*p == ':' && p[1] != '"' && p[-1] != '"'))
			w += sprintf(w, "\\u%04x", *p);
		else
			*w++ = *p;
	}
	*w = '\0';
	free(line);
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	size_t ulen = nl ? (size_t)(nl - (const char *)data) : size;
	char *url = xstrndup((const char *)data, ulen);
	char *msg = nl ? fuzz_str((const uint8_t *)nl + 1,
	                          size - ulen - 1) : xstrdup("");
	char *red, *red_pw, *out, *copy;
	bool parsed, red_parsed, secret;
	char *pw = password_of(url, &parsed);
	const char *reason;
	size_t n;

	(void)url_check(url, &reason);
	/* Data: only a password ever changes. */
	red = url_redact_new(url);
	if (parsed && pw == NULL)
		FUZZ_ASSERT(strcmp(red, url) == 0, "%s became %s", url, red);
	if (pw != NULL && *pw != '\0') {
		red_pw = password_of(red, &red_parsed);
		FUZZ_ASSERT(red_pw == NULL || strspn(red_pw, "*") ==
		            strlen(red_pw), "%s: password left in %s", url, red);
		curl_free(red_pw);
	}
	secret = pw != NULL && findable(pw, url) && strstr(msg, pw) == NULL;
	if (secret)
		FUZZ_ASSERT(strstr(red, pw) == NULL, "%s: %s", url, red);
	/* Text: redaction is idempotent and never lengthens. */
	copy = xstrdup(url);
	n = redact_userinfo_n(copy, strlen(copy), true);
	FUZZ_ASSERT(n <= strlen(url), "longer");
	free(copy);
	/* Logs: the raw line, the message, and the URL in a record written
	 * every way a JSON encoder may write it. */
	out = warn_input_text((const char *)data, size, msg);
	one_clean_line(out);
	free(out);
	for (int form = 0; form < 4; form++) {
		char *line = record_line(url, form & 1 ? JSON_ESCAPE_SLASH : 0,
		                         form & 2);

		if (line == NULL)
			break;
		out = warn_input_text(line, strlen(line), msg);
		one_clean_line(out);
		if (secret)
			FUZZ_ASSERT(strstr(out, pw) == NULL, "leak: %s", out);
		free(out);
		free(line);
	}
	out = NULL;
	{
		FILE *saved = stderr;
		size_t len = 0;

		stderr = open_memstream(&out, &len);
		warn("cannot fetch %s: %s", url, msg);
		copy = fuzz_str(data, size);
		info("%s", copy);
		free(copy);
		fclose(stderr);
		stderr = saved;
		FUZZ_ASSERT(len > 0 && out[len - 1] == '\n', "no newline");
		/* two messages, two lines */
		FUZZ_ASSERT(strchr(out, '\n') + 1 != out + len &&
		            strchr(strchr(out, '\n') + 1, '\n') + 1 == out + len,
		            "not two lines: %s", out);
		if (secret)
			FUZZ_ASSERT(strstr(out, pw) == NULL, "leak: %s", out);
		free(out);
	}
	curl_free(pw);
	free(red);
	free(msg);
	free(url);
	return 0;
}
