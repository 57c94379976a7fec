/*
 * state.c - the targets state a batch brings, one row per target, computed
 * in C from the batch's COPY rows.
 *
 * The upsert (pg.c, upsert_sql) needs, per target, the newest result and
 * enough of the ok/not-ok history to find where the current run began
 * relative to the stored state, which only the server knows.  With the
 * target's results sorted by started_at (then id), and s the first result
 * of the trailing run (the last results that share the newest's ok):
 *
 *   run_start   started_at of s
 *   before_run  started_at of the result before s (NULL if none): when it
 *               is newer than the stored last_checked_at, the batch itself
 *               holds a change of state
 *   run_us      started_at of every result of the trailing run, as
 *               microseconds since the epoch (an int8[] is far cheaper for
 *               the server to read than a timestamptz[]): when the stored
 *               state is newer than run_start, the run's first result after
 *               it is where the results the batch adds begin
 *
 * Those three give exactly what a window over every result of the batch
 * gave (see upsert_sql), with one row per target instead of one per
 * result, and no sort on the server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sm.h"
#include "pgw.h"

/* The first columns of a COPY row, in PGW_COLUMNS order. */
enum {
	COL_ID,
	COL_TARGET,
	COL_URL,
	COL_LABELS,
	COL_PROBE,
	COL_SCHEDULED_AT,
	COL_STARTED_AT,
	COL_OK,
	COL_STATUS,
	COL_ERROR_KIND,
	COL_ERROR,
	COL_DURATION_MS,
	N_STATE_COLS,
};

struct span {
	const char *p;
	size_t len;
};

struct result {
	struct span col[N_STATE_COLS];
	int64_t started_ms;
};

/* Split the leading columns of a COPY text row: values are escaped, so a
 * tab only ever separates. */
static void
split_columns(const struct pgw_row *row, struct result *r)
{
	const char *p = row->copy, *end = row->copy + row->len;
	int c;

	for (c = 0; c < N_STATE_COLS; c++) {
		const char *tab = memchr(p, '\t', (size_t)(end - p));

		if (tab == NULL)
			tab = end;
		r->col[c].p = p;
		r->col[c].len = (size_t)(tab - p);
		p = tab < end ? tab + 1 : end;
	}
	r->started_ms = row->started_ms;
}

static int
span_cmp(const struct span *a, const struct span *b)
{
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->p, b->p, n);

	if (c != 0)
		return c;
	return (a->len > b->len) - (a->len < b->len);
}

/* By target, then started_at, then id: the order of the server's window.
 * Ids are validated UUIDs, 36 characters; comparing them without case is
 * comparing their bytes, as the uuid type does.  (Pointers are sorted,
 * not the results: they are large.) */
static int
result_cmp(const void *pa, const void *pb)
{
	const struct result *a = *(const struct result *const *)pa;
	const struct result *b = *(const struct result *const *)pb;
	int c = span_cmp(&a->col[COL_TARGET], &b->col[COL_TARGET]);

	if (c != 0)
		return c;
	if (a->started_ms != b->started_ms)
		return a->started_ms < b->started_ms ? -1 : 1;
	c = span_cmp(&a->col[COL_STARTED_AT], &b->col[COL_STARTED_AT]);
	if (c != 0)
		return c;
	return strncasecmp(a->col[COL_ID].p, b->col[COL_ID].p, 36);
}

static bool
same_ok(const struct result *a, const struct result *b)
{
	return span_cmp(&a->col[COL_OK], &b->col[COL_OK]) == 0;
}

static void
add_col(struct pgw_buf *b, const struct span *s, const char *after)
{
	pgw_buf_add(b, s->p, s->len);
	pgw_buf_add(b, after, strlen(after));
}

/* started_at in microseconds since the epoch, as the server reads it. */
static int64_t
started_us(const struct result *r)
{
	const struct span *t = &r->col[COL_STARTED_AT];
	const char *dot = memchr(t->p, '.', t->len);
	size_t n = 0;

	if (dot == NULL || dot < t->p + 19)
		return r->started_ms * 1000;
	for (dot++; dot + n < t->p + t->len && dot[n] >= '0' && dot[n] <= '9';
	     n++)
		;
	return pgw_time_us(r->started_ms, dot, n);
}

/* One state row for the results r[0..n) of one target, sorted. */
static void
state_row(struct pgw_buf *b, struct result *const *r, size_t n)
{
	const struct result *newest = r[n - 1];
	char us[24];
	size_t s = n - 1, i;
	int len;

	while (s > 0 && same_ok(r[s - 1], newest))
		s--;
	add_col(b, &newest->col[COL_TARGET], "\t");
	add_col(b, &newest->col[COL_URL], "\t");
	add_col(b, &newest->col[COL_LABELS], "\t");
	add_col(b, &newest->col[COL_STARTED_AT], "\t");
	add_col(b, &newest->col[COL_OK], "\t");
	add_col(b, &newest->col[COL_STATUS], "\t");
	add_col(b, &newest->col[COL_ERROR_KIND], "\t");
	add_col(b, &newest->col[COL_DURATION_MS], "\t");
	add_col(b, &r[s]->col[COL_STARTED_AT], "\t");
	if (s > 0)
		add_col(b, &r[s - 1]->col[COL_STARTED_AT], "\t{");
	else
		pgw_buf_add(b, "\\N\t{", 4);
	for (i = s; i < n; i++) {
		len = snprintf(us, sizeof us, "%s%lld", i > s ? "," : "",
		               (long long)started_us(r[i]));
		pgw_buf_add(b, us, (size_t)len);
	}
	pgw_buf_add(b, "}\n", 2);
}

/* Append to b the state rows of rows[0..n) (not those marked skip). */
static void
state_rows(struct pgw_buf *b, const struct pgw_row *rows, size_t n)
{
	struct result *r = xcalloc(n > 0 ? n : 1, sizeof *r);
	struct result **order = xcalloc(n > 0 ? n : 1, sizeof *order);
	size_t live = 0, i, g;

	for (i = 0; i < n; i++)
		if (!rows[i].skip) {
			split_columns(&rows[i], &r[live]);
			order[live] = &r[live];
			live++;
		}
	qsort(order, live, sizeof *order, result_cmp);
	for (g = 0; g < live; g = i) {
		for (i = g + 1; i < live &&
		                span_cmp(&order[i]->col[COL_TARGET],
		                         &order[g]->col[COL_TARGET]) == 0;
		     i++)
			;
		state_row(b, &order[g], i - g);
	}
	free(order);
	free(r);
}

void
pgw_state_make(struct pgw_state *s, const struct pgw_row *rows, size_t n)
{
	s->text.len = 0;
	s->bin.len = 0;
	state_rows(&s->text, rows, n);
	s->binary = pgw_rows_binary(&s->bin, s->text.data, s->text.len,
	                            PGW_STATE_COLUMN_TYPES);
}

void
pgw_state_free(struct pgw_state *s)
{
	free(s->text.data);
	free(s->bin.data);
	*s = (struct pgw_state){ 0 };
}
