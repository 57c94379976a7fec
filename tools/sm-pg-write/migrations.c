/*
 * migrations.c - the database schema, as versioned migrations.
 *
 * pg.c applies them in order, each in its own transaction under an advisory
 * lock, and records each version in schema_migrations.  A migration is
 * IMMUTABLE once released: databases in the field have already run it.
 * Change the schema by appending a new version, never by editing an old one.
 * Versions increase along the list; a gap is allowed (a version another
 * branch holds), and pg.c applies whichever listed version a database
 * lacks, in list order, even below its highest.
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

/*
 * Rollups and outages (docs/history.md tells the whole story).
 *
 * rollup_hourly, rollup_daily: per target, probe location ('' for results
 * without one) and UTC hour or day: checks, ok checks, durations (count,
 * sum in microseconds, min, max, and a histogram over fixed log buckets,
 * sm_duration_bucket, kept sparse: bucket numbers in hist_b, their counts
 * in hist_n), error kinds (err_kind, err_n), bytes, the first and last
 * check's started_at, and the certificate expiries of the last check that
 * had them.
 *
 * rollup_pending: what batches added since the last fold, one row per
 * (target, probe, hour) per batch, with the same columns (bucket is the
 * hour).  sm-pg-write appends to it in the batch's own transaction, which
 * is what makes the rollups exactly once; sm_rollup_fold() merges it into
 * the two tables and empties it, in one transaction.  Read the rollups
 * through rollup_hourly_all and rollup_daily_all, which add the pending
 * rows: a key may have several rows there, to be summed.
 *
 * outages: per target and probe, each maximal run of failed checks in
 * (started_at, id) order: from the first failed check's started_at to the
 * started_at of the ok check that ended it (NULL: still open), with the
 * error of the check that began it.
 *
 * Keys are text COLLATE "C": sorting and grouping them (the fold) costs
 * several times less than in a linguistic collation.
 */
static const char m005_rollups[] =
	"CREATE FUNCTION sm_duration_bucket(d double precision)\n"
	"RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$\n"
	"  SELECT width_bucket(round(d * 1000)::bigint, '{\n"
	"    1000,1189,1414,1682,2000,2378,2828,3364,4000,4757,5657,\n"
	"    6727,8000,9514,11314,13454,16000,19027,22627,26909,\n"
	"    32000,38055,45255,53817,64000,76109,90510,107635,128000,\n"
	"    152219,181019,215269,256000,304437,362039,430539,512000,\n"
	"    608874,724077,861078,1024000,1217748,1448155,1722156,\n"
	"    2048000,2435496,2896309,3444312,4096000,4870992,5792619,\n"
	"    6888623,8192000,9741985,11585238,13777247,16384000,\n"
	"    19483969,23170475,27554494,32768000,38967939,46340950,\n"
	"    55108987,65536000,77935877,92681900,110217975,131072000,\n"
	"    155871755,185363800,220435950\n"
	"  }'::bigint[])\n"
	"$fn$;\n"
	"CREATE TABLE rollup_hourly (\n"
	"  target text COLLATE \"C\" NOT NULL,\n"
	"  probe text COLLATE \"C\" NOT NULL,\n"
	"  bucket timestamptz NOT NULL,\n"
	"  checks integer NOT NULL,\n"
	"  ok integer NOT NULL,\n"
	"  dur_n integer NOT NULL,\n"
	"  dur_sum_us bigint NOT NULL,\n"
	"  dur_min double precision,\n"
	"  dur_max double precision,\n"
	"  bytes bigint NOT NULL,\n"
	"  first_at timestamptz NOT NULL,\n"
	"  last_at timestamptz NOT NULL,\n"
	"  tls_not_after timestamptz,\n"
	"  tls_chain_not_after timestamptz,\n"
	"  hist_b smallint[] NOT NULL,\n"
	"  hist_n integer[] NOT NULL,\n"
	"  err_kind text[] NOT NULL,\n"
	"  err_n integer[] NOT NULL,\n"
	"  PRIMARY KEY (target, probe, bucket)\n"
	");\n"
	"CREATE INDEX rollup_hourly_bucket_idx ON rollup_hourly (bucket);\n"
	"CREATE TABLE rollup_daily (LIKE rollup_hourly INCLUDING ALL);\n"
	"CREATE TABLE rollup_pending (LIKE rollup_hourly);\n"
	"CREATE VIEW rollup_hourly_all AS\n"
	"  SELECT * FROM rollup_hourly UNION ALL SELECT * FROM rollup_pending;\n"
	"CREATE VIEW rollup_daily_all AS\n"
	"  SELECT * FROM rollup_daily UNION ALL\n"
	"  SELECT target, probe, date_trunc('day', bucket, 'UTC'), checks, ok,\n"
	"    dur_n, dur_sum_us, dur_min, dur_max, bytes, first_at, last_at,\n"
	"    tls_not_after, tls_chain_not_after, hist_b, hist_n, err_kind, err_n\n"
	"  FROM rollup_pending;\n"
	"\n"
	/* Group the rows of src by target, probe and bucket truncated to
	 * unit ('hour' or 'day') into dst: sums, min, max, the last
	 * certificates, histograms and error counts added up. */
	"CREATE FUNCTION sm_rollup_group(src text, dst text, unit text)\n"
	"RETURNS void LANGUAGE plpgsql AS $fn$\n"
	"BEGIN\n"
	"  EXECUTE format($q$\n"
	"    WITH a AS (\n"
	"      SELECT target, probe, date_trunc(%L, bucket, 'UTC') AS bucket,\n"
	"        checks, ok, dur_n, dur_sum_us, dur_min, dur_max, bytes,\n"
	"        first_at, last_at, tls_not_after, tls_chain_not_after, hist_b,\n"
	"        hist_n, err_kind, err_n FROM %I),\n"
	"    s AS (SELECT target, probe, bucket, sum(checks)::integer AS checks,\n"
	"        sum(ok)::integer AS ok, sum(dur_n)::integer AS dur_n,\n"
	"        sum(dur_sum_us)::bigint AS dur_sum_us, min(dur_min) AS dur_min,\n"
	"        max(dur_max) AS dur_max, sum(bytes)::bigint AS bytes,\n"
	"        min(first_at) AS first_at, max(last_at) AS last_at,\n"
	"        (array_agg(tls_not_after ORDER BY last_at DESC)\n"
	"          FILTER (WHERE tls_not_after IS NOT NULL))[1] AS tls_not_after,\n"
	"        (array_agg(tls_chain_not_after ORDER BY last_at DESC)\n"
	"          FILTER (WHERE tls_chain_not_after IS NOT NULL))[1]\n"
	"          AS tls_chain_not_after\n"
	"      FROM a GROUP BY 1, 2, 3),\n"
	"    h AS (SELECT target, probe, bucket, array_agg(b ORDER BY b) AS hb,\n"
	"        array_agg(n ORDER BY b) AS hn\n"
	"      FROM (SELECT target, probe, bucket, u.b, sum(u.n)::integer AS n\n"
	"            FROM a, unnest(a.hist_b, a.hist_n) AS u(b, n)\n"
	"            GROUP BY 1, 2, 3, 4) AS x GROUP BY 1, 2, 3),\n"
	"    e AS (SELECT target, probe, bucket, array_agg(k ORDER BY k) AS ek,\n"
	"        array_agg(n ORDER BY k) AS en\n"
	"      FROM (SELECT target, probe, bucket, u.k, sum(u.n)::integer AS n\n"
	"            FROM a, unnest(a.err_kind, a.err_n) AS u(k, n)\n"
	"            GROUP BY 1, 2, 3, 4) AS x GROUP BY 1, 2, 3)\n"
	"    INSERT INTO %I\n"
	"    SELECT s.*, coalesce(h.hb, '{}'), coalesce(h.hn, '{}'),\n"
	"      coalesce(e.ek, '{}'), coalesce(e.en, '{}')\n"
	"    FROM s LEFT JOIN h USING (target, probe, bucket)\n"
	"      LEFT JOIN e USING (target, probe, bucket)$q$, unit, src, dst);\n"
	"END\n"
	"$fn$;\n"
	"\n"
	/* Merge sm_fold_h (the pending rows grouped by hour) into tbl at
	 * unit: the rows tbl has for the same keys are taken out and put
	 * back summed with the new ones. */
	"CREATE FUNCTION sm_rollup_merge(tbl text, unit text)\n"
	"RETURNS void LANGUAGE plpgsql AS $fn$\n"
	"BEGIN\n"
	"  TRUNCATE sm_fold_old;\n"
	"  EXECUTE format($q$\n"
	"    WITH k AS (SELECT DISTINCT target, probe,\n"
	"                 date_trunc(%L, bucket, 'UTC') AS bucket FROM sm_fold_h),\n"
	"    old AS (DELETE FROM %I AS r USING k WHERE r.target = k.target\n"
	"            AND r.probe = k.probe AND r.bucket = k.bucket RETURNING r.*)\n"
	"    INSERT INTO sm_fold_old SELECT * FROM old$q$, unit, tbl);\n"
	"  INSERT INTO sm_fold_old SELECT * FROM sm_fold_h;\n"
	"  PERFORM sm_rollup_group('sm_fold_old', tbl, unit);\n"
	"END\n"
	"$fn$;\n"
	"\n"
	/* One folder at a time (others skip: their rows wait for the next
	 * fold, and readers see them pending meanwhile).  The pending rows
	 * are grouped by hour once; the hourly and the daily merge start
	 * from that. */
	"CREATE FUNCTION sm_rollup_fold() RETURNS bigint\n"
	"LANGUAGE plpgsql AS $fn$\n"
	"DECLARE\n"
	"  n bigint;\n"
	"BEGIN\n"
	"  IF NOT pg_try_advisory_xact_lock(8319104481311206963) THEN\n"
	"    RETURN 0;\n"
	"  END IF;\n"
	"  CREATE TEMP TABLE IF NOT EXISTS sm_fold (LIKE rollup_pending)\n"
	"    ON COMMIT DELETE ROWS;\n"
	"  CREATE TEMP TABLE IF NOT EXISTS sm_fold_h (LIKE rollup_pending)\n"
	"    ON COMMIT DELETE ROWS;\n"
	"  CREATE TEMP TABLE IF NOT EXISTS sm_fold_old (LIKE rollup_pending)\n"
	"    ON COMMIT DELETE ROWS;\n"
	"  TRUNCATE sm_fold, sm_fold_h;\n"
	"  WITH d AS (DELETE FROM rollup_pending RETURNING *)\n"
	"  INSERT INTO sm_fold SELECT * FROM d;\n"
	"  GET DIAGNOSTICS n = ROW_COUNT;\n"
	"  IF n > 0 THEN\n"
	"    PERFORM sm_rollup_group('sm_fold', 'sm_fold_h', 'hour');\n"
	"    PERFORM sm_rollup_merge('rollup_hourly', 'hour');\n"
	"    PERFORM sm_rollup_merge('rollup_daily', 'day');\n"
	"  END IF;\n"
	"  TRUNCATE sm_fold, sm_fold_h, sm_fold_old;\n"
	"  RETURN n;\n"
	"END\n"
	"$fn$;\n"
	"\n"
	"CREATE TABLE outages (\n"
	"  target text COLLATE \"C\" NOT NULL,\n"
	"  probe text COLLATE \"C\" NOT NULL,\n"
	"  started_at timestamptz NOT NULL,\n"
	"  ended_at timestamptz,\n"
	"  error_kind text,\n"
	"  error text,\n"
	"  PRIMARY KEY (target, probe, started_at)\n"
	");\n"
	"CREATE UNIQUE INDEX outages_open_idx ON outages (target, probe)\n"
	"  WHERE ended_at IS NULL;\n"
	"CREATE INDEX outages_ended_at_idx ON outages (ended_at);\n"
	"\n"
	/* Outages of (p_target, p_probe) made again from the stored checks
	 * from p_from on, for a batch that brought checks older than ones
	 * stored before.  The outage running at p_from (begun before it) is
	 * kept and its end found again; later ones are made anew.  Needs the
	 * checks from p_from on, which --retention keeps (sm-pg-write skips
	 * results older than the retention). */
	"CREATE FUNCTION sm_outages_rebuild(p_target text, p_probe text,\n"
	"  p_from timestamptz) RETURNS void LANGUAGE plpgsql AS $fn$\n"
	"DECLARE\n"
	"  c record;\n"
	"  open_start timestamptz;\n"
	"  is_open boolean := false;\n"
	"BEGIN\n"
	"  SELECT started_at INTO open_start FROM outages\n"
	"  WHERE target = p_target AND probe = p_probe AND started_at < p_from\n"
	"    AND (ended_at IS NULL OR ended_at >= p_from)\n"
	"  ORDER BY started_at DESC LIMIT 1;\n"
	"  is_open := FOUND;\n"
	"  DELETE FROM outages WHERE target = p_target AND probe = p_probe\n"
	"    AND started_at >= p_from;\n"
	"  FOR c IN SELECT started_at, ok, error_kind, error FROM checks\n"
	"    WHERE target = p_target AND coalesce(probe, '') = p_probe\n"
	"      AND started_at >= p_from ORDER BY started_at, id\n"
	"  LOOP\n"
	"    IF c.ok AND is_open THEN\n"
	"      UPDATE outages SET ended_at = c.started_at WHERE target = p_target\n"
	"        AND probe = p_probe AND started_at = open_start;\n"
	"      is_open := false;\n"
	"    ELSIF NOT c.ok AND NOT is_open THEN\n"
	"      INSERT INTO outages VALUES (p_target, p_probe, c.started_at,\n"
	"        c.started_at, c.error_kind, c.error) ON CONFLICT DO NOTHING;\n"
	"      open_start := c.started_at;\n"
	"      is_open := true;\n"
	"    END IF;\n"
	"  END LOOP;\n"
	"  IF is_open THEN\n"
	"    UPDATE outages SET ended_at = NULL WHERE target = p_target\n"
	"      AND probe = p_probe AND started_at = open_start;\n"
	"  END IF;\n"
	"END\n"
	"$fn$;\n"
	"\n"
	/* Rollup retention: what ended before cutoff, pending rows folded
	 * first. */
	"CREATE FUNCTION sm_rollup_drop_before(cutoff timestamptz)\n"
	"RETURNS bigint LANGUAGE plpgsql AS $fn$\n"
	"DECLARE\n"
	"  n bigint;\n"
	"  total bigint := 0;\n"
	"BEGIN\n"
	"  PERFORM sm_rollup_fold();\n"
	"  DELETE FROM rollup_hourly WHERE bucket + interval '1 hour' <= cutoff;\n"
	"  GET DIAGNOSTICS n = ROW_COUNT;\n"
	"  total := total + n;\n"
	"  DELETE FROM rollup_daily WHERE bucket + interval '1 day' <= cutoff;\n"
	"  GET DIAGNOSTICS n = ROW_COUNT;\n"
	"  total := total + n;\n"
	"  DELETE FROM outages WHERE ended_at <= cutoff;\n"
	"  GET DIAGNOSTICS n = ROW_COUNT;\n"
	"  RETURN total + n;\n"
	"END\n"
	"$fn$;\n"
	"\n"
	/* The rollups and outages of the checks stored so far. */
	"INSERT INTO rollup_pending\n"
	"WITH c AS (\n"
	"  SELECT id, target, coalesce(probe, '') AS probe,\n"
	"    date_trunc('hour', started_at, 'UTC') AS bucket, started_at, ok,\n"
	"    error_kind, duration_ms, sm_duration_bucket(duration_ms) AS b,\n"
	"    bytes, tls_cert_not_after, tls_chain_not_after FROM checks),\n"
	"s AS (SELECT target, probe, bucket, count(*)::integer AS checks,\n"
	"    (count(*) FILTER (WHERE ok))::integer AS ok,\n"
	"    count(duration_ms)::integer AS dur_n,\n"
	"    coalesce(sum(round(duration_ms * 1000)::bigint), 0) AS dur_sum_us,\n"
	"    min(duration_ms) AS dur_min, max(duration_ms) AS dur_max,\n"
	"    coalesce(sum(bytes), 0)::bigint AS bytes,\n"
	"    min(started_at) AS first_at, max(started_at) AS last_at,\n"
	"    (array_agg(tls_cert_not_after ORDER BY started_at DESC, id DESC)\n"
	"      FILTER (WHERE tls_cert_not_after IS NOT NULL))[1] AS tna,\n"
	"    (array_agg(tls_chain_not_after ORDER BY started_at DESC, id DESC)\n"
	"      FILTER (WHERE tls_chain_not_after IS NOT NULL))[1] AS tca\n"
	"  FROM c GROUP BY 1, 2, 3),\n"
	"h AS (SELECT target, probe, bucket, array_agg(b ORDER BY b) AS hb,\n"
	"    array_agg(n ORDER BY b) AS hn\n"
	"  FROM (SELECT target, probe, bucket, b, count(*)::integer AS n FROM c\n"
	"        WHERE b IS NOT NULL GROUP BY 1, 2, 3, 4) AS x GROUP BY 1, 2, 3),\n"
	"e AS (SELECT target, probe, bucket, array_agg(k ORDER BY k) AS ek,\n"
	"    array_agg(n ORDER BY k) AS en\n"
	"  FROM (SELECT target, probe, bucket, error_kind AS k,\n"
	"          count(*)::integer AS n FROM c WHERE error_kind IS NOT NULL\n"
	"        GROUP BY 1, 2, 3, 4) AS x GROUP BY 1, 2, 3)\n"
	"SELECT s.*, coalesce(h.hb, '{}'), coalesce(h.hn, '{}'),\n"
	"  coalesce(e.ek, '{}'), coalesce(e.en, '{}')\n"
	"FROM s LEFT JOIN h USING (target, probe, bucket)\n"
	"  LEFT JOIN e USING (target, probe, bucket);\n"
	"SELECT sm_rollup_fold();\n"
	"INSERT INTO outages\n"
	"SELECT target, probe, started_at, next_ok, error_kind, error FROM (\n"
	"  SELECT target, coalesce(probe, '') AS probe, started_at, ok,\n"
	"    error_kind, error, lag(ok) OVER w AS prev_ok,\n"
	"    min(started_at) FILTER (WHERE ok) OVER (w ROWS BETWEEN CURRENT ROW\n"
	"      AND UNBOUNDED FOLLOWING) AS next_ok\n"
	"  FROM checks\n"
	"  WINDOW w AS (PARTITION BY target, coalesce(probe, '')\n"
	"    ORDER BY started_at, id)) AS x\n"
	"WHERE NOT ok AND prev_ok IS DISTINCT FROM false\n"
	"ON CONFLICT DO NOTHING;\n";

/*
 * A cheaper fold (issue 17: the rollups' cost).  Migration 5's fold copied
 * the pending rows into a temporary table, then grouped them three times
 * over (sums, histograms, error kinds), each grouping sorting whole rows
 * (arrays included, spilling to disk past work_mem) and unnesting the
 * arrays one function scan per row; each merge copied and grouped again.
 * This one groups straight from the DELETE's rows: the sums by hashing,
 * the arrays unnested in the select list, and in a merge only for the
 * keys that have more than one row (a key with one row keeps its arrays
 * as they are, which is every key of a merge into hours or days not seen
 * before; the pending rows' keys have several as a rule, and there the
 * test costs more than it saves); the
 * last certificate is max(ARRAY[last_at, value]) instead of an ordered
 * aggregate; and the fold runs with work_mem 64MB, so that a fold of a
 * few seconds' batches stays in memory.  Same results, to the row:
 * tests/70-rollups.bats compares them with SQL over the raw rows.
 *
 * sm_rollup_group(pre, src, dst, unit, singles): group the rows of src (a
 * table, a subquery with an alias, or a CTE that pre, a list of CTEs
 * ending in a comma, defines) by target, probe and bucket truncated to
 * unit into dst, unnesting the arrays only of keys with several rows when
 * singles (many keys have one); returns how many rows of src it read.
 */
static const char m006_cheaper_fold[] =
	"DROP FUNCTION sm_rollup_group(text, text, text);\n"
	"CREATE FUNCTION sm_rollup_group(pre text, src text, dst text, unit text,\n"
	"  singles boolean)\n"
	"RETURNS bigint LANGUAGE plpgsql AS $fn$\n"
	"DECLARE\n"
	"  bkt text := CASE WHEN unit = 'hour' THEN 'bucket'\n"
	"              ELSE format('date_trunc(%L, bucket, ''UTC'')', unit) END;\n"
	"  only_m text := CASE WHEN singles\n"
	"    THEN 'WHERE (target, probe, bucket) IN (SELECT * FROM m)' ELSE '' END;\n"
	"  n bigint;\n"
	"BEGIN\n"
	"  EXECUTE format($q$\n"
	"    WITH %s\n"
	"    s AS (SELECT target, probe, %s AS bucket, count(*) AS nrows,\n"
	"        sum(checks)::integer AS checks, sum(ok)::integer AS ok,\n"
	"        sum(dur_n)::integer AS dur_n, sum(dur_sum_us)::bigint AS dur_sum_us,\n"
	"        min(dur_min) AS dur_min, max(dur_max) AS dur_max,\n"
	"        sum(bytes)::bigint AS bytes, min(first_at) AS first_at,\n"
	"        max(last_at) AS last_at,\n"
	"        (max(ARRAY[last_at, tls_not_after])\n"
	"          FILTER (WHERE tls_not_after IS NOT NULL))[2] AS tls_not_after,\n"
	"        (max(ARRAY[last_at, tls_chain_not_after])\n"
	"          FILTER (WHERE tls_chain_not_after IS NOT NULL))[2]\n"
	"          AS tls_chain_not_after,\n"
	"        min(hist_b) AS hist_b, min(hist_n) AS hist_n,\n"
	"        min(err_kind) AS err_kind, min(err_n) AS err_n\n"
	"      FROM %s GROUP BY 1, 2, 3),\n"
	"    m AS (SELECT target, probe, bucket FROM s WHERE nrows > 1),\n"
	"    h AS (SELECT target, probe, bucket, array_agg(b ORDER BY b) AS hb,\n"
	"        array_agg(n ORDER BY b) AS hn\n"
	"      FROM (SELECT target, probe, bucket, b, sum(n)::integer AS n\n"
	"            FROM (SELECT target, probe, %s AS bucket, unnest(hist_b) AS b,\n"
	"                    unnest(hist_n) AS n FROM %s) AS u\n"
	"            %s\n"
	"            GROUP BY 1, 2, 3, 4) AS x GROUP BY 1, 2, 3),\n"
	"    e AS (SELECT target, probe, bucket, array_agg(k ORDER BY k) AS ek,\n"
	"        array_agg(n ORDER BY k) AS en\n"
	"      FROM (SELECT target, probe, bucket, k, sum(n)::integer AS n\n"
	"            FROM (SELECT target, probe, %s AS bucket, unnest(err_kind) AS k,\n"
	"                    unnest(err_n) AS n FROM %s\n"
	"                  WHERE cardinality(err_kind) > 0) AS u\n"
	"            %s\n"
	"            GROUP BY 1, 2, 3, 4) AS x GROUP BY 1, 2, 3),\n"
	"    ins AS (INSERT INTO %I\n"
	"      SELECT s.target, s.probe, s.bucket, s.checks, s.ok, s.dur_n,\n"
	"        s.dur_sum_us, s.dur_min, s.dur_max, s.bytes, s.first_at, s.last_at,\n"
	"        s.tls_not_after, s.tls_chain_not_after,\n"
	"        CASE WHEN s.nrows = 1 THEN s.hist_b ELSE coalesce(h.hb, '{}') END,\n"
	"        CASE WHEN s.nrows = 1 THEN s.hist_n ELSE coalesce(h.hn, '{}') END,\n"
	"        CASE WHEN s.nrows = 1 THEN s.err_kind ELSE coalesce(e.ek, '{}') END,\n"
	"        CASE WHEN s.nrows = 1 THEN s.err_n ELSE coalesce(e.en, '{}') END\n"
	"      FROM s LEFT JOIN h USING (target, probe, bucket)\n"
	"        LEFT JOIN e USING (target, probe, bucket))\n"
	"    SELECT coalesce(sum(nrows), 0) FROM s$q$,\n"
	"    pre, bkt, src, bkt, src, only_m, bkt, src, only_m, dst) INTO n;\n"
	"  RETURN n;\n"
	"END\n"
	"$fn$;\n"
	"CREATE OR REPLACE FUNCTION sm_rollup_merge(tbl text, unit text)\n"
	"RETURNS void LANGUAGE plpgsql AS $fn$\n"
	"BEGIN\n"
	"  TRUNCATE sm_fold_old;\n"
	"  EXECUTE format($q$\n"
	"    WITH k AS (SELECT DISTINCT target, probe,\n"
	"                 date_trunc(%L, bucket, 'UTC') AS bucket FROM sm_fold_h),\n"
	"    old AS (DELETE FROM %I AS r USING k WHERE r.target = k.target\n"
	"            AND r.probe = k.probe AND r.bucket = k.bucket RETURNING r.*)\n"
	"    INSERT INTO sm_fold_old SELECT * FROM old$q$, unit, tbl);\n"
	"  PERFORM sm_rollup_group('', '(SELECT * FROM sm_fold_h UNION ALL'\n"
	"    ' SELECT * FROM sm_fold_old) AS src', tbl, unit, true);\n"
	"END\n"
	"$fn$;\n"
	"CREATE OR REPLACE FUNCTION sm_rollup_fold() RETURNS bigint\n"
	"LANGUAGE plpgsql AS $fn$\n"
	"DECLARE\n"
	"  n bigint;\n"
	"BEGIN\n"
	"  IF NOT pg_try_advisory_xact_lock(8319104481311206963) THEN\n"
	"    RETURN 0;\n"
	"  END IF;\n"
	"  CREATE TEMP TABLE IF NOT EXISTS sm_fold_h (LIKE rollup_pending)\n"
	"    ON COMMIT DELETE ROWS;\n"
	"  CREATE TEMP TABLE IF NOT EXISTS sm_fold_old (LIKE rollup_pending)\n"
	"    ON COMMIT DELETE ROWS;\n"
	"  TRUNCATE sm_fold_h;\n"
	"  n := sm_rollup_group('d AS (DELETE FROM rollup_pending RETURNING *),',\n"
	"                       'd', 'sm_fold_h', 'hour', false);\n"
	"  IF n > 0 THEN\n"
	"    PERFORM sm_rollup_merge('rollup_hourly', 'hour');\n"
	"    PERFORM sm_rollup_merge('rollup_daily', 'day');\n"
	"  END IF;\n"
	"  TRUNCATE sm_fold_h, sm_fold_old;\n"
	"  RETURN n;\n"
	"END\n"
	"$fn$;\n"
	"ALTER FUNCTION sm_rollup_fold() SET work_mem = '64MB';\n";

const struct migration pgw_migrations[] = {
	{ 1, "initial", m001_initial },
	{ 2, "targets_hot_updates", m002_targets_hot },
	{ 3, "checks_tls_chain_not_after", m003_chain_not_after },
	{ 4, "checks_whole_truth", m004_check_truth },
	{ 5, "rollups_outages", m005_rollups },
	{ 6, "cheaper_fold", m006_cheaper_fold },
};

const size_t pgw_n_migrations = sizeof pgw_migrations / sizeof pgw_migrations[0];
