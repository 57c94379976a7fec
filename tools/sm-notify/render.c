/*
 * render.c - what each kind of receiver is sent for one event or a group
 * of events: the webhook's JSON, Slack's text and blocks, Mattermost's and
 * Teams' cards, a PagerDuty Events API v2 event, an e-mail a person can
 * act on, exec's NDJSON.  Also the Idempotency-Key and the HMAC-SHA256
 * signature.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "sm.h"
#include "notify.h"

/* ---- a growing string ---------------------------------------------------- */

struct buf {
	char *s;
	size_t len, cap;
};

static void __attribute__((format(printf, 2, 3)))
bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL,
		              b->s ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			die(EX_SOFTWARE, "vsnprintf failed");
		if (b->s && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		b->cap = (b->len + (size_t)n + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
}

static char *
bdone(struct buf *b)
{
	if (!b->s)
		return xstrdup("");
	return b->s;
}

/* ---- event fields ------------------------------------------------------ */

static const char *
str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static const char *
str_or(const json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s && *s ? s : dflt;
}

/* A number field as text ("" when absent). */
static void
num_text(const json_t *o, const char *key, char *out, size_t len)
{
	const json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		snprintf(out, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(out, len, "%.0f", json_real_value(v));
	else
		snprintf(out, len, "%s", json_string_value(v) ? json_string_value(v)
		                                             : "?");
}

static const char *
kind_title(const char *kind)
{
	static const struct { const char *k, *t; } titles[] = {
		{"down", "DOWN"}, {"up", "UP"}, {"reminder", "STILL DOWN"},
		{"stale", "STALE"}, {"cert_expiring", "CERTIFICATE EXPIRING"},
		{"slow", "SLOW"}, {"flapping", "FLAPPING"},
		{"resolved", "RESOLVED"},
	};

	for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
		if (!strcmp(kind, titles[i].k))
			return titles[i].t;
	return kind;
}

static bool
is_open_kind(const char *kind)
{
	return strcmp(kind, "up") && strcmp(kind, "resolved");
}

/* "3d 4h", "12m 5s", "800ms" */
static void
human_duration(int64_t ms, char *out, size_t len)
{
	int64_t s = ms / 1000;

	if (ms < 0)
		snprintf(out, len, "?");
	else if (ms < 1000)
		snprintf(out, len, "%lldms", (long long)ms);
	else if (s < 60)
		snprintf(out, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(out, len, "%lldm %llds", (long long)(s / 60),
		         (long long)(s % 60));
	else if (s < 86400)
		snprintf(out, len, "%lldh %lldm", (long long)(s / 3600),
		         (long long)(s % 3600 / 60));
	else
		snprintf(out, len, "%lldd %lldh", (long long)(s / 86400),
		         (long long)(s % 86400 / 3600));
}

/* The locations as "a, b (2 of 3 locations)". */
static void
locations_text(const json_t *ev, struct buf *b)
{
	const json_t *locs = json_object_get(ev, "locations"), *v;
	const json_t *total = json_object_get(ev, "locations_total");
	size_t i, n = json_array_size(locs);

	json_array_foreach(locs, i, v)
		bprintf(b, "%s%s", i ? ", " : "", json_string_value(v) ?
		        json_string_value(v) : "?");
	if (n == 0)
		bprintf(b, "(no location given)");
	if (json_is_integer(total))
		bprintf(b, " (%zu of %" JSON_INTEGER_FORMAT " locations)", n,
		        json_integer_value(total));
}

static void
reason_text(const json_t *ev, struct buf *b)
{
	const json_t *r = json_object_get(ev, "reason");
	const char *kind = str(r, "error_kind"), *err = str(r, "error");

	if (*kind && *err)
		bprintf(b, "%s: %s", kind, err);
	else if (*err || *kind)
		bprintf(b, "%s", *err ? err : kind);
	else
		bprintf(b, "(no error given)");
}

char *
render_summary(const json_t *ev)
{
	struct buf b = {0};
	const char *kind = str(ev, "event");
	const json_t *d = json_object_get(ev, "detail");
	char x[64], y[64];

	bprintf(&b, "%s: %s", kind_title(kind), str_or(ev, "target", "?"));
	if (!strcmp(kind, "down") || !strcmp(kind, "reminder")) {
		bprintf(&b, " (");
		reason_text(ev, &b);
		bprintf(&b, ")");
	} else if (!strcmp(kind, "up")) {
		bprintf(&b, " is back");
	} else if (!strcmp(kind, "resolved")) {
		bprintf(&b, " (%s)", str_or(ev, "resolution", "ended"));
	} else if (!strcmp(kind, "cert_expiring")) {
		num_text(d, "days_left", x, sizeof x);
		bprintf(&b, " (%s certificate: %s days left)",
		        str_or(d, "which", "leaf"), x);
	} else if (!strcmp(kind, "slow")) {
		num_text(d, "p95_ms", x, sizeof x);
		num_text(d, "slow_ms", y, sizeof y);
		bprintf(&b, " (p95 %sms over %sms)", x, y);
	} else if (!strcmp(kind, "flapping")) {
		num_text(d, "changes", x, sizeof x);
		bprintf(&b, " (%s changes in %s)", x, str_or(d, "window", "?"));
	} else if (!strcmp(kind, "stale")) {
		bprintf(&b, " (no results from %s since %s)",
		        str_or(d, "location", "a location"),
		        str_or(d, "last_seen", "?"));
	}
	return bdone(&b);
}

/* ---- the link template ------------------------------------------------- */

static void
url_escape(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || strchr("-._~", c))
			bprintf(b, "%c", c);
		else
			bprintf(b, "%%%02X", c);
	}
}

/* {target} {incident} {event} {id} percent-encoded; {url} as it is. */
static char *
link_for(const struct receiver *r, const struct config *c, const json_t *ev)
{
	const char *t = r->link ? r->link : c ? c->link : NULL;
	struct buf b = {0};

	if (!t)
		return NULL;
	while (*t) {
		const char *close = *t == '{' ? strchr(t, '}') : NULL;

		if (close) {
			size_t n = (size_t)(close - t - 1);
			char name[32];

			if (n < sizeof name) {
				memcpy(name, t + 1, n);
				name[n] = '\0';
				if (!strcmp(name, "url")) {
					bprintf(&b, "%s", str(ev, "url"));
					t = close + 1;
					continue;
				}
				if (!strcmp(name, "target") || !strcmp(name, "incident") ||
				    !strcmp(name, "event") || !strcmp(name, "id")) {
					url_escape(&b, str(ev, name));
					t = close + 1;
					continue;
				}
			}
		}
		bprintf(&b, "%c", *t++);
	}
	return bdone(&b);
}

/* ---- plain text for people (e-mail, exec, Teams) ------------------------ */

static void
time_and_age(struct buf *b, const char *at, int64_t now_ms)
{
	int64_t ms;
	char d[32];

	if (!*at) {
		bprintf(b, "unknown");
		return;
	}
	bprintf(b, "%s", at);
	if (time_parse_ms(at, &ms) == 0 && now_ms >= ms) {
		human_duration(now_ms - ms, d, sizeof d);
		bprintf(b, " (%s ago)", d);
	}
}

static void
event_text(const struct receiver *r, const struct config *c,
           const json_t *ev, int64_t now_ms, struct buf *b)
{
	char *sum = render_summary(ev), *link = link_for(r, c, ev);
	const json_t *d = json_object_get(ev, "detail"), *labels, *v;
	const char *last_ok = str(ev, "last_ok"), *k;

	if (!*last_ok)
		last_ok = str(d, "last_ok");
	bprintf(b, "%s\n\n", sum);
	bprintf(b, "  What:      %s (target %s)\n", str_or(ev, "url", "?"),
	        str_or(ev, "target", "?"));
	bprintf(b, "  Event:     %s at %s\n", str(ev, "event"),
	        str_or(ev, "at", "?"));
	bprintf(b, "  Since:     ");
	time_and_age(b, str(ev, "since"), now_ms);
	bprintf(b, "\n  From:      ");
	locations_text(ev, b);
	bprintf(b, "\n  Error:     ");
	reason_text(ev, b);
	bprintf(b, "\n  Last good: ");
	time_and_age(b, last_ok, now_ms);
	bprintf(b, "\n");
	labels = json_object_get(ev, "labels");
	if (json_object_size(labels)) {
		bool first = true;

		bprintf(b, "  Labels:    ");
		json_object_foreach((json_t *)labels, k, v) {
			char *s = json_is_string(v) ? xstrdup(json_string_value(v))
			                            : json_dumps(v, JSON_ENCODE_ANY);

			bprintf(b, "%s%s=%s", first ? "" : ", ", k, s ? s : "?");
			free(s);
			first = false;
		}
		bprintf(b, "\n");
	}
	if (link)
		bprintf(b, "  Link:      %s\n", link);
	bprintf(b, "  Incident:  %s (event %s)\n", str_or(ev, "incident", "?"),
	        str_or(ev, "id", "?"));
	free(sum);
	free(link);
}

/* "3 events: 2 down, 1 up" */
static void
group_title(json_t *const *events, size_t n, struct buf *b)
{
	static const char *const kinds[] = {
		"down", "up", "reminder", "stale", "cert_expiring", "slow",
		"flapping", "resolved",
	};
	bool first = true;

	bprintf(b, "%zu events: ", n);
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		size_t count = 0;

		for (size_t i = 0; i < n; i++)
			count += !strcmp(str(events[i], "event"), kinds[k]);
		if (count) {
			bprintf(b, "%s%zu %s", first ? "" : ", ", count, kinds[k]);
			first = false;
		}
	}
}

/* ---- the kinds ----------------------------------------------------------- */

static json_t *
event_copy(const json_t *ev)
{
	return json_deep_copy(ev);
}

static char *
dump(json_t *j, size_t *len)
{
	char *s = json_dumps(j, JSON_COMPACT);

	if (!s)
		die(EX_SOFTWARE, "json_dumps failed");
	json_decref(j);
	*len = strlen(s);
	return s;
}

static void
render_webhook(json_t *const *events, size_t n, const char *key,
               struct rendered *out)
{
	json_t *o, *arr;

	if (n == 1) {
		out->body = dump(json_incref(events[0]), &out->len);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, event_copy(events[i]));
	o = json_pack("{s:i, s:s, s:o}", "v", 1, "group", key, "events", arr);
	out->body = dump(o, &out->len);
}

static void
mrkdwn_escape(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '&')
			bprintf(b, "&amp;");
		else if (*s == '<')
			bprintf(b, "&lt;");
		else if (*s == '>')
			bprintf(b, "&gt;");
		else
			bprintf(b, "%c", *s);
	}
}

/* One line per event, Slack mrkdwn or Markdown. */
static void
chat_line(const struct receiver *r, const struct config *c,
          const json_t *ev, bool slack, struct buf *b)
{
	char *sum = render_summary(ev), *link = link_for(r, c, ev);
	struct buf loc = {0};

	locations_text(ev, &loc);
	if (slack) {
		bprintf(b, "• *");
		mrkdwn_escape(b, sum);
		bprintf(b, "* since %s from ", str_or(ev, "since", "?"));
		mrkdwn_escape(b, loc.s ? loc.s : "");
		if (link) {
			bprintf(b, " <");
			mrkdwn_escape(b, link);
			bprintf(b, "|details>");
		}
	} else {
		bprintf(b, "- **%s** since %s from %s", sum,
		        str_or(ev, "since", "?"), loc.s ? loc.s : "");
		if (link)
			bprintf(b, " [details](%s)", link);
	}
	bprintf(b, "\n");
	free(loc.s);
	free(sum);
	free(link);
}

/* Slack's section text holds at most 3000 characters: list what fits. */
#define CHAT_TEXT_MAX 2900

static char *
chat_text(const struct receiver *r, const struct config *c,
          json_t *const *events, size_t n, bool slack)
{
	struct buf b = {0};

	for (size_t i = 0; i < n; i++) {
		size_t before = b.len;

		chat_line(r, c, events[i], slack, &b);
		if (b.len > CHAT_TEXT_MAX && i > 0) {
			b.len = before;
			b.s[b.len] = '\0';
			bprintf(&b, "… and %zu more\n", n - i);
			break;
		}
	}
	return bdone(&b);
}

static char *
title_of(json_t *const *events, size_t n)
{
	struct buf b = {0};

	if (n == 1)
		return render_summary(events[0]);
	group_title(events, n, &b);
	return bdone(&b);
}

static void
render_slack(const struct receiver *r, const struct config *c,
             json_t *const *events, size_t n, struct rendered *out)
{
	char *title = title_of(events, n), *text = chat_text(r, c, events, n, true);
	char head[151];
	json_t *o;

	/* A header block's text holds at most 150 characters. */
	snprintf(head, sizeof head, "%s", title);
	o = json_pack("{s:s, s:[{s:s, s:{s:s, s:s}}, {s:s, s:{s:s, s:s}}]}",
	              "text", title,
	              "blocks",
	              "type", "header", "text", "type", "plain_text", "text", head,
	              "type", "section", "text", "type", "mrkdwn", "text", text);
	if (!o) /* invalid UTF-8 in a header cut: send without blocks */
		o = json_pack("{s:s}", "text", title);
	out->body = dump(o, &out->len);
	free(title);
	free(text);
}

static void
render_mattermost(const struct receiver *r, const struct config *c,
                  json_t *const *events, size_t n, struct rendered *out)
{
	char *title = title_of(events, n), *text = chat_text(r, c, events, n, false);
	char *all = xasprintf("#### %s\n%s", title, text);

	out->body = dump(json_pack("{s:s}", "text", all), &out->len);
	free(title);
	free(text);
	free(all);
}

static void
render_teams(const struct receiver *r, const struct config *c,
             json_t *const *events, size_t n, struct rendered *out)
{
	char *title = title_of(events, n), *text = chat_text(r, c, events, n, false);
	bool open = false;

	for (size_t i = 0; i < n; i++)
		open |= is_open_kind(str(events[i], "event"));
	out->body = dump(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
	                           "@type", "MessageCard",
	                           "@context", "https://schema.org/extensions",
	                           "themeColor", open ? "D70000" : "2EB886",
	                           "summary", title, "title", title,
	                           "text", text), &out->len);
	free(title);
	free(text);
}

static void
render_pagerduty(const struct receiver *r, const struct config *c,
                 const json_t *ev, struct rendered *out)
{
	const char *kind = str(ev, "event");
	char *sum = render_summary(ev), *link = link_for(r, c, ev);
	const char *sev = r->severity ? r->severity
	                : !strcmp(kind, "down") || !strcmp(kind, "reminder")
	                      ? "critical" : "warning";
	json_t *o;

	if (is_open_kind(kind)) {
		char cut[1025];

		snprintf(cut, sizeof cut, "%s", sum); /* summary: 1024 max */
		o = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:o}}",
		              "routing_key", r->routing_key,
		              "event_action", "trigger",
		              "dedup_key", str(ev, "incident"),
		              "payload", "summary", cut,
		              "source", str_or(ev, "target", "sitemon"),
		              "severity", sev,
		              "timestamp", str_or(ev, "at", ""),
		              "custom_details", event_copy(ev));
		if (!o)
			o = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s}}",
			              "routing_key", r->routing_key,
			              "event_action", "trigger",
			              "dedup_key", str(ev, "incident"),
			              "payload", "summary", "sitemon event",
			              "source", str_or(ev, "target", "sitemon"),
			              "severity", sev);
		if (!*str(ev, "at"))
			json_object_del(json_object_get(o, "payload"), "timestamp");
		if (link)
			json_object_set_new(o, "links", json_pack("[{s:s, s:s}]",
			                    "href", link, "text", "sitemon"));
	} else {
		o = json_pack("{s:s, s:s, s:s}", "routing_key", r->routing_key,
		              "event_action", "resolve",
		              "dedup_key", str(ev, "incident"));
	}
	out->body = dump(o, &out->len);
	free(sum);
	free(link);
}

/* RFC 2047 for a Subject that is not ASCII. */
static void
header_text(struct buf *b, const char *s)
{
	bool ascii = true;
	size_t n = strlen(s);

	for (const char *p = s; *p; p++)
		ascii &= (unsigned char)*p < 0x80;
	if (ascii) {
		for (const char *p = s; *p; p++)
			bprintf(b, "%c", (unsigned char)*p < 0x20 ? ' ' : *p);
		return;
	}
	{
		unsigned char *enc = xmalloc(4 * (n / 3 + 1) + 1);

		EVP_EncodeBlock(enc, (const unsigned char *)s, (int)n);
		bprintf(b, "=?UTF-8?B?%s?=", enc);
		free(enc);
	}
}

static void
render_email(const struct receiver *r, const struct config *c,
             json_t *const *events, size_t n, int64_t now_ms,
             const char *key, struct rendered *out)
{
	struct buf b = {0};
	char *title = title_of(events, n), date[64], host[64];
	time_t now = (time_t)(now_ms / 1000);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if (gethostname(host, sizeof host) != 0)
		snprintf(host, sizeof host, "sitemon");
	host[sizeof host - 1] = '\0';
	bprintf(&b, "From: %s\n", r->from);
	bprintf(&b, "To: ");
	for (size_t i = 0; i < r->n_to; i++)
		bprintf(&b, "%s%s", i ? ", " : "", r->to[i]);
	bprintf(&b, "\nSubject: ");
	header_text(&b, "[sitemon] ");
	header_text(&b, title);
	bprintf(&b, "\nDate: %s\n", date);
	/* The same events give the same Message-ID: mail systems that
	 * deduplicate on it drop a repeat. */
	bprintf(&b, "Message-ID: <");
	for (const char *p = key; *p; p++)
		bprintf(&b, "%c", isalnum((unsigned char)*p) || *p == '-' ? *p : '.');
	bprintf(&b, "@sitemon>\n");
	bprintf(&b, "X-Sitemon-Key: %s\n", key);
	bprintf(&b, "MIME-Version: 1.0\n"
	            "Content-Type: text/plain; charset=utf-8\n"
	            "Content-Transfer-Encoding: 8bit\n\n");
	if (n > 1) {
		group_title(events, n, &b);
		bprintf(&b, "\n\n");
	}
	for (size_t i = 0; i < n; i++) {
		if (i)
			bprintf(&b, "\n");
		event_text(r, c, events[i], now_ms, &b);
	}
	bprintf(&b, "\n-- \nsitemon on %s\n", host);
	/* SMTP wants CRLF line ends. */
	{
		char *crlf = xmalloc(b.len * 2 + 1);
		size_t o = 0;

		for (size_t i = 0; i < b.len; i++) {
			if (b.s[i] == '\n')
				crlf[o++] = '\r';
			crlf[o++] = b.s[i];
		}
		crlf[o] = '\0';
		free(b.s);
		out->body = crlf;
		out->len = o;
	}
	free(title);
}

static void
render_exec(json_t *const *events, size_t n, struct rendered *out)
{
	struct buf b = {0};

	for (size_t i = 0; i < n; i++) {
		char *s = json_dumps(events[i], JSON_COMPACT);

		bprintf(&b, "%s\n", s ? s : "{}");
		free(s);
	}
	out->body = bdone(&b);
	out->len = b.len;
}

/* ---- keys and signatures ------------------------------------------------- */

static char *
hex(const unsigned char *d, size_t n)
{
	char *s = xmalloc(n * 2 + 1);

	for (size_t i = 0; i < n; i++)
		sprintf(s + 2 * i, "%02x", d[i]);
	return s;
}

/* One event: its id.  A group: "group-" and the SHA-256 of the ids, so a
 * resend of the same group carries the same key. */
static char *
key_for(json_t *const *events, size_t n)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	EVP_MD_CTX *ctx;
	char *h, *k;

	if (n == 1)
		return xstrdup(str(events[0], "id"));
	ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		die(EX_SOFTWARE, "sha256 failed");
	for (size_t i = 0; i < n; i++) {
		const char *id = str(events[i], "id");

		EVP_DigestUpdate(ctx, id, strlen(id) + 1);
	}
	EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	h = hex(md, 16);
	k = xasprintf("group-%s", h);
	free(h);
	return k;
}

static char *
sign(const struct receiver *r, const char *body, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char *h, *s;

	if (!HMAC(EVP_sha256(), r->secret, (int)r->secret_len,
	          (const unsigned char *)body, len, md, &mdlen))
		die(EX_SOFTWARE, "HMAC-SHA256 failed");
	h = hex(md, mdlen);
	s = xasprintf("sha256=%s", h);
	free(h);
	return s;
}

void
render(const struct receiver *r, const struct config *c,
       json_t *const *events, size_t n, int64_t now_ms, struct rendered *out)
{
	memset(out, 0, sizeof *out);
	out->key = key_for(events, n);
	switch (r->kind) {
	case RK_WEBHOOK:
		render_webhook(events, n, out->key, out);
		break;
	case RK_SLACK:
		render_slack(r, c, events, n, out);
		break;
	case RK_MATTERMOST:
		render_mattermost(r, c, events, n, out);
		break;
	case RK_TEAMS:
		render_teams(r, c, events, n, out);
		break;
	case RK_PAGERDUTY:
		render_pagerduty(r, c, events[0], out);
		break;
	case RK_EMAIL:
		render_email(r, c, events, n, now_ms, out->key, out);
		break;
	case RK_EXEC:
		render_exec(events, n, out);
		break;
	}
	if (r->secret)
		out->signature = sign(r, out->body, out->len);
}

void
render_raw(const struct receiver *r, const char *body, size_t len,
           const char *key, struct rendered *out)
{
	memset(out, 0, sizeof *out);
	out->body = (char *)body;
	out->len = len;
	out->key = (char *)key;
	out->borrowed = true;
	if (r->secret)
		out->signature = sign(r, out->body, out->len);
}

void
rendered_clear(struct rendered *m)
{
	if (!m->borrowed) {
		free(m->body);
		free(m->key);
	}
	free(m->signature);
	memset(m, 0, sizeof *m);
}

char *
url_shown_new(const char *url)
{
	const char *p = strstr(url, "://"), *host, *end;
	char *s;

	if (!p)
		return xstrdup("***");
	host = p + 3;
	/* userinfo: drop it whole */
	end = host + strcspn(host, "/?#");
	{
		const char *at = memchr(host, '@', (size_t)(end - host));

		if (at)
			host = at + 1;
	}
	s = xasprintf("%.*s%.*s%s", (int)(p + 3 - url), url, (int)(end - host),
	              host, *end ? "/***" : "");
	return s;
}
