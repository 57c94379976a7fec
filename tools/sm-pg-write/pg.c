/*
 * pg.c - sm-pg-write's PostgreSQL side, through libpq.
 *
 * A batch is one transaction: COPY the rows (row.c: fields extracted in C,
 * COPY text format) straight into checks, COPY one state row per target
 * (state.c) into a temporary table, upsert targets from it (only from
 * results newer than the stored state), COMMIT.  When the COPY into checks
 * meets an id stored before (a redelivery after a crash or a rebalance),
 * the transaction is rolled back and the rows go through a temporary
 * staging table and INSERT ... ON CONFLICT DO NOTHING instead, which skips
 * them: idempotent on id either way, and as fast as COPY when nothing is
 * redelivered.  A value the server cannot store (an integer out of range,
 * say) fails the batch with SQLSTATE class 22, which the caller answers by
 * splitting the batch.
 *
 * The connection string is never printed: libpq's own messages
 * (PQerrorMessage, the result's primary message) do not contain the
 * password, so only those are reported.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "sm.h"
#include "pgw.h"

/* pg_advisory_xact_lock key serialising migrations between writers:
 * the bytes of "sitemon1" read as a big-endian int8. */
#define MIGRATION_LOCK_KEY "8319104481311206961"

struct pgw {
	char *conninfo;
	PGconn *conn;
	/* Days whose checks partition is known to exist on this connection. */
	int32_t *days;
	size_t n_days, cap_days;
	bool no_partition; /* the last failure was "no partition for row" */
	bool duplicate;    /* the last failure was a duplicate id */
	bool redelivery;   /* the last batch held rows stored before */
	bool temp_tables;  /* sm_staging, sm_state exist on this connection */
	bool runs_analyzed; /* sm_runs has statistics on this connection */
	bool rollups;      /* batches feed the rollups and outages */
	bool staged;       /* the open batch went through the staging table */
	PGresult *returned; /* the ids the staging INSERT returned */
	unsigned long connections; /* made since start, for the stats line */
};

static const char setup_sql[] = "SET TIME ZONE 'UTC'";

/* The staging table, for a batch that holds results stored before: the
 * columns of checks the rows carry, no constraint, no index, not logged
 * (temporary).  ON COMMIT DELETE ROWS: each batch starts with an empty
 * table, and a rolled-back batch leaves nothing behind either.  Made from
 * checks after the migrations, so that it follows the schema.  The state
 * table holds a batch's state rows (state.c), one per target. */
static const char temp_tables_sql[] =
	"CREATE TEMP TABLE IF NOT EXISTS sm_staging ON COMMIT DELETE ROWS AS"
	" SELECT " PGW_COLUMNS " FROM checks WITH NO DATA;"
	"CREATE TEMP TABLE IF NOT EXISTS sm_state ("
	" target text, url text, labels jsonb, last_checked_at timestamptz,"
	" last_ok boolean, last_status integer, last_error_kind text,"
	" last_duration_ms double precision, run_start timestamptz,"
	" before_run timestamptz, run_us bigint[])"
	" ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS sm_runs ("
	" target text, probe text, seq integer, ok boolean,"
	" start_at timestamptz, key_first_at timestamptz, error_kind text,"
	" error text) ON COMMIT DELETE ROWS";

/* A batch goes straight into checks by COPY.  When COPY meets an id stored
 * before (SQLSTATE 23505: a redelivery), the batch is rolled back and
 * stored again through the staging table, skipping what is there. */
static const char copy_checks_sql[] =
	"COPY checks (" PGW_COLUMNS ") FROM STDIN";
static const char copy_staging_sql[] =
	"COPY sm_staging (" PGW_COLUMNS ") FROM STDIN";
/* The same in binary format (copybin.c), for rows that all have it. */
static const char copy_checks_binary_sql[] =
	"COPY checks (" PGW_COLUMNS ") FROM STDIN (FORMAT binary)";
static const char copy_staging_binary_sql[] =
	"COPY sm_staging (" PGW_COLUMNS ") FROM STDIN (FORMAT binary)";
static const char insert_staged_sql[] =
	"INSERT INTO checks (" PGW_COLUMNS ")\n"
	"SELECT " PGW_COLUMNS " FROM sm_staging\n"
	"ON CONFLICT (id, started_at) DO NOTHING";
/* The same, returning the ids it inserted, for the rollups. */
static const char insert_staged_returning_sql[] =
	"INSERT INTO checks (" PGW_COLUMNS ")\n"
	"SELECT " PGW_COLUMNS " FROM sm_staging\n"
	"ON CONFLICT (id, started_at) DO NOTHING RETURNING id";
static const char copy_pending_sql[] =
	"COPY rollup_pending (" PGW_PENDING_COLUMNS ") FROM STDIN";
static const char copy_runs_sql[] =
	"COPY sm_runs (" PGW_RUN_COLUMNS ") FROM STDIN";
static const char copy_pending_binary_sql[] =
	"COPY rollup_pending (" PGW_PENDING_COLUMNS ") FROM STDIN"
	" (FORMAT binary)";
static const char copy_runs_binary_sql[] =
	"COPY sm_runs (" PGW_RUN_COLUMNS ") FROM STDIN (FORMAT binary)";

/*
 * Outages from the batch's runs (rollup.c), before targets moves on.  A
 * key (target, probe) whose first check in the batch is newer than every
 * stored check of its target (targets.last_checked_at) extends the story
 * at its end: its first ok run (seq 0 or 1) closes the open outage; each
 * failed run opens one that ends where the next run starts, except a
 * first run that continues the outage running at its start.  Any other
 * key brought checks older than stored ones: its outages from its first
 * check on are made again from the stored checks (sm_outages_rebuild).
 *
 * Writers take turns for this and the targets upsert (a transaction
 * advisory lock, held to COMMIT): each then sees what the one before
 * committed, so outages stay exact when two writers get the same target
 * (a consumer-group rebalance), and they cannot deadlock on outages or
 * targets rows.  The COPYs before it, the bulk of a batch, do not wait.
 */
static const char outages_sql[] =
	"SELECT pg_advisory_xact_lock(8319104481311206964);\n"
	"UPDATE outages AS o SET ended_at = r.start_at\n"
	"FROM sm_runs AS r LEFT JOIN targets AS t ON t.target = r.target\n"
	"WHERE r.ok AND r.seq <= 1 AND o.target = r.target\n"
	"  AND o.probe = r.probe AND o.ended_at IS NULL\n"
	"  AND (t.last_checked_at IS NULL OR r.key_first_at > t.last_checked_at);\n"
	"INSERT INTO outages (target, probe, started_at, ended_at, error_kind,\n"
	"  error)\n"
	"SELECT r.target, r.probe, r.start_at, n.start_at, r.error_kind, r.error\n"
	"FROM sm_runs AS r\n"
	"  LEFT JOIN sm_runs AS n ON n.target = r.target AND n.probe = r.probe\n"
	"    AND n.seq = r.seq + 1\n"
	"  LEFT JOIN targets AS t ON t.target = r.target\n"
	"WHERE NOT r.ok\n"
	"  AND (t.last_checked_at IS NULL OR r.key_first_at > t.last_checked_at)\n"
	"  AND NOT (r.seq = 0 AND EXISTS (SELECT 1 FROM outages AS o\n"
	"    WHERE o.target = r.target AND o.probe = r.probe\n"
	"      AND o.started_at < r.start_at\n"
	"      AND (o.ended_at IS NULL OR o.ended_at >= r.start_at)))\n"
	"ON CONFLICT DO NOTHING;\n"
	"SELECT sm_outages_rebuild(r.target, r.probe, r.key_first_at)\n"
	"FROM sm_runs AS r JOIN targets AS t ON t.target = r.target\n"
	"WHERE r.seq = 0 AND r.key_first_at <= t.last_checked_at;\n";

static const char copy_state_sql[] =
	"COPY sm_state (" PGW_STATE_COLUMNS ") FROM STDIN";
static const char copy_state_binary_sql[] =
	"COPY sm_state (" PGW_STATE_COLUMNS ") FROM STDIN (FORMAT binary)";

/*
 * The state rows update targets, from results newer than the stored state
 * (cur) only; older ones are stored in checks but do not move the state.
 *
 * targets.last_change_at is the start of the current ok/not-ok run.  Of
 * the batch's results newer than cur.last_checked_at (call them w), a run
 * starts at the first and wherever ok flips.  If w holds more than one run,
 * or its one run differs from the stored last_ok, the last run's start is
 * the change; otherwise the stored value stays.  In terms of a state row
 * (state.c): w's last run starts at run_start if that is newer than cur,
 * else at the first of run_us newer than cur; w holds a flip exactly
 * when before_run is newer than cur.
 */
#define CHANGE_AT_SQL \
	"CASE\n" \
	"    WHEN cur.last_checked_at IS NULL THEN n.run_start\n" \
	"    WHEN n.run_start > cur.last_checked_at THEN\n" \
	"      CASE WHEN n.before_run > cur.last_checked_at\n" \
	"             OR cur.last_ok IS DISTINCT FROM n.last_ok\n" \
	"           THEN n.run_start ELSE cur.last_change_at END\n" \
	"    WHEN cur.last_ok IS DISTINCT FROM n.last_ok THEN\n" \
	"      (SELECT to_timestamp(0) + min(us) * interval '1 microsecond'\n" \
	"       FROM unnest(n.run_us) AS us\n" \
	"       WHERE us > extract(epoch FROM cur.last_checked_at) * 1000000)\n" \
	"    ELSE cur.last_change_at END"

/*
 * The targets a batch brings that are there already are updated in place
 * (a join, far cheaper than an upsert that probes for a conflict per row);
 * then the new ones are inserted, an upsert for a writer that inserts the
 * same target at once.  The UPDATE reads cur as the row it locks, so that
 * a writer waiting on another's update computes from that update.
 *
 * XXX The upsert's cur is read from the statement's snapshot: two writers
 * inserting the same new target at the same instant may compute
 * last_change_at from a state one of them has just replaced.  Kafka
 * partitions by target, so one writer owns a target's results outside
 * consumer-group rebalances.  Writers lock rows in the order of the join,
 * which is the state rows' (sorted by target) when the state is the
 * smaller side; a deadlock between two writers (SQLSTATE 40P01) rolls one
 * back, and that batch is retried.
 */
static const char upsert_sql[] =
	"UPDATE targets AS cur SET\n"
	"  url = n.url, labels = n.labels,\n"
	"  last_checked_at = n.last_checked_at,\n"
	"  last_ok = n.last_ok, last_status = n.last_status,\n"
	"  last_error_kind = n.last_error_kind,\n"
	"  last_duration_ms = n.last_duration_ms,\n"
	"  down_since = CASE WHEN n.last_ok THEN NULL ELSE " CHANGE_AT_SQL " END,\n"
	"  last_change_at = " CHANGE_AT_SQL "\n"
	"FROM sm_state AS n\n"
	"WHERE cur.target = n.target\n"
	"  AND n.last_checked_at > cur.last_checked_at;\n"
	"WITH d AS (\n"
	"  SELECT n.*, " CHANGE_AT_SQL " AS change_at\n"
	"  FROM sm_state AS n LEFT JOIN targets AS cur ON cur.target = n.target\n"
	"  WHERE cur.last_checked_at IS NULL\n"
	")\n"
	"INSERT INTO targets AS t (target, url, labels, last_checked_at, last_ok,\n"
	"  last_status, last_error_kind, last_duration_ms, down_since,\n"
	"  last_change_at)\n"
	"SELECT target, url, labels, last_checked_at, last_ok, last_status,\n"
	"  last_error_kind, last_duration_ms,\n"
	"  CASE WHEN last_ok THEN NULL ELSE change_at END, change_at\n"
	"FROM d ORDER BY target\n" /* writers lock rows in one order */
	"ON CONFLICT (target) DO UPDATE SET\n"
	"  url = EXCLUDED.url, labels = EXCLUDED.labels,\n"
	"  last_checked_at = EXCLUDED.last_checked_at,\n"
	"  last_ok = EXCLUDED.last_ok, last_status = EXCLUDED.last_status,\n"
	"  last_error_kind = EXCLUDED.last_error_kind,\n"
	"  last_duration_ms = EXCLUDED.last_duration_ms,\n"
	"  down_since = EXCLUDED.down_since,\n"
	"  last_change_at = EXCLUDED.last_change_at\n"
	"WHERE t.last_checked_at < EXCLUDED.last_checked_at;\n"
	"COMMIT";

struct pgw *
pgw_new(const char *conninfo)
{
	struct pgw *pg = xcalloc(1, sizeof *pg);

	pg->conninfo = xstrdup(conninfo);
	pg->rollups = true;
	return pg;
}

void
pgw_set_rollups(struct pgw *pg, bool on)
{
	pg->rollups = on;
}

void
pgw_free(struct pgw **pgp)
{
	struct pgw *pg = *pgp;

	if (pg == NULL)
		return;
	pgw_disconnect(pg);
	/* The string may hold a password: do not leave it in freed memory. */
	explicit_bzero(pg->conninfo, strlen(pg->conninfo));
	free(pg->conninfo);
	free(pg->days);
	PQclear(pg->returned);
	free(pg);
	*pgp = NULL;
}

int
pgw_conninfo_ok(const char *conninfo)
{
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);

	/* errmsg may quote part of the string, the password included: the
	 * caller reports a generic message instead. */
	if (errmsg != NULL)
		PQfreemem(errmsg);
	if (opts == NULL)
		return -1;
	PQconninfoFree(opts);
	return 0;
}

void
pgw_disconnect(struct pgw *pg)
{
	if (pg->conn != NULL) {
		PQfinish(pg->conn);
		pg->conn = NULL;
	}
	pg->n_days = 0;
	pg->temp_tables = false;
	pg->runs_analyzed = false;
}

/* libpq messages end with a newline and may span lines: make one line. */
static void
one_line(char *dst, size_t dstlen, const char *src)
{
	size_t o = 0;

	if (dstlen == 0)
		return;
	for (; src != NULL && *src != '\0' && o + 1 < dstlen; src++) {
		if (*src == '\n' || *src == '\r' || *src == '\t') {
			if (src[1] == '\0')
				break;
			/* "failed: Connection refused\n\tIs the server..." */
			if (o > 0 && dst[o - 1] != ' ' && o + 3 < dstlen) {
				if (dst[o - 1] != ':' && dst[o - 1] != '.' &&
				    dst[o - 1] != ';')
					dst[o++] = ';';
				dst[o++] = ' ';
			}
			continue;
		}
		dst[o++] = *src;
	}
	while (o > 0 && dst[o - 1] == ' ')
		o--;
	dst[o] = '\0';
}

/* Classify a failed command and describe it in err. */
static enum pgw_status
failure(struct pgw *pg, const PGresult *res, char *err, size_t errlen)
{
	const char *state = NULL, *primary = NULL;
	char msg[1024];

	if (res != NULL) {
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	}
	if (primary != NULL && state != NULL) {
		one_line(msg, sizeof msg, primary);
		snprintf(err, errlen, "%s (SQLSTATE %s)", msg, state);
	} else {
		one_line(msg, sizeof msg, PQerrorMessage(pg->conn));
		snprintf(err, errlen, "%s", msg[0] ? msg : "unknown libpq error");
	}
	pg->no_partition = false;
	pg->duplicate = false;
	if (PQstatus(pg->conn) != CONNECTION_OK || state == NULL)
		return PGW_TRANSIENT;
	/* check_violation: checks has no CHECK constraint, so this is "no
	 * partition of relation checks found for row". */
	if (strcmp(state, "23514") == 0)
		pg->no_partition = true;
	/* unique_violation: an id stored before, met by COPY. */
	if (strcmp(state, "23505") == 0)
		pg->duplicate = true;
	/* 22 data exception, 23 integrity constraint, 54 program limit
	 * (a value too large to index): the rows are at fault. */
	if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
	    strncmp(state, "54", 2) == 0)
		return PGW_DATA;
	/* 08 connection, 40 rollback (serialization, deadlock), 53
	 * resources (disk full, too many connections), 55 object not in
	 * prerequisite state (lock not available), 57 operator intervention
	 * (shutdown, cancel), 58 system error, 25006 read-only (a failover in
	 * progress), XX internal: worth retrying. */
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "40", 2) == 0 ||
	    strncmp(state, "53", 2) == 0 || strncmp(state, "55", 2) == 0 ||
	    strncmp(state, "57", 2) == 0 || strncmp(state, "58", 2) == 0 ||
	    strcmp(state, "25006") == 0 || strncmp(state, "XX", 2) == 0)
		return PGW_TRANSIENT;
	/* 42 syntax or access rule (a schema someone changed, a missing
	 * privilege), 28 authorization, 3D no such database, ...: retrying the
	 * same statement would fail the same way. */
	return PGW_FATAL;
}

/* Server notices: NOTICE and below ("relation already exists, skipping")
 * are noise here; a WARNING is worth a log line. */
static void
on_notice(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	char line[1024];

	(void)arg;
	if (sev == NULL || msg == NULL || strcmp(sev, "WARNING") != 0)
		return;
	one_line(line, sizeof line, msg);
	info("server warning: %s", line);
}

/* Leave no transaction open after a failure, if the connection lives. */
static void
rollback(struct pgw *pg)
{
	PGresult *res;

	if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
		pgw_disconnect(pg);
		return;
	}
	if (PQtransactionStatus(pg->conn) == PQTRANS_IDLE)
		return;
	res = PQexec(pg->conn, "ROLLBACK");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		pgw_disconnect(pg);
	PQclear(res);
}

/* Run sql (with nparams params, none when 0).  The result when its status
 * is want (the caller clears it); else NULL, with *st and err saying why,
 * and the transaction rolled back. */
static PGresult *
query(struct pgw *pg, const char *sql, int nparams, const char *const *params,
      ExecStatusType want, enum pgw_status *st, char *err, size_t errlen)
{
	PGresult *res = nparams > 0
	    ? PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0)
	    : PQexec(pg->conn, sql);

	*st = PGW_OK;
	if (PQresultStatus(res) == want)
		return res;
	*st = failure(pg, res, err, errlen);
	PQclear(res);
	rollback(pg);
	return NULL;
}

/* Run sql, expecting want; on failure classify, roll back, return. */
static enum pgw_status
exec_expect(struct pgw *pg, const char *sql, ExecStatusType want, char *err,
            size_t errlen)
{
	enum pgw_status st;

	PQclear(query(pg, sql, 0, NULL, want, &st, err, errlen));
	return st;
}

enum pgw_status
pgw_connect(struct pgw *pg, char *err, size_t errlen)
{
	const char *keys[12], *vals[12];
	int k = 0;
	char msg[1024];

	if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK)
		return PGW_OK;
	pgw_disconnect(pg);

	/* Defaults first: a value in the connection string, which comes
	 * last, or in the matching PG* variable wins. */
	if (getenv("PGCONNECT_TIMEOUT") == NULL) {
		keys[k] = "connect_timeout";
		vals[k++] = "10";
	}
	if (getenv("PGAPPNAME") == NULL) {
		keys[k] = "application_name";
		vals[k++] = diag_progname();
	}
	/* A server that vanishes without a FIN (a network partition, a host
	 * that died) is noticed in about a minute instead of hours. */
	keys[k] = "keepalives_idle";
	vals[k++] = "30";
	keys[k] = "keepalives_interval";
	vals[k++] = "10";
	keys[k] = "keepalives_count";
	vals[k++] = "3";
	keys[k] = "tcp_user_timeout";
	vals[k++] = "60000";
	keys[k] = "client_encoding";
	vals[k++] = "UTF8";
	keys[k] = "dbname";
	vals[k++] = pg->conninfo;
	keys[k] = NULL;
	vals[k] = NULL;

	pg->conn = PQconnectdbParams(keys, vals, 1);
	if (pg->conn == NULL) {
		snprintf(err, errlen, "out of memory in libpq");
		return PGW_TRANSIENT;
	}
	if (PQstatus(pg->conn) != CONNECTION_OK) {
		one_line(msg, sizeof msg, PQerrorMessage(pg->conn));
		snprintf(err, errlen, "cannot connect: %s", msg);
		pgw_disconnect(pg);
		return PGW_TRANSIENT;
	}
	pg->connections++;
	PQsetNoticeReceiver(pg->conn, on_notice, NULL);
	return exec_expect(pg, setup_sql, PGRES_COMMAND_OK, err, errlen);
}

static enum pgw_status
migrate_one(struct pgw *pg, const struct migration *m, int *applied,
            char *err, size_t errlen)
{
	char version[16];
	const char *params[2];
	PGresult *res;
	enum pgw_status st;
	bool present;

	st = exec_expect(pg,
	    "BEGIN;"
	    "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ");"
	    "CREATE TABLE IF NOT EXISTS schema_migrations ("
	    " version integer PRIMARY KEY,"
	    " name text NOT NULL,"
	    " applied_at timestamptz NOT NULL DEFAULT now())",
	    PGRES_COMMAND_OK, err, errlen);
	if (st != PGW_OK)
		return st;

	snprintf(version, sizeof version, "%d", m->version);
	params[0] = version;
	params[1] = m->name;
	res = query(pg,
	    "SELECT 1 FROM schema_migrations WHERE version = $1::integer",
	    1, params, PGRES_TUPLES_OK, &st, err, errlen);
	if (res == NULL)
		return st;
	present = PQntuples(res) > 0;
	PQclear(res);
	if (present)
		return exec_expect(pg, "COMMIT", PGRES_COMMAND_OK, err, errlen);

	st = exec_expect(pg, m->sql, PGRES_COMMAND_OK, err, errlen);
	if (st != PGW_OK) {
		char inner[512];

		snprintf(inner, sizeof inner, "%s", err);
		snprintf(err, errlen, "migration %d (%s): %s", m->version,
		         m->name, inner);
		return st;
	}
	res = query(pg,
	    "INSERT INTO schema_migrations (version, name)"
	    " VALUES ($1::integer, $2)",
	    2, params, PGRES_COMMAND_OK, &st, err, errlen);
	if (res == NULL)
		return st;
	PQclear(res);
	st = exec_expect(pg, "COMMIT", PGRES_COMMAND_OK, err, errlen);
	if (st == PGW_OK) {
		(*applied)++;
		info("applied schema migration %d (%s)", m->version, m->name);
	}
	return st;
}

/* The version the database is at, 0 when schema_migrations is missing.
 * Reads only, so that a writer role without CREATE privilege starts
 * against an up-to-date schema. */
static enum pgw_status
schema_version(struct pgw *pg, long *version, char *err, size_t errlen)
{
	PGresult *res;
	enum pgw_status st;
	bool exists;

	*version = 0;
	res = query(pg, "SELECT to_regclass('schema_migrations') IS NOT NULL",
	            0, NULL, PGRES_TUPLES_OK, &st, err, errlen);
	if (res == NULL)
		return st;
	exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!exists)
		return PGW_OK;
	res = query(pg, "SELECT coalesce(max(version), 0) FROM schema_migrations",
	            0, NULL, PGRES_TUPLES_OK, &st, err, errlen);
	if (res == NULL)
		return st;
	*version = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return PGW_OK;
}

/* How many of this program's migrations the database has. */
static enum pgw_status
migrations_present(struct pgw *pg, size_t *present, char *err, size_t errlen)
{
	char list[16 * 64];
	const char *params[1];
	size_t i, o = 0;
	PGresult *res;
	enum pgw_status st;

	list[o++] = '{';
	for (i = 0; i < pgw_n_migrations && o + 16 < sizeof list; i++)
		o += (size_t)snprintf(list + o, sizeof list - o, "%s%d",
		                      i ? "," : "", pgw_migrations[i].version);
	list[o++] = '}';
	list[o] = '\0';
	params[0] = list;
	res = query(pg, "SELECT count(*) FROM schema_migrations"
	            " WHERE version = ANY ($1::integer[])", 1, params,
	            PGRES_TUPLES_OK, &st, err, errlen);
	if (res == NULL)
		return st;
	*present = strtoul(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return PGW_OK;
}

enum pgw_status
pgw_migrate(struct pgw *pg, int *applied, char *err, size_t errlen)
{
	int latest = pgw_migrations[pgw_n_migrations - 1].version;
	enum pgw_status st;
	long v;
	size_t i;

	*applied = 0;
	st = schema_version(pg, &v, err, errlen);
	if (st != PGW_OK)
		return st;
	if (v > latest)
		info("database schema version %ld is newer than this "
		     "program's %d", v, latest);
	if (v >= latest) {
		size_t present;

		/* A version below the latest may still be missing: one
		 * another branch added, merged after this database moved
		 * past it. */
		st = migrations_present(pg, &present, err, errlen);
		if (st != PGW_OK || present == pgw_n_migrations)
			return st;
	}
	for (i = 0; i < pgw_n_migrations; i++) {
		st = migrate_one(pg, &pgw_migrations[i], applied, err, errlen);
		if (st != PGW_OK)
			return st;
	}
	return PGW_OK;
}

/* Run sql, a statement with a row count, keeping the count in *count. */
static enum pgw_status
exec_count(struct pgw *pg, const char *sql, size_t *count, char *err,
           size_t errlen)
{
	enum pgw_status st;
	PGresult *res = query(pg, sql, 0, NULL, PGRES_COMMAND_OK, &st, err,
	                      errlen);

	if (res == NULL)
		return st;
	*count = strtoul(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return PGW_OK;
}

/* Rows go in binary format when every one sent has its binary tuple. */
static bool
rows_binary(const struct pgw_row *rows, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!rows[i].skip && rows[i].bin == NULL)
			return false;
	return true;
}

/* Gathers small pieces of COPY data so that each send is large. */
struct copy_out {
	PGconn *conn;
	char *buf;
	size_t used;
	bool ok;
};

static void
copy_out_flush(struct copy_out *o)
{
	if (o->ok && o->used > 0)
		o->ok = PQputCopyData(o->conn, o->buf, (int)o->used) == 1;
	o->used = 0;
}

static void
copy_out_add(struct copy_out *o, const char *p, size_t len)
{
	enum { CHUNK = 256 * 1024 };

	if (o->used > 0 && o->used + len > CHUNK)
		copy_out_flush(o);
	if (len >= CHUNK) { /* as large as a chunk: goes as it is */
		o->ok = o->ok && PQputCopyData(o->conn, p, (int)len) == 1;
		return;
	}
	if (o->buf == NULL)
		o->buf = xmalloc(CHUNK);
	memcpy(o->buf + o->used, p, len);
	o->used += len;
}

/* Run sql (text format) or binary_sql (binary format, when every row has
 * it), a COPY ... FROM STDIN, sending rows[0..n) (not those marked skip);
 * *count: the rows the server took. */
static enum pgw_status
copy_rows(struct pgw *pg, const char *sql, const char *binary_sql,
          const struct pgw_row *rows, size_t n, size_t *count, char *err,
          size_t errlen)
{
	bool binary = binary_sql != NULL && rows_binary(rows, n);
	struct copy_out out = { .conn = pg->conn, .ok = true };
	size_t i;
	PGresult *res;
	enum pgw_status st = PGW_OK;

	res = query(pg, binary ? binary_sql : sql, 0, NULL, PGRES_COPY_IN, &st,
	            err, errlen);
	if (res == NULL)
		return st;
	PQclear(res);

	if (binary)
		copy_out_add(&out, pgw_binary_header, PGW_BINARY_HEADER_LEN);
	for (i = 0; i < n && out.ok; i++) {
		const struct pgw_row *r = &rows[i];

		if (r->skip)
			continue;
		if (binary)
			copy_out_add(&out, r->bin, r->bin_len);
		else
			copy_out_add(&out, r->copy, r->len);
	}
	if (binary)
		copy_out_add(&out, pgw_binary_trailer, PGW_BINARY_TRAILER_LEN);
	copy_out_flush(&out);
	free(out.buf);
	if (PQputCopyEnd(pg->conn, out.ok ? NULL : "client error") != 1)
		out.ok = false;

	/* The COPY's own result, then NULL. */
	while ((res = PQgetResult(pg->conn)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && st == PGW_OK)
			st = failure(pg, res, err, errlen);
		else if (st == PGW_OK)
			*count = strtoul(PQcmdTuples(res), NULL, 10);
		PQclear(res);
	}
	if (st == PGW_OK && (!out.ok || PQstatus(pg->conn) != CONNECTION_OK))
		st = failure(pg, NULL, err, errlen);
	if (st != PGW_OK)
		rollback(pg);
	return st;
}

/* Store the rows in checks, in the open transaction, through the staging
 * table: rows stored before are skipped.  *inserted: the new ones. */
static enum pgw_status
insert_staged(struct pgw *pg, const struct pgw_row *rows, size_t n,
              size_t *inserted, char *err, size_t errlen)
{
	size_t copied;
	enum pgw_status st = copy_rows(pg, copy_staging_sql,
	                               copy_staging_binary_sql, rows, n,
	                               &copied, err, errlen);

	if (st != PGW_OK)
		return st;
	pg->staged = true;
	if (!pg->rollups)
		return exec_count(pg, insert_staged_sql, inserted, err, errlen);
	PQclear(pg->returned);
	pg->returned = query(pg, insert_staged_returning_sql, 0, NULL,
	                     PGRES_TUPLES_OK, &st, err, errlen);
	if (pg->returned == NULL)
		return st;
	*inserted = (size_t)PQntuples(pg->returned);
	return PGW_OK;
}

/* Store the rows in checks in a new transaction: by COPY straight into
 * checks unless the last batch met rows stored before, else (or when COPY
 * meets one) through the staging table.  *inserted: the rows new to
 * checks. */
static enum pgw_status
insert_checks(struct pgw *pg, const struct pgw_row *rows, size_t n,
              size_t live, size_t *inserted, char *err, size_t errlen)
{
	enum pgw_status st = exec_expect(pg, "BEGIN", PGRES_COMMAND_OK, err,
	                                 errlen);

	pg->staged = false;
	if (st != PGW_OK)
		return st;
	if (!pg->redelivery) {
		st = copy_rows(pg, copy_checks_sql, copy_checks_binary_sql,
		               rows, n, inserted, err, errlen);
		if (st != PGW_DATA || !pg->duplicate)
			return st;
		/* Rolled back; the same rows again, skipping duplicates. */
		pg->redelivery = true;
		st = exec_expect(pg, "BEGIN", PGRES_COMMAND_OK, err, errlen);
		if (st != PGW_OK)
			return st;
	}
	st = insert_staged(pg, rows, n, inserted, err, errlen);
	/* A batch without duplicates: redelivery is over, COPY again. */
	if (st == PGW_OK && *inserted == live)
		pg->redelivery = false;
	return st;
}

/* COPY text rows b into sql's table, or their binary tuples bin (when
 * bin->len > 0) with binary_sql. */
static enum pgw_status
copy_buf(struct pgw *pg, const char *sql, const char *binary_sql,
         const struct pgw_buf *b, const struct pgw_buf *bin, char *err,
         size_t errlen)
{
	struct pgw_row all = {
		.copy = b->data, .len = b->len,
		.bin = bin->len > 0 ? bin->data : NULL, .bin_len = bin->len,
	};
	size_t copied;

	if (b->len == 0)
		return PGW_OK;
	return copy_rows(pg, sql, binary_sql, &all, 1, &copied, err, errlen);
}

static enum pgw_status
copy_rollup(struct pgw *pg, const struct pgw_rollup *ru, char *err,
            size_t errlen)
{
	enum pgw_status st = copy_buf(pg, copy_pending_sql,
	                              copy_pending_binary_sql, &ru->pending,
	                              &ru->pending_bin, err, errlen);

	if (st == PGW_OK)
		st = copy_buf(pg, copy_runs_sql, copy_runs_binary_sql,
		              &ru->runs, &ru->runs_bin, err, errlen);
	/* Statistics once per connection (they outlive ON COMMIT DELETE
	 * ROWS): without them the planner takes sm_runs for a few rows and
	 * joins it to targets by a probe per run. */
	if (st == PGW_OK && !pg->runs_analyzed && ru->n_runs > 0) {
		st = exec_expect(pg, "ANALYZE sm_runs", PGRES_COMMAND_OK, err,
		                 errlen);
		if (st == PGW_OK)
			pg->runs_analyzed = true;
	}
	return st;
}

/* The rollup rows and outage runs of the rows just inserted: all of them,
 * or those the staging INSERT returned. */
static enum pgw_status
feed_rollups(struct pgw *pg, const struct pgw_row *rows, size_t n,
             const struct pgw_rollup *made, char *err, size_t errlen)
{
	struct pgw_rollup ru = { 0 };
	bool *ins = NULL;
	enum pgw_status st;

	/* Every row went in: what the caller made beforehand will do. */
	if (!pg->staged && made != NULL)
		return copy_rollup(pg, made, err, errlen);
	if (pg->staged) {
		size_t k, m = pg->returned ? (size_t)PQntuples(pg->returned) : 0;
		const char **ids = xcalloc(m + 1, sizeof *ids);

		for (k = 0; k < m; k++)
			ids[k] = PQgetvalue(pg->returned, (int)k, 0);
		ins = xcalloc(n + 1, sizeof *ins);
		pgw_rollup_mark(rows, n, ids, m, ins);
		free(ids);
	}
	pgw_rollup_make(&ru, rows, n, ins);
	free(ins);
	st = copy_rollup(pg, &ru, err, errlen);
	pgw_rollup_free(&ru);
	return st;
}

/* Upsert targets from the state rows and commit. */
static enum pgw_status
upsert_and_commit(struct pgw *pg, const struct pgw_state *state, char *err,
                  size_t errlen)
{
	struct pgw_row all = {
		.copy = state->text.data, .len = state->text.len,
		.bin = state->binary ? state->bin.data : NULL,
		.bin_len = state->bin.len,
	};
	size_t copied;
	enum pgw_status st;

	st = copy_rows(pg, copy_state_sql, copy_state_binary_sql, &all, 1,
	               &copied, err, errlen);
	if (st != PGW_OK)
		return st;
	/* The outages, the upsert and COMMIT in one round trip. */
	if (pg->rollups) {
		static char *both;

		if (both == NULL) {
			both = xmalloc(sizeof outages_sql + sizeof upsert_sql);
			memcpy(both, outages_sql, sizeof outages_sql - 1);
			memcpy(both + sizeof outages_sql - 1, upsert_sql,
			       sizeof upsert_sql);
		}
		return exec_expect(pg, both, PGRES_COMMAND_OK, err, errlen);
	}
	return exec_expect(pg, upsert_sql, PGRES_COMMAND_OK, err, errlen);
}

static bool
day_known(const struct pgw *pg, int32_t day)
{
	size_t i;

	for (i = 0; i < pg->n_days; i++)
		if (pg->days[i] == day)
			return true;
	return false;
}

static void
day_add(struct pgw *pg, int32_t day)
{
	if (day_known(pg, day))
		return;
	if (pg->n_days == pg->cap_days) {
		pg->cap_days = pg->cap_days ? pg->cap_days * 2 : 16;
		pg->days = xrealloc(pg->days, pg->cap_days * sizeof *pg->days);
	}
	pg->days[pg->n_days++] = day;
}

/* Make the day partitions rows need (and the day after each, so that a
 * partition exists before midnight brings its first rows). */
static enum pgw_status
ensure_partitions(struct pgw *pg, const struct pgw_row *rows, size_t n,
                  char *err, size_t errlen)
{
	int32_t *want = NULL;
	size_t n_want = 0, i, j, o;
	char *list, date[TIME_STR_LEN];
	const char *params[1];
	PGresult *res;
	enum pgw_status st = PGW_OK;

	for (i = 0; i < n; i++) {
		int32_t d;

		if (rows[i].skip)
			continue;
		for (d = rows[i].day; d <= rows[i].day + 1; d++) {
			if (day_known(pg, d))
				continue;
			for (j = 0; j < n_want && want[j] != d; j++)
				;
			if (j < n_want)
				continue;
			want = xrealloc(want, (n_want + 1) * sizeof *want);
			want[n_want++] = d;
		}
	}
	if (n_want == 0)
		return PGW_OK;

	/* A date[] literal: {2026-11-23,2026-11-24} */
	list = xmalloc(n_want * 11 + 3);
	o = 0;
	list[o++] = '{';
	for (i = 0; i < n_want; i++) {
		time_format_ms((int64_t)want[i] * 86400000, date);
		if (i > 0)
			list[o++] = ',';
		memcpy(list + o, date, 10);
		o += 10;
	}
	list[o++] = '}';
	list[o] = '\0';
	params[0] = list;
	res = query(pg, "SELECT sm_checks_ensure_partitions($1::date[])",
	            1, params, PGRES_TUPLES_OK, &st, err, errlen);
	if (res != NULL) {
		for (i = 0; i < n_want; i++)
			day_add(pg, want[i]);
		PQclear(res);
	}
	free(list);
	free(want);
	return st;
}

/* Connected, with the temporary tables and the partitions rows need. */
static enum pgw_status
prepare(struct pgw *pg, const struct pgw_row *rows, size_t n, char *err,
        size_t errlen)
{
	enum pgw_status st;

	if (pg->conn == NULL || PQstatus(pg->conn) != CONNECTION_OK) {
		st = pgw_connect(pg, err, errlen);
		if (st != PGW_OK)
			return st;
	}
	if (!pg->temp_tables) {
		st = exec_expect(pg, temp_tables_sql, PGRES_COMMAND_OK, err,
		                 errlen);
		if (st != PGW_OK)
			return st;
		pg->temp_tables = true;
	}
	return ensure_partitions(pg, rows, n, err, errlen);
}

enum pgw_status
pgw_write(struct pgw *pg, const struct pgw_row *rows, size_t n,
          const struct pgw_state *state, const struct pgw_rollup *rollup,
          size_t *inserted, char *err, size_t errlen)
{
	struct pgw_state made = { 0 };
	enum pgw_status st;
	size_t live = 0, i;
	int attempt;

	for (i = 0; i < n; i++)
		live += !rows[i].skip;
	if (state == NULL) {
		pgw_state_make(&made, rows, n);
		state = &made;
	}
	for (attempt = 0;; attempt++) {
		*inserted = 0;
		st = prepare(pg, rows, n, err, errlen);
		if (st == PGW_OK)
			st = insert_checks(pg, rows, n, live, inserted, err,
			                   errlen);
		/* A COMMIT lost with the connection leaves the outcome
		 * unknown; the caller retries, and a batch stored whole is
		 * then a redelivery like any other. */
		if (st == PGW_OK && pg->rollups && *inserted > 0)
			st = feed_rollups(pg, rows, n, rollup, err, errlen);
		PQclear(pg->returned);
		pg->returned = NULL;
		if (st == PGW_OK)
			st = upsert_and_commit(pg, state, err, errlen);
		if (st != PGW_OK)
			*inserted = 0;
		/* A partition dropped by retention since we made it: forget
		 * what we know and make it again, once. */
		if (st == PGW_DATA && pg->no_partition && attempt == 0) {
			pg->n_days = 0;
			continue;
		}
		pgw_state_free(&made);
		return st;
	}
}

unsigned long
pgw_reconnects(const struct pgw *pg)
{
	return pg->connections > 0 ? pg->connections - 1 : 0;
}

enum pgw_status
pgw_drop_before(struct pgw *pg, int64_t cutoff_ms, int *dropped, char *err,
                size_t errlen)
{
	char cutoff[TIME_STR_LEN];
	const char *params[1];
	PGresult *res;
	enum pgw_status st;

	*dropped = 0;
	st = pgw_connect(pg, err, errlen);
	if (st != PGW_OK)
		return st;
	time_format_ms(cutoff_ms, cutoff);
	params[0] = cutoff;
	res = query(pg, "SELECT sm_checks_drop_partitions($1::timestamptz)",
	            1, params, PGRES_TUPLES_OK, &st, err, errlen);
	if (res == NULL)
		return st;
	*dropped = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	pg->n_days = 0; /* some of them may be gone */
	return PGW_OK;
}

enum pgw_status
pgw_fold(struct pgw *pg, long long *folded, char *err, size_t errlen)
{
	PGresult *res;
	enum pgw_status st;

	*folded = 0;
	st = pgw_connect(pg, err, errlen);
	if (st != PGW_OK)
		return st;
	res = query(pg, "SELECT sm_rollup_fold()", 0, NULL, PGRES_TUPLES_OK,
	            &st, err, errlen);
	if (res == NULL)
		return st;
	*folded = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return PGW_OK;
}

enum pgw_status
pgw_rollup_drop_before(struct pgw *pg, int64_t cutoff_ms, long long *deleted,
                       char *err, size_t errlen)
{
	char cutoff[TIME_STR_LEN];
	const char *params[1];
	PGresult *res;
	enum pgw_status st;

	*deleted = 0;
	st = pgw_connect(pg, err, errlen);
	if (st != PGW_OK)
		return st;
	time_format_ms(cutoff_ms, cutoff);
	params[0] = cutoff;
	res = query(pg, "SELECT sm_rollup_drop_before($1::timestamptz)",
	            1, params, PGRES_TUPLES_OK, &st, err, errlen);
	if (res == NULL)
		return st;
	*deleted = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return PGW_OK;
}
