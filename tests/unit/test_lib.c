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

	json_object_del(o, "id");
	CHECK(result_validate(o, err, sizeof err) < 0 && strstr(err, "id"));
	json_decref(o);
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
	CHECK(jscan_fields("{\"a\":1,\"a\":2}", 13, f, 1) == JSCAN_UNSURE);
	CHECK(jscan_fields("{\"g\":{\"h\":1,\"h\":2}}", 19, f, 1) ==
	      JSCAN_UNSURE);
	CHECK(jscan_fields("{} x", 4, f, 1) == JSCAN_UNSURE);
	CHECK(jscan_fields("[1]", 3, f, 1) == JSCAN_UNSURE);
	CHECK(jscan_fields("{\"g\":{}}", 8, &f[6], 1) == JSCAN_OBJECT &&
	      f[6].type == JV_OBJECT && f[6].members == 0 && !f[6].has_number);
}

int
main(void)
{
	diag_init("test_lib");
	test_line_reader();
	test_line_reader_nonblocking();
	test_uuid7();
	test_time();
	test_numbers();
	test_target();
	test_result();
	test_redact();
	test_stats_clock();
	test_jscan_fields();
	printf("1..%d\n", n_run);
	return n_failed ? 1 : 0;
}
