/*
 * pgw.h - sm-pg-write's own pieces: the PostgreSQL side (pg.c) and the
 * embedded schema migrations (migrations.c).
 */
#ifndef PGW_H
#define PGW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- migrations.c ----------------------------------------------------- */

struct migration {
	int version;      /* 1, 2, 3, ... without gaps */
	const char *name; /* short, for schema_migrations.name and logs */
	const char *sql;  /* one or more statements, run in one transaction */
};

extern const struct migration pgw_migrations[];
extern const size_t pgw_n_migrations;

/* ---- pg.c ------------------------------------------------------------- */

/* One record of a batch as pg.c sees it: the original line (sent to the
 * server as jsonb) and whether it is in the batch only to keep the ack
 * order (a record refused earlier, never sent). */
struct pgw_row {
	const char *line;
	size_t len;
	int32_t day; /* started_at's UTC day, days since 1970-01-01 */
	bool skip;
};

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
 * COPY into the staging table, insert into checks, upsert targets, commit.
 * The day partitions the rows need are made first, in their own
 * transaction. */
enum pgw_status pgw_write(struct pgw *pg, const struct pgw_row *rows,
                          size_t n, char *err, size_t errlen);
/* Retention: drop the day partitions of checks that end at or before
 * cutoff_ms (unix ms); *dropped is how many. */
enum pgw_status pgw_drop_before(struct pgw *pg, int64_t cutoff_ms,
                                int *dropped, char *err, size_t errlen);

#endif
