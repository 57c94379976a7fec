/*
 * pgw.h - sm-pg-write's own pieces: the PostgreSQL side (pg.c) and the
 * embedded schema migrations (migrations.c).
 */
#ifndef PGW_H
#define PGW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ---- migrations.c ----------------------------------------------------- */

struct migration {
	int version;      /* increasing along the list; gaps allowed */
	const char *name; /* short, for schema_migrations.name and logs */
	const char *sql;  /* one or more statements, run in one transaction */
};

extern const struct migration pgw_migrations[];
extern const size_t pgw_n_migrations;

/* ---- row.c ------------------------------------------------------------ */

/* The staging table's columns, in the order of pgw_row_format's fields:
 * every column of checks but stored_at. */
#define PGW_COLUMNS \
	"id, target, url, labels, probe, scheduled_at, started_at, ok, " \
	"status, error_kind, error, duration_ms, dns_ms, connect_ms, tls_ms, " \
	"ttfb_ms, transfer_ms, bytes, http_version, remote_ip, redirects, " \
	"final_url, regex_pattern, regex_matched, tls_version, " \
	"tls_cert_not_after, tls_cert_issuer, tls_chain_not_after, " \
	"tls_error, truncated, content_length, wire_bytes, hops, " \
	"final_phases, regex_ms, tls_cert_not_before, tls_cert_subject, " \
	"tls_cert_sans, tls_cert_sha256, " \
	"kafka_topic, kafka_partition, kafka_offset"

struct pgw_buf {
	char *data;
	size_t len, cap;
};

/* Append the result record r (validated) to b as one COPY text row,
 * newline included. */
void pgw_row_format(struct pgw_buf *b, const json_t *r);
/* The same for the result record in line[0..len), without building a
 * tree: true when the line is certainly a valid result record, its row
 * appended and *started_ms set; false when unsure (b is unchanged), and
 * then json_line_parse, result_validate and pgw_row_format decide. */
bool pgw_row_scan(struct pgw_buf *b, const char *line, size_t len,
                  int64_t *started_ms);
/* Append s[0..n) to b as it is. */
void pgw_buf_add(struct pgw_buf *b, const char *s, size_t n);
/* Make b n bytes longer; returns where they begin, for the caller to
 * fill. */
void *pgw_buf_grow(struct pgw_buf *b, size_t n);

/* ---- copybin.c -------------------------------------------------------- */

/* COPY's binary format: what comes before the first tuple and after the
 * last. */
#define PGW_BINARY_HEADER_LEN 19
#define PGW_BINARY_TRAILER_LEN 2
extern const char pgw_binary_header[PGW_BINARY_HEADER_LEN];
extern const char pgw_binary_trailer[PGW_BINARY_TRAILER_LEN];

/* The types of a row's columns, one letter each: U uuid, T text, J jsonb,
 * Z timestamptz, B boolean, I integer, L bigint, F double precision,
 * A bigint[], a integer[], s smallint[], w text[] of plain words.
 * PGW_COLUMNS, PGW_STATE_COLUMNS (state.c), PGW_PENDING_COLUMNS and
 * PGW_RUN_COLUMNS (rollup.c): */
#define PGW_COLUMN_TYPES "UTTJTZZBITTFFFFFFLTTITTBTZTZTBLLJJFZTJTTIL"
#define PGW_STATE_COLUMN_TYPES "TTJZBITFZZA"
#define PGW_PENDING_COLUMN_TYPES "TTZIIILFFLZZZZsawa"
#define PGW_RUN_COLUMN_TYPES "TTIBZZTT"

/* Append to b the binary tuple of row[0..len), a COPY text row (newline
 * included) with columns of the given types: true when every value could
 * be encoded as the server would read its text; false (b unchanged) when
 * one could not, and the row must go as text. */
bool pgw_row_binary(struct pgw_buf *b, const char *row, size_t len,
                    const char *types);
/* The same for every row of rows[0..len); false (b unchanged) when one
 * could not be encoded. */
bool pgw_rows_binary(struct pgw_buf *b, const char *rows, size_t len,
                     const char *types);
/* A time in microseconds since the epoch, as the server reads its text:
 * ms from time_parse_ms (which keeps three digits of the fraction), and
 * the fraction's digits[0..n), which the server rounds to microseconds. */
int64_t pgw_time_us(int64_t ms, const char *digits, size_t n);

/* ---- pg.c ------------------------------------------------------------- */

/* One record of a batch as pg.c sees it: its COPY row (pgw_row_format)
 * and whether it is in the batch only to keep the ack order (a record
 * refused earlier, never sent). */
struct pgw_row {
	const char *copy;
	size_t len;
	const char *bin; /* its binary tuple (pgw_row_binary); NULL: none */
	size_t bin_len;
	int64_t started_ms; /* started_at, unix ms */
	int32_t day; /* started_at's UTC day, days since 1970-01-01 */
	bool skip;
};

/* ---- rollup.c --------------------------------------------------------- */

/* The duration histogram: PGW_HIST_BOUNDS upper bounds in microseconds,
 * PGW_HIST_BOUNDS + 1 buckets. */
#define PGW_HIST_BOUNDS 72
extern const int64_t pgw_hist_bounds[PGW_HIST_BOUNDS];
/* The bucket of a duration in milliseconds, as sm_duration_bucket(). */
int pgw_hist_bucket(double ms);

/* What a batch's inserted rows add: rollup_pending rows and outage runs,
 * as COPY text (columns: PGW_PENDING_COLUMNS, PGW_RUN_COLUMNS), and the
 * same in COPY's binary format when every row could be encoded
 * (pending_bin, runs_bin; len 0: send the text). */
#define PGW_PENDING_COLUMNS \
	"target, probe, bucket, checks, ok, dur_n, dur_sum_us, dur_min, " \
	"dur_max, bytes, first_at, last_at, tls_not_after, " \
	"tls_chain_not_after, hist_b, hist_n, err_kind, err_n"
#define PGW_RUN_COLUMNS \
	"target, probe, seq, ok, start_at, key_first_at, error_kind, error"
struct pgw_rollup {
	struct pgw_buf pending, runs;
	struct pgw_buf pending_bin, runs_bin;
	size_t n_pending, n_runs;
};

/* Make ru from the rows not marked skip and, unless inserted is NULL,
 * marked in inserted[]. */
void pgw_rollup_make(struct pgw_rollup *ru, const struct pgw_row *rows,
                     size_t n, const bool *inserted);
void pgw_rollup_free(struct pgw_rollup *ru);
/* inserted[i]: whether rows[i] is one of ids[0..n_ids) (the ids the
 * staging INSERT returned; a duplicate within the batch is marked once). */
void pgw_rollup_mark(const struct pgw_row *rows, size_t n,
                     const char *const *ids, size_t n_ids, bool *inserted);

/* ---- state.c ---------------------------------------------------------- */

/* The columns of a state row, one per target of a batch (state.c). */
#define PGW_STATE_COLUMNS \
	"target, url, labels, last_checked_at, last_ok, last_status, " \
	"last_error_kind, last_duration_ms, run_start, before_run, run_us"

/* A batch's targets state rows, one per target its rows (those not marked
 * skip) bring, as COPY text, and in binary format when every one could be
 * encoded (binary). */
struct pgw_state {
	struct pgw_buf text, bin;
	bool binary;
};

/* Make s the state rows of rows[0..n), in place of what it held. */
void pgw_state_make(struct pgw_state *s, const struct pgw_row *rows,
                    size_t n);
void pgw_state_free(struct pgw_state *s);

enum pgw_status {
	PGW_OK,        /* committed */
	PGW_DATA,      /* the server refused the data (SQLSTATE class 22/23):
	                  splitting the batch can isolate the culprit */
	PGW_TRANSIENT, /* connection lost or the server unavailable: retry */
	PGW_FATAL,     /* retrying will not help (configuration, schema) */
};

struct pgw;

/* conninfo: a libpq connection string or URI, or "" for the PG* variables.
 * It is kept only to reconnect and never printed. */
struct pgw *pgw_new(const char *conninfo);
/* Whether batches feed the rollups and outages (default true). */
void pgw_set_rollups(struct pgw *pg, bool on);
/* Fold rollup_pending into rollup_hourly and rollup_daily, in a
 * transaction of its own; *folded: the pending rows folded (0 when another
 * writer was folding). */
enum pgw_status pgw_fold(struct pgw *pg, long long *folded, char *err,
                         size_t errlen);
/* Rollup retention: delete hourly and daily rollups, and outages, that
 * ended before cutoff_ms; *deleted: how many rows. */
enum pgw_status pgw_rollup_drop_before(struct pgw *pg, int64_t cutoff_ms,
                                       long long *deleted, char *err,
                                       size_t errlen);
void pgw_free(struct pgw **pg);
/* Check that conninfo parses, without echoing it; 0 or -1. */
int pgw_conninfo_ok(const char *conninfo);
/* Connect if not connected: PGW_OK, PGW_TRANSIENT or PGW_FATAL, with a
 * message (libpq's, which never contains the password) in err. */
enum pgw_status pgw_connect(struct pgw *pg, char *err, size_t errlen);
/* Drop the connection (after an error that left it unusable). */
void pgw_disconnect(struct pgw *pg);
/* Apply the pending migrations under an advisory lock.  *applied is set to
 * how many were applied by this call. */
enum pgw_status pgw_migrate(struct pgw *pg, int *applied, char *err,
                            size_t errlen);
/* Store rows[0..n) (skipping those marked skip) in one transaction:
 * insert into checks, append their rollups and outage runs (rollup: made
 * by pgw_rollup_make from the same rows beforehand, used when every row
 * was new; or NULL: made here), upsert targets from their state rows
 * (state: made by pgw_state_make from the same rows beforehand, or NULL to
 * make them here), commit.  The day partitions the rows need are made first, in
 * their own transaction.  *inserted: how many rows were new to checks (the
 * others were stored before), when PGW_OK. */
enum pgw_status pgw_write(struct pgw *pg, const struct pgw_row *rows,
                          size_t n, const struct pgw_state *state,
                          const struct pgw_rollup *rollup,
                          size_t *inserted, char *err, size_t errlen);
/* Connections made again after the first one (lost, or refused and
 * retried), for the stats line. */
unsigned long pgw_reconnects(const struct pgw *pg);
/* Retention: drop the day partitions of checks that end at or before
 * cutoff_ms (unix ms); *dropped is how many. */
enum pgw_status pgw_drop_before(struct pgw *pg, int64_t cutoff_ms,
                                int *dropped, char *err, size_t errlen);

#endif
