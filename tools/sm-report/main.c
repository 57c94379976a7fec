/*
 * sm-report - uptime, response times, outages and certificates per target,
 * from sm-pg-write's rollups and outages, as a terminal table, JSON, CSV,
 * OpenMetrics or a static status page.
 *
 * The window is whole UTC hours: --since rounded down, --until rounded up.
 * Whole days in it are read from rollup_daily_all, the hours at its edges
 * from rollup_hourly_all (both include the rows not folded yet); raw checks
 * are never read.  The targets table gives the current state.
 */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "sm.h"
#include "report.h"
#include "../sm-schedule/config.h"

static const char usage_text[] =
	"usage: sm-report [-d conninfo] [-s duration|time] [-u time] "
	"[-t glob] [-l key=value]\n"
	"                 [-f text|json|csv|html|openmetrics] [-o file] "
	"[-S sites.yaml]\n"
	"                 [-g label] [--title text] [--cert-warn duration]\n"
	"       sm-report -h | -V\n";

static const char options_text[] =
	"\n"
	"Report uptime, response times, outages, certificates and error\n"
	"budgets per target from sm-pg-write's rollups, worst first.\n"
	"\n"
	"  -d, --dsn CONNINFO        libpq connection string or URI (SM_PG_DSN;\n"
	"                            default: the PG* variables)\n"
	"  -s, --since WHEN          start of the window: a duration back from\n"
	"                            --until (30d) or an RFC 3339 time\n"
	"  -u, --until TIME          end of the window (RFC 3339; default now)\n"
	"  -t, --target GLOB         only targets whose name matches GLOB\n"
	"  -l, --label KEY=VALUE     only targets with this label (repeatable)\n"
	"  -f, --format FORMAT       text (default), json, csv, html or\n"
	"                            openmetrics\n"
	"  -o, --output FILE         write FILE (atomically) instead of stdout\n"
	"  -S, --sites FILE          read targets' slo: from this sites.yaml\n"
	"  -g, --group-by LABEL      html: group targets by this label\n"
	"      --title TEXT          html: the page's title (Status)\n"
	"      --cert-warn DURATION  list certificates expiring within this\n"
	"                            (21d)\n"
	"  -h, --help                this text\n"
	"  -V, --version             print the version\n";

enum format { F_TEXT, F_JSON, F_CSV, F_HTML, F_OPENMETRICS };

static struct {
	const char *conninfo;
	const char *since, *until;
	const char *glob;
	const char **labels;
	size_t n_labels;
	enum format format;
	const char *output;
	const char *sites;
	const char *group_by;
	const char *title;
	int64_t cert_warn_ms;
} opt = {
	.since = "30d",
	.title = "Status",
	.cert_warn_ms = INT64_C(21) * 86400000,
};

#define OPT_TITLE 256
#define OPT_CERT_WARN 257

/* ---- histograms --------------------------------------------------------- */

static const int64_t bounds[HIST_BOUNDS] = {
	1000, 1189, 1414, 1682, 2000, 2378, 2828, 3364, 4000, 4757, 5657,
	6727, 8000, 9514, 11314, 13454, 16000, 19027, 22627, 26909, 32000,
	38055, 45255, 53817, 64000, 76109, 90510, 107635, 128000, 152219,
	181019, 215269, 256000, 304437, 362039, 430539, 512000, 608874,
	724077, 861078, 1024000, 1217748, 1448155, 1722156, 2048000, 2435496,
	2896309, 3444312, 4096000, 4870992, 5792619, 6888623, 8192000,
	9741985, 11585238, 13777247, 16384000, 19483969, 23170475, 27554494,
	32768000, 38967939, 46340950, 55108987, 65536000, 77935877, 92681900,
	110217975, 131072000, 155871755, 185363800, 220435950,
};

void
hist_add(struct hist *h, int b, long long n)
{
	if (b < 0 || b >= HIST_BUCKETS || n <= 0)
		return;
	h->n[b] += n;
	h->total += n;
}

static void
hist_minmax(struct hist *h, double lo, double hi)
{
	if (h->total == 0 || h->min > h->max) {
		h->min = lo;
		h->max = hi;
		return;
	}
	if (lo < h->min)
		h->min = lo;
	if (hi > h->max)
		h->max = hi;
}

double
hist_percentile(const struct hist *h, double p)
{
	long long rank, seen = 0;
	double v;
	int b;

	if (h->total == 0)
		return -1;
	rank = (long long)ceil(p / 100.0 * (double)h->total);
	if (rank < 1)
		rank = 1;
	for (b = 0; b < HIST_BUCKETS; b++) {
		seen += h->n[b];
		if (seen >= rank)
			break;
	}
	if (b == 0)
		v = 0.5;
	else if (b >= HIST_BOUNDS)
		v = (double)bounds[HIST_BOUNDS - 1] / 1000.0;
	else /* sqrt(lower * upper) */
		v = sqrt((double)bounds[b - 1] * (double)bounds[b]) / 1000.0;
	if (h->min <= h->max) {
		if (v < h->min)
			v = h->min;
		if (v > h->max)
			v = h->max;
	}
	return v;
}

/* ---- the database -------------------------------------------------------- */

/* Certificates: those the checks of the last hours saw. */
#define CERT_HOURS 6

static PGconn *conn;

/* Send sql with its integer parameters on c, without waiting. */
static void
q_send(PGconn *c, const char *sql, int n, const int64_t *vals)
{
	char buf[8][24];
	const char *params[8];
	int i;

	for (i = 0; i < n && i < 8; i++) {
		snprintf(buf[i], sizeof buf[i], "%lld", (long long)vals[i]);
		params[i] = buf[i];
	}
	if (!PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0))
		die(PQstatus(c) == CONNECTION_OK ? EX_SOFTWARE : EX_UNAVAILABLE,
		    "database: %s", PQerrorMessage(c));
}

/* The rows of what was sent on c. */
static PGresult *
q_result(PGconn *c)
{
	PGresult *res = PQgetResult(c), *more;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		if (state != NULL && strcmp(state, "42P01") == 0)
			die(EX_CONFIG, "database: %s (SQLSTATE %s): run "
			    "sm-pg-write --migrate first", msg, state);
		die(PQstatus(c) == CONNECTION_OK ? EX_SOFTWARE
		                                 : EX_UNAVAILABLE,
		    "database: %s", msg ? msg : PQerrorMessage(c));
	}
	while ((more = PQgetResult(c)) != NULL)
		PQclear(more);
	return res;
}

static PGresult *
q(const char *sql, int n, const int64_t *vals)
{
	q_send(conn, sql, n, vals);
	return q_result(conn);
}

static PGconn *
db_open(void)
{
	const char *keys[4] = { "application_name", "client_encoding", "dbname",
	                        NULL };
	const char *vals[4] = { "sm-report", "UTF8", opt.conninfo, NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		char msg[512];
		size_t i;

		snprintf(msg, sizeof msg, "%s",
		         c ? PQerrorMessage(c) : "out of memory");
		for (i = 0; msg[i]; i++)
			if (msg[i] == '\n' || msg[i] == '\t')
				msg[i] = ' ';
		die(EX_UNAVAILABLE, "cannot connect: %s", msg);
	}
	return c;
}

static void
db_connect(void)
{
	PGresult *res;

	conn = db_open();
	res = PQexec(conn, "SET TIME ZONE 'UTC'");
	PQclear(res);
}

int
target_name_cmp(const struct rtarget *a, const struct rtarget *b)
{
	return strcmp(a->name, b->name);
}

static int
target_cmp(const void *a, const void *b)
{
	return target_name_cmp(a, b);
}

static struct rtarget *
find(struct report *r, const char *name)
{
	struct rtarget key = { .name = (char *)name };

	return bsearch(&key, r->targets, r->n, sizeof *r->targets,
	               target_cmp);
}

static bool
wanted(const char *name, json_t *labels)
{
	size_t i;

	if (opt.glob != NULL && fnmatch(opt.glob, name, 0) != 0)
		return false;
	for (i = 0; i < opt.n_labels; i++) {
		const char *eq = strchr(opt.labels[i], '=');
		char key[256];
		json_t *v;

		snprintf(key, sizeof key, "%.*s", (int)(eq - opt.labels[i]),
		         opt.labels[i]);
		v = labels ? json_object_get(labels, key) : NULL;
		if (!json_is_string(v) || strcmp(json_string_value(v), eq + 1) != 0)
			return false;
	}
	return true;
}

/* A decimal integer as the server prints it (text results); 0 for NULL
 * or anything else.  Much faster than strtoll for the few hundred
 * thousand values of a status page. */
static int64_t
num(const char *s)
{
	int64_t v = 0;
	bool neg = *s == '-';

	if (neg)
		s++;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (*s++ - '0');
	return neg ? -v : v;
}

static int64_t
ll(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : num(PQgetvalue(res, row, col));
}

static double
dbl(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NAN
	    : strtod(PQgetvalue(res, row, col), NULL);
}

/* Parse a one-dimensional array's text "{a,b,c}" into up to max items. */
static size_t
array_items(const char *s, char items[][32], size_t max)
{
	size_t n = 0, k;

	if (*s == '{')
		s++;
	while (*s && *s != '}' && n < max) {
		for (k = 0; *s && *s != ',' && *s != '}'; s++)
			if (k < 31 && *s != '"')
				items[n][k++] = *s;
		items[n++][k] = '\0';
		if (*s == ',')
			s++;
	}
	return n;
}

/* Add the hist_b/hist_n columns at (row, col) and (row, col + 1): two
 * integer arrays "{b,b,...}" and "{n,n,...}" read side by side. */
static void
add_hist(struct hist *h, const PGresult *res, int row, int col)
{
	const char *b = PQgetvalue(res, row, col);
	const char *n = PQgetvalue(res, row, col + 1);

	if (*b == '{')
		b++;
	if (*n == '{')
		n++;
	while (*b >= '0' && *b <= '9' && (*n == '-' || (*n >= '0' && *n <= '9'))) {
		int bucket = 0;
		long long count = 0;
		bool neg = *n == '-';

		while (*b >= '0' && *b <= '9')
			bucket = bucket * 10 + (*b++ - '0');
		if (neg)
			n++;
		while (*n >= '0' && *n <= '9')
			count = count * 10 + (*n++ - '0');
		hist_add(h, bucket, neg ? -count : count);
		if (*b == ',')
			b++;
		if (*n == ',')
			n++;
	}
}

/* The target of a result row: rows come grouped by target more often
 * than not, so the last one found is tried first. */
static struct rtarget *
find_cached(struct report *r, const char *name, struct rtarget **last)
{
	if (*last != NULL && strcmp((*last)->name, name) == 0)
		return *last;
	*last = find(r, name);
	return *last;
}

static void
load_targets(struct report *r)
{
	PGresult *res = q(
	    "SELECT target, url, labels::text,"
	    " (date_part('epoch', last_checked_at) * 1000)::bigint, last_ok,"
	    " (date_part('epoch', last_change_at) * 1000)::bigint"
	    " FROM targets", 0, NULL);
	int i, n = PQntuples(res);

	r->targets = xcalloc((size_t)n + 1, sizeof *r->targets);
	for (i = 0; i < n; i++) {
		json_t *labels = NULL;
		struct rtarget *t;

		if (!PQgetisnull(res, i, 2))
			labels = json_loads(PQgetvalue(res, i, 2), 0, NULL);
		if (!wanted(PQgetvalue(res, i, 0), labels)) {
			json_decref(labels);
			continue;
		}
		t = &r->targets[r->n++];
		t->name = xstrdup(PQgetvalue(res, i, 0));
		t->url = xstrdup(PQgetvalue(res, i, 1));
		t->labels = labels;
		t->known = true;
		t->last_checked_ms = ll(res, i, 3);
		t->up = strcmp(PQgetvalue(res, i, 4), "t") == 0;
		t->since_ms = ll(res, i, 5);
		t->hist.min = 1;
		t->hist.max = 0;
		t->uptime_time = t->uptime_checks = -1;
		t->p50 = t->p95 = t->p99 = -1;
		t->mttr_s = t->longest_s = -1;
	}
	PQclear(res);
	qsort(r->targets, r->n, sizeof *r->targets, target_cmp);
}

static struct location *
location(struct rtarget *t, const char *probe)
{
	size_t i;

	for (i = 0; i < t->n_locs; i++)
		if (strcmp(t->locs[i].probe, probe) == 0)
			return &t->locs[i];
	t->locs = xrealloc(t->locs, (t->n_locs + 1) * sizeof *t->locs);
	t->locs[t->n_locs].probe = xstrdup(probe);
	t->locs[t->n_locs].first_ms = INT64_MAX;
	t->locs[t->n_locs].cert_last_ms = INT64_MIN;
	return &t->locs[t->n_locs++];
}

/* The columns load_rollups reads from the daily rows (to C_ERR_N) and
 * the hourly ones (all), in this order. */
enum { C_TARGET, C_PROBE, C_BUCKET, C_CHECKS, C_OK, C_DMIN, C_DMAX, C_BYTES,
       C_FIRST, C_HIST_B, C_HIST_N, C_ERR_K, C_ERR_N, C_CERT, C_CHAIN,
       C_LAST };

/* A rollup row in the window: its checks, durations, errors and first
 * check, and the daily chart's day. */
static void
add_window_row(struct report *r, struct rtarget *t, const PGresult *res,
               int i, int64_t bucket)
{
	struct location *l;
	char k[16][32], c[16][32];
	size_t nk, j;
	int64_t first;

	t->checks += ll(res, i, C_CHECKS);
	t->ok += ll(res, i, C_OK);
	t->bytes += ll(res, i, C_BYTES);
	if (!PQgetisnull(res, i, C_DMIN))
		hist_minmax(&t->hist, dbl(res, i, C_DMIN), dbl(res, i, C_DMAX));
	add_hist(&t->hist, res, i, C_HIST_B);
	if (PQgetvalue(res, i, C_ERR_K)[1] != '}') { /* not "{}" */
		nk = array_items(PQgetvalue(res, i, C_ERR_K), k, 16);
		array_items(PQgetvalue(res, i, C_ERR_N), c, 16);
		for (j = 0; j < nk; j++) {
			enum error_kind ek;

			if (error_kind_parse(k[j], &ek) != 0)
				ek = ERR_OTHER;
			t->errors[ek] += atoll(c[j]);
		}
	}
	/* The status page's daily chart, from the same rows. */
	if (r->chart_day0_ms > 0 && bucket >= r->chart_day0_ms) {
		int64_t d = (bucket - r->chart_day0_ms) / 86400000;

		if (d < N_CHART_DAYS) {
			if (!PQgetisnull(res, i, C_DMIN))
				hist_minmax(&t->day_hist[d], dbl(res, i, C_DMIN),
				            dbl(res, i, C_DMAX));
			add_hist(&t->day_hist[d], res, i, C_HIST_B);
		}
	}
	l = location(t, PQgetvalue(res, i, C_PROBE));
	first = ll(res, i, C_FIRST);
	if (first < l->first_ms)
		l->first_ms = first;
}

#define EPOCH_MS(c) "(date_part('epoch', " c ") * 1000)::bigint"
#define TS(p) "to_timestamp(" p "::bigint / 1000.0)"

/* A daily row for the bars: checks and ok at columns ck and ck + 1. */
static void
add_bar(struct report *r, struct rtarget *t, const PGresult *res, int i,
        int ck, int64_t bucket)
{
	int64_t d = (bucket - r->day0_ms) / 86400000;

	if (bucket >= r->day0_ms && d < N_DAYS) {
		t->day_checks[d] += ll(res, i, ck);
		t->day_ok[d] += ll(res, i, ck + 1);
	}
}

/*
 * Everything the report needs from the rollups, in up to three queries
 * that the server runs at once, on connections of their own:
 *   rollup_daily_all   the window's whole days [d1, d2) (and for the
 *                      status page the days after: today's bar)
 *   rollup_hourly_all  the window's edges [since, d1) and [d2, until),
 *                      the last CERT_HOURS hours (certificates) and for
 *                      the status page the 24-hour chart
 *   rollup_daily_all   for the status page, the bars' days before d1
 *                      (checks and ok only)
 * Each row is then used for whichever of these it falls in.  While this
 * process reads the rows of one, the server still sends the others.
 */
static void
load_rollups(struct report *r, bool page)
{
	int64_t day = 86400000, hour = 3600000;
	int64_t d1 = (r->since_ms + day - 1) / day * day;
	int64_t d2 = r->until_ms / day * day;
	int64_t cert0 = r->now_ms / hour * hour - CERT_HOURS * hour;
	int64_t recent, p[3], ph[5];
	struct rtarget *last = NULL;
	PGconn *c_hourly, *c_bars = NULL;
	PGresult *res;
	int i, n;

	if (d1 >= d2)
		d1 = d2 = r->until_ms;
	if (page) {
		r->day0_ms = r->now_ms / day * day - (N_DAYS - 1) * day;
		r->hour0_ms = r->now_ms / hour * hour - (N_HOURS - 1) * hour;
	}
	c_hourly = db_open();
	if (page && r->day0_ms < d1)
		c_bars = db_open();

	p[0] = d1;
	p[1] = page ? INT64_C(253402300799000) /* 9999-12-31 */ : d2;
	q_send(conn, "SELECT target, probe, " EPOCH_MS("bucket") ", checks, ok,"
	       " dur_min, dur_max, bytes, " EPOCH_MS("first_at") ", hist_b,"
	       " hist_n, err_kind, err_n FROM rollup_daily_all"
	       " WHERE bucket >= " TS("$1") " AND bucket < " TS("$2"), 2, p);
	recent = page && r->hour0_ms < cert0 ? r->hour0_ms : cert0;
	ph[0] = r->since_ms; ph[1] = d1; ph[2] = d2; ph[3] = r->until_ms;
	ph[4] = recent;
	q_send(c_hourly, "SELECT target, probe, " EPOCH_MS("bucket") ", checks,"
	       " ok, dur_min, dur_max, bytes, " EPOCH_MS("first_at") ", hist_b,"
	       " hist_n, err_kind, err_n, " EPOCH_MS("tls_not_after") ","
	       " " EPOCH_MS("tls_chain_not_after") ", " EPOCH_MS("last_at")
	       " FROM rollup_hourly_all"
	       " WHERE (bucket >= " TS("$1") " AND bucket < " TS("$2") ")"
	       "    OR (bucket >= " TS("$3") " AND bucket < " TS("$4") ")"
	       "    OR bucket >= " TS("$5"), 5, ph);
	if (c_bars != NULL) {
		p[0] = r->day0_ms;
		p[1] = d1;
		q_send(c_bars, "SELECT target, " EPOCH_MS("bucket") ", checks, ok"
		       " FROM rollup_daily_all"
		       " WHERE bucket >= " TS("$1") " AND bucket < " TS("$2"),
		       2, p);
	}

	/* Daily rows from d1 on. */
	res = q_result(conn);
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		struct rtarget *t = find_cached(r, PQgetvalue(res, i, C_TARGET),
		                                &last);
		int64_t bucket = ll(res, i, C_BUCKET);

		if (t == NULL)
			continue;
		if (bucket < d2)
			add_window_row(r, t, res, i, bucket);
		if (page)
			add_bar(r, t, res, i, C_CHECKS, bucket);
	}
	PQclear(res);

	/* Hourly rows: the window's edges, the recent hours. */
	res = q_result(c_hourly);
	PQfinish(c_hourly);
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		struct rtarget *t = find_cached(r, PQgetvalue(res, i, C_TARGET),
		                                &last);
		int64_t bucket = ll(res, i, C_BUCKET);

		if (t == NULL)
			continue;
		if ((bucket >= r->since_ms && bucket < d1) ||
		    (bucket >= d2 && bucket < r->until_ms))
			add_window_row(r, t, res, i, bucket);
		if (page && bucket >= r->hour0_ms) {
			int64_t h = (bucket - r->hour0_ms) / hour;

			if (h < N_HOURS) {
				if (!PQgetisnull(res, i, C_DMIN))
					hist_minmax(&t->hour_hist[h],
					            dbl(res, i, C_DMIN),
					            dbl(res, i, C_DMAX));
				add_hist(&t->hour_hist[h], res, i, C_HIST_B);
			}
		}
		/* Certificates: each location's last check that had one. */
		if (bucket >= cert0 && !PQgetisnull(res, i, C_CERT)) {
			struct location *l = location(t, PQgetvalue(res, i,
			                                            C_PROBE));
			int64_t at = ll(res, i, C_LAST);

			if (at > l->cert_last_ms) {
				l->cert_last_ms = at;
				l->cert_ms = ll(res, i, C_CERT);
				l->chain_ms = ll(res, i, C_CHAIN);
			}
		}
	}
	PQclear(res);

	/* The bars' days before the window's. */
	if (c_bars != NULL) {
		res = q_result(c_bars);
		PQfinish(c_bars);
		n = PQntuples(res);
		for (i = 0; i < n; i++) {
			struct rtarget *t = find_cached(r, PQgetvalue(res, i, 0),
			                                &last);

			if (t != NULL)
				add_bar(r, t, res, i, 2, ll(res, i, 1));
		}
		PQclear(res);
	}

	for (i = 0; i < (int)r->n; i++) {
		struct rtarget *t = &r->targets[i];
		size_t j;

		for (j = 0; j < t->n_locs; j++) {
			int64_t leaf = t->locs[j].cert_ms;
			int64_t chain = t->locs[j].chain_ms;

			if (t->locs[j].cert_last_ms == INT64_MIN)
				continue;
			if (leaf && (t->cert_ms == 0 || leaf < t->cert_ms))
				t->cert_ms = leaf;
			if (chain && (t->chain_ms == 0 || chain < t->chain_ms))
				t->chain_ms = chain;
		}
	}
}

static void
load_outages(struct report *r)
{
	struct rtarget *last = NULL;
	PGresult *res;
	int i, n;

	res = q("SELECT target, probe,"
	        " (date_part('epoch', started_at) * 1000)::bigint,"
	        " (date_part('epoch', ended_at) * 1000)::bigint, error_kind, error"
	        " FROM outages"
	        " WHERE started_at < to_timestamp($2::bigint / 1000.0)"
	        "   AND (ended_at IS NULL"
	        "        OR ended_at > to_timestamp($1::bigint / 1000.0))"
	        " ORDER BY started_at", 2, (int64_t[]){ r->since_ms, r->until_ms });
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		struct rtarget *t = find_cached(r, PQgetvalue(res, i, 0), &last);
		struct outage *o;

		if (t == NULL)
			continue;
		t->outages = xrealloc(t->outages,
		                      (t->n_outages + 1) * sizeof *t->outages);
		o = &t->outages[t->n_outages++];
		o->probe = xstrdup(PQgetvalue(res, i, 1));
		o->start_ms = ll(res, i, 2);
		o->end_ms = ll(res, i, 3);
		o->error_kind = xstrdup(PQgetvalue(res, i, 4));
		o->error = xstrdup(PQgetvalue(res, i, 5));
	}
	PQclear(res);
}

/* ---- the figures ---------------------------------------------------------- */

static void
figures(struct report *r)
{
	int64_t end = r->until_ms < r->now_ms ? r->until_ms : r->now_ms;
	size_t i, j, k;

	for (i = 0; i < r->n; i++) {
		struct rtarget *t = &r->targets[i];
		double sum = 0, mttr_sum = 0;
		int n_up = 0, n_mttr = 0;

		if (t->checks > 0)
			t->uptime_checks = (double)t->ok / (double)t->checks;
		t->p50 = hist_percentile(&t->hist, 50);
		t->p95 = hist_percentile(&t->hist, 95);
		t->p99 = hist_percentile(&t->hist, 99);
		/* By time: per location, the share of its part of the window
		 * (from its first check) outside outages; then their mean. */
		for (j = 0; j < t->n_locs; j++) {
			struct location *l = &t->locs[j];
			int64_t from = l->first_ms > r->since_ms ? l->first_ms
			                                         : r->since_ms;
			int64_t down = 0;

			if (end <= from)
				continue;
			for (k = 0; k < t->n_outages; k++) {
				const struct outage *o = &t->outages[k];
				int64_t s = o->start_ms, e = o->end_ms ? o->end_ms
				                                       : r->now_ms;

				if (strcmp(o->probe, l->probe) != 0)
					continue;
				if (s < from)
					s = from;
				if (e > end)
					e = end;
				if (e > s)
					down += e - s;
			}
			sum += 1.0 - (double)down / (double)(end - from);
			n_up++;
		}
		if (n_up > 0)
			t->uptime_time = sum / n_up;
		for (k = 0; k < t->n_outages; k++) {
			const struct outage *o = &t->outages[k];
			double len = (double)((o->end_ms ? o->end_ms : r->now_ms) -
			                      o->start_ms) / 1000.0;

			t->outages_in_window++;
			if (len > t->longest_s)
				t->longest_s = len;
			if (o->end_ms && o->end_ms <= r->until_ms) {
				mttr_sum += len;
				n_mttr++;
			}
		}
		if (n_mttr > 0)
			t->mttr_s = mttr_sum / n_mttr;
		if (t->slo > 0 && t->slo < 100 && t->uptime_time >= 0)
			t->budget_left = 1.0 - (1.0 - t->uptime_time) /
			                           (1.0 - t->slo / 100.0);
	}
}

/* Worst first: down before up, then by uptime by time, by checks, name. */
static int
worst_first(const void *pa, const void *pb)
{
	const struct rtarget *a = pa, *b = pb;

	if (a->up != b->up)
		return a->up ? 1 : -1;
	if (a->uptime_time != b->uptime_time)
		return a->uptime_time < b->uptime_time ? -1 : 1;
	if (a->uptime_checks != b->uptime_checks)
		return a->uptime_checks < b->uptime_checks ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* ---- output ---------------------------------------------------------------- */

static void
emit(FILE *f, const struct report *r)
{
	switch (opt.format) {
	case F_TEXT: out_text(f, r); break;
	case F_JSON: out_json(f, r); break;
	case F_CSV: out_csv(f, r); break;
	case F_HTML: out_html(f, r); break;
	case F_OPENMETRICS: out_openmetrics(f, r); break;
	}
}

/* -o: a temporary file beside it, renamed over it once complete, so a
 * reader (a web server) never sees half a report. */
static void
write_atomically(const char *path, const struct report *r)
{
	size_t len = strlen(path);
	char *tmp = xmalloc(len + 16);
	FILE *f;
	int fd;

	snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		die(EX_CANTCREAT, "%s:", tmp);
	if (fchmod(fd, 0644) != 0 || (f = fdopen(fd, "w")) == NULL) {
		unlink(tmp);
		die(EX_IOERR, "%s:", tmp);
	}
	emit(f, r);
	if (fflush(f) != 0 || fclose(f) != 0) {
		unlink(tmp);
		die(EX_IOERR, "writing %s:", tmp);
	}
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		die(EX_IOERR, "renaming %s to %s:", tmp, path);
	}
	free(tmp);
}

static void
report_free(struct report *r)
{
	size_t i, j;

	for (i = 0; i < r->n; i++) {
		struct rtarget *t = &r->targets[i];

		free(t->name);
		free(t->url);
		json_decref(t->labels);
		for (j = 0; j < t->n_locs; j++)
			free(t->locs[j].probe);
		free(t->locs);
		for (j = 0; j < t->n_outages; j++) {
			free(t->outages[j].probe);
			free(t->outages[j].error_kind);
			free(t->outages[j].error);
		}
		free(t->outages);
	}
	free(r->targets);
	r->targets = NULL;
	r->n = 0;
}

/* ---- options ---------------------------------------------------------------- */

static int64_t
parse_time(const char *name, const char *v)
{
	int64_t ms;

	if (time_parse_ms(v, &ms) != 0) {
		warn("%s: not an RFC 3339 time: %s", name, v);
		usage_exit(usage_text, options_text, EX_USAGE);
	}
	return ms;
}

static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "cert-warn", required_argument, NULL, OPT_CERT_WARN },
		{ "dsn", required_argument, NULL, 'd' },
		{ "format", required_argument, NULL, 'f' },
		{ "group-by", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ "label", required_argument, NULL, 'l' },
		{ "output", required_argument, NULL, 'o' },
		{ "since", required_argument, NULL, 's' },
		{ "sites", required_argument, NULL, 'S' },
		{ "target", required_argument, NULL, 't' },
		{ "title", required_argument, NULL, OPT_TITLE },
		{ "until", required_argument, NULL, 'u' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const formats[] = { "text", "json", "csv", "html",
	                                       "openmetrics" };
	const char *v;
	int c;
	size_t i;

	if ((v = getenv("SM_PG_DSN")) != NULL)
		opt.conninfo = v;
	while ((c = getopt_long(argc, argv, "d:f:g:hl:o:s:S:t:u:V", longopts,
	                        NULL)) != -1) {
		switch (c) {
		case 'd':
			opt.conninfo = xstrdup(optarg);
			memset(optarg, '*', strlen(optarg));
			break;
		case 'f':
			for (i = 0; i < 5 && strcmp(optarg, formats[i]) != 0; i++)
				;
			if (i == 5) {
				warn("-f: unknown format: %s", optarg);
				usage_exit(usage_text, options_text, EX_USAGE);
			}
			opt.format = (enum format)i;
			break;
		case 'g':
			opt.group_by = optarg;
			break;
		case 'h':
			usage_exit(usage_text, options_text, 0);
			break;
		case 'l':
			if (strchr(optarg, '=') == NULL || optarg[0] == '=') {
				warn("-l: not key=value: %s", optarg);
				usage_exit(usage_text, options_text, EX_USAGE);
			}
			opt.labels = xrealloc(opt.labels, (opt.n_labels + 1) *
			                                      sizeof *opt.labels);
			opt.labels[opt.n_labels++] = optarg;
			break;
		case 'o':
			opt.output = optarg;
			break;
		case 's':
			opt.since = optarg;
			break;
		case 'S':
			opt.sites = optarg;
			break;
		case 't':
			opt.glob = optarg;
			break;
		case 'u':
			opt.until = optarg;
			break;
		case OPT_TITLE:
			opt.title = optarg;
			break;
		case OPT_CERT_WARN:
			opt.cert_warn_ms = opt_duration_ms("--cert-warn", optarg, 0,
			                                   INT64_C(3650) * 86400000);
			break;
		case 'V':
			print_version_and_exit();
			break;
		default:
			usage_exit(usage_text, options_text, EX_USAGE);
		}
	}
	if (optind != argc) {
		warn("unexpected argument: %s", argv[optind]);
		usage_exit(usage_text, options_text, EX_USAGE);
	}
}

int
main(int argc, char **argv)
{
	struct report r = { 0 };
	int64_t hour = 3600000, since;
	struct config *sites = NULL;

	diag_init(argv[0]);
	signal(SIGPIPE, SIG_IGN);
	parse_options(argc, argv);
	if (opt.conninfo == NULL)
		opt.conninfo = "";

	r.now_ms = time_now_ms();
	r.until_ms = opt.until ? parse_time("-u", opt.until) : r.now_ms;
	if (strchr(opt.since, 'T') != NULL)
		since = parse_time("-s", opt.since);
	else
		since = r.until_ms - opt_duration_ms("-s", opt.since, hour,
		                                     INT64_C(36500) * 86400000);
	r.since_ms = since / hour * hour;
	r.until_ms = (r.until_ms + hour - 1) / hour * hour;
	if (r.since_ms >= r.until_ms) {
		warn("the window is empty: --since must be before --until");
		usage_exit(usage_text, options_text, EX_USAGE);
	}
	r.group_by = opt.group_by;
	r.title = opt.title;
	r.cert_warn_ms = opt.cert_warn_ms;

	/* The sites file first: its mistakes are the operator's to fix,
	 * whatever the database's state (the loader prints each one). */
	if (opt.sites != NULL && !(sites = config_load(opt.sites, CONFIG_YAML)))
		exit(EX_CONFIG);
	db_connect();
	load_targets(&r);
	if (sites != NULL) {
		slo_apply(sites, &r);
		config_free(&sites);
	}
	if (opt.format == F_HTML) {
		/* The daily chart: the window's last N_CHART_DAYS days. */
		r.chart_day0_ms = r.until_ms / 86400000 * 86400000 -
		                  (N_CHART_DAYS - 1) * INT64_C(86400000);
		if (r.until_ms % 86400000 == 0)
			r.chart_day0_ms -= 86400000;
	}
	load_rollups(&r, opt.format == F_HTML);
	load_outages(&r);
	PQfinish(conn);
	figures(&r);
	qsort(r.targets, r.n, sizeof *r.targets, worst_first);

	if (opt.output != NULL) {
		write_atomically(opt.output, &r);
	} else {
		emit(stdout, &r);
		if (fflush(stdout) != 0 || ferror(stdout))
			die(EX_IOERR, "writing the report:");
	}
	report_free(&r);
	free(opt.labels);
	return 0;
}
