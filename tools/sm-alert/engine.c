/*
 * engine.c - sm-alert's state and decisions.
 *
 * State is kept per target (struct tgt) and per target and location
 * (struct lst, 40 bytes).  Each location's state moves only forward in
 * started_at: a result at or before the newest one seen from its location
 * is a replay or out of order and changes nothing (but brings back the
 * events it caused, from the outbox).
 *
 * A location is down for a target after failure_threshold failures in a
 * row and up again after success_threshold successes in a row.  The
 * target is down when at least quorum of the locations that reported
 * within stale_after are down ("actual" state).  What was announced (an
 * open down incident) follows the actual state at reconcile(), which does
 * nothing inside a maintenance window or while the target is flapping, so
 * that a target still down when either ends is announced then.
 *
 * Incident ids are a hash of (target, kind, location, since): the same
 * results give the same ids, whatever restarts happened in between.
 *
 * Partitions: each target remembers the Kafka partition of its newest
 * result, each partition the newest offset seen.  With peers (-P), a
 * partition that comes to us after a gap in its offsets first takes the
 * state of its targets from the peer checkpoint furthest ahead on it
 * (handover()), and a partition a peer is ahead on is left to it
 * (engine_check_peers()): a rebalance moves the state with the
 * partition, so an open incident keeps its since and so its id.
 *
 * Locations: a location silent for every target is one incident of the
 * whole group.  The headers carry each process's watermark and locations;
 * every process merges the peers' newest result from each location and
 * judges silence alike, but only the owner (the process holding the lowest
 * partition) announces it, and a new owner takes over the open incident
 * from the old owner's header (engine_check_peers(), locations_settle()).
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alert.h"
#include "../sm-schedule/config.h"
#include "sm.h"

#define DAY_MS (86400LL * 1000)

enum { L_SEEN = 1, L_DOWN = 2, L_STALE = 4 };
enum { T_FLAPPING = 1, T_SLOW = 2 };

struct lst {                /* per target and location */
	int64_t last_ms;        /* started_at of the newest result */
	int64_t streak_ms;      /* first failure of the current streak */
	unsigned char id[16];   /* the newest result's id */
	uint16_t fails, oks;    /* in a row */
	uint16_t status;        /* of the newest failure (0: none) */
	uint8_t kind;           /* its error_kind */
	uint8_t flags;          /* L_* */
};

struct tx {                 /* only for targets that changed state or
	                           had a certificate alert */
	int64_t flap_t[FLAP_RING];
	int64_t flap_since;
	int64_t cert_na, cert_since;
	uint8_t nflap, cert_open, cert_which;
};

struct slowring {           /* only for targets with slow_ms */
	int64_t since;
	int64_t t[SLOW_RING];
	uint32_t d[SLOW_RING];
	uint8_t n, pos;
};

struct tgt {
	char *name, *url, *labels; /* labels: compact JSON */
	int64_t stale_ms;
	struct rules *r;
	struct lst *locs;
	struct tx *x;
	struct slowring *sr;
	int64_t down_since;     /* actual: down since (0: up) */
	int64_t ann_since;      /* announced down incident's since (0: none) */
	int64_t ann_at;
	uint32_t reminders;     /* the last reminder's number */
	int16_t part;           /* index in engine.parts of the partition of
	                           its newest result (-1: none known) */
	uint8_t nlocs, flags;
};

struct loc {
	char *name;
	int64_t last_any;       /* newest result from it, any target (ours
	                           or a peer's, from its checkpoint header) */
	int64_t alive_since;    /* first result after it was silent */
	int64_t ann_since;      /* judged silent since (0: not silent); its
	                           "stale" incident when mine */
	int64_t closed;         /* the since of the newest silent incident
	                           closed (here or by a peer) */
	bool mine;              /* ann_since was announced by us (or taken
	                           over from a peer): we close it */
};

struct obx {
	unsigned char id[16];
	int16_t part;           /* as tgt.part, of the result */
	char *text;
};

/* A Kafka partition that results came from (their "kafka" object). */
struct part {
	char *topic;
	int32_t partition;
	int64_t offset;         /* the newest offset seen (-1: none, or its
	                           targets were dropped for a peer's) */
};

#define MAX_PARTS 4096

struct engine {
	FILE *out;
	struct tgt *t;
	size_t nt;
	uint32_t *hidx;         /* open addressing: index + 1, 0 empty */
	size_t hcap;
	struct loc loc[MAX_LOCATIONS];
	size_t nloc, last_loc;
	int64_t loc_stale_ms;   /* a location silent this long is stale */
	int64_t watermark, last_scan, scan_every;
	int64_t tnow;           /* the time of the target being decided on:
	                           its own newest result (results of one
	                           target share a partition, so this is in
	                           order even when partitions are not) */
	struct obx *ob;
	size_t ob_max, ob_n, ob_pos;
	const struct result *cur;
	int16_t cur_part;
	struct part *parts;
	size_t nparts;
	char *self, *peers;     /* own checkpoint, peers' (a glob pattern) */
	bool owner;             /* location-wide incidents are ours */
	int64_t peer_wm;        /* the lowest watermark of the peers that hold
	                           partitions (INT64_MAX: none) */
	unsigned long events;
	int out_err;
};

/* ---- hashing ------------------------------------------------------------ */

static uint64_t
fnv(const void *p, size_t n, uint64_t h)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t
mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t
name_hash(const char *s, size_t n)
{
	return mix(fnv(s, n, 0xcbf29ce484222325ULL));
}

/* 32 lowercase hex digits from (target, kind, location, since). */
static void
incident_id(const char *target, const char *kind, const char *loc,
            int64_t since, char out[33])
{
	uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
	const char *parts[3] = {target, kind, loc ? loc : ""};

	for (int i = 0; i < 3; i++) {
		a = fnv(parts[i], strlen(parts[i]) + 1, a);
		b = fnv(parts[i], strlen(parts[i]) + 1, b ^ 0x5bd1e995);
	}
	a = mix(fnv(&since, sizeof(since), a));
	b = mix(fnv(&since, sizeof(since), b) ^ a);
	snprintf(out, 33, "%016llx%016llx", (unsigned long long)a,
	         (unsigned long long)b);
}

/* ---- targets and locations ---------------------------------------------- */

static struct tgt *
find_target(struct engine *e, const char *name, size_t n)
{
	size_t mask = e->hcap - 1, i;

	if (!e->hcap)
		return NULL;
	for (i = name_hash(name, n) & mask; e->hidx[i]; i = (i + 1) & mask) {
		struct tgt *t = &e->t[e->hidx[i] - 1];

		if (!strncmp(t->name, name, n) && t->name[n] == '\0')
			return t;
	}
	return NULL;
}

static void
index_targets(struct engine *e)
{
	free(e->hidx);
	for (e->hcap = 16; e->hcap < e->nt * 2; e->hcap *= 2)
		;
	e->hidx = xcalloc(e->hcap, sizeof(*e->hidx));
	for (size_t k = 0; k < e->nt; k++) {
		size_t mask = e->hcap - 1;
		size_t i = name_hash(e->t[k].name, strlen(e->t[k].name)) & mask;

		while (e->hidx[i])
			i = (i + 1) & mask;
		e->hidx[i] = (uint32_t)(k + 1);
	}
}

/* A location we know, or -1. */
static int
loc_lookup(struct engine *e, const char *name, size_t n)
{
	struct loc *l = &e->loc[e->last_loc];

	if (e->nloc && !strncmp(l->name, name, n) && l->name[n] == '\0')
		return (int)e->last_loc;
	for (size_t i = 0; i < e->nloc; i++)
		if (!strncmp(e->loc[i].name, name, n) &&
		    e->loc[i].name[n] == '\0')
			return (int)(e->last_loc = i);
	return -1;
}

/* A location, new if need be; -1 when there are MAX_LOCATIONS already. */
static int
find_loc(struct engine *e, const char *name, size_t n)
{
	int li = loc_lookup(e, name, n);

	if (li >= 0)
		return li;
	if (e->nloc == MAX_LOCATIONS)
		return -1;
	memset(&e->loc[e->nloc], 0, sizeof(e->loc[0]));
	e->loc[e->nloc].name = xstrndup(name, n);
	return (int)(e->last_loc = e->nloc++);
}

static struct lst *
tloc(struct tgt *t, int i)
{
	if (i >= t->nlocs) {
		t->locs = xrealloc(t->locs, (size_t)(i + 1) * sizeof(*t->locs));
		memset(t->locs + t->nlocs, 0,
		       (size_t)(i + 1 - t->nlocs) * sizeof(*t->locs));
		t->nlocs = (uint8_t)(i + 1);
	}
	return &t->locs[i];
}

static struct tx *
tx(struct tgt *t)
{
	if (!t->x)
		t->x = xcalloc(1, sizeof(*t->x));
	return t->x;
}

/* Reported within stale_after of now. */
static bool
fresh(const struct tgt *t, const struct lst *l, int64_t now)
{
	return (l->flags & L_SEEN) && l->last_ms + t->stale_ms >= now;
}

static int
fresh_count(const struct tgt *t, int64_t now)
{
	int n = 0;

	for (int i = 0; i < t->nlocs; i++)
		n += fresh(t, &t->locs[i], now);
	return n;
}

/* ---- events ------------------------------------------------------------- */

static void
uuid_text(const unsigned char id[16], char out[UUID_STR_LEN])
{
	static const char hx[] = "0123456789abcdef";
	char *o = out;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hx[id[i] >> 4];
		*o++ = hx[id[i] & 15];
	}
	*o = '\0';
}

static void
outbox_add(struct engine *e, const char *text)
{
	struct obx *b;

	if (!e->ob_max || !e->cur)
		return;
	if (!e->ob)
		e->ob = xcalloc(e->ob_max, sizeof(*e->ob));
	b = &e->ob[e->ob_pos];
	free(b->text);
	memcpy(b->id, e->cur->id, 16);
	b->part = e->cur_part;
	b->text = xstrdup(text);
	e->ob_pos = (e->ob_pos + 1) % e->ob_max;
	if (e->ob_n < e->ob_max)
		e->ob_n++;
}

/* A replayed result: write again what it caused, oldest first. */
static void
outbox_replay(struct engine *e, const unsigned char id[16])
{
	for (size_t k = 0; k < e->ob_n; k++) {
		size_t i = (e->ob_pos + e->ob_max - e->ob_n + k) % e->ob_max;

		if (e->ob[i].text && !memcmp(e->ob[i].id, id, 16) &&
		    fputs(e->ob[i].text, e->out) == EOF)
			e->out_err = -1;
	}
}

struct ev {
	const char *kind;       /* event */
	const char *ikind;      /* what the incident id hashes (default kind) */
	const char *loc;        /* for per-location incidents */
	int64_t since, at;
	int n;                  /* reminder number, or 0 */
	uint64_t locs;          /* bit mask of locations */
	const struct result *why; /* the deciding result, or NULL */
	const char *resolution;
	json_t *detail;         /* stolen */
};

static json_t *
reason_of(const struct result *r)
{
	json_t *o = json_object();
	const char *k = error_kind_name((enum error_kind)r->kind);

	json_object_set_new(o, "error_kind", k ? json_string(k) : json_null());
	if (r->error) {
		json_t *s = NULL;

		if (r->error_escaped) {
			json_t *w = json_loadb(r->error - 1, r->error_len + 2,
			                       JSON_DECODE_ANY, NULL);

			if (json_is_string(w))
				s = json_incref(w);
			json_decref(w);
		} else {
			s = json_stringn(r->error, r->error_len);
		}
		if (s)
			json_object_set_new(o, "error", s);
	}
	if (r->status >= 0)
		json_object_set_new(o, "status", json_integer(r->status));
	return o;
}

/* The reason of a location's newest failure, from its state alone. */
static json_t *
reason_of_loc(const struct lst *l)
{
	json_t *o = json_object();
	const char *k = error_kind_name((enum error_kind)l->kind);

	json_object_set_new(o, "error_kind", k ? json_string(k) : json_null());
	if (l->status)
		json_object_set_new(o, "status", json_integer(l->status));
	return o;
}

static void
emit(struct engine *e, struct tgt *t, const struct ev *v)
{
	char inc[33], at[TIME_STR_LEN], since[TIME_STR_LEN], err[256];
	char uid[UUID_STR_LEN];
	const char *name = t ? t->name : "*";
	json_t *o, *locs = json_array(), *res = json_array(), *reason = NULL;
	char *id, *text;

	incident_id(name, v->ikind ? v->ikind : v->kind, v->loc, v->since, inc);
	if (v->n)
		id = xasprintf("%s/%s/%d", inc, v->kind, v->n);
	else
		id = xasprintf("%s/%s", inc, v->kind);
	time_format_ms(v->at, at);
	time_format_ms(v->since, since);
	for (size_t i = 0; i < e->nloc; i++) {
		if (!(v->locs & (1ULL << i)))
			continue;
		json_array_append_new(locs, json_string(e->loc[i].name));
		if (t && (int)i < t->nlocs && (t->locs[i].flags & L_SEEN)) {
			uuid_text(t->locs[i].id, uid);
			json_array_append_new(res, json_string(uid));
			if (!reason && !v->why && (t->locs[i].flags & L_DOWN))
				reason = reason_of_loc(&t->locs[i]);
		}
	}
	if (v->why)
		reason = reason_of(v->why);
	o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:i, s:o}",
	              "v", 1, "id", id, "event", v->kind, "incident", inc,
	              "target", name, "at", at, "since", since, "locations",
	              locs, "locations_total",
	              t ? fresh_count(t, e->tnow) : (int)e->nloc, "results",
	              res);
	if (!o)
		die(EX_SOFTWARE, "cannot build an event");
	if (t) {
		json_t *lab = json_loads(t->labels, 0, NULL);

		json_object_set_new(o, "url", json_string(t->url));
		json_object_set_new(o, "labels", lab ? lab : json_object());
	}
	if (reason)
		json_object_set_new(o, "reason", reason);
	if (v->resolution)
		json_object_set_new(o, "resolution", json_string(v->resolution));
	if (v->detail)
		json_object_set_new(o, "detail", v->detail);
	if (event_validate(o, err, sizeof(err)) < 0)
		die(EX_SOFTWARE, "an event of mine is invalid: %s", err);
	if (!(text = json_dumps(o, JSON_COMPACT)))
		die(EX_SOFTWARE, "out of memory");
	json_decref(o);
	free(id);
	{
		size_t n = strlen(text);

		text = xrealloc(text, n + 2);
		text[n] = '\n';
		text[n + 1] = '\0';
	}
	if (fputs(text, e->out) == EOF)
		e->out_err = -1;
	outbox_add(e, text);
	free(text);
	e->events++;
}

/* ---- decisions ---------------------------------------------------------- */

static uint64_t
down_mask(const struct tgt *t, int64_t now)
{
	uint64_t m = 0;

	for (int i = 0; i < t->nlocs; i++)
		if (fresh(t, &t->locs[i], now) && (t->locs[i].flags & L_DOWN))
			m |= 1ULL << i;
	return m;
}

static uint64_t
fresh_mask(const struct tgt *t, int64_t now)
{
	uint64_t m = 0;

	for (int i = 0; i < t->nlocs; i++)
		if (fresh(t, &t->locs[i], now))
			m |= 1ULL << i;
	return m;
}

static bool
in_maintenance(struct tgt *t, int64_t at)
{
	return rules_in_maintenance(t->r, at);
}

/* An actual change of state: counts towards flapping. */
static void
transition(struct engine *e, struct tgt *t, int64_t at)
{
	struct tx *x;
	int n = 0;
	int64_t oldest = at;

	if (!t->r->flap_changes || in_maintenance(t, at))
		return;
	x = tx(t);
	memmove(x->flap_t + 1, x->flap_t,
	        (FLAP_RING - 1) * sizeof(x->flap_t[0]));
	x->flap_t[0] = at;
	if (x->nflap < FLAP_RING)
		x->nflap++;
	for (int i = 0; i < x->nflap; i++)
		if (x->flap_t[i] > at - t->r->flap_window_ms) {
			n++;
			oldest = x->flap_t[i];
		}
	if (n > t->r->flap_changes && !(t->flags & T_FLAPPING)) {
		struct ev v = {.kind = "flapping", .since = oldest, .at = at,
		               .locs = fresh_mask(t, e->tnow)};
		char w[32];

		config_format_duration(t->r->flap_window_ms, w, sizeof(w));
		v.detail = json_pack("{s:i, s:s}", "changes", n, "window", w);
		t->flags |= T_FLAPPING;
		x->flap_since = oldest;
		emit(e, t, &v);
	}
}

/* The actual state from the locations' states. */
static void
evaluate(struct engine *e, struct tgt *t, int64_t at)
{
	int64_t now = e->tnow, since = INT64_MAX;
	int total = 0, ndown = 0, q;
	bool down;

	for (int i = 0; i < t->nlocs; i++) {
		const struct lst *l = &t->locs[i];

		if (!fresh(t, l, now))
			continue;
		total++;
		if (l->flags & L_DOWN) {
			ndown++;
			if (l->streak_ms < since)
				since = l->streak_ms;
		}
	}
	/* No location reporting: unknown, not up; the state stays. */
	if (total == 0)
		return;
	q = t->r->quorum ? t->r->quorum : total / 2 + 1;
	down = total > 0 && ndown >= q;
	if (down && !t->down_since) {
		t->down_since = since;
		transition(e, t, at);
	} else if (!down && t->down_since) {
		t->down_since = 0;
		transition(e, t, at);
	}
}

/* Make what was announced follow the actual state. */
static void
reconcile(struct engine *e, struct tgt *t, int64_t at, const struct result *why)
{
	struct ev v = {.at = at};

	if (t->r->off || in_maintenance(t, at))
		return;
	if (t->flags & T_FLAPPING) {
		struct tx *x = tx(t);

		if (at - x->flap_t[0] <= t->r->flap_window_ms)
			return;
		v.kind = "resolved";
		v.ikind = "flapping";
		v.resolution = "ended";
		v.since = x->flap_since;
		v.locs = fresh_mask(t, e->tnow);
		t->flags &= (uint8_t)~T_FLAPPING;
		emit(e, t, &v);
		v = (struct ev){.at = at};
	}
	if (t->down_since && !t->ann_since) {
		t->ann_since = t->down_since;
		t->ann_at = at;
		t->reminders = 0;
		v.kind = "down";
		v.since = t->ann_since;
		v.locs = down_mask(t, e->tnow);
		v.why = why && !why->ok ? why : NULL;
		emit(e, t, &v);
	} else if (!t->down_since && t->ann_since) {
		v.kind = "up";
		v.ikind = "down";
		v.since = t->ann_since;
		v.locs = fresh_mask(t, e->tnow);
		v.why = why && why->ok ? why : NULL;
		t->ann_since = 0;
		t->reminders = 0;
		emit(e, t, &v);
	} else if (t->ann_since && t->r->remind_ms &&
	           /* divided, not multiplied: no count can overflow it */
	           (at - t->ann_at) / t->r->remind_ms >=
	               (int64_t)t->reminders + 1) {
		t->reminders = (uint32_t)((at - t->ann_at) / t->r->remind_ms);
		v.kind = "reminder";
		v.ikind = "down";
		v.n = t->reminders;
		v.since = t->ann_since;
		v.locs = down_mask(t, e->tnow);
		emit(e, t, &v);
	}
}

static void
stale_recovered(struct engine *e, struct tgt *t, int li, int64_t at)
{
	struct lst *l = &t->locs[li];
	struct ev v = {.kind = "resolved", .ikind = "stale",
	               .loc = e->loc[li].name, .since = l->last_ms, .at = at,
	               .locs = 1ULL << li, .resolution = "recovered"};

	l->flags &= (uint8_t)~L_STALE;
	if (!t->r->off)
		emit(e, t, &v);
}

static void
location_recovered(struct engine *e, int li, int64_t at)
{
	struct loc *L = &e->loc[li];
	struct ev v = {.kind = "resolved", .ikind = "stale", .loc = L->name,
	               .since = L->ann_since, .at = at, .locs = 1ULL << li,
	               .resolution = "recovered"};

	L->alive_since = at;
	L->ann_since = 0;
	if (!L->mine)
		return;
	L->mine = false;
	if (v.since > L->closed)
		L->closed = v.since;
	v.detail = json_pack("{s:s}", "location", L->name);
	emit(e, NULL, &v);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void
check_slow(struct engine *e, struct tgt *t, const struct result *r)
{
	struct slowring *s;
	uint32_t d[SLOW_RING];
	int n = 0;
	uint32_t p95;

	if (!t->r->slow_ms || !r->ok)
		return;
	if (!t->sr)
		t->sr = xcalloc(1, sizeof(*t->sr));
	s = t->sr;
	s->t[s->pos] = r->started_ms;
	s->d[s->pos] = r->duration_ms > 4e9 ? 4000000000u
	                                    : (uint32_t)r->duration_ms;
	s->pos = (uint8_t)((s->pos + 1) % SLOW_RING);
	if (s->n < SLOW_RING)
		s->n++;
	for (int i = 0; i < s->n; i++)
		if (s->t[i] > r->started_ms - t->r->slow_window_ms)
			d[n++] = s->d[i];
	if (n < 5 || in_maintenance(t, r->started_ms) || t->r->off)
		return;
	qsort(d, (size_t)n, sizeof(d[0]), cmp_u32);
	p95 = d[(n * 95 + 99) / 100 - 1];
	if (!(t->flags & T_SLOW) && p95 > t->r->slow_ms) {
		struct ev v = {.kind = "slow", .since = r->started_ms,
		               .at = r->started_ms,
		               .locs = fresh_mask(t, e->tnow)};

		v.detail = json_pack("{s:i, s:I}", "p95_ms", (int)p95, "slow_ms",
		                     (json_int_t)t->r->slow_ms);
		t->flags |= T_SLOW;
		s->since = r->started_ms;
		emit(e, t, &v);
	} else if ((t->flags & T_SLOW) && p95 * 10 < t->r->slow_ms * 8) {
		/* hysteresis: back under 80% of slow_ms */
		struct ev v = {.kind = "resolved", .ikind = "slow",
		               .since = s->since, .at = r->started_ms,
		               .locs = fresh_mask(t, e->tnow),
		               .resolution = "recovered"};

		v.detail = json_pack("{s:i, s:I}", "p95_ms", (int)p95, "slow_ms",
		                     (json_int_t)t->r->slow_ms);
		t->flags &= (uint8_t)~T_SLOW;
		emit(e, t, &v);
	}
}

/* Once per certificate: a certificate is known by its not_after. */
static void
check_cert(struct engine *e, struct tgt *t, const struct result *r, int li)
{
	int64_t thr = (int64_t)t->r->cert_days * DAY_MS, na = 0;
	int which = 0;
	struct tx *x = t->x;

	if (!r->cert_na || !t->r->cert_days || t->r->off ||
	    in_maintenance(t, r->started_ms))
		return;
	if (t->r->cert_frac > 0 && r->cert_nb && r->cert_na > r->cert_nb) {
		int64_t f = (int64_t)((double)(r->cert_na - r->cert_nb) *
		                      t->r->cert_frac);

		if (f < thr)
			thr = f;
	}
	if (r->cert_na - r->started_ms < thr) {
		na = r->cert_na;
		which = 1;
	} else if (r->chain_na && r->chain_na < r->cert_na &&
	           r->chain_na - r->started_ms <
	               (int64_t)t->r->cert_days * DAY_MS) {
		na = r->chain_na;
		which = 2;
	}
	if (x && x->cert_open && x->cert_na != na &&
	    x->cert_na != r->cert_na && x->cert_na != r->chain_na) {
		struct ev v = {.kind = "resolved", .ikind = "cert_expiring",
		               .since = x->cert_since, .at = r->started_ms,
		               .locs = 1ULL << li, .resolution = "renewed"};
		char na_s[TIME_STR_LEN], sk[24];

		snprintf(sk, sizeof(sk), "%lld", (long long)x->cert_na);
		v.loc = sk;

		time_format_ms(x->cert_na, na_s);
		v.detail = json_pack("{s:s}", "not_after", na_s);
		x->cert_open = 0;
		emit(e, t, &v);
	}
	if (which && !(x && x->cert_open && x->cert_na == na)) {
		struct ev v = {.kind = "cert_expiring", .at = r->started_ms,
		               .since = r->started_ms, .locs = 1ULL << li};
		char na_s[TIME_STR_LEN], sk[24];

		x = tx(t);
		time_format_ms(na, na_s);
		/* the id depends on the certificate, not on who saw it first */
		snprintf(sk, sizeof(sk), "%lld", (long long)na);
		v.loc = sk;
		v.since = na;
		v.detail = json_pack("{s:s, s:s, s:I}", "not_after", na_s,
		                     "which", which == 1 ? "leaf" : "chain",
		                     "days_left",
		                     (json_int_t)((na - r->started_ms) / DAY_MS));
		x->cert_open = 1;
		x->cert_na = na;
		x->cert_since = na;
		x->cert_which = (uint8_t)which;
		emit(e, t, &v);
	}
}

static int result_part(struct engine *e, const struct result *r);

int
engine_result(struct engine *e, const struct result *r)
{
	int pi = result_part(e, r);
	struct tgt *t = find_target(e, r->target, r->target_len);
	struct lst *l;
	int li;

	if (!t)
		return -1;
	if (pi >= 0)
		t->part = (int16_t)pi;
	if ((li = find_loc(e, r->probe, r->probe_len)) < 0) {
		warning("more than %d probe locations: results from \"%.*s\" "
		        "are ignored", MAX_LOCATIONS, (int)r->probe_len, r->probe);
		return 0;
	}
	l = tloc(t, li);
	if ((l->flags & L_SEEN) && r->started_ms <= l->last_ms) {
		outbox_replay(e, r->id);
		return 0;
	}
	e->cur = r;
	e->cur_part = (int16_t)pi;
	e->tnow = r->started_ms;
	if (r->started_ms > e->watermark)
		e->watermark = r->started_ms;
	if (e->loc[li].ann_since)
		location_recovered(e, li, r->started_ms);
	if (!e->loc[li].alive_since)
		e->loc[li].alive_since = r->started_ms;
	if (r->started_ms > e->loc[li].last_any)
		e->loc[li].last_any = r->started_ms;
	if (l->flags & L_STALE)
		stale_recovered(e, t, li, r->started_ms);
	l->flags |= L_SEEN;
	l->last_ms = r->started_ms;
	memcpy(l->id, r->id, 16);
	if (r->ok) {
		l->fails = 0;
		if (l->oks < UINT16_MAX)
			l->oks++;
		if ((l->flags & L_DOWN) && l->oks >= t->r->ok_thr)
			l->flags &= (uint8_t)~L_DOWN;
	} else {
		if (l->fails == 0 && !(l->flags & L_DOWN))
			l->streak_ms = r->started_ms;
		if (l->fails < UINT16_MAX)
			l->fails++;
		l->oks = 0;
		l->kind = (uint8_t)r->kind;
		l->status = r->status > 0 ? (uint16_t)r->status : 0;
		if (l->fails >= t->r->fail_thr)
			l->flags |= L_DOWN;
	}
	evaluate(e, t, r->started_ms);
	reconcile(e, t, r->started_ms, r);
	check_slow(e, t, r);
	check_cert(e, t, r, li);
	engine_maybe_scan(e);
	e->cur = NULL;
	return 0;
}

/* A location-wide stale incident, announced. */
static void
announce_location(struct engine *e, int li)
{
	struct loc *L = &e->loc[li];
	struct ev v = {.kind = "stale", .loc = L->name, .since = L->ann_since,
	               .at = L->ann_since + e->loc_stale_ms,
	               .locs = 1ULL << li};
	char ls[TIME_STR_LEN];

	L->mine = true;
	time_format_ms(L->ann_since, ls);
	v.detail = json_pack("{s:s, s:s}", "location", L->name, "last_seen",
	                     ls);
	emit(e, NULL, &v);
}

/* Record time for judging locations: our watermark, held back to the
 * lowest of the peers that hold partitions (they may not have reached it
 * yet, and a location silent here may have reported to them), by at most
 * stale_after (a peer that far behind is stuck or gone). */
static int64_t
loc_now(const struct engine *e)
{
	int64_t now = e->watermark;

	if (e->peer_wm < now) {
		now = e->peer_wm;
		if (now < e->watermark - e->loc_stale_ms)
			now = e->watermark - e->loc_stale_ms;
	}
	return now;
}

/* A location that no target heard from for stale_after is silent: one
 * event, from the owner of location-wide incidents only. */
static void
scan_locations(struct engine *e, int64_t now)
{
	for (size_t i = 0; i < e->nloc; i++) {
		struct loc *L = &e->loc[i];

		if (!L->last_any || L->ann_since ||
		    now <= L->last_any + e->loc_stale_ms)
			continue;
		L->ann_since = L->last_any;
		if (e->owner && L->ann_since > L->closed)
			announce_location(e, (int)i);
	}
}

/* Timers.  explicit: now is a clock (--now, --wall-clock) that holds for
 * every target; otherwise each target is judged by its own newest result
 * and locations by the newest result of all (the watermark). */
void
engine_scan(struct engine *e, int64_t now, bool explicit)
{
	if (now > e->watermark)
		e->watermark = now;
	now = e->watermark;
	e->last_scan = now;
	scan_locations(e, explicit ? now : loc_now(e));
	for (size_t k = 0; k < e->nt; k++) {
		struct tgt *t = &e->t[k];
		int64_t tlast = 0;

		for (int i = 0; i < t->nlocs; i++)
			if (t->locs[i].last_ms > tlast)
				tlast = t->locs[i].last_ms;
		if (!tlast)
			continue;
		e->tnow = explicit && now > tlast ? now : tlast;
		for (int i = 0; i < t->nlocs; i++) {
			struct lst *l = &t->locs[i];
			struct loc *L = &e->loc[i];
			int64_t base, deadline, peers = 0;
			struct ev v = {.kind = "stale", .loc = L->name,
			               .locs = 1ULL << i};
			char ls[TIME_STR_LEN];

			if (!(l->flags & L_SEEN) || (l->flags & L_STALE))
				continue;
			for (int j = 0; j < t->nlocs; j++)
				if (j != i && t->locs[j].last_ms > peers)
					peers = t->locs[j].last_ms;
			if (explicit && now > peers)
				peers = now;
			base = l->last_ms > L->alive_since ? l->last_ms
			                                   : L->alive_since;
			deadline = base + t->stale_ms;
			/* Only when the target's other locations went on past
			 * the deadline and so did this location for other
			 * targets: a silent location is one event, above. */
			if (peers <= deadline || L->last_any <= deadline ||
			    L->ann_since)
				continue;
			l->flags |= L_STALE;
			if (t->r->off)
				continue;
			v.since = l->last_ms;
			v.at = deadline;
			time_format_ms(l->last_ms, ls);
			v.detail = json_pack("{s:s, s:s}", "location", L->name,
			                     "last_seen", ls);
			emit(e, t, &v);
		}
		if (t->down_since || t->ann_since || (t->flags & T_FLAPPING)) {
			evaluate(e, t, e->tnow);
			reconcile(e, t, e->tnow, NULL);
		}
	}
}

void
engine_maybe_scan(struct engine *e)
{
	if (e->watermark - e->last_scan >= e->scan_every)
		engine_scan(e, e->watermark, false);
}

int64_t
engine_watermark(const struct engine *e)
{
	return e->watermark;
}

int
engine_out_error(const struct engine *e)
{
	return e->out_err;
}

unsigned long
engine_events(const struct engine *e)
{
	return e->events;
}

size_t
engine_state_bytes(const struct engine *e, size_t *targets, size_t *pairs)
{
	size_t b = e->nt * sizeof(struct tgt) + e->hcap * sizeof(uint32_t);

	*pairs = 0;
	for (size_t k = 0; k < e->nt; k++) {
		const struct tgt *t = &e->t[k];

		for (int i = 0; i < t->nlocs; i++)
			*pairs += (t->locs[i].flags & L_SEEN) != 0;
		b += t->nlocs * sizeof(struct lst);
		b += t->x ? sizeof(struct tx) : 0;
		b += t->sr ? sizeof(struct slowring) : 0;
	}
	*targets = e->nt;
	return b;
}

/* ---- configuration ------------------------------------------------------ */

struct engine *
engine_new(const struct engine_opts *o)
{
	struct engine *e = xcalloc(1, sizeof(*e));

	e->out = o->out;
	e->ob_max = o->outbox_max;
	e->self = o->state ? xstrdup(o->state) : NULL;
	e->peers = o->state && o->peers ? xstrdup(o->peers) : NULL;
	e->scan_every = 1000;
	e->owner = true;
	e->peer_wm = INT64_MAX;
	return e;
}

static void
tgt_free_state(struct tgt *t)
{
	free(t->locs);
	free(t->x);
	free(t->sr);
	t->locs = NULL;
	t->x = NULL;
	t->sr = NULL;
	t->nlocs = 0;
}

static bool
has_open(const struct tgt *t)
{
	if (t->ann_since || (t->flags & (T_FLAPPING | T_SLOW)) ||
	    (t->x && t->x->cert_open))
		return true;
	for (int i = 0; i < t->nlocs; i++)
		if (t->locs[i].flags & L_STALE)
			return true;
	return false;
}

/* A target gone from the configuration: close what it has open. */
static void
close_removed(struct engine *e, struct tgt *t)
{
	int64_t at = e->watermark;
	struct ev v = {.kind = "resolved", .at = at, .resolution = "removed"};

	e->tnow = at;
	if (t->r->off)
		return;
	v.locs = fresh_mask(t, at);
	if (t->ann_since) {
		v.ikind = "down";
		v.since = t->ann_since;
		emit(e, t, &v);
	}
	if (t->flags & T_FLAPPING) {
		v.ikind = "flapping";
		v.since = t->x->flap_since;
		emit(e, t, &v);
	}
	if (t->flags & T_SLOW) {
		v.ikind = "slow";
		v.since = t->sr->since;
		emit(e, t, &v);
	}
	if (t->x && t->x->cert_open) {
		char sk[24];

		snprintf(sk, sizeof(sk), "%lld", (long long)t->x->cert_na);
		v.ikind = "cert_expiring";
		v.loc = sk;
		v.since = t->x->cert_na;
		emit(e, t, &v);
		v.loc = NULL;
	}
	for (int i = 0; i < t->nlocs; i++) {
		if (!(t->locs[i].flags & L_STALE))
			continue;
		v.ikind = "stale";
		v.loc = e->loc[i].name;
		v.since = t->locs[i].last_ms;
		v.locs = 1ULL << i;
		emit(e, t, &v);
	}
}

static void
tgt_free(struct tgt *t)
{
	tgt_free_state(t);
	free(t->name);
	free(t->url);
	free(t->labels);
}

void
engine_set_config(struct engine *e, struct config *cfg)
{
	struct tgt *nt = xcalloc(cfg->n ? cfg->n : 1, sizeof(*nt));
	int64_t max_stale = 0;

	for (size_t k = 0; k < cfg->n; k++) {
		const struct config_target *ct = &cfg->v[k];
		struct tgt *t = &nt[k], *old;
		char *js = xasprintf("%.*s}", (int)ct->json_len, ct->json);
		json_t *o = json_loads(js, 0, NULL), *lab;

		free(js);
		t->name = xstrdup(ct->name);
		t->url = xstrdup(o ? json_string_value(json_object_get(o, "url"))
		                   : "");
		lab = o ? json_object_get(o, "labels") : NULL;
		t->labels = lab ? json_dumps(lab, JSON_COMPACT | JSON_SORT_KEYS)
		                : xstrdup("{}");
		json_decref(o);
		t->r = rules_get(ct->alerts);
		t->stale_ms = t->r->stale_ms ? t->r->stale_ms : 3 * ct->interval_ms;
		t->part = -1;
		if (t->stale_ms > max_stale)
			max_stale = t->stale_ms;
		if ((old = find_target(e, t->name, strlen(t->name)))) {
			t->locs = old->locs;
			t->x = old->x;
			t->sr = old->sr;
			t->nlocs = old->nlocs;
			t->flags = old->flags;
			t->down_since = old->down_since;
			t->ann_since = old->ann_since;
			t->ann_at = old->ann_at;
			t->reminders = old->reminders;
			t->part = old->part;
			old->locs = NULL;
			old->x = NULL;
			old->sr = NULL;
			old->nlocs = 0;
			old->ann_since = 0;
			old->flags = 0;
			free(old->name);
			old->name = xstrdup(""); /* taken */
		}
	}
	for (size_t k = 0; k < e->nt; k++) {
		if (e->t[k].name[0] && has_open(&e->t[k]))
			close_removed(e, &e->t[k]);
		tgt_free(&e->t[k]);
	}
	free(e->t);
	e->t = nt;
	e->nt = cfg->n;
	e->loc_stale_ms = max_stale ? max_stale : 180000;
	e->scan_every = max_stale / 10;
	if (e->scan_every < 100)
		e->scan_every = 100;
	if (e->scan_every > 10000)
		e->scan_every = 10000;
	index_targets(e);
}

void
engine_free(struct engine **ep)
{
	struct engine *e = *ep;

	if (!e)
		return;
	for (size_t k = 0; k < e->nt; k++)
		tgt_free(&e->t[k]);
	free(e->t);
	free(e->hidx);
	for (size_t i = 0; i < e->nloc; i++)
		free(e->loc[i].name);
	for (size_t i = 0; e->ob && i < e->ob_max; i++)
		free(e->ob[i].text);
	free(e->ob);
	for (size_t i = 0; i < e->nparts; i++)
		free(e->parts[i].topic);
	free(e->parts);
	free(e->self);
	free(e->peers);
	free(e);
	*ep = NULL;
}

/* ---- checkpoint ----------------------------------------------------------
 *
 * One file, written whole to PATH.tmp, fsync()ed, renamed over PATH and the
 * directory fsync()ed: after a crash PATH is the old or the new state,
 * never a mix.  Binary, for this build only (the header names the layout);
 * an FNV-1a hash over the whole guards against a truncated or foreign file.
 *
 * The header (magic, its own length, the layout, the partitions with the
 * newest offset seen of each, the watermark, the locations with the newest
 * result from each, the silent incident announced and the newest closed,
 * and a hash of the header alone) can be read without the rest: peers read
 * it every checkpoint to learn who is ahead on which partition, who owns
 * location-wide incidents and where each location stands.
 */

#define CKPT_MAGIC "sm-alert checkpoint 3\n"
#define MAGIC_LEN (sizeof(CKPT_MAGIC) - 1)
/* The header before it carried the watermark and the locations: read at
 * the first start after an upgrade, and from a peer not upgraded yet. */
#define CKPT_MAGIC_2 "sm-alert checkpoint 2\n"
/* The layout before partitions: no header, no partition fields; read at
 * the first start after an upgrade. */
#define CKPT_MAGIC_1 "sm-alert checkpoint 1\n"

struct wbuf {
	FILE *fp;
	uint64_t h;
};

static void
put(struct wbuf *w, const void *p, size_t n)
{
	w->h = fnv(p, n, w->h);
	fwrite(p, 1, n, w->fp);
}

static void
put_str(struct wbuf *w, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);

	put(w, &n, sizeof(n));
	put(w, s, n);
}

static const uint32_t layout[4] = {sizeof(struct lst), sizeof(struct tx),
                                   sizeof(struct slowring),
                                   sizeof(struct tgt)};

int
engine_write(struct engine *e, FILE *fp)
{
	struct wbuf w = {fp, 0xcbf29ce484222325ULL};
	uint32_t n, hlen;
	uint64_t hh;

	hlen = (uint32_t)(MAGIC_LEN + 4 + sizeof(layout) + 4 + 8);
	for (size_t i = 0; i < e->nparts; i++)
		hlen += (uint32_t)(4 + strlen(e->parts[i].topic) + 4 + 8);
	hlen += 8 + 4;
	for (size_t i = 0; i < e->nloc; i++)
		hlen += (uint32_t)(4 + strlen(e->loc[i].name) + 4 * 8);
	put(&w, CKPT_MAGIC, MAGIC_LEN);
	put(&w, &hlen, sizeof(hlen));
	put(&w, layout, sizeof(layout));
	n = (uint32_t)e->nparts;
	put(&w, &n, sizeof(n));
	for (size_t i = 0; i < e->nparts; i++) {
		put_str(&w, e->parts[i].topic);
		put(&w, &e->parts[i].partition, sizeof(int32_t));
		put(&w, &e->parts[i].offset, sizeof(int64_t));
	}
	put(&w, &e->watermark, sizeof(e->watermark));
	n = (uint32_t)e->nloc;
	put(&w, &n, sizeof(n));
	for (size_t i = 0; i < e->nloc; i++) {
		struct loc *L = &e->loc[i];
		int64_t v[4] = {L->last_any, L->alive_since,
		                L->mine ? L->ann_since : 0, L->closed};

		put_str(&w, L->name);
		put(&w, v, sizeof(v));
	}
	hh = w.h;
	put(&w, &hh, sizeof(hh));
	put(&w, &e->watermark, sizeof(e->watermark));
	n = (uint32_t)e->nloc;
	put(&w, &n, sizeof(n));
	for (size_t i = 0; i < e->nloc; i++) {
		put_str(&w, e->loc[i].name);
		put(&w, &e->loc[i].last_any, 3 * sizeof(int64_t));
	}
	n = 0;
	for (size_t k = 0; k < e->nt; k++)
		n += e->t[k].nlocs > 0;
	put(&w, &n, sizeof(n));
	for (size_t k = 0; k < e->nt; k++) {
		struct tgt *t = &e->t[k];
		uint8_t has[2] = {t->x != NULL, t->sr != NULL};

		if (!t->nlocs)
			continue;
		put_str(&w, t->name);
		put(&w, &t->down_since, 3 * sizeof(int64_t));
		put(&w, &t->reminders, sizeof(t->reminders));
		put(&w, &t->part, sizeof(t->part));
		put(&w, &t->nlocs, 1);
		put(&w, &t->flags, 1);
		put(&w, has, 2);
		put(&w, t->locs, t->nlocs * sizeof(*t->locs));
		if (t->x)
			put(&w, t->x, sizeof(*t->x));
		if (t->sr)
			put(&w, t->sr, sizeof(*t->sr));
	}
	n = (uint32_t)e->ob_n;
	put(&w, &n, sizeof(n));
	for (size_t k = 0; k < e->ob_n; k++) {
		size_t i = (e->ob_pos + e->ob_max - e->ob_n + k) % e->ob_max;

		put(&w, e->ob[i].id, 16);
		put(&w, &e->ob[i].part, sizeof(e->ob[i].part));
		put_str(&w, e->ob[i].text ? e->ob[i].text : "");
	}
	fwrite(&w.h, sizeof(w.h), 1, w.fp);
	return fflush(fp) == EOF || ferror(fp) ? -1 : 0;
}

int
engine_save(struct engine *e, const char *path)
{
	char *tmp = xasprintf("%s.tmp", path), *dir, *slash;
	FILE *fp;
	int fd, rc = -1;

	if (!(fp = fopen(tmp, "wb"))) {
		warn("%s:", tmp);
		free(tmp);
		return -1;
	}
	setvbuf(fp, NULL, _IOFBF, 1 << 20);
	if (engine_write(e, fp) < 0 || fsync(fileno(fp)) < 0) {
		warn("%s:", tmp);
		fclose(fp);
		goto out;
	}
	if (fclose(fp) == EOF || rename(tmp, path) < 0) {
		warn("%s:", path);
		goto out;
	}
	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if ((fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY)) >= 0) {
		fsync(fd);
		close(fd);
	}
	free(dir);
	rc = 0;
out:
	free(tmp);
	return rc;
}

/* Times as results bring them (0: none): the engine adds durations to
 * them and writes them in events. */
static bool
times_ok(const int64_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] < TIME_MIN_MS || v[i] > TIME_MAX_MS)
			return false;
	return true;
}

/* A target's or location's name as results bring it: UTF-8, not empty
 * (events carry it as a JSON string, and the target's must be there). */
static bool
name_ok(const char *s)
{
	json_t *j = *s ? json_string(s) : NULL;
	bool ok = j != NULL;

	json_decref(j);
	return ok;
}

/* An outbox entry as emit() keeps it: one event line, or "" (none). */
static bool
outbox_text_ok(const char *s)
{
	const char *nl = strchr(s, '\n');

	return *s == '\0' || (nl != NULL && nl[1] == '\0' && nl > s);
}

/* Kafka offsets as results bring them (-1: none): the engine adds 1. */
#define MAX_OFFSET INT64_C(999999999999999999)

struct rbuf {
	const unsigned char *p, *end;
	bool bad;
};

static void
get(struct rbuf *r, void *out, size_t n)
{
	if ((size_t)(r->end - r->p) < n) {
		r->bad = true;
		memset(out, 0, n);
		return;
	}
	memcpy(out, r->p, n);
	r->p += n;
}

static char *
get_str(struct rbuf *r)
{
	uint32_t n;
	char *s;

	get(r, &n, sizeof(n));
	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = true;
		return xstrdup("");
	}
	s = xstrndup((const char *)r->p, n);
	r->p += n;
	return s;
}

/* A location as a checkpoint header holds it. */
struct hloc {
	char *name;
	int64_t last_any, alive_since, ann, closed; /* ann: announced, open */
};

/* A checkpoint's header. */
struct hdr {
	uint32_t hlen, nparts, nloc;
	struct part *parts;
	struct hloc *locs;
	int64_t watermark;      /* 0: not recorded (checkpoint 2) */
	bool v2;
};

static void
hdr_free(struct hdr *h)
{
	for (uint32_t i = 0; h->parts && i < h->nparts; i++)
		free(h->parts[i].topic);
	for (uint32_t i = 0; h->locs && i < h->nloc; i++)
		free(h->locs[i].name);
	free(h->parts);
	free(h->locs);
	h->parts = NULL;
	h->locs = NULL;
	h->nparts = h->nloc = 0;
}

/* The header from buf[0..len) (which may hold only the header); 0, or -1
 * when it is not one of this build's. */
static int
hdr_parse(const unsigned char *buf, size_t len, struct hdr *h)
{
	struct rbuf r;
	uint32_t got[4];
	uint64_t hh;

	memset(h, 0, sizeof(*h));
	if (len < MAGIC_LEN + 4)
		return -1;
	if (!memcmp(buf, CKPT_MAGIC_2, MAGIC_LEN))
		h->v2 = true;
	else if (memcmp(buf, CKPT_MAGIC, MAGIC_LEN))
		return -1;
	memcpy(&h->hlen, buf + MAGIC_LEN, 4);
	if (h->hlen > len || h->hlen < MAGIC_LEN + 4 + sizeof(layout) + 12)
		return -1;
	memcpy(&hh, buf + h->hlen - 8, 8);
	if (fnv(buf, h->hlen - 8, 0xcbf29ce484222325ULL) != hh)
		return -1;
	r = (struct rbuf){buf + MAGIC_LEN + 4, buf + h->hlen - 8, false};
	get(&r, got, sizeof(got));
	if (memcmp(got, layout, sizeof(layout)))
		return -1;
	get(&r, &h->nparts, sizeof(h->nparts));
	if (h->nparts > MAX_PARTS)
		return -1;
	h->parts = xcalloc(h->nparts ? h->nparts : 1, sizeof(*h->parts));
	for (uint32_t i = 0; i < h->nparts; i++) {
		h->parts[i].topic = get_str(&r);
		get(&r, &h->parts[i].partition, sizeof(int32_t));
		get(&r, &h->parts[i].offset, sizeof(int64_t));
		if (h->parts[i].offset < -1 || h->parts[i].offset > MAX_OFFSET)
			r.bad = true;
	}
	if (!h->v2) {
		get(&r, &h->watermark, sizeof(h->watermark));
		get(&r, &h->nloc, sizeof(h->nloc));
		if (h->nloc > MAX_LOCATIONS || !times_ok(&h->watermark, 1))
			h->nloc = 0, r.bad = true;
		h->locs = xcalloc(h->nloc ? h->nloc : 1, sizeof(*h->locs));
		for (uint32_t i = 0; i < h->nloc && !r.bad; i++) {
			struct hloc *L = &h->locs[i];
			int64_t v[4];

			L->name = get_str(&r);
			get(&r, v, sizeof(v));
			if (!name_ok(L->name))
				r.bad = true;
			L->last_any = v[0];
			L->alive_since = v[1];
			L->ann = v[2];
			L->closed = v[3];
			if (!times_ok(v, 4))
				r.bad = true;
		}
	}
	if (r.bad || r.p != r.end) {
		hdr_free(h);
		return -1;
	}
	return 0;
}

/* The file at path: 0 (*buf, *len), 1 no file, -1 unreadable (with a
 * message) or shorter than a hash. */
static int
read_file(const char *path, unsigned char **buf, size_t *len)
{
	struct stat st;
	FILE *fp = fopen(path, "rb");

	*buf = NULL;
	if (!fp) {
		if (errno == ENOENT)
			return 1;
		warn("%s:", path);
		return -1;
	}
	if (fstat(fileno(fp), &st) < 0 || st.st_size < 8) {
		fclose(fp);
		return -1;
	}
	*len = (size_t)st.st_size;
	*buf = xmalloc(*len);
	if (fread(*buf, 1, *len, fp) != *len) {
		fclose(fp);
		free(*buf);
		*buf = NULL;
		return -1;
	}
	fclose(fp);
	return 0;
}

/* The whole file at path, its hash checked: 0 (*buf, *len), 1 no file,
 * -1 unreadable or not whole. */
static int
read_whole(const char *path, unsigned char **buf, size_t *len)
{
	uint64_t h;
	int rc = read_file(path, buf, len);

	if (rc != 0)
		return rc;
	memcpy(&h, *buf + *len - 8, 8);
	if (fnv(*buf, *len - 8, 0xcbf29ce484222325ULL) == h)
		return 0;
	free(*buf);
	*buf = NULL;
	return -1;
}

/* Only the header of the checkpoint at path: 0, or -1 (no file, not one). */
static int
read_header(const char *path, struct hdr *h)
{
	unsigned char small[4096], *big = NULL;
	ssize_t n;
	uint32_t hlen;
	int fd = open(path, O_RDONLY), rc = -1;

	memset(h, 0, sizeof(*h));
	if (fd < 0)
		return -1;
	n = pread(fd, small, sizeof(small), 0);
	if (n < (ssize_t)(MAGIC_LEN + 4))
		goto out;
	memcpy(&hlen, small + MAGIC_LEN, 4);
	if (hlen <= (size_t)n) {
		rc = hdr_parse(small, (size_t)n, h);
	} else if (hlen < (1U << 24)) {
		big = xmalloc(hlen);
		if (pread(fd, big, hlen, 0) == (ssize_t)hlen)
			rc = hdr_parse(big, hlen, h);
	}
out:
	free(big);
	close(fd);
	return rc;
}

static int
part_find(struct engine *e, const char *topic, size_t tlen, int32_t partition)
{
	for (size_t i = 0; i < e->nparts; i++)
		if (e->parts[i].partition == partition &&
		    !strncmp(e->parts[i].topic, topic, tlen) &&
		    e->parts[i].topic[tlen] == '\0')
			return (int)i;
	if (e->nparts == MAX_PARTS)
		return -1;
	e->parts = xrealloc(e->parts, (e->nparts + 1) * sizeof(*e->parts));
	e->parts[e->nparts] = (struct part){xstrndup(topic, tlen), partition,
	                                    -1};
	return (int)e->nparts++;
}

/* Is path a peer's checkpoint (not ours, not a temporary file)? */
static bool
is_peer(const struct engine *e, const char *path)
{
	struct stat a, b;
	size_t n = strlen(path);

	if (n >= 4 && !strcmp(path + n - 4, ".tmp"))
		return false;
	if (!strcmp(path, e->self))
		return false;
	if (stat(path, &a) < 0)
		return false;
	return stat(e->self, &b) < 0 || a.st_dev != b.st_dev ||
	       a.st_ino != b.st_ino;
}

/* The peers' checkpoint files (a glob(3) pattern). */
static glob_t
peer_files(const struct engine *e)
{
	glob_t g;

	memset(&g, 0, sizeof(g));
	if (glob(e->peers, 0, NULL, &g) != 0)
		globfree(&g), memset(&g, 0, sizeof(g));
	return g;
}

/* The offset a header holds for partition pi of ours (-1: none). */
static int64_t
hdr_offset(const struct hdr *h, const struct part *p)
{
	for (uint32_t i = 0; i < h->nparts; i++)
		if (h->parts[i].partition == p->partition &&
		    !strcmp(h->parts[i].topic, p->topic))
			return h->parts[i].offset;
	return -1;
}

/*
 * Remap a file's location indices to ours.  apply false: only check that
 * they read and that the new ones fit beside ours (nothing changes; map
 * is then not filled).
 */
static int
loc_map(struct engine *e, struct rbuf *r, int map[MAX_LOCATIONS],
        uint32_t *nloc, bool self, bool apply)
{
	char *fresh[MAX_LOCATIONS];
	size_t nfresh = 0;
	int rc = 0;

	get(r, nloc, sizeof(*nloc));
	if (*nloc > MAX_LOCATIONS)
		return -1;
	for (uint32_t i = 0; i < *nloc && !r->bad; i++) {
		char *name = get_str(r);
		int64_t v[3];
		size_t k;

		get(r, v, sizeof(v));
		if (!times_ok(v, 3) || !name_ok(name))
			r->bad = true;
		if (!apply) {
			/* A name new to us, counted once. */
			for (k = 0; k < nfresh && strcmp(fresh[k], name); k++)
				;
			if (loc_lookup(e, name, strlen(name)) < 0 && k == nfresh)
				fresh[nfresh++] = name;
			else
				free(name);
			continue;
		}
		map[i] = find_loc(e, name, strlen(name));
		free(name);
		if (map[i] < 0) /* not after the check: there is room */
			return -1;
		if (self) {
			memcpy(&e->loc[map[i]].last_any, v, sizeof(v));
		} else if (v[0] > e->loc[map[i]].last_any) {
			/* The peer heard from the location since: it is not
			 * silent for having reported to the peer. */
			e->loc[map[i]].last_any = v[0];
			if (!e->loc[map[i]].alive_since)
				e->loc[map[i]].alive_since = v[1];
		}
	}
	if (e->nloc + nfresh > MAX_LOCATIONS)
		rc = -1;
	while (nfresh)
		free(fresh[--nfresh]);
	return r->bad ? -1 : rc;
}

/* A file target's per-location states in our location order. */
static void
locs_remap(struct tgt *t, const struct lst *src, int n, const int *map)
{
	int top = -1;

	for (int i = 0; i < n; i++)
		if (map[i] > top)
			top = map[i];
	t->nlocs = (uint8_t)(top + 1);
	t->locs = xcalloc(top + 1 > 0 ? (size_t)top + 1 : 1, sizeof(*t->locs));
	for (int i = 0; i < n; i++)
		t->locs[map[i]] = src[i];
}

/* A target's state as the engine can use it: times in range, the rings'
 * counts and positions inside them, an open flapping or slow incident
 * with the record that holds its since, no flag the engine does not know.
 * The hash guards against damage, not against a file made to fool it. */
static bool
tgt_state_ok(const struct tgt *t, const struct lst *src, int n)
{
	const int64_t tt[3] = {t->down_since, t->ann_since, t->ann_at};

	for (int i = 0; i < n; i++) {
		const int64_t lt[2] = {src[i].last_ms, src[i].streak_ms};

		if ((src[i].flags & ~(L_SEEN | L_DOWN | L_STALE)) ||
		    !times_ok(lt, 2))
			return false;
	}
	if ((t->flags & ~(T_FLAPPING | T_SLOW)) || !times_ok(tt, 3))
		return false;
	if (t->x && (!times_ok(t->x->flap_t, FLAP_RING) ||
	             !times_ok(&t->x->flap_since, 1) ||
	             !times_ok(&t->x->cert_na, 1) ||
	             !times_ok(&t->x->cert_since, 1)))
		return false;
	if (t->sr && (!times_ok(&t->sr->since, 1) ||
	              !times_ok(t->sr->t, SLOW_RING)))
		return false;
	if ((t->flags & T_FLAPPING) && !t->x)
		return false;
	if ((t->flags & T_SLOW) && !t->sr)
		return false;
	if (t->x && t->x->nflap > FLAP_RING)
		return false;
	return !t->sr || (t->sr->n <= SLOW_RING && t->sr->pos < SLOW_RING);
}

/*
 * One pass over the body of a checkpoint (after its header h).  want < 0:
 * our own, all of it.  want >= 0: a peer's, only the targets and outbox
 * entries of its partition number want (a header index), which become
 * ours, in our partition mine.  v1: a checkpoint 1 (no partition fields).
 * apply false: only read it through, changing nothing.
 */
static int
body_pass(struct engine *e, struct rbuf *r, const struct hdr *h, int want,
          int mine, bool v1, bool apply)
{
	int map[MAX_LOCATIONS];
	int16_t *parts = xcalloc(h->nparts ? h->nparts : 1, sizeof(*parts));
	uint32_t n, nloc;
	int64_t wm;
	bool self = want < 0;

	for (uint32_t i = 0; apply && i < h->nparts; i++) {
		int pi = self ? part_find(e, h->parts[i].topic,
		                          strlen(h->parts[i].topic),
		                          h->parts[i].partition)
		              : ((int)i == want ? mine : -1);

		parts[i] = (int16_t)pi;
		if (self && pi >= 0)
			e->parts[pi].offset = h->parts[i].offset;
	}
	get(r, &wm, sizeof(wm));
	if (!times_ok(&wm, 1))
		goto bad;
	if (apply && (self || wm > e->watermark))
		e->watermark = wm;
	if (loc_map(e, r, map, &nloc, self, apply) < 0)
		goto bad;
	get(r, &n, sizeof(n));
	for (uint32_t k = 0; k < n && !r->bad; k++) {
		char *name = get_str(r);
		struct tgt tmp = {0}, *t;
		struct lst src[MAX_LOCATIONS];
		struct tx x;
		struct slowring sr;
		int16_t fp;
		bool take;
		uint8_t has[2], nl;

		get(r, &tmp.down_since, 3 * sizeof(int64_t));
		get(r, &tmp.reminders, sizeof(tmp.reminders));
		fp = -1;
		if (!v1)
			get(r, &fp, sizeof(fp));
		get(r, &nl, 1);
		get(r, &tmp.flags, 1);
		get(r, has, 2);
		if (nl > nloc || fp >= (int)h->nparts || fp < -1) {
			r->bad = true;
			free(name);
			break;
		}
		get(r, src, nl * sizeof(*src));
		if (has[0]) {
			tmp.x = &x;
			get(r, &x, sizeof(x));
		}
		if (has[1]) {
			tmp.sr = &sr;
			get(r, &sr, sizeof(sr));
		}
		if (r->bad || !name_ok(name) || !tgt_state_ok(&tmp, src, nl)) {
			r->bad = true;
			free(name);
			break;
		}
		take = self || (fp >= 0 && fp == want);
		t = find_target(e, name, strlen(name));
		if (!apply || !take || (!t && !self)) {
			free(name);
			continue;
		}
		/* From here on the state is the engine's own. */
		locs_remap(&tmp, src, nl, map);
		tmp.part = fp >= 0 ? parts[fp] : -1;
		tmp.x = has[0] ? memcpy(xmalloc(sizeof(x)), &x, sizeof(x)) : NULL;
		tmp.sr = has[1] ? memcpy(xmalloc(sizeof(sr)), &sr, sizeof(sr))
		                : NULL;
		if (t) {
			tgt_free_state(t);
			t->down_since = tmp.down_since;
			t->ann_since = tmp.ann_since;
			t->ann_at = tmp.ann_at;
			t->reminders = tmp.reminders;
			t->part = tmp.part;
			t->flags = tmp.flags;
			t->nlocs = tmp.nlocs;
			t->locs = tmp.locs;
			t->x = tmp.x;
			t->sr = tmp.sr;
			free(name);
			continue;
		}
		tmp.name = name;
		tmp.url = xstrdup("");
		tmp.labels = xstrdup("{}");
		tmp.r = rules_get(NULL);
		/* Gone from sites.yaml while sm-alert was down. */
		if (has_open(&tmp))
			close_removed(e, &tmp);
		tgt_free(&tmp);
	}
	get(r, &n, sizeof(n));
	for (uint32_t k = 0; k < n && !r->bad; k++) {
		unsigned char id[16];
		int16_t fp;
		char *text;
		struct result fake;

		get(r, id, 16);
		fp = -1;
		if (!v1)
			get(r, &fp, sizeof(fp));
		text = get_str(r);
		if (fp >= (int)h->nparts || fp < -1 || !outbox_text_ok(text))
			r->bad = true;
		if (apply && !r->bad && e->ob_max &&
		    (self || (fp >= 0 && fp == want))) {
			memcpy(fake.id, id, 16);
			e->cur = &fake;
			e->cur_part = fp >= 0 ? parts[fp] : -1;
			outbox_add(e, text);
			e->cur = NULL;
		}
		free(text);
	}
	free(parts);
	if (r->bad || r->p != r->end)
		return -1;
	return 0;
bad:
	free(parts);
	return -1;
}

/* The body of a checkpoint, all of it or nothing: it is read through
 * first, and applied only when the whole reads (a damaged one changes no
 * state).  Arguments as body_pass. */
static int
body_apply(struct engine *e, struct rbuf *r, const struct hdr *h, int want,
           int mine, bool v1)
{
	struct rbuf check = *r;

	if (body_pass(e, &check, h, want, mine, v1, false) < 0)
		return -1;
	return body_pass(e, r, h, want, mine, v1, true);
}

/* The checkpoint in buf[0..len) (its hash not yet checked).  v3 and v2
 * name their own header's layout; v1 is the layout before headers. */
static int
load_buf(struct engine *e, const unsigned char *buf, size_t len)
{
	struct hdr h;
	struct rbuf r;
	uint64_t hash;
	int rc;

	if (len < 8)
		return -1;
	memcpy(&hash, buf + len - 8, 8);
	if (fnv(buf, len - 8, 0xcbf29ce484222325ULL) != hash)
		return -1;
	if (len > sizeof(CKPT_MAGIC_1) + sizeof(layout) &&
	    !memcmp(buf, CKPT_MAGIC_1, sizeof(CKPT_MAGIC_1) - 1)) {
		uint32_t got[4];

		memset(&h, 0, sizeof(h));
		r = (struct rbuf){buf + sizeof(CKPT_MAGIC_1) - 1, buf + len - 8,
		                  false};
		get(&r, got, sizeof(got));
		if (memcmp(got, layout, sizeof(layout)) ||
		    body_apply(e, &r, &h, -1, -1, true) < 0)
			return -1;
		for (size_t i = 0; i < e->nloc; i++)
			e->loc[i].mine = e->loc[i].ann_since != 0;
		e->last_scan = e->watermark;
		return 0;
	}
	if (hdr_parse(buf, len - 8, &h) < 0)
		return -1;
	r = (struct rbuf){buf + h.hlen, buf + len - 8, false};
	rc = body_apply(e, &r, &h, -1, -1, false);
	/* Which silent incidents we announced, and the newest closed (a
	 * checkpoint 2 holds only the ones announced). */
	for (size_t i = 0; rc == 0 && i < e->nloc; i++)
		e->loc[i].mine = h.v2 && e->loc[i].ann_since;
	for (uint32_t i = 0; rc == 0 && i < h.nloc; i++) {
		const char *name = h.locs[i].name;
		int li = find_loc(e, name, strlen(name));

		if (li < 0)
			continue;
		e->loc[li].mine = h.locs[i].ann && e->loc[li].ann_since;
		e->loc[li].closed = h.locs[i].closed;
	}
	hdr_free(&h);
	if (rc == 0)
		e->last_scan = e->watermark;
	return rc;
}

int
engine_load_buf(struct engine *e, const unsigned char *buf, size_t len,
                const char *name)
{
	if (load_buf(e, buf, len) < 0) {
		warn("%s: not a checkpoint of this sm-alert (or damaged)", name);
		return -1;
	}
	return 0;
}

int
engine_load(struct engine *e, const char *path)
{
	unsigned char *buf;
	size_t len;
	int rc = read_file(path, &buf, &len);

	if (rc == 1)
		return 1;
	if (rc == 0)
		rc = engine_load_buf(e, buf, len, path);
	else
		warn("%s: not a checkpoint of this sm-alert (or damaged)", path);
	free(buf);
	return rc;
}

/*
 * A result from our partition pi after a gap in its offsets (or the first
 * one): a peer may have held the partition in between.  The peer whose
 * checkpoint is furthest ahead on it, past what we saw, hands over its
 * state of the partition's targets and their outbox entries.
 */
static void
handover(struct engine *e, int pi)
{
	struct part *p = &e->parts[pi];
	glob_t g = peer_files(e);
	const char *best = NULL;
	int64_t best_off = p->offset;

	for (size_t i = 0; i < g.gl_pathc; i++) {
		struct hdr h;
		int64_t off;

		if (!is_peer(e, g.gl_pathv[i]) ||
		    read_header(g.gl_pathv[i], &h) < 0)
			continue;
		off = hdr_offset(&h, p);
		hdr_free(&h);
		if (off > best_off) {
			best_off = off;
			best = g.gl_pathv[i];
		}
	}
	if (best) {
		unsigned char *buf;
		size_t len;
		struct hdr h;
		struct rbuf r;
		int want = -1;

		if (read_whole(best, &buf, &len) != 0 ||
		    hdr_parse(buf, len - 8, &h) < 0) {
			warn("%s: a peer's checkpoint that does not read; "
			     "partition %s/%d goes on without it", best,
			     p->topic, p->partition);
			free(buf);
			globfree(&g);
			return;
		}
		for (uint32_t i = 0; i < h.nparts; i++)
			if (h.parts[i].partition == p->partition &&
			    !strcmp(h.parts[i].topic, p->topic))
				want = (int)i;
		r = (struct rbuf){buf + h.hlen, buf + len - 8, false};
		if (want >= 0 && body_apply(e, &r, &h, want, pi, false) == 0) {
			info("partition %s/%d: took over the state of %s "
			     "(offset %lld)", p->topic, p->partition, best,
			     (long long)h.parts[want].offset);
			p->offset = h.parts[want].offset;
		} else {
			warn("%s: a peer's checkpoint that does not read; "
			     "partition %s/%d goes on without it", best,
			     p->topic, p->partition);
		}
		hdr_free(&h);
		free(buf);
	}
	globfree(&g);
}

/* The partition of a result with Kafka coordinates (-1: none); a gap in
 * its offsets looks for a handover first. */
static int
result_part(struct engine *e, const struct result *r)
{
	long long off = r->koff;
	int pi;

	if (r->kpart < 0 || r->kpart > INT32_MAX || off < 0 ||
	    (pi = part_find(e, r->ktopic, r->ktopic_len, (int32_t)r->kpart)) < 0)
		return -1;
	if (e->peers && (e->parts[pi].offset < 0 ||
	                 off > e->parts[pi].offset + 1))
		handover(e, pi);
	if (off > e->parts[pi].offset)
		e->parts[pi].offset = off;
	return pi;
}

/* Order of partitions: by topic, then number. */
static int
part_cmp(const char *ta, int32_t pa, const char *tb, int32_t pb)
{
	int c = strcmp(ta, tb);

	return c ? c : (pa > pb) - (pa < pb);
}

/* The newest offset we saw of a partition (-1: none). */
static int64_t
own_offset(const struct engine *e, const char *topic, int32_t partition)
{
	for (size_t i = 0; i < e->nparts; i++)
		if (e->parts[i].partition == partition &&
		    !strcmp(e->parts[i].topic, topic))
			return e->parts[i].offset;
	return -1;
}

/*
 * Location-wide incidents, after reading the peers' headers: cand and
 * closed are, per location, the newest silent incident a peer announced
 * and still has open, and the newest one a peer closed.  The owner takes
 * over a peer's open incident (it closes it under the same id), or
 * announces a silence it judged while it was not the owner; the others
 * announce nothing.  A location heard from since its silent incident began
 * (here or by a peer) is back.
 */
static void
locations_settle(struct engine *e, const int64_t *cand, const int64_t *closed)
{
	for (size_t i = 0; i < e->nloc; i++) {
		struct loc *L = &e->loc[i];

		if (closed[i] > L->closed)
			L->closed = closed[i];
		if (L->mine && (!e->owner || L->ann_since <= L->closed)) {
			L->mine = false;
		} else if (e->owner && !L->mine && cand[i] > L->closed) {
			info("location %s: its stale incident goes on here "
			     "(announced by a peer)", L->name);
			L->ann_since = cand[i];
			L->mine = true;
		} else if (e->owner && !L->mine && L->ann_since > L->closed) {
			announce_location(e, (int)i);
		}
		if (L->ann_since && L->last_any > L->ann_since)
			location_recovered(e, (int)i, L->last_any);
	}
	scan_locations(e, loc_now(e));
}

/*
 * At start, before each checkpoint and when idle: a partition on which a
 * peer's checkpoint is ahead of ours went to that peer.  Its targets'
 * state here is dropped, without events (the peer goes on with it), and
 * the partition is marked unseen, so that a result from it (the partition
 * coming back) first takes the state of whoever is ahead.
 *
 * The same headers say who owns location-wide incidents: the process that
 * holds the lowest partition (a peer holds a partition when its header is
 * at or past our offset on it; on a tie it is the peer's), or, when no
 * process holds any, each one.  Locations' newest results are merged, so
 * that a location silent here but reporting to a peer is not silent.
 * Returns whether the state changed.
 */
bool
engine_check_peers(struct engine *e)
{
	glob_t g;
	int64_t *ahead, cand[MAX_LOCATIONS] = {0}, closed[MAX_LOCATIONS] = {0};
	int64_t peer_wm = INT64_MAX;
	bool *tie, owner, changed = false;
	char *pmin_topic = NULL;
	int32_t pmin_part = 0;
	int own_min = -1;
	unsigned long events = e->events;

	if (!e->peers)
		return false;
	g = peer_files(e);
	ahead = xcalloc(e->nparts ? e->nparts : 1, sizeof(*ahead));
	tie = xcalloc(e->nparts ? e->nparts : 1, sizeof(*tie));
	for (size_t i = 0; i < g.gl_pathc; i++) {
		struct hdr h;
		bool holds = false;

		if (!is_peer(e, g.gl_pathv[i]) ||
		    read_header(g.gl_pathv[i], &h) < 0)
			continue;
		for (size_t pi = 0; pi < e->nparts; pi++) {
			int64_t off = hdr_offset(&h, &e->parts[pi]);

			if (e->parts[pi].offset >= 0 &&
			    off > e->parts[pi].offset && off > ahead[pi])
				ahead[pi] = off;
			if (off >= 0 && off == e->parts[pi].offset)
				tie[pi] = true;
		}
		/* A peer further behind than stale_after is stuck or gone
		 * (or of a checkpoint 2): it owns nothing, so that a file
		 * left behind cannot keep the incidents from any owner. */
		for (uint32_t k = 0; k < h.nparts &&
		                     h.watermark > e->watermark - e->loc_stale_ms;
		     k++) {
			const struct part *hp = &h.parts[k];

			if (hp->offset < 0 ||
			    hp->offset < own_offset(e, hp->topic, hp->partition))
				continue;
			holds = true;
			if (!pmin_topic || part_cmp(hp->topic, hp->partition,
			                            pmin_topic, pmin_part) < 0) {
				free(pmin_topic);
				pmin_topic = xstrdup(hp->topic);
				pmin_part = hp->partition;
			}
		}
		if (holds && h.watermark && h.watermark < peer_wm)
			peer_wm = h.watermark;
		for (uint32_t k = 0; k < h.nloc; k++) {
			const struct hloc *hl = &h.locs[k];
			int li = find_loc(e, hl->name, strlen(hl->name));
			struct loc *L;

			if (li < 0)
				continue;
			L = &e->loc[li];
			if (hl->last_any > L->last_any) {
				L->last_any = hl->last_any;
				if (!L->alive_since)
					L->alive_since = hl->alive_since;
				changed = true;
			}
			if (hl->ann > cand[li])
				cand[li] = hl->ann;
			if (hl->closed > closed[li])
				closed[li] = hl->closed;
		}
		hdr_free(&h);
	}
	globfree(&g);
	for (size_t pi = 0; pi < e->nparts; pi++) {
		size_t n = 0;

		if (!ahead[pi])
			continue;
		for (size_t k = 0; k < e->nt; k++) {
			struct tgt *t = &e->t[k];

			if (t->part != (int16_t)pi)
				continue;
			tgt_free_state(t);
			t->down_since = t->ann_since = t->ann_at = 0;
			t->reminders = 0;
			t->flags = 0;
			t->part = -1;
			n++;
		}
		info("partition %s/%d: a peer is ahead (offset %lld, here "
		     "%lld): %zu targets' state left to it", e->parts[pi].topic,
		     e->parts[pi].partition, (long long)ahead[pi],
		     (long long)e->parts[pi].offset, n);
		e->parts[pi].offset = -1;
		changed = true;
	}
	for (size_t pi = 0; pi < e->nparts; pi++) {
		const struct part *p = &e->parts[pi];

		if (p->offset < 0 || tie[pi])
			continue;
		if (own_min < 0 ||
		    part_cmp(p->topic, p->partition, e->parts[own_min].topic,
		             e->parts[own_min].partition) < 0)
			own_min = (int)pi;
	}
	owner = !pmin_topic ||
	        (own_min >= 0 &&
	         part_cmp(e->parts[own_min].topic, e->parts[own_min].partition,
	                  pmin_topic, pmin_part) < 0);
	if (owner != e->owner) {
		if (owner && own_min >= 0)
			info("location-wide incidents are mine now (lowest "
			     "partition %s/%d)", e->parts[own_min].topic,
			     e->parts[own_min].partition);
		else if (owner)
			info("location-wide incidents are mine now");
		else
			info("location-wide incidents go to the peer holding "
			     "partition %s/%d", pmin_topic, pmin_part);
		e->owner = owner;
		changed = true;
	}
	e->peer_wm = peer_wm;
	locations_settle(e, cand, closed);
	free(pmin_topic);
	free(ahead);
	free(tie);
	return changed || e->events != events;
}
