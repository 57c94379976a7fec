/*
 * migrations.c - the database schema, as versioned migrations.
 *
 * pg.c applies them in order, each in its own transaction under an advisory
 * lock, and records each version in schema_migrations.  A migration is
 * IMMUTABLE once released: databases in the field have already run it.
 * Change the schema by appending a new version, never by editing an old one.
 */
#include "pgw.h"

/*
 * checks: one row per result.  Columns are named after the result record's
 * fields, nested objects flattened (phases.dns_ms -> dns_ms, regex.pattern
 * -> regex_pattern, tls.version -> tls_version, kafka.offset ->
 * kafka_offset).  Durations are double precision milliseconds: sm-check
 * measures them to the microsecond.
 *
 * The table is range-partitioned by started_at, one partition per UTC day,
 * so that retention drops whole partitions instead of deleting rows.  The
 * primary key includes started_at because a partitioned table's unique keys
 * must contain the partition key; id is the idempotency key, and started_at
 * is fixed per id by sm-check, so (id, started_at) is as good.
 *
 * targets: the latest state per target, from the newest started_at seen.
 * last_change_at is when the current ok/not-ok run began; down_since is the
 * same instant while the target is failing, NULL while it is up.
 */
static const char m001_initial[] =
	"CREATE TABLE checks (\n"
	"  id uuid NOT NULL,\n"
	"  target text NOT NULL,\n"
	"  url text NOT NULL,\n"
	"  labels jsonb,\n"
	"  probe text,\n"
	"  scheduled_at timestamptz,\n"
	"  started_at timestamptz NOT NULL,\n"
	"  ok boolean NOT NULL,\n"
	"  status integer,\n"
	"  error_kind text,\n"
	"  error text,\n"
	"  duration_ms double precision,\n"
	"  dns_ms double precision,\n"
	"  connect_ms double precision,\n"
	"  tls_ms double precision,\n"
	"  ttfb_ms double precision,\n"
	"  transfer_ms double precision,\n"
	"  bytes bigint,\n"
	"  http_version text,\n"
	"  remote_ip text,\n"
	"  redirects integer,\n"
	"  final_url text,\n"
	"  regex_pattern text,\n"
	"  regex_matched boolean,\n"
	"  tls_version text,\n"
	"  tls_cert_not_after timestamptz,\n"
	"  tls_cert_issuer text,\n"
	"  kafka_topic text,\n"
	"  kafka_partition integer,\n"
	"  kafka_offset bigint,\n"
	"  stored_at timestamptz NOT NULL DEFAULT now(),\n"
	"  PRIMARY KEY (id, started_at)\n"
	") PARTITION BY RANGE (started_at);\n"
	"CREATE INDEX checks_target_started_at_idx\n"
	"  ON checks (target, started_at DESC);\n"
	"\n"
	/* One partition per UTC day, checks_pYYYYMMDD, made on demand (by
	 * sm-pg-write before a batch that needs it, or by hand).  The
	 * advisory lock keeps writers from creating the same one at once. */
	"CREATE FUNCTION sm_checks_ensure_partitions(days date[])\n"
	"RETURNS integer LANGUAGE plpgsql SECURITY DEFINER AS $fn$\n"
	"DECLARE\n"
	"  d date;\n"
	"  part text;\n"
	"  created integer := 0;\n"
	"BEGIN\n"
	"  FOREACH d IN ARRAY days LOOP\n"
	"    part := 'checks_p' || to_char(d, 'YYYYMMDD');\n"
	"    CONTINUE WHEN to_regclass(quote_ident(part)) IS NOT NULL;\n"
	"    PERFORM pg_advisory_xact_lock(8319104481311206962);\n"
	/* The lookup above may have used a catalog cache that predates the
	 * lock; the CREATE itself sees the truth. */
	"    BEGIN\n"
	"      EXECUTE format('CREATE TABLE %I PARTITION OF checks'\n"
	"        ' FOR VALUES FROM (%L) TO (%L)', part,\n"
	"        to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00',\n"
	"        to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00');\n"
	"      created := created + 1;\n"
	"    EXCEPTION WHEN duplicate_table THEN\n"
	"      NULL;\n"
	"    END;\n"
	"  END LOOP;\n"
	"  RETURN created;\n"
	"END\n"
	"$fn$;\n"
	"\n"
	/* Retention: drop the day partitions that end at or before cutoff. */
	"CREATE FUNCTION sm_checks_drop_partitions(cutoff timestamptz)\n"
	"RETURNS integer LANGUAGE plpgsql SECURITY DEFINER AS $fn$\n"
	"DECLARE\n"
	"  r record;\n"
	"  dropped integer := 0;\n"
	"BEGIN\n"
	"  PERFORM pg_advisory_xact_lock(8319104481311206962);\n"
	"  FOR r IN\n"
	"    SELECT c.oid::regclass AS part, c.relname\n"
	"    FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid\n"
	"    WHERE i.inhparent = 'checks'::regclass\n"
	"      AND c.relname ~ '^checks_p[0-9]{8}$'\n"
	"    ORDER BY c.relname\n"
	"  LOOP\n"
	"    CONTINUE WHEN (to_char(to_date(substr(r.relname, 9), 'YYYYMMDD') + 1,\n"
	"                   'YYYY-MM-DD') || ' 00:00:00+00')::timestamptz > cutoff;\n"
	"    EXECUTE format('DROP TABLE %s', r.part);\n"
	"    dropped := dropped + 1;\n"
	"  END LOOP;\n"
	"  RETURN dropped;\n"
	"END\n"
	"$fn$;\n"
	"\n"
	/* The functions run as the schema's owner, so that a writer role
	 * with only INSERT/UPDATE rights (and EXECUTE, granted) can make
	 * partitions; hence a fixed search_path and no EXECUTE for PUBLIC. */
	"DO $do$ BEGIN\n"
	"  EXECUTE format('ALTER FUNCTION sm_checks_ensure_partitions(date[])'\n"
	"    ' SET search_path = %I, pg_temp', current_schema());\n"
	"  EXECUTE format('ALTER FUNCTION sm_checks_drop_partitions(timestamptz)'\n"
	"    ' SET search_path = %I, pg_temp', current_schema());\n"
	"END $do$;\n"
	"REVOKE ALL ON FUNCTION sm_checks_ensure_partitions(date[]) FROM PUBLIC;\n"
	"REVOKE ALL ON FUNCTION sm_checks_drop_partitions(timestamptz)\n"
	"  FROM PUBLIC;\n"
	"CREATE TABLE targets (\n"
	"  target text PRIMARY KEY,\n"
	"  url text NOT NULL,\n"
	"  labels jsonb,\n"
	"  last_checked_at timestamptz NOT NULL,\n"
	"  last_ok boolean NOT NULL,\n"
	"  last_status integer,\n"
	"  last_error_kind text,\n"
	"  last_duration_ms double precision,\n"
	"  down_since timestamptz,\n"
	"  last_change_at timestamptz NOT NULL\n"
	");\n";

/*
 * targets is rewritten by every batch: one UPDATE per target in it.  With
 * full pages each UPDATE puts the new row version on another page and into
 * the index; with room left on each page (fillfactor 50: the table is one
 * small row per target) the update stays on its page (HOT), the index is
 * not touched and the old version is pruned in passing, so the table and
 * the upsert's scans of it do not bloat between autovacuum runs.  New
 * pages only; VACUUM FULL targets applies it to old ones if wanted.
 */
static const char m002_targets_hot[] =
	"ALTER TABLE targets SET (fillfactor = 50,\n"
	"  autovacuum_vacuum_scale_factor = 0.02);\n";

/*
 * tls.chain_not_after: the earliest notAfter of the certificates the server
 * sent, leaf included; an intermediate can expire before the leaf does.
 * NULL for http results and for records written before sm-check had it.
 * ADD COLUMN on the partitioned parent reaches every partition; a nullable
 * column without a default rewrites nothing, so this is quick on a large
 * table.  It lands after stored_at: the program names its columns in every
 * COPY and INSERT, so the physical position does not matter, and writers
 * of the previous version keep working during an upgrade (they leave it
 * NULL).
 */
static const char m003_chain_not_after[] =
	"ALTER TABLE checks ADD COLUMN tls_chain_not_after timestamptz;\n";

/*
 * What sm-check reports since it tells the whole truth: a body cut at
 * max_body_bytes (truncated, with the size announced and, for a compressed
 * body, the bytes as they came), the sub-kind of a TLS failure, the
 * certificate's facts (kept also when verification failed), the time the
 * regexes took, and the redirect hops with the final hop's own phases.
 * hops (a list) and final_phases (present only after a redirect) are kept
 * as jsonb; the rest is flattened as in migration 1.  Nullable columns
 * without defaults: no rewrite, and writers of version 3 keep working
 * during an upgrade (they leave them NULL).
 */
static const char m004_check_truth[] =
	"ALTER TABLE checks\n"
	"  ADD COLUMN tls_error text,\n"
	"  ADD COLUMN truncated boolean,\n"
	"  ADD COLUMN content_length bigint,\n"
	"  ADD COLUMN wire_bytes bigint,\n"
	"  ADD COLUMN hops jsonb,\n"
	"  ADD COLUMN final_phases jsonb,\n"
	"  ADD COLUMN regex_ms double precision,\n"
	"  ADD COLUMN tls_cert_not_before timestamptz,\n"
	"  ADD COLUMN tls_cert_subject text,\n"
	"  ADD COLUMN tls_cert_sans jsonb,\n"
	"  ADD COLUMN tls_cert_sha256 text;\n";

const struct migration pgw_migrations[] = {
	{ 1, "initial", m001_initial },
	{ 2, "targets_hot_updates", m002_targets_hot },
	{ 3, "checks_tls_chain_not_after", m003_chain_not_after },
	{ 4, "checks_whole_truth", m004_check_truth },
};

const size_t pgw_n_migrations = sizeof pgw_migrations / sizeof pgw_migrations[0];
