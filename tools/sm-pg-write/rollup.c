/*
 * rollup.c - what a batch's inserted rows add to the rollups and outages,
 * computed here from their COPY text rows (row.c) rather than by the
 * server, which would have to read the rows again.
 *
 * Pending rollup rows: one per (target, probe, UTC hour) of the rows,
 * appended to rollup_pending in the batch's transaction (pg.c), so they
 * count exactly when the rows do.  sm_rollup_fold() (migrations.c) later
 * merges them into rollup_hourly and rollup_daily; readers see both
 * through the rollup_hourly_all and rollup_daily_all views, so folding
 * late changes no figure.
 *
 * Runs: per (target, probe), the rows in time order cut where ok flips,
 * one row per run; pg.c turns them into outages.
 *
 * The order of a target's checks is (started_at, id), the same as the
 * server's ORDER BY started_at, id when the times carry milliseconds (as
 * sm-check's do).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sm.h"
#include "pgw.h"

/* The upper bounds of the duration histogram's buckets, in microseconds:
 * round(1000 * 2^(k/4)) for k = 0..71.  Bucket b holds the durations d
 * (rounded to the microsecond) with bounds[b-1] <= d < bounds[b]: bucket
 * 0 is under 1 ms, bucket 72 is 220 s and over.  The same list is in
 * sm_duration_bucket() (migrations.c) and sm-report's percentiles. */
const int64_t pgw_hist_bounds[PGW_HIST_BOUNDS] = {
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

int
pgw_hist_bucket(double ms)
{
	/* As the server: round(d * 1000)::bigint rounds half to even, as
	 * rint does in the default rounding mode. */
	double us = rint(ms * 1000.0);
	int lo = 0, hi = PGW_HIST_BOUNDS;

	/* The number of bounds <= us (width_bucket). */
	while (lo < hi) {
		int mid = (lo + hi) / 2;

		if ((double)pgw_hist_bounds[mid] <= us)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The columns of a row that the rollups need, as the COPY text has them
 * (escaped; "\N" is NULL). */
enum { F_ID, F_TARGET, F_PROBE, F_STARTED, F_OK, F_KIND, F_ERROR, F_DUR,
       F_BYTES, F_CERT, F_CHAIN, N_F };
static const char *const field_names[N_F] = {
	"id", "target", "probe", "started_at", "ok", "error_kind", "error",
	"duration_ms", "bytes", "tls_cert_not_after", "tls_chain_not_after",
};
/* Their positions in PGW_COLUMNS, found once from the list itself, so
 * that columns added to it anywhere keep this right; increasing. */
static int column_of[N_F];

static void
find_columns(void)
{
	static const char cols[] = PGW_COLUMNS;
	const char *p = cols;
	int col = 0, f;

	if (column_of[F_TARGET] != 0)
		return;
	for (f = 0; f < N_F; f++)
		column_of[f] = -1;
	while (*p != '\0') {
		size_t n = strcspn(p, ",");

		for (f = 0; f < N_F; f++)
			if (strlen(field_names[f]) == n &&
			    memcmp(field_names[f], p, n) == 0)
				column_of[f] = col;
		col++;
		p += n;
		while (*p == ',' || *p == ' ')
			p++;
	}
	for (f = 0; f < N_F; f++)
		if (column_of[f] < 0 || (f > 0 && column_of[f] <= column_of[f - 1]))
			die(EX_SOFTWARE, "PGW_COLUMNS lacks %s", field_names[f]);
}

struct item {
	const char *f[N_F];
	size_t len[N_F];
	int64_t ms;
};

static bool
is_null(const struct item *it, int f)
{
	return it->len[f] == 2 && memcmp(it->f[f], "\\N", 2) == 0;
}

static void
split(struct item *it, const char *row, size_t len)
{
	const char *p = row, *end, *tab;
	int col = 0, f = 0;

	if (len > 0 && row[len - 1] == '\n')
		len--;
	end = row + len;
	while (f < N_F) {
		tab = memchr(p, '\t', (size_t)(end - p));
		if (col == column_of[f]) {
			it->f[f] = p;
			it->len[f] = (size_t)((tab != NULL ? tab : end) - p);
			f++;
		}
		if (tab == NULL)
			break;
		col++;
		p = tab + 1;
	}
	for (; f < N_F; f++) {
		it->f[f] = "\\N";
		it->len[f] = 2;
	}
}

static int
field_cmp(const struct item *a, const struct item *b, int f)
{
	size_t n = a->len[f] < b->len[f] ? a->len[f] : b->len[f];
	int c = memcmp(a->f[f], b->f[f], n);

	if (c != 0)
		return c;
	return (a->len[f] > b->len[f]) - (a->len[f] < b->len[f]);
}

/* A NULL probe is "" in the rollups (a key column). */
static int
probe_cmp(const struct item *a, const struct item *b)
{
	bool an = is_null(a, F_PROBE), bn = is_null(b, F_PROBE);

	if (an || bn) {
		size_t al = an ? 0 : a->len[F_PROBE];
		size_t bl = bn ? 0 : b->len[F_PROBE];

		if (al == 0 || bl == 0)
			return (al > 0) - (bl > 0);
	}
	return field_cmp(a, b, F_PROBE);
}

static int
id_cmp(const struct item *a, const struct item *b)
{
	size_t n = a->len[F_ID] < b->len[F_ID] ? a->len[F_ID] : b->len[F_ID];
	int c = strncasecmp(a->f[F_ID], b->f[F_ID], n);

	if (c != 0)
		return c;
	return (a->len[F_ID] > b->len[F_ID]) - (a->len[F_ID] < b->len[F_ID]);
}

/* The order of a key's checks: started_at, then id. */
static int
time_cmp(const struct item *a, const struct item *b)
{
	if (a->ms != b->ms)
		return (a->ms > b->ms) - (a->ms < b->ms);
	return id_cmp(a, b);
}

static int
time_ptr_cmp(const void *pa, const void *pb)
{
	return time_cmp(*(const struct item *const *)pa,
	                *(const struct item *const *)pb);
}

static bool
same_key(const struct item *a, const struct item *b)
{
	return field_cmp(a, b, F_TARGET) == 0 && probe_cmp(a, b) == 0;
}

/* FNV-1a over the target, a separator and the probe (NULL and "" alike,
 * as probe_cmp has them). */
static uint64_t
key_hash(const struct item *it)
{
	uint64_t h = UINT64_C(14695981039346656037);
	size_t i;

	for (i = 0; i < it->len[F_TARGET]; i++) {
		h ^= (unsigned char)it->f[F_TARGET][i];
		h *= UINT64_C(1099511628211);
	}
	h ^= 0x100;
	h *= UINT64_C(1099511628211);
	if (!is_null(it, F_PROBE))
		for (i = 0; i < it->len[F_PROBE]; i++) {
			h ^= (unsigned char)it->f[F_PROBE][i];
			h *= UINT64_C(1099511628211);
		}
	return h;
}

/* A (target, probe) of a batch: its items, linked in input order through
 * next[]. */
struct key {
	const struct item *first;
	size_t head, tail, n;
};

static int
key_cmp(const void *pa, const void *pb)
{
	const struct key *a = pa, *b = pb;
	int c = field_cmp(a->first, b->first, F_TARGET);

	return c != 0 ? c : probe_cmp(a->first, b->first);
}

static bool
item_ok(const struct item *it)
{
	return it->len[F_OK] > 0 && (it->f[F_OK][0] == 't' || it->f[F_OK][0] == 'T');
}

static void
add_field(struct pgw_buf *b, const struct item *it, int f, bool tab)
{
	if (tab)
		pgw_buf_add(b, "\t", 1);
	pgw_buf_add(b, it->f[f], it->len[f]);
}

static void
add_probe(struct pgw_buf *b, const struct item *it)
{
	pgw_buf_add(b, "\t", 1);
	if (!is_null(it, F_PROBE))
		pgw_buf_add(b, it->f[F_PROBE], it->len[F_PROBE]);
}

/* sep (if not '\0') then v in decimal, as printf's "%lld" has it. */
static void
add_int(struct pgw_buf *b, char sep, long long v)
{
	char t[24], *p = t + sizeof t;
	unsigned long long u = v < 0 ? 0 - (unsigned long long)v
	                             : (unsigned long long)v;

	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		*--p = '-';
	if (sep != '\0')
		*--p = sep;
	pgw_buf_add(b, p, (size_t)(t + sizeof t - p));
}

static void
add_time(struct pgw_buf *b, int64_t ms)
{
	char t[TIME_STR_LEN];

	time_format_ms(ms, t);
	pgw_buf_add(b, "\t", 1);
	pgw_buf_add(b, t, strlen(t));
}

/* One pending row from items[lo..hi), one key and hour. */
static void
pending_row(struct pgw_buf *b, const struct item *const *items, size_t lo,
            size_t hi, int64_t hour_ms)
{
	int hist[PGW_HIST_BOUNDS + 1] = { 0 };
	int errs[ERR_OTHER + 1] = { 0 };
	long long checks = 0, ok = 0, dur_n = 0, bytes = 0;
	int64_t sum_us = 0;
	double dmin = 0, dmax = 0;
	/* The checks with the least and the greatest duration: their text is
	 * what the server reads for dur_min and dur_max, as it does for
	 * checks.duration_ms (no printing of the double again). */
	const struct item *imin = NULL, *imax = NULL;
	const struct item *cert = NULL, *chain = NULL;
	size_t i;
	int k;
	bool first;

	for (i = lo; i < hi; i++) {
		const struct item *it = items[i];

		checks++;
		ok += item_ok(it);
		if (!is_null(it, F_DUR)) {
			char num[64];
			size_t n = it->len[F_DUR] < sizeof num - 1
			    ? it->len[F_DUR] : sizeof num - 1;
			double d;

			memcpy(num, it->f[F_DUR], n);
			num[n] = '\0';
			d = strtod(num, NULL);
			if (dur_n == 0 || d < dmin) {
				dmin = d;
				imin = it;
			}
			if (dur_n == 0 || d > dmax) {
				dmax = d;
				imax = it;
			}
			dur_n++;
			sum_us += (int64_t)rint(d * 1000.0);
			hist[pgw_hist_bucket(d)]++;
		}
		if (!is_null(it, F_BYTES))
			bytes += strtoll(it->f[F_BYTES], NULL, 10);
		if (!is_null(it, F_KIND)) {
			char kind[32];
			size_t n = it->len[F_KIND] < sizeof kind - 1
			    ? it->len[F_KIND] : sizeof kind - 1;
			enum error_kind ek;

			memcpy(kind, it->f[F_KIND], n);
			kind[n] = '\0';
			if (error_kind_parse(kind, &ek) != 0 || ek == ERR_NONE)
				ek = ERR_OTHER;
			errs[ek]++;
		}
		if (!is_null(it, F_CERT))
			cert = it;
		if (!is_null(it, F_CHAIN))
			chain = it;
	}

	add_field(b, items[lo], F_TARGET, false);
	add_probe(b, items[lo]);
	add_time(b, hour_ms);
	add_int(b, '\t', checks);
	add_int(b, '\t', ok);
	add_int(b, '\t', dur_n);
	add_int(b, '\t', (long long)sum_us);
	if (dur_n > 0) {
		add_field(b, imin, F_DUR, true);
		add_field(b, imax, F_DUR, true);
	} else
		pgw_buf_add(b, "\t\\N\t\\N", 6);
	add_int(b, '\t', bytes);
	add_field(b, items[lo], F_STARTED, true);
	add_field(b, items[hi - 1], F_STARTED, true);
	if (cert != NULL)
		add_field(b, cert, F_CERT, true);
	else
		pgw_buf_add(b, "\t\\N", 3);
	if (chain != NULL)
		add_field(b, chain, F_CHAIN, true);
	else
		pgw_buf_add(b, "\t\\N", 3);

	/* hist_b, hist_n: the buckets that are not empty. */
	pgw_buf_add(b, "\t{", 2);
	for (k = 0, first = true; k <= PGW_HIST_BOUNDS; k++)
		if (hist[k] > 0) {
			add_int(b, first ? '\0' : ',', k);
			first = false;
		}
	pgw_buf_add(b, "}\t{", 3);
	for (k = 0, first = true; k <= PGW_HIST_BOUNDS; k++)
		if (hist[k] > 0) {
			add_int(b, first ? '\0' : ',', hist[k]);
			first = false;
		}
	/* err_kind, err_n */
	pgw_buf_add(b, "}\t{", 3);
	for (k = 1, first = true; k <= ERR_OTHER; k++)
		if (errs[k] > 0) {
			const char *name = error_kind_name((enum error_kind)k);

			if (!first)
				pgw_buf_add(b, ",", 1);
			pgw_buf_add(b, name, strlen(name));
			first = false;
		}
	pgw_buf_add(b, "}\t{", 3);
	for (k = 1, first = true; k <= ERR_OTHER; k++)
		if (errs[k] > 0) {
			add_int(b, first ? '\0' : ',', errs[k]);
			first = false;
		}
	pgw_buf_add(b, "}\n", 2);
}

/* One run row: items[lo] begins a run of seq-th of its key. */
static void
run_row(struct pgw_buf *b, const struct item *const *items, size_t key_lo,
        size_t lo, int seq)
{
	const struct item *it = items[lo];
	bool ok = item_ok(it);

	add_field(b, it, F_TARGET, false);
	add_probe(b, it);
	add_int(b, '\t', seq);
	pgw_buf_add(b, ok ? "\tt" : "\tf", 2);
	add_field(b, it, F_STARTED, true);
	add_field(b, items[key_lo], F_STARTED, true);
	if (ok) {
		pgw_buf_add(b, "\t\\N\t\\N\n", 7);
		return;
	}
	add_field(b, it, F_KIND, true);
	add_field(b, it, F_ERROR, true);
	pgw_buf_add(b, "\n", 1);
}

/*
 * The items grouped by key (target, probe) with a hash table, keys in
 * (target, probe) order, each key's items in (started_at, id) order: the
 * input's order, which is that already as a rule, else sorted.  Cheaper
 * than sorting the whole batch (a batch has several checks per key).
 */
static const struct item **
group(const struct item *all, size_t m, struct key **keysp, size_t *n_keys)
{
	size_t cap = 16, nk = 0, i, k, o;
	size_t *slot, *next = xcalloc(m + 1, sizeof *next);
	struct key *keys = xcalloc(m + 1, sizeof *keys);
	const struct item **ord = xcalloc(m + 1, sizeof *ord);

	while (cap < 2 * m)
		cap *= 2;
	slot = xcalloc(cap, sizeof *slot); /* key index + 1; 0: free */
	for (i = 0; i < m; i++) {
		size_t h = (size_t)key_hash(&all[i]) & (cap - 1);

		while (slot[h] != 0 && !same_key(keys[slot[h] - 1].first, &all[i]))
			h = (h + 1) & (cap - 1);
		if (slot[h] == 0) {
			keys[nk].first = &all[i];
			keys[nk].head = i;
			slot[h] = ++nk;
		} else {
			next[keys[slot[h] - 1].tail] = i;
		}
		k = slot[h] - 1;
		keys[k].tail = i;
		keys[k].n++;
	}
	free(slot);
	qsort(keys, nk, sizeof *keys, key_cmp);
	for (k = 0, o = 0; k < nk; k++) {
		size_t lo = o, j;
		bool sorted = true;

		for (i = keys[k].head, j = 0; j < keys[k].n; j++, i = next[i]) {
			ord[o] = &all[i];
			if (o > lo && time_cmp(ord[o - 1], ord[o]) > 0)
				sorted = false;
			o++;
		}
		if (!sorted)
			qsort(&ord[lo], keys[k].n, sizeof *ord, time_ptr_cmp);
	}
	free(next);
	*keysp = keys;
	*n_keys = nk;
	return ord;
}

void
pgw_rollup_make(struct pgw_rollup *ru, const struct pgw_row *rows, size_t n,
                const bool *inserted)
{
	struct item *all = xcalloc(n + 1, sizeof *all);
	const struct item **items;
	struct key *keys;
	size_t m = 0, n_keys, k, i, key_lo, lo;

	find_columns();
	ru->pending.len = 0;
	ru->runs.len = 0;
	ru->pending_bin.len = 0;
	ru->runs_bin.len = 0;
	ru->n_pending = ru->n_runs = 0;
	for (i = 0; i < n; i++) {
		if (rows[i].skip || (inserted != NULL && !inserted[i]))
			continue;
		split(&all[m], rows[i].copy, rows[i].len);
		all[m].ms = rows[i].started_ms;
		m++;
	}
	items = group(all, m, &keys, &n_keys);

	for (k = 0, key_lo = 0; k < n_keys; k++) {
		size_t key_hi = key_lo + keys[k].n;
		int seq = 0;

		/* Pending rows: one per hour. */
		for (lo = key_lo; lo < key_hi;) {
			int64_t hour = items[lo]->ms - (((items[lo]->ms % 3600000) + 3600000) % 3600000);
			size_t hi = lo + 1;

			while (hi < key_hi && items[hi]->ms >= hour &&
			       items[hi]->ms < hour + 3600000)
				hi++;
			pending_row(&ru->pending, items, lo, hi, hour);
			ru->n_pending++;
			lo = hi;
		}
		/* Runs. */
		for (lo = key_lo; lo < key_hi; lo++)
			if (lo == key_lo ||
			    item_ok(items[lo]) != item_ok(items[lo - 1])) {
				run_row(&ru->runs, items, key_lo, lo, seq++);
				ru->n_runs++;
			}
		key_lo = key_hi;
	}
	free(items);
	free(keys);
	free(all);
	/* Binary, which the server reads for less (the text is the
	 * fallback: a value the encoder is not sure of sends it all). */
	if (!pgw_rows_binary(&ru->pending_bin, ru->pending.data,
	                     ru->pending.len, PGW_PENDING_COLUMN_TYPES))
		ru->pending_bin.len = 0;
	if (!pgw_rows_binary(&ru->runs_bin, ru->runs.data, ru->runs.len,
	                     PGW_RUN_COLUMN_TYPES))
		ru->runs_bin.len = 0;
}

void
pgw_rollup_free(struct pgw_rollup *ru)
{
	free(ru->pending.data);
	free(ru->runs.data);
	free(ru->pending_bin.data);
	free(ru->runs_bin.data);
	memset(ru, 0, sizeof *ru);
}

/* ---- which rows the staging INSERT took --------------------------------- */

struct idref {
	const char *id;
	size_t len;
	size_t row;
};

static int
idref_cmp(const void *pa, const void *pb)
{
	const struct idref *a = pa, *b = pb;
	size_t n = a->len < b->len ? a->len : b->len;
	int c = strncasecmp(a->id, b->id, n);

	if (c != 0)
		return c;
	if (a->len != b->len)
		return (a->len > b->len) - (a->len < b->len);
	return (a->row > b->row) - (a->row < b->row);
}

void
pgw_rollup_mark(const struct pgw_row *rows, size_t n, const char *const *ids,
                size_t n_ids, bool *inserted)
{
	struct idref *refs = xcalloc(n + 1, sizeof *refs);
	size_t m = 0, i;

	for (i = 0; i < n; i++) {
		const char *tab;

		inserted[i] = false;
		if (rows[i].skip)
			continue;
		tab = memchr(rows[i].copy, '\t', rows[i].len);
		refs[m].id = rows[i].copy;
		refs[m].len = tab ? (size_t)(tab - rows[i].copy) : rows[i].len;
		refs[m].row = i;
		m++;
	}
	qsort(refs, m, sizeof *refs, idref_cmp);
	for (i = 0; i < n_ids; i++) {
		struct idref key = { ids[i], strlen(ids[i]), 0 };
		size_t lo = 0, hi = m;

		/* The first entry with this id that is not marked yet. */
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			size_t k = key.len < refs[mid].len ? key.len : refs[mid].len;
			int c = strncasecmp(refs[mid].id, key.id, k);

			if (c == 0)
				c = (refs[mid].len > key.len) - (refs[mid].len < key.len);
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		while (lo < m && refs[lo].len == key.len &&
		       strncasecmp(refs[lo].id, key.id, key.len) == 0 &&
		       inserted[refs[lo].row])
			lo++;
		if (lo < m && refs[lo].len == key.len &&
		    strncasecmp(refs[lo].id, key.id, key.len) == 0)
			inserted[refs[lo].row] = true;
	}
	free(refs);
}
