/*
 * rules.c - a target's alert rules from the alerts JSON that sm-schedule's
 * loader made (tools/sm-schedule/alerts.c), interned: targets that share
 * the defaults share one struct rules.  Maintenance windows in a named
 * time zone are evaluated through the system tz database (TZ + mktime).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alert.h"
#include "sm.h"

#define DAY_MS (86400LL * 1000)

static struct rules **interned;
static size_t ninterned, capinterned;

static int64_t
jint(const json_t *o, const char *k, int64_t def)
{
	const json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

static struct rules *
rules_make(const json_t *a, char *key)
{
	struct rules *r = xcalloc(1, sizeof(*r));
	const json_t *m, *w;
	size_t i;

	r->key = key;
	r->off = json_is_false(a);
	r->fail_thr = (int)jint(a, "failure_threshold", 3);
	r->ok_thr = (int)jint(a, "success_threshold", 2);
	r->quorum = (int)jint(a, "quorum", 0);
	r->stale_ms = jint(a, "stale_after", 0);
	r->remind_ms = jint(a, "remind_every", 0);
	r->cert_days = (int)jint(a, "cert_days", 14);
	r->cert_frac = json_is_number(json_object_get(a, "cert_fraction"))
	                   ? json_number_value(json_object_get(a, "cert_fraction"))
	                   : 1.0 / 3;
	r->slow_ms = jint(a, "slow_ms", 0);
	r->slow_window_ms = jint(a, "slow_window", 5 * 60 * 1000);
	r->flap_changes = (int)jint(a, "flap_changes", 4);
	r->flap_window_ms = jint(a, "flap_window", 30 * 60 * 1000);
	if (r->flap_window_ms == 0)
		r->flap_changes = 0;
	m = json_object_get(a, "maintenance");
	if (json_is_array(m) && json_array_size(m)) {
		r->nwin = json_array_size(m);
		r->win = xcalloc(r->nwin, sizeof(*r->win));
		json_array_foreach(m, i, w) {
			struct mwin *x = &r->win[i];
			const char *tz = json_string_value(json_object_get(w, "tz"));

			x->start_ms = jint(w, "start_ms", 0);
			x->end_ms = jint(w, "end_ms", 0);
			x->days = (int)jint(w, "days", 0x7f);
			x->at_min = (int)jint(w, "at_min", 0);
			x->dur_ms = jint(w, "duration_ms", 0);
			snprintf(x->tz, sizeof(x->tz), "%s",
			         tz && strcmp(tz, "UTC") ? tz : "");
		}
	}
	r->cache_lo = r->cache_hi = 0;
	return r;
}

struct rules *
rules_get(const json_t *alerts)
{
	/* JSON_ENCODE_ANY: "alerts: false" is a bare false, which
	 * json_dumps refuses to encode without it. */
	char *key = alerts ? json_dumps(alerts, JSON_COMPACT | JSON_SORT_KEYS |
	                                            JSON_ENCODE_ANY)
	                   : xstrdup("{}");

	if (!key)
		die(EX_SOFTWARE, "out of memory");
	/* Most targets share one set: look at the last ones first. */
	for (size_t i = ninterned; i-- > 0;)
		if (!strcmp(interned[i]->key, key)) {
			free(key);
			return interned[i];
		}
	if (ninterned == capinterned) {
		capinterned = capinterned ? capinterned * 2 : 16;
		interned = xrealloc(interned, capinterned * sizeof(*interned));
	}
	return interned[ninterned++] = rules_make(alerts, key);
}

void
rules_free_all(void)
{
	for (size_t i = 0; i < ninterned; i++) {
		free(interned[i]->win);
		free(interned[i]->key);
		free(interned[i]);
	}
	free(interned);
	interned = NULL;
	ninterned = capinterned = 0;
}

static void
use_tz(const char *tz)
{
	static char current[64] = "\1";

	if (!strcmp(current, tz))
		return;
	snprintf(current, sizeof(current), "%s", tz);
	setenv("TZ", *tz ? tz : "UTC", 1);
	tzset();
}

/* Whether t is in the recurring window w; *change is when that may change
 * (the end of the window t is in, or the next start). */
static bool
recurring_at(const struct mwin *w, int64_t t, int64_t *change)
{
	time_t secs = (time_t)(t / 1000);
	struct tm now, day;
	int64_t next = t + DAY_MS;
	bool in = false;

	use_tz(w->tz);
	localtime_r(&secs, &now);
	/* Windows starting up to 8 days before t (duration is at most 7 d)
	 * and up to 8 days after. */
	for (int k = -8; k <= 8; k++) {
		int64_t start, end;
		time_t st;

		day = now;
		day.tm_mday += k;
		day.tm_hour = w->at_min / 60;
		day.tm_min = w->at_min % 60;
		day.tm_sec = 0;
		day.tm_isdst = -1;
		if ((st = mktime(&day)) == (time_t)-1)
			continue;
		if (!(w->days & (1 << day.tm_wday)))
			continue;
		start = (int64_t)st * 1000;
		end = start + w->dur_ms;
		if (start <= t && t < end) {
			in = true;
			if (end < next)
				next = end;
		} else if (start > t && start < next) {
			next = start;
		}
	}
	*change = next;
	return in;
}

bool
rules_in_maintenance(struct rules *r, int64_t t)
{
	int64_t hi = INT64_MAX;
	bool in = false;

	if (!r->nwin)
		return false;
	if (t >= r->cache_lo && t < r->cache_hi)
		return r->cache_in;
	for (size_t i = 0; i < r->nwin; i++) {
		const struct mwin *w = &r->win[i];
		int64_t change;

		if (w->end_ms) {
			if (t >= w->start_ms && t < w->end_ms) {
				in = true;
				change = w->end_ms;
			} else {
				change = t < w->start_ms ? w->start_ms : INT64_MAX;
			}
		} else {
			in |= recurring_at(w, t, &change);
		}
		if (change < hi)
			hi = change;
	}
	/* In any window: the answer holds until the earliest change, which
	 * for overlapping windows is conservative (recomputed then). */
	r->cache_lo = t;
	r->cache_hi = hi;
	r->cache_in = in;
	return in;
}
