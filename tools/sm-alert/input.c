/*
 * input.c - result records into struct result.  The fast path is one
 * jscan_fields() pass over the line (no tree, no allocation); it takes
 * only lines it is sure of: every field result_validate() checks (those
 * sm-alert reads and the optional ones it does not) of the type
 * result_validate() wants.  Anything else (escapes in names, odd types,
 * lines the scanner is unsure of) goes through jansson and
 * result_validate(), the reference, which refuses what it must with the
 * field's name: sm-alert then refuses the records sm-pg-write refuses.
 */
#include <stdlib.h>
#include <string.h>

#include "alert.h"
#include "jsonscan.h"
#include "sm.h"

/* In the order sm-check writes them: jscan_fields looks for the next
 * wanted name first. */
enum {
	F_V, F_ID, F_TARGET, F_URL, F_LABELS, F_PROBE, F_SCHED, F_STARTED,
	F_OK, F_STATUS, F_KIND, F_ERROR, F_TLS_ERROR, F_DURATION, F_PHASES,
	F_P_DNS, F_P_CONNECT, F_P_TLS, F_P_TTFB, F_P_TRANSFER, F_P_REGEX,
	F_BYTES, F_TRUNCATED, F_CLEN, F_WIRE, F_HTTPV, F_RIP, F_REDIRECTS,
	F_FINAL_URL, F_HOPS, F_FPHASES, F_FP_DNS, F_FP_CONNECT, F_FP_TLS,
	F_FP_TTFB, F_FP_TRANSFER, F_REGEX, F_RX_PATTERN, F_RX_MATCHED, F_TLS,
	F_TLS_VERSION, F_CNA, F_CNB, F_CDAYS, F_CISSUER, F_CHNA, F_CSUBJECT,
	F_CSANS, F_CSHA, F_KAFKA, F_KTOPIC, F_KPART, F_KOFF, NF
};

static const struct jscan_field proto[NF] = {
	[F_V] = {.name = "v"},
	[F_ID] = {.name = "id"},
	[F_TARGET] = {.name = "target"},
	[F_URL] = {.name = "url"},
	[F_LABELS] = {.name = "labels"},
	[F_PROBE] = {.name = "probe"},
	[F_SCHED] = {.name = "scheduled_at"},
	[F_STARTED] = {.name = "started_at"},
	[F_OK] = {.name = "ok"},
	[F_STATUS] = {.name = "status"},
	[F_KIND] = {.name = "error_kind"},
	[F_ERROR] = {.name = "error"},
	[F_TLS_ERROR] = {.name = "tls_error"},
	[F_DURATION] = {.name = "duration_ms"},
	[F_PHASES] = {.name = "phases"},
	[F_P_DNS] = {.name = "dns_ms", .parent = "phases"},
	[F_P_CONNECT] = {.name = "connect_ms", .parent = "phases"},
	[F_P_TLS] = {.name = "tls_ms", .parent = "phases"},
	[F_P_TTFB] = {.name = "ttfb_ms", .parent = "phases"},
	[F_P_TRANSFER] = {.name = "transfer_ms", .parent = "phases"},
	[F_P_REGEX] = {.name = "regex_ms", .parent = "phases"},
	[F_BYTES] = {.name = "bytes"},
	[F_TRUNCATED] = {.name = "truncated"},
	[F_CLEN] = {.name = "content_length"},
	[F_WIRE] = {.name = "wire_bytes"},
	[F_HTTPV] = {.name = "http_version"},
	[F_RIP] = {.name = "remote_ip"},
	[F_REDIRECTS] = {.name = "redirects"},
	[F_FINAL_URL] = {.name = "final_url"},
	[F_HOPS] = {.name = "hops"},
	[F_FPHASES] = {.name = "final_phases"},
	[F_FP_DNS] = {.name = "dns_ms", .parent = "final_phases"},
	[F_FP_CONNECT] = {.name = "connect_ms", .parent = "final_phases"},
	[F_FP_TLS] = {.name = "tls_ms", .parent = "final_phases"},
	[F_FP_TTFB] = {.name = "ttfb_ms", .parent = "final_phases"},
	[F_FP_TRANSFER] = {.name = "transfer_ms", .parent = "final_phases"},
	[F_REGEX] = {.name = "regex"},
	[F_RX_PATTERN] = {.name = "pattern", .parent = "regex"},
	[F_RX_MATCHED] = {.name = "matched", .parent = "regex"},
	[F_TLS] = {.name = "tls"},
	[F_TLS_VERSION] = {.name = "version", .parent = "tls"},
	[F_CNA] = {.name = "cert_not_after", .parent = "tls"},
	[F_CNB] = {.name = "cert_not_before", .parent = "tls"},
	[F_CDAYS] = {.name = "cert_days_left", .parent = "tls"},
	[F_CISSUER] = {.name = "cert_issuer", .parent = "tls"},
	[F_CHNA] = {.name = "chain_not_after", .parent = "tls"},
	[F_CSUBJECT] = {.name = "cert_subject", .parent = "tls"},
	[F_CSANS] = {.name = "cert_sans", .parent = "tls"},
	[F_CSHA] = {.name = "cert_sha256", .parent = "tls"},
	[F_KAFKA] = {.name = "kafka"},
	[F_KTOPIC] = {.name = "topic", .parent = "kafka"},
	[F_KPART] = {.name = "partition", .parent = "kafka"},
	[F_KOFF] = {.name = "offset", .parent = "kafka"},
};

/* The kinds an optional field may be of for the scan to be sure that
 * result_validate takes it (result_rules in lib/record.c). */
enum {
	K_ABSENT = 1 << 0, K_NULL = 1 << 1, K_STR = 1 << 2,
	K_INT = 1 << 3,    /* a number without fraction or exponent */
	K_NNINT = 1 << 4,  /* the same, not negative */
	K_BOOL = 1 << 5, K_OBJ = 1 << 6,
	K_TIME = 1 << 7,   /* an unescaped string that is an RFC 3339 time */
	K_ARR = 1 << 8,
};

static const struct {
	unsigned char f;
	unsigned short kinds;
} optional[] = {
	{F_LABELS, K_ABSENT | K_NULL | K_OBJ},
	{F_SCHED, K_ABSENT | K_NULL | K_TIME},
	{F_TLS_ERROR, K_ABSENT | K_NULL | K_STR},
	{F_PHASES, K_ABSENT | K_NULL | K_OBJ},
	/* Counts: result_validate refuses them below zero. */
	{F_BYTES, K_ABSENT | K_NULL | K_NNINT},
	{F_TRUNCATED, K_ABSENT | K_BOOL},
	{F_CLEN, K_ABSENT | K_NULL | K_NNINT},
	{F_WIRE, K_ABSENT | K_NULL | K_NNINT},
	{F_HTTPV, K_ABSENT | K_NULL | K_STR},
	{F_RIP, K_ABSENT | K_NULL | K_STR},
	{F_REDIRECTS, K_ABSENT | K_NULL | K_NNINT},
	{F_FINAL_URL, K_ABSENT | K_NULL | K_STR},
	{F_FPHASES, K_ABSENT | K_NULL | K_OBJ},
	{F_REGEX, K_ABSENT | K_NULL | K_OBJ},
	{F_RX_PATTERN, K_ABSENT | K_STR},
	{F_RX_MATCHED, K_ABSENT | K_BOOL},
	{F_TLS, K_ABSENT | K_NULL | K_OBJ},
	{F_TLS_VERSION, K_ABSENT | K_NULL | K_STR},
	{F_CDAYS, K_ABSENT | K_NULL | K_INT},
	{F_CISSUER, K_ABSENT | K_NULL | K_STR},
	{F_CSUBJECT, K_ABSENT | K_NULL | K_STR},
	/* Of strings only, and a fingerprint: checked apart
	 * (result_scan_strings_sure). */
	{F_CSANS, K_ABSENT | K_NULL | K_ARR},
	{F_CSHA, K_ABSENT | K_NULL | K_STR},
};

/* A non-negative integer of at most 18 digits, or -1. */
static long long
count(const char *s, size_t n)
{
	long long v = 0;

	if (n == 0 || n > 18)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int
span_time(const char *s, size_t n, int64_t *ms)
{
	char buf[48];

	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return time_parse_ms(buf, ms);
}

/* A time or null/absent (0). */
static int
opt_time(const struct jscan_field *f, int64_t *ms)
{
	*ms = 0;
	if (f->type == JV_NONE || f->type == JV_NULL)
		return 0;
	if (f->type != JV_STRING)
		return -1;
	return span_time(f->val, f->len, ms);
}

static int
small_int(const char *s, size_t n, int *out)
{
	int v = 0;

	if (n == 0 || n > 4)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int
kind_of(const char *s, size_t n, int *kind)
{
	char buf[24];
	enum error_kind k;

	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (error_kind_parse(buf, &k) < 0)
		return -1;
	*kind = (int)k;
	return 0;
}

/* A number without fraction or exponent: an integer to jansson. */
static bool
is_int(const struct jscan_field *f)
{
	if (f->type != JV_NUMBER)
		return false;
	for (size_t i = 0; i < f->len; i++)
		if (f->val[i] == '.' || f->val[i] == 'e' || f->val[i] == 'E')
			return false;
	return true;
}

/* The kinds f is of; whether it is a time only when time asks (a
 * parse). */
static unsigned
kind_of_field(const struct jscan_field *f, bool time)
{
	int64_t ms;

	switch (f->type) {
	case JV_NONE: return K_ABSENT;
	case JV_NULL: return K_NULL;
	case JV_STRING:
		return K_STR | (time && span_time(f->val, f->len, &ms) == 0
		                ? K_TIME : 0);
	case JV_ESCAPED: return K_STR;
	case JV_TRUE:
	case JV_FALSE: return K_BOOL;
	case JV_NUMBER:
		return is_int(f) ? K_INT | (f->val[0] != '-' ? K_NNINT : 0) : 0;
	case JV_OBJECT: return K_OBJ;
	case JV_ARRAY: return K_ARR;
	default: return 0;
	}
}

/* phases and final_phases: every member one the scan looked for (the
 * fields first..last), each a number not negative or null. */
static bool
phases_sure(const struct jscan_field *f, int obj, int first, int last)
{
	size_t known = 0;

	if (f[obj].type != JV_OBJECT)
		return true;
	for (int i = first; i <= last; i++) {
		if (f[i].type == JV_NONE)
			continue;
		known++;
		if (f[i].type != JV_NULL &&
		    (f[i].type != JV_NUMBER || f[i].val[0] == '-'))
			return false;
	}
	return f[obj].members == known;
}

/* A hop's members, looked for in each element of hops. */
enum { H_URL, H_STATUS, H_LOCATION, H_TIME, NH };

static const struct jscan_field hop_proto[NH] = {
	[H_URL] = {.name = "url"},
	[H_STATUS] = {.name = "status"},
	[H_LOCATION] = {.name = "location"},
	[H_TIME] = {.name = "time_ms"},
};

static bool
is_str(const struct jscan_field *f)
{
	return f->type == JV_STRING || f->type == JV_ESCAPED;
}

/* hops, absent or an array of objects that hold url, status, location
 * and time_ms of the types validate_hops (lib/record.c) wants.  Each
 * redirect followed brings one: read here rather than by the tree, which
 * would cost ten times the scan. */
static bool
hops_sure(const struct jscan_field *h)
{
	static struct jscan_names names;
	struct jscan_field f[NH];
	size_t pos = 0;
	int r;

	if (h->type != JV_ARRAY)
		return h->type == JV_NONE;
	if (names.n == 0)
		jscan_names_init(&names, hop_proto, NH);
	while ((r = jscan_array_next(h->val, h->len, &pos, f, &names)) == 1)
		if (!is_str(&f[H_URL]) || !is_int(&f[H_STATUS]) ||
		    !is_str(&f[H_LOCATION]) ||
		    (f[H_TIME].type != JV_NULL &&
		     (f[H_TIME].type != JV_NUMBER || f[H_TIME].val[0] == '-')))
			return false;
	return r == 0;
}

/* The fields sm-alert does not read, as result_validate would have them. */
static bool
optional_sure(const struct jscan_field *f)
{
	for (size_t i = 0; i < sizeof(optional) / sizeof(optional[0]); i++)
		if (!(kind_of_field(&f[optional[i].f],
		                    optional[i].kinds & K_TIME) &
		      optional[i].kinds))
			return false;
	if (!result_scan_strings_sure(&f[F_LABELS], &f[F_TLS_ERROR],
	                              &f[F_CSANS], &f[F_CSHA]))
		return false;
	return phases_sure(f, F_PHASES, F_P_DNS, F_P_REGEX) &&
	       phases_sure(f, F_FPHASES, F_FP_DNS, F_FP_TRANSFER) &&
	       hops_sure(&f[F_HOPS]);
}

static bool
fast(const char *line, size_t len, struct result *r)
{
	static struct jscan_names names;
	struct jscan_field f[NF];
	char *end;

	/* The names' lengths and masks, once (with 45 names, working them
	 * out per line, and copying proto, cost a tenth of the scan). */
	if (names.n == 0)
		jscan_names_init(&names, proto, NF);
	if (jscan_fields_named(line, len, f, &names) != JSCAN_OBJECT)
		return false;
	if (f[F_V].type != JV_NUMBER || f[F_V].len != 1 || f[F_V].val[0] != '1')
		return false;
	if (f[F_ID].type != JV_STRING ||
	    !uuid_parse(f[F_ID].val, f[F_ID].len, r->id))
		return false;
	if (f[F_TARGET].type != JV_STRING || f[F_TARGET].len == 0 ||
	    f[F_TARGET].len > SM_MAX_TARGET_NAME ||
	    f[F_PROBE].type != JV_STRING || f[F_PROBE].len == 0 ||
	    f[F_PROBE].len > SM_MAX_PROBE_NAME)
		return false;
	/* Not read here, but required: a result without it is refused by
	 * result_validate, as sm-pg-write refuses it. */
	if (f[F_URL].type != JV_STRING && f[F_URL].type != JV_ESCAPED)
		return false;
	r->target = f[F_TARGET].val;
	r->target_len = f[F_TARGET].len;
	r->probe = f[F_PROBE].val;
	r->probe_len = f[F_PROBE].len;
	if (f[F_STARTED].type != JV_STRING ||
	    span_time(f[F_STARTED].val, f[F_STARTED].len, &r->started_ms) < 0)
		return false;
	if (f[F_OK].type == JV_TRUE)
		r->ok = true;
	else if (f[F_OK].type == JV_FALSE)
		r->ok = false;
	else
		return false;
	r->status = -1;
	if (f[F_STATUS].type == JV_NUMBER) {
		if (small_int(f[F_STATUS].val, f[F_STATUS].len, &r->status) < 0)
			return false;
	} else if (f[F_STATUS].type != JV_NULL) {
		return false;
	}
	r->kind = 0;
	if (f[F_KIND].type == JV_STRING) {
		if (kind_of(f[F_KIND].val, f[F_KIND].len, &r->kind) < 0)
			return false;
	} else if (f[F_KIND].type != JV_NULL) {
		return false;
	}
	r->error = NULL;
	r->error_len = 0;
	r->error_escaped = false;
	if (f[F_ERROR].type == JV_STRING || f[F_ERROR].type == JV_ESCAPED) {
		r->error = f[F_ERROR].val;
		r->error_len = f[F_ERROR].len;
		r->error_escaped = f[F_ERROR].type == JV_ESCAPED;
	} else if (f[F_ERROR].type != JV_NULL && f[F_ERROR].type != JV_NONE) {
		return false;
	}
	if (f[F_DURATION].type != JV_NUMBER || f[F_DURATION].val[0] == '-')
		return false;
	r->duration_ms = strtod(f[F_DURATION].val, &end);
	r->kafka = NULL;
	r->kafka_len = 0;
	r->ktopic = NULL;
	r->ktopic_len = 0;
	r->kpart = r->koff = -1;
	if (f[F_KAFKA].type == JV_OBJECT) {
		/* result_validate wants all three, of these types, the
		 * numbers not negative; an escaped topic is left to the
		 * tree. */
		if (f[F_KTOPIC].type != JV_STRING || !is_int(&f[F_KPART]) ||
		    !is_int(&f[F_KOFF]) || f[F_KPART].val[0] == '-' ||
		    f[F_KOFF].val[0] == '-')
			return false;
		r->kafka = f[F_KAFKA].val;
		r->kafka_len = f[F_KAFKA].len;
		/* Huge: valid, but not coordinates sm-kafka-sub writes. */
		if ((r->kpart = count(f[F_KPART].val, f[F_KPART].len)) >= 0 &&
		    (r->koff = count(f[F_KOFF].val, f[F_KOFF].len)) >= 0) {
			r->ktopic = f[F_KTOPIC].val;
			r->ktopic_len = f[F_KTOPIC].len;
		} else {
			r->kpart = r->koff = -1;
		}
	} else if (f[F_KAFKA].type != JV_NONE) {
		return false;
	}
	if (opt_time(&f[F_CNA], &r->cert_na) < 0 ||
	    opt_time(&f[F_CNB], &r->cert_nb) < 0 ||
	    opt_time(&f[F_CHNA], &r->chain_na) < 0)
		return false;
	return optional_sure(f);
}

/* The slow path's kafka object, as text (valid until the next call). */
static char *kafka_text;

static int64_t
tree_time(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	int64_t ms = 0;

	if (s && time_parse_ms(s, &ms) < 0)
		ms = 0;
	return ms;
}

int
input_decode(const char *line, size_t len, struct result *r, json_t **tree,
             char *err, size_t errlen)
{
	const json_t *v, *tls;
	const char *s;
	json_t *o;

	*tree = NULL;
	if (fast(line, len, r))
		return 0;
	if (!(o = json_line_parse(line, len, err, errlen)))
		return -1;
	if (result_validate(o, err, errlen) < 0)
		goto bad;
	s = json_string_value(json_object_get(o, "id"));
	uuid_parse(s, strlen(s), r->id);
	r->target = json_string_value(json_object_get(o, "target"));
	r->target_len = json_string_length(json_object_get(o, "target"));
	/* result_validate refused an empty target or probe. */
	v = json_object_get(o, "probe");
	r->probe = json_string_value(v);
	r->probe_len = json_string_length(v);
	if (time_parse_ms(json_string_value(json_object_get(o, "started_at")),
	                  &r->started_ms) < 0) {
		snprintf(err, errlen, "field \"started_at\" must be an RFC 3339 "
		         "time");
		goto bad;
	}
	r->ok = json_is_true(json_object_get(o, "ok"));
	/* What the scan reads (four digits at most); a status past them,
	 * or below 0, is none sm-alert could report (the state keeps 16
	 * bits of it): as null. */
	v = json_object_get(o, "status");
	r->status = json_is_integer(v) && json_integer_value(v) >= 0 &&
	            json_integer_value(v) <= 9999
	            ? (int)json_integer_value(v) : -1;
	r->kind = 0;
	if ((s = json_string_value(json_object_get(o, "error_kind"))))
		kind_of(s, strlen(s), &r->kind);
	v = json_object_get(o, "error");
	r->error = json_string_value(v);
	r->error_len = r->error ? json_string_length(v) : 0;
	r->error_escaped = false;
	r->duration_ms = json_number_value(json_object_get(o, "duration_ms"));
	r->kafka = NULL;
	r->kafka_len = 0;
	r->ktopic = NULL;
	r->ktopic_len = 0;
	r->kpart = r->koff = -1;
	free(kafka_text);
	kafka_text = NULL;
	if ((v = json_object_get(o, "kafka")) &&
	    (kafka_text = json_dumps(v, JSON_COMPACT))) {
		const json_t *kt = json_object_get(v, "topic"),
		             *kp = json_object_get(v, "partition"),
		             *ko = json_object_get(v, "offset");

		r->kafka = kafka_text;
		r->kafka_len = strlen(kafka_text);
		if (json_is_string(kt) && json_is_integer(kp) &&
		    json_is_integer(ko) && json_integer_value(kp) >= 0 &&
		    json_integer_value(ko) >= 0) {
			r->ktopic = json_string_value(kt);
			r->ktopic_len = json_string_length(kt);
			r->kpart = json_integer_value(kp);
			r->koff = json_integer_value(ko);
		}
	}
	tls = json_object_get(o, "tls");
	r->cert_na = tree_time(tls, "cert_not_after");
	r->cert_nb = tree_time(tls, "cert_not_before");
	r->chain_na = tree_time(tls, "chain_not_after");
	*tree = o;
	return 0;
bad:
	json_decref(o);
	return -1;
}
