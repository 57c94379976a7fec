/*
 * alerts.c - the "alerts:" key of sites.yaml, validated where it is
 * written (line:column of each key and value) and normalised for sm-alert.
 *
 *   alerts:
 *     failure_threshold: 3      consecutive failures before a location is down
 *     success_threshold: 2      consecutive successes before it is up again
 *     quorum: majority          or a number of locations
 *     stale_after: 3m           default: 3 x the target's interval
 *     remind_every: 1h          default: off
 *     cert_days: 14             0: off
 *     cert_fraction: 0.33       of the certificate's lifetime, 0: off
 *     slow_ms: 2000             p95 above it over slow_window; default off
 *     slow_window: 5m
 *     flap_changes: 4           more changes than this in flap_window
 *     flap_window: 30m          is flapping; 0: off
 *     maintenance:
 *       - {start: 2026-12-24T00:00:00Z, end: 2026-12-27T00:00:00Z}
 *       - {days: [sat, sun], at: "02:00", duration: 2h, tz: Europe/Berlin}
 *
 * The JSON form keeps the names; durations become milliseconds ("5m" ->
 * 300000), quorum "majority" becomes 0, one-off windows carry start_ms and
 * end_ms, recurring ones days (bit 0 = Sunday, as tm_wday), at_min
 * (minutes after midnight), duration_ms and tz.
 */
#include "alerts.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "sm.h"
#include "suggest.h"

struct actx {
	alerts_err_fn *err;
	void *ctx;
	int nerr;
};

static void aerr(struct actx *A, const struct ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
aerr(struct actx *A, const struct ynode *n, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	A->err(A->ctx, n->at.line, n->at.col, msg);
	A->nerr++;
}

static const char *
scalar(const struct ynode *n)
{
	return ynode_text(n);
}

static bool
word_in(const char *s, const char *const *set)
{
	for (; s && *set; set++)
		if (!strcasecmp(s, *set))
			return true;
	return false;
}

static const char *const falses[] = {"false", "off", "no", NULL};
static const char *const nulls[] = {"", "~", "null", NULL};

static int
int_value(struct actx *A, const char *key, const struct ynode *v, long long lo,
          long long hi, long long *out)
{
	const char *s = scalar(v), *why;

	if (!s || parse_ll(s, lo, hi, out, &why) < 0) {
		aerr(A, v, "alerts: \"%s\" must be a whole number from %lld to "
		     "%lld", key, lo, hi);
		return -1;
	}
	return 0;
}

static int
dur_value(struct actx *A, const char *key, const struct ynode *v, bool zero_ok,
          int64_t *out)
{
	const char *s = scalar(v);

	if (s && zero_ok && (word_in(s, falses) || !strcmp(s, "0"))) {
		*out = 0;
		return 0;
	}
	if (!s || !*s || strspn(s, "0123456789") == strlen(s) ||
	    parse_duration_ms(s, out) < 0 || *out <= 0 ||
	    *out > 366LL * 86400 * 1000) {
		aerr(A, v, "alerts: \"%s\" must be a duration such as 30s, 5m, "
		     "1h%s", key, zero_ok ? " (or off)" : "");
		return -1;
	}
	return 0;
}

static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu",
                                        "fri", "sat"};

/* "mon", "monday", "daily", "weekdays", "weekends"; a bit mask or 0. */
static int
day_bits(const char *s)
{
	if (!strcasecmp(s, "daily") || !strcasecmp(s, "all"))
		return 0x7f;
	if (!strcasecmp(s, "weekdays"))
		return 0x3e;
	if (!strcasecmp(s, "weekends"))
		return 0x41;
	for (int i = 0; i < 7; i++)
		if (!strncasecmp(s, day_names[i], 3) &&
		    (s[3] == '\0' || strlen(s) >= 6))
			return 1 << i;
	return 0;
}

static bool
tz_valid(const char *tz)
{
	char path[512];
	struct stat st;

	if (!strcmp(tz, "UTC"))
		return true;
	if (!*tz || tz[0] == '/' || strstr(tz, "..") || strlen(tz) > 200)
		return false;
	snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static json_t *
window_from_yaml(struct actx *A, const struct ynode *n)
{
	static const char *const keys[] = {"start", "end", "days", "at",
	                                   "duration", "tz", "name"};
	json_t *w = json_object();
	const struct ynode *kstart = NULL, *kdays = NULL;
	int64_t start = -1, end = -1, dur = -1;
	int days = -1, at = -1, before = A->nerr;

	if (n->type != Y_MAP) {
		aerr(A, n, "alerts: a maintenance window is a mapping with "
		     "start and end, or days, at and duration");
		json_decref(w);
		return NULL;
	}
	for (size_t i = 0; i + 1 < n->n; i += 2) {
		const struct ynode *k = n->kids[i].n, *v = n->kids[i + 1].n;
		const char *key = scalar(k), *s = scalar(v), *sg;
		unsigned hh, mm;
		char c;

		if (!key) {
			aerr(A, k, "mapping keys must be strings");
			continue;
		}
		if (!strcmp(key, "start") || !strcmp(key, "end")) {
			int64_t *t = key[0] == 's' ? &start : &end;

			if (key[0] == 's')
				kstart = k;
			if (!s || time_parse_ms(s, t) < 0) {
				aerr(A, v, "alerts: maintenance \"%s\" must be an "
				     "RFC 3339 time such as 2026-12-24T22:00:00Z",
				     key);
				*t = -2;
			}
		} else if (!strcmp(key, "days")) {
			kdays = k;
			days = 0;
			if (v->type == Y_SEQ) {
				for (size_t j = 0; j < v->n; j++) {
					const struct ynode *d = v->kids[j].n;
					int b = scalar(d) ? day_bits(scalar(d)) : 0;

					if (!b)
						aerr(A, d, "alerts: maintenance \"days\": "
						     "not a weekday (mon, tue, ..., sun, "
						     "daily, weekdays, weekends)");
					days |= b;
				}
			} else if (!s || !(days = day_bits(s))) {
				aerr(A, v, "alerts: maintenance \"days\": not a "
				     "weekday (mon, tue, ..., sun, daily, weekdays, "
				     "weekends)");
			}
		} else if (!strcmp(key, "at")) {
			if (!s || sscanf(s, "%2u:%2u%c", &hh, &mm, &c) != 2 ||
			    hh > 23 || mm > 59 || strlen(s) > 5) {
				aerr(A, v, "alerts: maintenance \"at\" must be a "
				     "local time HH:MM");
			} else {
				at = (int)(hh * 60 + mm);
			}
		} else if (!strcmp(key, "duration")) {
			dur_value(A, "duration", v, false, &dur);
		} else if (!strcmp(key, "tz")) {
			if (!s || !tz_valid(s))
				aerr(A, v, "alerts: maintenance \"tz\": unknown "
				     "time zone \"%s\" (a name from the tz "
				     "database, such as Europe/Berlin)", s ? s : "");
			else
				json_object_set_new(w, "tz", json_string(s));
		} else if (!strcmp(key, "name")) {
			if (s)
				json_object_set_new(w, "name", json_string(s));
		} else if ((sg = suggest(key, keys, 7))) {
			aerr(A, k, "alerts: unknown maintenance key \"%s\" (did "
			     "you mean \"%s\"?)", key, sg);
		} else {
			aerr(A, k, "alerts: unknown maintenance key \"%s\"", key);
		}
	}
	if (A->nerr == before) {
		if (start != -1 || end != -1) {
			if (days != -1 || at != -1 || dur != -1)
				aerr(A, kstart ? kstart : n, "alerts: a maintenance "
				     "window has either start and end, or days, at "
				     "and duration");
			else if (start < 0 || end < 0)
				aerr(A, n, "alerts: a one-off maintenance window "
				     "needs both start and end");
			else if (end <= start)
				aerr(A, n, "alerts: maintenance \"end\" must be "
				     "after \"start\"");
			json_object_set_new(w, "start_ms", json_integer(start));
			json_object_set_new(w, "end_ms", json_integer(end));
		} else {
			if (at < 0 || dur < 0)
				aerr(A, kdays ? kdays : n, "alerts: a recurring "
				     "maintenance window needs at and duration");
			else if (dur > 7LL * 86400 * 1000)
				aerr(A, n, "alerts: maintenance \"duration\" must "
				     "be at most 7d");
			json_object_set_new(w, "days",
			                    json_integer(days < 0 ? 0x7f : days));
			json_object_set_new(w, "at_min", json_integer(at));
			json_object_set_new(w, "duration_ms", json_integer(dur));
		}
	}
	if (A->nerr != before) {
		json_decref(w);
		return NULL;
	}
	return w;
}

static const char *const alert_keys[] = {
	"failure_threshold", "success_threshold", "quorum", "stale_after",
	"remind_every", "cert_days", "cert_fraction", "slow_ms", "slow_window",
	"flap_changes", "flap_window", "maintenance",
};
#define NKEYS (sizeof alert_keys / sizeof *alert_keys)

static void
alerts_key(struct actx *A, json_t *out, const struct ynode *k,
           const struct ynode *v, bool merged)
{
	const char *key = scalar(k), *s = scalar(v), *sg;
	long long n;
	int64_t ms;

	if (!key) {
		aerr(A, k, "mapping keys must be strings");
		return;
	}
	if (json_object_get(out, key)) {
		if (!merged) /* a "<<" merged key yields to the mapping's own */
			aerr(A, k, "alerts: duplicate key \"%s\"", key);
		return;
	}
	if (!strcmp(key, "failure_threshold") ||
	    !strcmp(key, "success_threshold")) {
		if (int_value(A, key, v, 1, 1000, &n) == 0)
			json_object_set_new(out, key, json_integer(n));
	} else if (!strcmp(key, "quorum")) {
		if (s && !strcasecmp(s, "majority"))
			json_object_set_new(out, key, json_integer(0));
		else if (!s || parse_ll(s, 1, 64, &n, &sg) < 0)
			aerr(A, v, "alerts: \"quorum\" must be majority or a "
			     "number of locations from 1 to 64");
		else
			json_object_set_new(out, key, json_integer(n));
	} else if (!strcmp(key, "stale_after") || !strcmp(key, "slow_window") ||
	           !strcmp(key, "remind_every") || !strcmp(key, "flap_window")) {
		bool zero_ok = !strcmp(key, "remind_every") ||
		               !strcmp(key, "flap_window");

		if (dur_value(A, key, v, zero_ok, &ms) == 0)
			json_object_set_new(out, key, json_integer(ms));
	} else if (!strcmp(key, "cert_days")) {
		if (int_value(A, key, v, 0, 3650, &n) == 0)
			json_object_set_new(out, key, json_integer(n));
	} else if (!strcmp(key, "slow_ms")) {
		if (s && word_in(s, falses))
			json_object_set_new(out, key, json_integer(0));
		else if (int_value(A, key, v, 0, 3600000, &n) == 0)
			json_object_set_new(out, key, json_integer(n));
	} else if (!strcmp(key, "flap_changes")) {
		if (int_value(A, key, v, 0, 15, &n) == 0)
			json_object_set_new(out, key, json_integer(n));
	} else if (!strcmp(key, "cert_fraction")) {
		char *end;
		double d = s ? strtod(s, &end) : -1;

		if (!s || !*s || *end || !(d >= 0 && d < 1))
			aerr(A, v, "alerts: \"cert_fraction\" must be a number "
			     "from 0 to below 1 (a fraction of the certificate's "
			     "lifetime)");
		else
			json_object_set_new(out, key, json_real(d));
	} else if (!strcmp(key, "maintenance")) {
		json_t *list = json_array();

		if (v->type == Y_SEQ) {
			for (size_t j = 0; j < v->n; j++) {
				json_t *w = window_from_yaml(A, v->kids[j].n);

				if (w)
					json_array_append_new(list, w);
			}
		} else if (!(s && word_in(s, nulls))) {
			aerr(A, v, "alerts: \"maintenance\" must be a list of "
			     "windows");
		}
		json_object_set_new(out, key, list);
	} else if ((sg = suggest(key, alert_keys, NKEYS))) {
		aerr(A, k, "alerts: unknown key \"%s\" (did you mean \"%s\"?)",
		     key, sg);
	} else {
		aerr(A, k, "alerts: unknown key \"%s\"", key);
	}
}

/* The keys of mapping m into out (ymap_foreach: merged keys yield to keys
 * given before). */
struct alerts_walk {
	struct actx *A;
	json_t *out;
};

static void
alerts_pair(void *w, const struct ynode *k, const struct ynode *v, bool merged)
{
	struct alerts_walk *aw = w;

	alerts_key(aw->A, aw->out, k, v, merged);
}

static void
alerts_refuse(void *w, const struct ynode *n)
{
	struct alerts_walk *aw = w;

	if (!n->bad)
		aerr(aw->A, n, "\"<<\" merges mappings only");
	else
		aw->A->nerr++;
}

json_t *
alerts_from_yaml(const struct ynode *node, alerts_err_fn *err, void *ctx)
{
	struct actx A = {err, ctx, 0};
	json_t *out;

	if (node->bad)
		return NULL;
	if (node->type == Y_SCALAR && word_in(scalar(node), falses))
		return json_false();
	if (node->type != Y_MAP) {
		aerr(&A, node, "\"alerts\" must be a mapping (or false)");
		return NULL;
	}
	out = json_object();
	ymap_foreach(node, alerts_pair, alerts_refuse,
	             &(struct alerts_walk){ &A, out }, false);
	if (A.nerr) {
		json_decref(out);
		return NULL;
	}
	return out;
}

json_t *
alerts_merge(const json_t *defaults, const json_t *target)
{
	json_t *m;

	if (!target || json_is_false(target) || !json_is_object(defaults))
		return target ? json_incref((json_t *)target)
		              : defaults ? json_incref((json_t *)defaults) : NULL;
	m = json_copy((json_t *)defaults);
	json_object_update(m, (json_t *)target);
	return m;
}
