/* test_lib.c - unit tests of lib/, as TAP: "ok N - name" / "not ok N". */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jsonscan.h"
#include "sm.h"
#include "tap.h"


/* A pipe whose read end holds the given bytes and then EOF. */
static int
pipe_with(const char *data, size_t len)
{
	int p[2];

	if (pipe(p) < 0 || write(p[1], data, len) != (ssize_t)len)
		abort();
	close(p[1]);
	return p[0];
}

/* A line of exactly the maximum is taken, with "\n", "\r\n" or at EOF. */
static void
test_line_reader_max(void)
{
	const char in[] = "12345678\n12345678\r\n123456789\n1234567\r\r\n"
	                  "12345678";
	int fd = pipe_with(in, sizeof in - 1);
	struct line_reader *lr = line_reader_new(fd, "<test>", 8);
	char *line;
	size_t len;

	CHECK(line_reader_next(lr, &line, &len) == LINE_OK && len == 8);
	CHECK(line_reader_next(lr, &line, &len) == LINE_OK && len == 8 &&
	      strcmp(line, "12345678") == 0);
	CHECK(line_reader_next(lr, &line, &len) == LINE_TOO_LONG);
	CHECK(line_reader_next(lr, &line, &len) == LINE_OK && len == 8 &&
	      strcmp(line, "1234567\r") == 0);
	CHECK(line_reader_next(lr, &line, &len) == LINE_OK && len == 8);
	CHECK(line_reader_next(lr, &line, &len) == LINE_EOF);
	line_reader_free(&lr);
	close(fd);
}

static void
test_line_reader(void)
{
	const char in[] = "one\r\n\ntoo-long-line\nthree";
	int fd = pipe_with(in, sizeof in - 1);
	struct line_reader *lr = line_reader_new(fd, "<test>", 8);
	char *line;
	size_t len;

	CHECK(line_reader_next(lr, &line, &len) == LINE_OK &&
	      strcmp(line, "one") == 0 && len == 3);
	CHECK(line_reader_next(lr, &line, &len) == LINE_OK && len == 0);
	CHECK(line_reader_next(lr, &line, &len) == LINE_TOO_LONG &&
	      strncmp(line, "too-long", 8) == 0);
	CHECK(line_reader_lineno(lr) == 3);
	CHECK(line_reader_next(lr, &line, &len) == LINE_OK &&
	      strcmp(line, "three") == 0);
	CHECK(line_reader_lineno(lr) == 4);
	CHECK(line_reader_next(lr, &line, &len) == LINE_EOF);
	line_reader_free(&lr);
	CHECK(lr == NULL);
	close(fd);
}

static void
test_line_reader_nonblocking(void)
{
	int p[2];
	struct line_reader *lr;
	char *line;
	size_t len;

	if (pipe(p) < 0)
		abort();
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	lr = line_reader_new(p[0], "<pipe>", 1024);
	CHECK(line_reader_next(lr, &line, &len) == LINE_AGAIN);
	if (write(p[1], "par", 3) != 3)
		abort();
	CHECK(line_reader_next(lr, &line, &len) == LINE_AGAIN);
	CHECK(line_reader_pending(lr));
	if (write(p[1], "tial\n", 5) != 5)
		abort();
	CHECK(line_reader_next(lr, &line, &len) == LINE_OK &&
	      strcmp(line, "partial") == 0);
	close(p[1]);
	CHECK(line_reader_next(lr, &line, &len) == LINE_EOF);
	line_reader_free(&lr);
	close(p[0]);
}

static void
test_uuid7(void)
{
	char a[UUID_STR_LEN], b[UUID_STR_LEN];

	uuid7_new(a);
	CHECK(uuid_is_valid(a));
	CHECK(a[14] == '7');
	CHECK(strchr("89ab", a[19]) != NULL);
	bool sorted = true;
	for (int i = 0; i < 10000 && sorted; i++) {
		uuid7_new(b);
		sorted = strcmp(a, b) < 0;
		memcpy(a, b, sizeof a);
	}
	CHECK(sorted); /* monotonic even within one millisecond */
	CHECK(!uuid_is_valid("not-a-uuid"));
	CHECK(!uuid_is_valid(NULL));
}

static void
test_time(void)
{
	char s[TIME_STR_LEN];
	int64_t ms;

	time_format_ms(INT64_C(1795431000123), s);
	CHECK(strcmp(s, "2026-11-23T10:50:00.123Z") == 0);
	CHECK(time_parse_ms(s, &ms) == 0 && ms == INT64_C(1795431000123));
	CHECK(time_parse_ms("2026-11-23T11:50:00.1+01:00", &ms) == 0 &&
	      ms == INT64_C(1795431000100));
	CHECK(time_parse_ms("2024-02-29T00:00:00Z", &ms) == 0);
	CHECK(time_parse_ms("2023-02-29T00:00:00Z", &ms) < 0);
	CHECK(time_parse_ms("2026-11-23 10:50:00", &ms) < 0);
	CHECK(time_parse_ms("2026-11-23T10:50:00Zjunk", &ms) < 0);
	time_format_ms(0, s);
	CHECK(strcmp(s, "1970-01-01T00:00:00.000Z") == 0);
	/* Years before 1000 print with four digits (and read back). */
	CHECK(time_parse_ms("0506-11-23T10:00:00.250Z", &ms) == 0);
	time_format_ms(ms, s);
	CHECK(strcmp(s, "0506-11-23T10:00:00.250Z") == 0);
	/* Not year 0 or 10000 in UTC, whatever the offset. */
	CHECK(time_parse_ms("0000-01-01T00:00:00-23:59", &ms) < 0);
	CHECK(time_parse_ms("0001-01-01T00:00:00+00:01", &ms) < 0);
	CHECK(time_parse_ms("9999-12-31T23:59:59-00:01", &ms) < 0);
	CHECK(time_parse_ms("0001-01-01T00:00:00Z", &ms) == 0 &&
	      ms == TIME_MIN_MS);
	CHECK(time_parse_ms("9999-12-31T23:59:59.999Z", &ms) == 0 &&
	      ms == TIME_MAX_MS);
}

static void
test_numbers(void)
{
	const char *e;
	long long v;
	int64_t ms;

	CHECK(parse_ll("42", 1, 100, &v, &e) == 0 && v == 42);
	CHECK(parse_ll("0", 1, 100, &v, &e) < 0 && strcmp(e, "too small") == 0);
	CHECK(parse_ll("101", 1, 100, &v, &e) < 0 && strcmp(e, "too large") == 0);
	CHECK(parse_ll("4x", 1, 100, &v, &e) < 0 && strcmp(e, "invalid") == 0);
	CHECK(parse_ll("99999999999999999999", 1, 100, &v, &e) < 0);
	CHECK(parse_duration_ms("30s", &ms) == 0 && ms == 30000);
	CHECK(parse_duration_ms("5m", &ms) == 0 && ms == 300000);
	CHECK(parse_duration_ms("250ms", &ms) == 0 && ms == 250);
	CHECK(parse_duration_ms("1h", &ms) == 0 && ms == 3600000);
	CHECK(parse_duration_ms("5 m", &ms) < 0);
	CHECK(parse_duration_ms("-5s", &ms) < 0);
	CHECK(parse_duration_ms("5w", &ms) < 0);
}

static struct target *
target_from(const char *text, char *err, size_t errlen)
{
	json_t *o = json_loads(text, 0, NULL);
	struct target *t = target_from_json(o, err, errlen);

	json_decref(o);
	return t;
}

static void
test_target(void)
{
	char err[256];
	struct target *t;
	json_t *o;

	t = target_from("{\"v\":1,\"url\":\"https://example.com/\"}", err,
	                sizeof err);
	CHECK(t && strcmp(t->target, "https://example.com/") == 0);
	CHECK(t && t->timeout_ms == 10000 && t->follow_redirects &&
	      t->max_redirects == 5 && t->tls_verify);
	CHECK(t && status_expected(t, 204) && !status_expected(t, 301));
	target_free(&t);

	t = target_from("{\"target\":\"a\",\"url\":\"http://a.test/\","
	                "\"expect_status\":[200,\"3xx\",\"401-403\"],"
	                "\"timeout_ms\":500}", err, sizeof err);
	CHECK(t && status_expected(t, 200) && status_expected(t, 302) &&
	      status_expected(t, 402) && !status_expected(t, 404));
	o = t ? target_to_json(t) : NULL;
	CHECK(o && json_integer_value(json_object_get(o, "timeout_ms")) == 500);
	CHECK(o && strcmp(json_string_value(json_array_get(
	      json_object_get(o, "expect_status"), 1)), "3xx") == 0);
	json_decref(o);
	target_free(&t);

	CHECK(target_from("{\"url\":\"ftp://a.test/\"}", err, sizeof err) == NULL
	      && strstr(err, "http or https") != NULL);
	CHECK(target_from("{\"url\":\"http://a.test/\",\"timout_ms\":5}", err,
	                  sizeof err) == NULL && strstr(err, "timout_ms"));
	CHECK(target_from("{\"url\":\"http://a.test/\",\"expect_status\":\"99\"}",
	                  err, sizeof err) == NULL);
	CHECK(target_from("{\"url\":\"http://a.test/\",\"v\":2}", err,
	                  sizeof err) == NULL);
	CHECK(target_from("{\"url\":\"http://a.test/\",\"interval\":\"30\"}",
	                  err, sizeof err) == NULL && strstr(err, "interval"));
	t = target_from("{\"url\":\"http://a.test/\",\"interval\":\"30s\"}",
	                err, sizeof err);
	CHECK(t && t->interval_ms == 30000);
	target_free(&t);
	CHECK(target_from("{\"target\":\"x\"}", err, sizeof err) == NULL &&
	      strstr(err, "url"));
}

static void
test_result(void)
{
	char err[256], id[UUID_STR_LEN];
	json_t *o;

	uuid7_new(id);
	o = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:b,s:i,s:n,s:i,s:{s:i}}",
	              "v", 1, "id", id, "target", "a", "url", "http://a/",
	              "probe", "here", "started_at", "2026-11-23T10:50:00.123Z",
	              "ok", 1, "status", 200, "error_kind", "duration_ms", 12,
	              "phases", "dns_ms", 1);
	CHECK(result_validate(o, err, sizeof err) == 0);
	json_object_set_new(o, "error_kind", json_string("nonsense"));
	CHECK(result_validate(o, err, sizeof err) < 0 && strstr(err, "nonsense"));
	json_object_set_new(o, "error_kind", json_string("timeout"));
	json_object_set_new(o, "status", json_string("200"));
	CHECK(result_validate(o, err, sizeof err) < 0 && strstr(err, "status"));
	json_object_set_new(o, "status", json_null());

	/* sm-check's detail: a cut body, sizes, redirect hops, the final
	 * hop's phases, tls_error. */
	json_object_set_new(o, "truncated", json_true());
	json_object_set_new(o, "content_length", json_integer(5000));
	json_object_set_new(o, "wire_bytes", json_null());
	json_object_set_new(o, "tls_error", json_string("expired"));
	json_object_set_new(o, "hops", json_pack("[{s:s,s:i,s:s,s:f}]", "url",
	                    "http://a/", "status", 302, "location", "http://b/",
	                    "time_ms", 1.5));
	json_object_set_new(o, "final_phases", json_pack("{s:f,s:n}", "dns_ms",
	                    0.5, "tls_ms"));
	CHECK(result_validate(o, err, sizeof err) == 0);
	json_object_set_new(o, "truncated", json_string("yes"));
	CHECK(result_validate(o, err, sizeof err) < 0 && strstr(err, "truncated"));
	json_object_set_new(o, "truncated", json_false());
	json_object_set_new(o, "content_length", json_integer(-1));
	CHECK(result_validate(o, err, sizeof err) < 0 &&
	      strstr(err, "content_length"));
	json_object_set_new(o, "content_length", json_null());
	json_object_set_new(o, "hops", json_pack("[{s:s,s:i}]", "url", "x",
	                                         "status", 302));
	CHECK(result_validate(o, err, sizeof err) < 0 && strstr(err, "hops[0]"));
	json_object_set_new(o, "hops", json_object());
	CHECK(result_validate(o, err, sizeof err) < 0 && strstr(err, "array"));
	json_object_set_new(o, "hops", json_array());
	json_object_set_new(o, "final_phases", json_pack("{s:f}", "dns_ms", -1.0));
	CHECK(result_validate(o, err, sizeof err) < 0 && strstr(err, "dns_ms"));
	json_object_del(o, "final_phases");
	CHECK(result_validate(o, err, sizeof err) == 0);

	/* regex and tls hold what the schema says (and sm-pg-write stores in
	 * columns of those types): one bad member refuses the record, by
	 * its name. */
	json_object_set_new(o, "regex", json_pack("{s:s,s:b}", "pattern", "x",
	                                          "matched", 1));
	json_object_set_new(o, "tls", json_pack(
	    "{s:s,s:s,s:n,s:i,s:s,s:s,s:s,s:[s,s],s:s}", "version", "TLSv1.3",
	    "cert_not_after", "2027-01-01T00:00:00Z", "cert_not_before",
	    "cert_days_left", 12, "cert_issuer", "CN=ca", "chain_not_after",
	    "2027-01-01T00:00:00.5Z", "cert_subject", "CN=a", "cert_sans",
	    "DNS:a", "IP:127.0.0.1", "cert_sha256",
	    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:"
	    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"));
	CHECK(result_validate(o, err, sizeof err) == 0);
	{
		static const struct {
			const char *parent, *key, *value, *err;
		} bad[] = {
			{ "regex", "pattern", "null", "\"regex.pattern\" must be a string" },
			{ "regex", "pattern", "1", "\"regex.pattern\" must be a string" },
			{ "regex", "matched", "\"yes\"", "\"regex.matched\" must be true or false" },
			{ "regex", "matched", "null", "\"regex.matched\" must be true or false" },
			{ "tls", "version", "1", "\"tls.version\" must be a string or null" },
			{ "tls", "cert_issuer", "{}", "\"tls.cert_issuer\" must be a string or null" },
			{ "tls", "cert_subject", "false", "\"tls.cert_subject\" must be a string or null" },
			{ "tls", "cert_sha256", "[]", "\"tls.cert_sha256\" must be a string or null" },
			{ "tls", "cert_not_after", "\"not a time\"", "\"tls.cert_not_after\" must be an RFC 3339 time or null" },
			{ "tls", "cert_not_before", "12", "\"tls.cert_not_before\" must be an RFC 3339 time or null" },
			{ "tls", "chain_not_after", "\"2026-02-30T00:00:00Z\"", "\"tls.chain_not_after\" must be an RFC 3339 time or null" },
			{ "tls", "cert_days_left", "1.5", "\"tls.cert_days_left\" must be an integer or null" },
			{ "tls", "cert_sans", "\"DNS:a\"", "\"tls.cert_sans\" must be an array or null" },
			{ "tls", "cert_sans", "[\"DNS:a\",1]", "\"tls.cert_sans\" must hold strings only" },
			{ "tls", "cert_sans", "[{}]", "\"tls.cert_sans\" must hold strings only" },
			{ "tls", "cert_sha256", "\"AB:CD\"", "\"tls.cert_sha256\" must be a SHA-256 fingerprint" },
		};

		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			json_t *holder = json_object_get(o, bad[i].parent);
			json_t *was = json_incref(json_object_get(holder, bad[i].key));

			json_object_set_new(holder, bad[i].key,
			                    json_loads(bad[i].value, JSON_DECODE_ANY, NULL));
			CHECK(result_validate(o, err, sizeof err) < 0 &&
			      strstr(err, bad[i].err));
			json_object_set_new(holder, bad[i].key, was);
			CHECK(result_validate(o, err, sizeof err) == 0);
		}
	}
	/* Labels hold strings; counts are not negative. */
	json_object_set_new(o, "labels", json_pack("{s:s,s:i}", "team", "a", "n", 1));
	CHECK(result_validate(o, err, sizeof err) < 0 &&
	      strstr(err, "\"labels.n\" must be a string"));
	json_object_set_new(o, "labels", json_pack("{s:s}", "team", "a"));
	CHECK(result_validate(o, err, sizeof err) == 0);
	json_object_set_new(o, "bytes", json_integer(-1));
	CHECK(result_validate(o, err, sizeof err) < 0 &&
	      strstr(err, "\"bytes\" must not be negative"));
	json_object_set_new(o, "bytes", json_integer(0));
	json_object_set_new(o, "redirects", json_integer(-1));
	CHECK(result_validate(o, err, sizeof err) < 0 &&
	      strstr(err, "\"redirects\" must not be negative"));
	json_object_set_new(o, "redirects", json_null());
	json_object_set_new(o, "kafka", json_pack("{s:s,s:i,s:i}", "topic", "r",
	                                          "partition", 0, "offset", -1));
	CHECK(result_validate(o, err, sizeof err) < 0 &&
	      strstr(err, "negative partition or offset"));
	json_object_del(o, "kafka");
	CHECK(result_validate(o, err, sizeof err) == 0);
	/* Absent members and null objects are fine. */
	json_object_del(json_object_get(o, "regex"), "matched");
	json_object_clear(json_object_get(o, "tls"));
	CHECK(result_validate(o, err, sizeof err) == 0);
	json_object_set_new(o, "tls", json_null());
	json_object_set_new(o, "regex", json_null());
	CHECK(result_validate(o, err, sizeof err) == 0);

	json_object_del(o, "id");
	CHECK(result_validate(o, err, sizeof err) < 0 && strstr(err, "id"));
	json_decref(o);
}

/* Does s (NUL-terminated) hold needle? */
static bool
has(const char *s, const char *needle)
{
	return strstr(s, needle) != NULL;
}

/* Redaction on what a URL means, not on how it is written; and never on a
 * URL without a password. */
static void
test_redact_hostile(void)
{
	char e1[] = "{\"url\":\"http:\\/\\/bob:hunter2@h\\/x\"}";
	char e2[] = "{\"url\":\"http://bob:hunter2\\u0040h/x\"}";
	char e3[] = "{\"url\":\"http\\u003a//bob\\u003ahunter2@h\"}";
	char e4[] = "{\"s\":\"{\\\"url\\\":\\\"http:\\\\/\\\\/u:hunter2@h\\\"}\"}";
	char one[] = "http:/bob:hunter2@h/ and http:///bob:hunter2@h/";
	char *long_pw = xmalloc(5000), *clean, *u;

	redact_userinfo(e1);
	CHECK(!has(e1, "hunter2") && has(e1, "bob:***@h"));
	redact_userinfo(e2);
	CHECK(!has(e2, "hunter2") && has(e2, "bob:***\\u0040h/x"));
	redact_userinfo(e3);
	CHECK(!has(e3, "hunter2"));
	redact_userinfo(e4);
	CHECK(!has(e4, "hunter2"));
	redact_userinfo(one);
	CHECK(!has(one, "hunter2"));
	/* A password longer than any prefix shown, and a line cut short. */
	memcpy(long_pw, "{\"url\":\"https://bob:", 20);
	memset(long_pw + 20, 'S', 4000);
	strcpy(long_pw + 4020, "@h/\"}");
	clean = diag_clean_new(long_pw, strlen(long_pw), 80);
	CHECK(!has(clean, "SSS") && has(clean, "bob:***@h/"));
	free(clean);
	free(long_pw);
	/* One line whatever the bytes: controls, ESC, bad UTF-8, U+2028. */
	static const char bad[] =
		"a\nb\r\x1b[31mc\xff\xc3(\xe2\x80\xa8\xc2\x85\0z é";
	clean = diag_clean_new(bad, sizeof bad - 1, 0);
	CHECK(strcmp(clean, "a\\x0ab\\x0d\\x1b[31mc\\xff\\xc3(\\xe2\\x80\\xa8"
	                    "\\xc2\\x85\\x00z é") == 0);
	free(clean);
	/* Cut at max bytes, never inside a character. */
	clean = diag_clean_new("abé", 4, 3);
	CHECK(strcmp(clean, "ab...") == 0);
	free(clean);
	/* Linear on a 1 MiB line of backslashes, "\u00" or "://" (each
	 * would be quadratic if every position rescanned its run). */
	{
		static const char *const runs[] = { "\\", "\\u00", "://", ":/@" };
		size_t big = SM_MAX_LINE;
		char *line = xmalloc(big);
		struct timespec t0, t1;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (size_t r = 0; r < 4; r++) {
			for (size_t i = 0; i < big; i++)
				line[i] = runs[r][i % strlen(runs[r])];
			free(diag_clean_new(line, big, 80));
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		CHECK(t1.tv_sec - t0.tv_sec < 5);
		free(line);
	}
	/* Data: only a password changes, nothing else of the URL. */
	u = url_redact_new("http://h/p@x");
	CHECK(strcmp(u, "http://h/p@x") == 0);
	free(u);
	u = url_redact_new("https://h/?to=a:b@c#x:y@z");
	CHECK(strcmp(u, "https://h/?to=a:b@c#x:y@z") == 0);
	free(u);
	u = url_redact_new("http://h/x://bob:hunter2@h/x");
	CHECK(strcmp(u, "http://h/x://bob:hunter2@h/x") == 0);
	free(u);
	u = url_redact_new("HTTP://bob@h:8080/@");
	CHECK(strcmp(u, "HTTP://bob@h:8080/@") == 0);
	free(u);
	u = url_redact_new("HTTP://bob:hunter2@h:8080/a@b");
	CHECK(strcmp(u, "HTTP://bob:***@h:8080/a@b") == 0);
	free(u);
	u = url_redact_new("http:/bob:hunter2@h");
	CHECK(strcmp(u, "http:/bob:***@h") == 0);
	free(u);
	u = url_redact_new("http://bob:p%40ss\"w@h/");
	CHECK(strcmp(u, "http://bob:***@h/") == 0);
	free(u);
}

static void
test_redact(void)
{
	char a[] = "{\"url\":\"https://bob:hunter2@example.com/x\"}";
	char b[] = "http://u:p@h/ and ftp://x:longer-secret@y and http://h/@z";
	char c[] = "no url here, mail@example.com";

	redact_userinfo(a);
	CHECK(strcmp(a, "{\"url\":\"https://bob:***@example.com/x\"}") == 0);
	redact_userinfo(b);
	CHECK(strcmp(b, "http://u:*@h/ and ftp://x:***@y and http://h/@z") == 0);
	redact_userinfo(c);
	CHECK(strcmp(c, "no url here, mail@example.com") == 0);
	test_redact_hostile();
}

static void
test_stats_clock(void)
{
	struct stats_clock c;
	struct timespec ts = { 0, 250 * 1000000 };

	stats_clock_init(&c, 0);
	CHECK(!stats_clock_due(&c) && stats_clock_timeout_ms(&c) == -1);
	stats_clock_init(&c, 200);
	CHECK(!stats_clock_due(&c));
	CHECK(stats_clock_timeout_ms(&c) > 0 && stats_clock_timeout_ms(&c) <= 200);
	nanosleep(&ts, NULL); /* past one interval (and part of the next) */
	CHECK(stats_clock_due(&c));
	CHECK(!stats_clock_due(&c)); /* once per interval, not per call */
}

static void
test_jscan_fields(void)
{
	char err[256];
	static const char line[] =
		"{\"a\":\"x\",\"b\":{\"c\":1,\"d\":\"e\\n\"},\"f\":[1,2],"
		"\"g\":{\"h\":\"i\",\"j\":{\"c\":2}},\"n\":null,\"t\":true,"
		"\"fa\":false,\"num\":-1.5}";
	struct jscan_field f[] = {
		{ .name = "num" }, { .name = "a" }, { .name = "b" },
		{ .name = "c", .parent = "b" }, { .name = "d", .parent = "b" },
		{ .name = "f" }, { .name = "g" }, { .name = "c", .parent = "g" },
		{ .name = "c" }, { .name = "n" }, { .name = "t" },
		{ .name = "fa" },
	};
	struct jscan_field ca = { .name = "b" }, cb = { .name = "t" };

	CHECK(jscan_fields(line, strlen(line), f, 12) == JSCAN_OBJECT);
	CHECK(f[0].type == JV_NUMBER && f[0].len == 4 &&
	      memcmp(f[0].val, "-1.5", 4) == 0);
	CHECK(f[1].type == JV_STRING && f[1].len == 1 && f[1].val[0] == 'x');
	CHECK(f[2].type == JV_OBJECT && f[2].members == 2 && f[2].has_number &&
	      f[2].val[0] == '{' && f[2].val[f[2].len - 1] == '}');
	CHECK(f[3].type == JV_NUMBER && f[3].val[0] == '1');
	CHECK(f[4].type == JV_ESCAPED && f[4].len == 3);
	CHECK(f[5].type == JV_ARRAY && f[5].has_number);
	/* g.c is two levels down: only a top-level object's own fields. */
	CHECK(f[6].type == JV_OBJECT && f[6].members == 2 && f[6].has_number);
	CHECK(f[7].type == JV_NONE && f[8].type == JV_NONE);
	CHECK(f[9].type == JV_NULL && f[10].type == JV_TRUE &&
	      f[11].type == JV_FALSE);
	/* The coarse types of jscan_object. */
	CHECK(jscan_object(line, strlen(line), &ca, &cb) == JSCAN_OBJECT &&
	      ca.type == JV_COMPLEX && ca.val[0] == '{' && cb.type == JV_OTHER);
	/* Not certain: a duplicate key, trailing bytes, not an object. */
	CHECK(jscan_fields("{\"a\":1,\"a\":2}", 13, f, 1) == JSCAN_INVALID);
	CHECK(jscan_fields("{\"g\":{\"h\":1,\"h\":2}}", 19, f, 1) ==
	      JSCAN_INVALID);
	CHECK(jscan_fields("{} x", 4, f, 1) == JSCAN_INVALID);
	/* jansson's depth limit, 2048: at it certain, past it unsure. */
	for (int depth = 2048; depth <= 2049; depth++) {
		char *deep = xmalloc(2 * (size_t)depth + 8);
		size_t n = 0;

		memcpy(deep, "{\"a\":", 5);
		n = 5;
		for (int i = 1; i < depth; i++)
			deep[n++] = '[';
		for (int i = 1; i < depth; i++)
			deep[n++] = ']';
		deep[n++] = '}';
		CHECK(jscan_fields(deep, n, f, 1) ==
		      (depth == 2048 ? JSCAN_OBJECT : JSCAN_UNSURE));
		json_t *o = json_line_parse(deep, n, err, sizeof err);

		CHECK((o != NULL) == (depth == 2048));
		json_decref(o);
		free(deep);
	}
	/* A raw NUL after a number: jansson 2.14 itself takes it. */
	CHECK(jscan_fields("{\"a\":1\0}", 8, f, 1) == JSCAN_INVALID);
	CHECK(json_line_parse("{\"a\":1\0}", 8, err, sizeof err) == NULL &&
	      strstr(err, "column 7") != NULL);
	CHECK(json_line_parse("{\"a\":1.5\0 }", 11, err, sizeof err) == NULL);
	CHECK(jscan_fields("[1]", 3, f, 1) == JSCAN_UNSURE);
	CHECK(jscan_fields("{\"g\":{}}", 8, &f[6], 1) == JSCAN_OBJECT &&
	      f[6].type == JV_OBJECT && f[6].members == 0 && !f[6].has_number);
}

/* The objects of an array, one by one, with names worked out once. */
static void
test_jscan_array(void)
{
	static const char arr[] = "[ {\"u\":\"a\",\"s\":301} , {\"s\":2,"
	                          "\"x\":[{}]},{\"u\":\"b\"} ]";
	static const struct jscan_field want[] = {
		{ .name = "u" }, { .name = "s" },
	};
	struct jscan_names nm;
	struct jscan_field f[2];
	size_t pos = 0;

	jscan_names_init(&nm, want, 2);
	CHECK(jscan_array_next(arr, strlen(arr), &pos, f, &nm) == 1 &&
	      f[0].type == JV_STRING && f[0].val[0] == 'a' &&
	      f[1].type == JV_NUMBER && f[1].len == 3);
	CHECK(jscan_array_next(arr, strlen(arr), &pos, f, &nm) == 1 &&
	      f[0].type == JV_NONE && f[1].type == JV_NUMBER &&
	      f[1].val[0] == '2');
	CHECK(jscan_array_next(arr, strlen(arr), &pos, f, &nm) == 1 &&
	      f[0].type == JV_STRING && f[0].val[0] == 'b' &&
	      f[1].type == JV_NONE);
	CHECK(jscan_array_next(arr, strlen(arr), &pos, f, &nm) == 0);
	pos = 0;
	CHECK(jscan_array_next("[]", 2, &pos, f, &nm) == 0);
	/* Not an object; a key with an escape (unsure). */
	pos = 0;
	CHECK(jscan_array_next("[{},1]", 6, &pos, f, &nm) == 1 &&
	      jscan_array_next("[{},1]", 6, &pos, f, &nm) == -1);
	pos = 0;
	CHECK(jscan_array_next("[{\"\\u0075\":1}]", 14, &pos, f, &nm) == -1);
}

int
main(void)
{
	diag_init("test_lib");
	test_line_reader();
	test_line_reader_nonblocking();
	test_line_reader_max();
	test_uuid7();
	test_time();
	test_numbers();
	test_target();
	test_result();
	test_redact();
	test_stats_clock();
	test_jscan_fields();
	test_jscan_array();
	printf("1..%d\n", n_run);
	return n_failed ? 1 : 0;
}
