#!/usr/bin/env bats
# sm-pg-write: schema, storage, acks, idempotency, targets state, bad input,
# refused rows, unavailable database, restart of PostgreSQL, SIGTERM.
load helpers
bats_require_minimum_version 1.5.0

GEN="$BATS_TEST_DIRNAME/fixtures/results-gen"

setup() {
	T=$(mktemp -d "${SM_TEST_TMP:-/tmp}/t.XXXXXX")
	chmod 755 "$T"
	new_db
}

# wchan of a process blocked in poll(2) (sm-pg-write idle on stdin).
idle_in_poll() {
	grep -q poll "/proc/$1/wchan"
}

# read_at_least PID BYTES: the process has read(2) that many bytes in all.
read_at_least() {
	[ "$(sed -n 's/^rchar: //p' "/proc/$1/io")" -ge "$2" ]
}

stored_count() {
	psql_q "SELECT count(*) FROM checks" 2>/dev/null || echo 0
}

stored_more_than() {
	[ "$(stored_count)" -gt "$1" ]
}

stored_is() {
	[ "$(stored_count)" = "$1" ]
}

# has_stats FILE COUNTERS [N]: FILE holds at least N (1) stats lines whose
# counters match COUNTERS (an extended regex) exactly.
has_stats() {
	(($(grep -Ec "^sm-pg-write: info: stats: $2\$" "$1") >= ${3:-1}))
}

# wait_ok PID: wait for a background job, succeed only if it exited 0.
wait_ok() {
	local rc=0
	wait "$1" || rc=$?
	if [ "$rc" != 0 ]; then
		echo "process $1 exited $rc" >&2
		return 1
	fi
}

@test "pg-write: --help prints the synopsis, bad options exit 64" {
	run -0 sm-pg-write --help
	[[ "${lines[0]}" == "usage: sm-pg-write "* ]]
	run -0 sm-pg-write -V
	[[ "$output" == "sm-pg-write (sitemon) "* ]]
	run -64 sm-pg-write --no-such-option
	run -64 sm-pg-write -b 0
	run -64 sm-pg-write --linger forever
	run -64 sm-pg-write extra-argument
	# --retention: a bare number is days, less than a day is refused.
	run -64 sm-pg-write -R 30ms
	run -64 sm-pg-write -R 23h
	run -64 --separate-stderr sm-pg-write -R 0
	[[ "$stderr" == *"out of range"* ]]
}

@test "pg-write: --migrate creates the schema on an empty database, once" {
	run -0 sm-pg-write --migrate </dev/null
	[ -z "$(psql_q "SELECT 1 FROM checks LIMIT 1")" ]
	run -0 psql_q "SELECT string_agg(version || ':' || name, ' ' ORDER BY version) FROM schema_migrations"
	[ "$output" = "1:initial 2:targets_hot_updates 3:checks_tls_chain_not_after 4:checks_whole_truth 5:rollups_outages 6:cheaper_fold" ]
	run -0 psql_q "SELECT string_agg(column_name, ',' ORDER BY ordinal_position)
	    FROM information_schema.columns WHERE table_name = 'checks'"
	[ "$output" = "id,target,url,labels,probe,scheduled_at,started_at,ok,status,error_kind,error,duration_ms,dns_ms,connect_ms,tls_ms,ttfb_ms,transfer_ms,bytes,http_version,remote_ip,redirects,final_url,regex_pattern,regex_matched,tls_version,tls_cert_not_after,tls_cert_issuer,kafka_topic,kafka_partition,kafka_offset,stored_at,tls_chain_not_after,$M4_COLUMNS" ]
	[ "$(psql_q "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
	    WHERE attrelid = 'checks'::regclass AND attname = 'tls_chain_not_after'")" = "timestamp with time zone" ]
	run -0 psql_q "SELECT string_agg(a.attname, ',' ORDER BY k.n)
	    FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, n),
	         pg_attribute a
	    WHERE i.indrelid = 'checks'::regclass AND i.indisprimary
	      AND a.attrelid = i.indrelid AND a.attnum = k.attnum"
	[ "$output" = "id,started_at" ]
	# Range-partitioned by started_at.
	[ "$(psql_q "SELECT pg_get_partkeydef('checks'::regclass)")" = "RANGE (started_at)" ]
	run -0 psql_q "SELECT count(*) FROM targets"
	[ "$output" = 0 ]
	# Again: nothing to apply, nothing said.
	run -0 sm-pg-write --migrate </dev/null
	[ -z "$output" ]
	[ "$(psql_q "SELECT count(*) FROM schema_migrations")" = 6 ]
}

# schema_v4: migration 5 (rollups and outages, tests/70-rollups.bats)
# undone.
schema_v4() {
	psql_q "DROP VIEW rollup_hourly_all, rollup_daily_all;
	    DROP TABLE rollup_hourly, rollup_daily, rollup_pending, outages;
	    DROP FUNCTION sm_duration_bucket, sm_rollup_group, sm_rollup_merge, sm_rollup_fold,
	        sm_outages_rebuild, sm_rollup_drop_before;
	    DELETE FROM schema_migrations WHERE version > 4"
}

# The columns migration 4 adds, in order.
M4_COLUMNS=tls_error,truncated,content_length,wire_bytes,hops,final_phases,regex_ms,tls_cert_not_before,tls_cert_subject,tls_cert_sans,tls_cert_sha256

# The database as an earlier release left it: the current schema with the
# later migrations undone, by hand.  schema_v3: migrations 5 and 4 undone
# (migration 4's columns, on the parent and so on every partition).
schema_v3() {
	schema_v4
	psql_q "ALTER TABLE checks $(tr , '\n' <<<"$M4_COLUMNS" | sed 's/.*/DROP COLUMN &/' | paste -sd,);
	    DELETE FROM schema_migrations WHERE version > 3"
}

# schema_v2: migrations 5, 4 and 3 undone (the tls_chain_not_after column).
schema_v2() {
	schema_v3
	psql_q "ALTER TABLE checks DROP COLUMN tls_chain_not_after;
	    DELETE FROM schema_migrations WHERE version > 2"
}

# schema_v1: migrations 3 and 2 undone.
schema_v1() {
	schema_v2
	psql_q "ALTER TABLE targets RESET (fillfactor, autovacuum_vacuum_scale_factor);
	    DELETE FROM schema_migrations WHERE version > 1"
}

# chain_column: 1 if checks has the column tls_chain_not_after, else 0.
chain_column() {
	psql_q "SELECT count(*) FROM pg_attribute
	    WHERE attrelid = 'checks'::regclass AND attname = 'tls_chain_not_after'
	      AND NOT attisdropped"
}

@test "pg-write: a database at schema version 1 is upgraded in place" {
	"$GEN" -n 60 -t 4 -f 5 -S 1 >"$T/old"
	"$GEN" -n 60 -t 4 -f 7 -S 2 -s $((1795428000000 + 60000)) >"$T/new"
	run -0 --separate-stderr sm-pg-write <"$T/old"
	schema_v1
	[ "$(psql_q "SELECT max(version) FROM schema_migrations")" = 1 ]
	[ "$(psql_q "SELECT reloptions IS NULL FROM pg_class WHERE relname = 'targets'")" = t ]
	[ "$(chain_column)" = 0 ]

	# The new version applies only what is missing, keeps the data, and
	# goes on storing.
	run -0 --separate-stderr sm-pg-write <"$T/new"
	[ "$output" = "$(cat "$T/new")" ]
	[[ "$stderr" == *"applied schema migration 2 (targets_hot_updates)"* ]]
	[[ "$stderr" == *"applied schema migration 3 (checks_tls_chain_not_after)"* ]]
	[[ "$stderr" == *"applied schema migration 4 (checks_whole_truth)"* ]]
	[[ "$stderr" != *"applied schema migration 1"* ]]
	[ "$(psql_q "SELECT string_agg(version::text, ' ' ORDER BY version) FROM schema_migrations")" = "1 2 3 4 5 6" ]
	[ "$(chain_column)" = 1 ]
	[ "$(psql_q "SELECT count(*) || ' ' || count(DISTINCT id) FROM checks")" = "120 120" ]
	[ "$(psql_q "SELECT count(*) FROM targets WHERE last_checked_at >= '2026-11-23T10:01:00Z'")" = 4 ]

	# The upgraded schema is the one a new database gets.
	local upgraded=$PGDATABASE
	new_db
	sm-pg-write --migrate 2>/dev/null
	psql_q "SELECT sm_checks_ensure_partitions('{2026-11-23,2026-11-24}')"
	diff <(pg_dump -s -O -x "$upgraded" | grep -v -e '^--' -e '^\\') \
	     <(pg_dump -s -O -x "$PGDATABASE" | grep -v -e '^--' -e '^\\')

	# A database newer than the program is used as it is, with a note.
	psql_q "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')"
	run -0 --separate-stderr sm-pg-write --migrate
	[[ "$stderr" == *"schema version 99 is newer than this program's 6"* ]]
}

@test "pg-write: a database at schema version 2 gains tls_chain_not_after, old rows NULL" {
	"$GEN" -n 20 -t 4 -f 5 -S 1 >"$T/old"
	"$GEN" -n 20 -t 4 -f 5 -S 2 -s $((1795428000000 + 60000)) |
		jq -c '.tls.chain_not_after = "2026-12-20T06:15:30.125Z"' >"$T/new"
	run -0 --separate-stderr sm-pg-write <"$T/old"
	schema_v2
	[ "$(chain_column)" = 0 ]
	[ "$(psql_q "SELECT max(version) FROM schema_migrations")" = 2 ]
	# Partitions made after the column went: the day after the data's.
	psql_q "SELECT sm_checks_ensure_partitions('{2026-11-25}')"

	run -0 --separate-stderr sm-pg-write <"$T/new"
	[ "$output" = "$(cat "$T/new")" ]
	[[ "$stderr" == *"applied schema migration 3 (checks_tls_chain_not_after)"* ]]
	[[ "$stderr" != *"applied schema migration 2"* ]]
	[ "$(psql_q "SELECT string_agg(version::text, ' ' ORDER BY version) FROM schema_migrations")" = "1 2 3 4 5 6" ]
	[ "$(chain_column)" = 1 ]
	# Every partition has it, the old ones included.
	[ "$(psql_q "SELECT count(*) FROM pg_inherits AS i
	    WHERE i.inhparent = 'checks'::regclass AND NOT EXISTS (
	      SELECT 1 FROM pg_attribute WHERE attrelid = i.inhrelid
	        AND attname = 'tls_chain_not_after' AND NOT attisdropped)")" = 0 ]
	[ "$(psql_q "SELECT count(*) FROM pg_inherits WHERE inhparent = 'checks'::regclass")" = 3 ]
	# The rows stored before have it NULL, the new ones as sent.
	[ "$(psql_q "SELECT count(*) FILTER (WHERE tls_chain_not_after IS NULL) || ' ' ||
	    count(*) FILTER (WHERE tls_chain_not_after = '2026-12-20T06:15:30.125Z')
	    FROM checks")" = "20 20" ]
	old_ids=$(jq -r .id "$T/old" | sed "s/.*/'&'/" | paste -sd,)
	[ "$(psql_q "SELECT count(*) FROM checks WHERE tls_chain_not_after IS NULL
	    AND id IN ($old_ids)")" = 20 ]
}

@test "pg-write: writers starting together migrate once (advisory lock)" {
	local i pids=()
	for i in 1 2 3 4 5 6; do
		sm-pg-write --migrate </dev/null 2>"$T/m$i.err" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i"
	done
	[ "$(psql_q "SELECT count(*) FROM schema_migrations")" = 6 ]
	[ "$(cat "$T"/m*.err | grep -c 'applied schema migration 1')" = 1 ]
	[ "$(cat "$T"/m*.err | grep -c 'applied schema migration 2')" = 1 ]
	[ "$(cat "$T"/m*.err | grep -c 'applied schema migration 3')" = 1 ]
}

@test "pg-write: stores every field, phases flattened; acks are the input lines in order" {
	# tls.chain_not_after: present, null or absent, a third each.
	"$GEN" -n 25 -t 4 -f 5 -k results -o 100 |
		jq -c 'if .kafka.offset % 3 == 0 then .tls.chain_not_after = "2026-12-01T12:00:00.500Z"
		       elif .kafka.offset % 3 == 1 then .tls.chain_not_after = null
		       else del(.tls.chain_not_after) end' >"$T/in"
	run -0 --separate-stderr sm-pg-write -b 7 <"$T/in"
	[ "$output" = "$(cat "$T/in")" ]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 25 ]

	# Every row equals its record, field by field.
	psql_q "SELECT row_to_json(c) FROM (
	    SELECT id, target, url, labels, probe,
	      to_char(scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS scheduled_at,
	      to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS started_at,
	      ok, status, error_kind, error, duration_ms, dns_ms, connect_ms,
	      tls_ms, ttfb_ms, transfer_ms, bytes, http_version, remote_ip,
	      redirects, final_url, regex_pattern, regex_matched, tls_version,
	      to_char(tls_cert_not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS tls_cert_not_after,
	      tls_cert_issuer,
	      to_char(tls_chain_not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS tls_chain_not_after,
	      kafka_topic, kafka_partition, kafka_offset
	    FROM checks ORDER BY started_at) AS c" >"$T/rows"
	jq -c '{id, target, url, labels, probe, scheduled_at, started_at, ok,
	    status, error_kind, error, duration_ms,
	    dns_ms: .phases.dns_ms, connect_ms: .phases.connect_ms,
	    tls_ms: .phases.tls_ms, ttfb_ms: .phases.ttfb_ms,
	    transfer_ms: .phases.transfer_ms, bytes, http_version, remote_ip,
	    redirects, final_url, regex_pattern: .regex.pattern,
	    regex_matched: .regex.matched, tls_version: .tls.version,
	    tls_cert_not_after: .tls.cert_not_after,
	    tls_cert_issuer: .tls.cert_issuer,
	    tls_chain_not_after: .tls.chain_not_after, kafka_topic: .kafka.topic,
	    kafka_partition: .kafka.partition, kafka_offset: .kafka.offset}' \
	    "$T/in" >"$T/want"
	[ "$(jq -c 'select(.tls_chain_not_after != null)' "$T/want" | wc -l)" = 8 ]
	json_eq "$(jq -s . "$T/rows")" "$(jq -s . "$T/want")"
	[ "$(psql_q "SELECT count(*) FROM checks WHERE NOT ok AND status = 500
	    AND error_kind = 'http_status'")" = 5 ]
}

# copies_since MARK PATTERN: COPY statements matching PATTERN the server
# logged after line MARK of its log.
copies_since() {
	# Only this test's database: tests run in parallel on one server.
	tail -n +"$(($1 + 1))" "$SM_TEST_TMP/pg/log" |
		grep -c " $PGDATABASE LOG:  statement: COPY checks .*$2" || true
}

# store_logged BATCH: empty the tables, then store $T/in with -b BATCH while
# the server logs every statement; the log's length before it in $mark.
store_logged() {
	sm-pg-write --migrate 2>/dev/null && psql_q "TRUNCATE checks, targets"
	mark=$(wc -l <"$SM_TEST_TMP/pg/log")
	PGOPTIONS="-c log_statement=all" run -0 --separate-stderr \
		sm-pg-write -b "$1" <"$T/in"
	[ "$output" = "$(cat "$T/in")" ]
}

@test "pg-write: every value is stored as the server reads its text, sent binary or as text" {
	# Values at the edges of what the binary encoder takes, each next to
	# ones it leaves to the server's text input (marked "text").
	"$GEN" -n 16 -t 4 -f 4 -k results -o 7 >"$T/base"
	edits=(
		'.started_at = "2026-11-23T10:00:00.0000015Z" | .tls.chain_not_after = "2026-11-28T17:30:00.0000015Z"'
		'.started_at = "2026-11-23T10:00:01.9999995Z" | .scheduled_at = "2026-11-23T10:00:01.0000005Z"'
		'.started_at = "2026-11-23T15:30:02.123456789+05:30" | .tls.chain_not_after = "2026-11-28T23:00:00.9999995+05:30"'
		'.started_at = "2026-11-22T18:01:03-15:59" | .scheduled_at = "2026-11-24T02:00:02.5+15:59" | .tls.chain_not_after = null'
		'.scheduled_at = "2026-12-31T23:59:60Z" | .tls.chain_not_after = "2026-12-31T23:59:60Z"' # text: a leap second
		'.tls.cert_not_after = "2027-01-01 00:00:00+00:00" | .tls.chain_not_after = "2026-12-31 23:00:00.5+00:00"' # text: another layout
		'.started_at = "2026-11-23t10:00:05.25z"' # text: lower case
		'.duration_ms = 1e-310 | .phases.dns_ms = 5e-324 | .phases.connect_ms = 1.7976931348623157e308'
		'.duration_ms = 0.1 | .phases.tls_ms = 123.456e-2 | .phases.ttfb_ms = 0 | .phases.transfer_ms = 3.0000000000000004'
		'.error = "tab\there\nnew\rret \\back \"q\" é \u2028 😀 \\N" | .url = "https://x.test/a?b=c\td"'
		'.labels = {"a b": "x\ty\\N", "nested": "{\"k\": [1, \"two\", null, true]}", "é": "😀"}'
		'.remote_ip = "::1" | .http_version = "2" | .final_url = null | .regex = null | .tls = null | .phases = null | .labels = null'
		'.ok = false | .status = null | .error_kind = "timeout" | .bytes = null | .redirects = null'
		'.id |= ascii_upcase'
	)
	for i in "${!edits[@]}"; do
		sed -n "$((i + 1))p" "$T/base" | jq -c "${edits[$i]}"
	done >"$T/in"
	# Integers jq would turn into doubles.
	sed -n '15p' "$T/base" | sed -e 's/"bytes":[0-9]*/"bytes":9007199254740993/' \
		-e 's/"status":200/"status":-2147483648/' \
		-e 's/"redirects":0/"redirects":2147483647/' >>"$T/in"
	sed -n '16p' "$T/base" | sed -e 's/"bytes":[0-9]*/"bytes":999999999999999999/' \
		-e 's/"offset":[0-9]*/"offset":1000000000000000000/' >>"$T/in"
	[ "$(wc -l <"$T/in")" = 16 ]

	# What the server makes of each value's text: the reference.
	psql_q "CREATE TABLE ref (j json)"
	psql -X -v ON_ERROR_STOP=1 -q -c "\\copy ref FROM '$T/in' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
	cols="id, target, url, labels, probe, scheduled_at, started_at, ok,
	    status, error_kind, error, duration_ms, dns_ms, connect_ms, tls_ms,
	    ttfb_ms, transfer_ms, bytes, http_version, remote_ip, redirects,
	    final_url, regex_pattern, regex_matched, tls_version,
	    tls_cert_not_after, tls_cert_issuer, tls_chain_not_after,
	    kafka_topic, kafka_partition, kafka_offset"
	ref="SELECT (j->>'id')::uuid AS id, j->>'target' AS target,
	    j->>'url' AS url, nullif((j->'labels')::jsonb, 'null') AS labels, j->>'probe' AS probe,
	    (j->>'scheduled_at')::timestamptz AS scheduled_at,
	    (j->>'started_at')::timestamptz AS started_at,
	    (j->>'ok')::boolean AS ok, (j->>'status')::integer AS status,
	    j->>'error_kind' AS error_kind, j->>'error' AS error,
	    (j->>'duration_ms')::float8 AS duration_ms,
	    (j->'phases'->>'dns_ms')::float8 AS dns_ms,
	    (j->'phases'->>'connect_ms')::float8 AS connect_ms,
	    (j->'phases'->>'tls_ms')::float8 AS tls_ms,
	    (j->'phases'->>'ttfb_ms')::float8 AS ttfb_ms,
	    (j->'phases'->>'transfer_ms')::float8 AS transfer_ms,
	    (j->>'bytes')::bigint AS bytes, j->>'http_version' AS http_version,
	    j->>'remote_ip' AS remote_ip, (j->>'redirects')::integer AS redirects,
	    j->>'final_url' AS final_url, j->'regex'->>'pattern' AS regex_pattern,
	    (j->'regex'->>'matched')::boolean AS regex_matched,
	    j->'tls'->>'version' AS tls_version,
	    (j->'tls'->>'cert_not_after')::timestamptz AS tls_cert_not_after,
	    j->'tls'->>'cert_issuer' AS tls_cert_issuer,
	    (j->'tls'->>'chain_not_after')::timestamptz AS tls_chain_not_after,
	    j->'kafka'->>'topic' AS kafka_topic,
	    (j->'kafka'->>'partition')::integer AS kafka_partition,
	    (j->'kafka'->>'offset')::bigint AS kafka_offset FROM ref"
	doubles_differ="SELECT count(*) FROM checks AS c JOIN ($ref) AS r USING (id)
	    WHERE (float8send(c.duration_ms), float8send(c.dns_ms),
	           float8send(c.connect_ms), float8send(c.tls_ms),
	           float8send(c.ttfb_ms), float8send(c.transfer_ms))
	      IS DISTINCT FROM
	          (float8send(r.duration_ms), float8send(r.dns_ms),
	           float8send(r.connect_ms), float8send(r.tls_ms),
	           float8send(r.ttfb_ms), float8send(r.transfer_ms))"

	# -b 1: each record alone, in binary unless it holds a value left to
	# the text; one batch: all of it as text.
	for batch in 1 100; do
		store_logged "$batch"
		[ "$(psql_q "SELECT count(*) FROM checks")" = 16 ]
		[ "$(psql_q "SELECT count(*) FROM (SELECT $cols FROM checks EXCEPT ALL $ref) AS d")" = 0 ]
		[ "$(psql_q "SELECT count(*) FROM ($ref EXCEPT ALL SELECT $cols FROM checks) AS d")" = 0 ]
		[ "$(psql_q "$doubles_differ")" = 0 ]
		# The targets state: the newest result of each.
		[ "$(psql_q "SELECT count(*) FROM (
		    SELECT target, url, labels, last_checked_at, last_ok, last_status,
		      last_error_kind, last_duration_ms FROM targets
		    EXCEPT ALL
		    SELECT * FROM (SELECT DISTINCT ON (target) target, url, labels,
		      started_at, ok, status, error_kind, duration_ms
		    FROM ($ref) AS r ORDER BY target, started_at DESC) AS newest) AS d")" = 0 ]
		[ "$(psql_q "SELECT count(*) FROM targets")" = 4 ]
		binary=$(copies_since "$mark" "FORMAT binary")
		text=$(copies_since "$mark" "FROM STDIN\$")
		if [ "$batch" = 1 ]; then
			[ "$binary" = 13 ] && [ "$text" = 3 ]
		else
			[ "$binary" = 0 ] && [ "$text" = 1 ]
		fi
	done
}

# chain_rows: per stored row in started_at order, its target, then
# tls_cert_not_after and tls_chain_not_after as RFC 3339 UTC with
# microseconds ("-" for NULL), and whether the chain's is the earlier.
chain_rows() {
	psql_q "SELECT target,
	    coalesce(to_char(tls_cert_not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '-'),
	    coalesce(to_char(tls_chain_not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '-'),
	    coalesce((tls_chain_not_after < tls_cert_not_after)::text, '-')
	    FROM checks ORDER BY started_at"
}

@test "pg-write: tls.chain_not_after is stored beside tls.cert_not_after; null or absent is NULL" {
	"$GEN" -n 7 -t 7 >"$T/base"
	edits=(
		# An intermediate that expires before the leaf, as sm-check
		# reports it.
		'.tls.chain_not_after = "2026-11-28T17:30:00.000Z"'
		'.tls.chain_not_after = .tls.cert_not_after'
		'del(.tls.chain_not_after)'             # no chain_not_after key
		'.tls.chain_not_after = null'
		'.tls = null | .url = "http://site-4.example.test/health"' # http
		'del(.tls)'
		# Another layout, with an offset: the server reads it (as text).
		'.tls.chain_not_after = "2026-11-28 18:30:00.25+01:00"'
	)
	for i in "${!edits[@]}"; do
		sed -n "$((i + 1))p" "$T/base" | jq -c "${edits[$i]}"
	done >"$T/in"
	# One at a time (binary, but the last one) and in one batch (text).
	for batch in 1 100; do
		store_logged "$batch"
		if [ "$batch" = 1 ]; then
			[ "$(copies_since "$mark" "FORMAT binary")" = 6 ]
		else
			[ "$(copies_since "$mark" "FORMAT binary")" = 0 ]
		fi
		[ "$(copies_since "$mark" "FROM STDIN\$")" = 1 ]
		run -0 chain_rows
		[ "${#lines[@]}" = 7 ]
		[ "${lines[0]}" = "site-0|2027-02-01T00:00:00.000000Z|2026-11-28T17:30:00.000000Z|true" ]
		[ "${lines[1]}" = "site-1|2027-02-01T00:00:00.000000Z|2027-02-01T00:00:00.000000Z|false" ]
		[ "${lines[2]}" = "site-2|2027-02-01T00:00:00.000000Z|-|-" ]
		[ "${lines[3]}" = "site-3|2027-02-01T00:00:00.000000Z|-|-" ]
		[ "${lines[4]}" = "site-4|-|-|-" ]
		[ "${lines[5]}" = "site-5|-|-|-" ]
		[ "${lines[6]}" = "site-6|2027-02-01T00:00:00.000000Z|2026-11-28T17:30:00.250000Z|true" ]
	done
}

@test "pg-write: a member of tls or regex of the wrong type is refused by its name, the rest stored" {
	"$GEN" -n 12 -t 2 >"$T/good"
	# By duration_ms (40 + line - 1): each bad line breaks one member,
	# as schema/result.schema.json types it; the others are sm-check's.
	jq -c 'if (.duration_ms | floor) == 42 then .tls.chain_not_after = "not a time"
	       elif (.duration_ms | floor) == 43 then .tls.cert_not_after = "2026-12-15 08:30:00+00"
	       elif (.duration_ms | floor) == 44 then .tls.cert_not_before = 12
	       elif (.duration_ms | floor) == 45 then .tls.chain_not_after = "2026-02-30T00:00:00.000Z"
	       elif (.duration_ms | floor) == 46 then .tls.version = 1
	       elif (.duration_ms | floor) == 47 then .tls.cert_sans = ["DNS:a", {"x": 1}]
	       elif (.duration_ms | floor) == 48 then .regex = {"pattern": "ok", "matched": "yes"}
	       elif (.duration_ms | floor) == 49 then .tls.cert_days_left = 1.5
	       else .tls.chain_not_after = "2026-12-01T00:00:00.000Z" | .tls.cert_sans = ["DNS:a", "IP:127.0.0.1"] end' "$T/good" >"$T/in"
	run -0 --separate-stderr sm-pg-write -b 8 --dead-letter "$T/dead" <"$T/in"
	# Every line acknowledged (the refused ones too, so that offsets
	# move on), four stored, with what they said.
	[ "$output" = "$(cat "$T/in")" ]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 4 ]
	[ "$(psql_q "SELECT count(*) FROM checks WHERE tls_chain_not_after = '2026-12-01T00:00:00Z' AND tls_cert_sans = '[\"DNS:a\", \"IP:127.0.0.1\"]'")" = 4 ]
	# The refused, each by the field it broke, none by the server.
	[ "$(jq -r '.input | fromjson | .duration_ms | floor' "$T/dead" | sort | paste -sd' ')" = "42 43 44 45 46 47 48 49" ]
	run -0 jq -r '"\(.input | fromjson | .duration_ms | floor) \(.error)"' "$T/dead"
	grep -qxF '42 field "tls.chain_not_after" must be an RFC 3339 time or null' <<<"$output"
	grep -qxF '43 field "tls.cert_not_after" must be an RFC 3339 time or null' <<<"$output"
	grep -qxF '44 field "tls.cert_not_before" must be an RFC 3339 time or null' <<<"$output"
	grep -qxF '45 field "tls.chain_not_after" must be an RFC 3339 time or null' <<<"$output"
	grep -qxF '46 field "tls.version" must be a string or null' <<<"$output"
	grep -qxF '47 field "tls.cert_sans" must hold strings only' <<<"$output"
	grep -qxF '48 field "regex.matched" must be true or false' <<<"$output"
	grep -qxF '49 field "tls.cert_days_left" must be an integer or null' <<<"$output"
	[[ "$stderr" != *"refused by the server"* ]]
}

@test "pg-write: the same stream twice is stored once and acked twice" {
	"$GEN" -n 40 -t 5 -f 3 >"$T/in"
	run -0 --separate-stderr sm-pg-write -b 8 <"$T/in"
	[ "$output" = "$(cat "$T/in")" ]
	run -0 --separate-stderr sm-pg-write -b 13 <"$T/in"
	[ "$output" = "$(cat "$T/in")" ]
	# Duplicates inside one batch too.
	cat "$T/in" "$T/in" | sm-pg-write >"$T/acks"
	cmp <(cat "$T/in" "$T/in") "$T/acks"
	[ "$(psql_q "SELECT count(*) || ' ' || count(DISTINCT id) FROM checks")" = "40 40" ]
}

# A result for target t at second s (from 10:00:00Z), ok or not.
result_at() {
	"$GEN" -n 1 -s $((1795428000000 + $2 * 1000)) -f "$([ "$3" = ok ] && echo 0 || echo 1)" |
		jq -c --arg t "$1" '.target = $t'
}

@test "pg-write: targets keep the newest state, whatever the order of a batch" {
	{
		result_at a 3 fail
		result_at a 1 ok
		result_at b 2 fail
		result_at a 5 fail
		result_at a 2 ok
		result_at a 4 fail
		result_at b 1 fail
	} >"$T/in"
	run -0 sm-pg-write <"$T/in"
	run -0 psql_q "SELECT target, last_ok, last_status, to_char(last_checked_at AT TIME ZONE 'UTC', 'HH24:MI:SS'),
	    to_char(down_since AT TIME ZONE 'UTC', 'HH24:MI:SS'), to_char(last_change_at AT TIME ZONE 'UTC', 'HH24:MI:SS')
	    FROM targets ORDER BY target"
	[ "${lines[0]}" = "a|f|500|10:00:05|10:00:03|10:00:03" ]
	[ "${lines[1]}" = "b|f|500|10:00:02|10:00:01|10:00:01" ]

	# An older result arriving late is stored but does not move the state.
	result_at a 0 ok >"$T/late"
	run -0 sm-pg-write <"$T/late"
	[ "$(psql_q "SELECT last_ok || ' ' || to_char(last_checked_at AT TIME ZONE 'UTC', 'HH24:MI:SS') FROM targets WHERE target = 'a'")" = "false 10:00:05" ]
	[ "$(psql_q "SELECT count(*) FROM checks WHERE target = 'a'")" = 6 ]

	# Recovery in a later batch: up again, down_since cleared.
	{ result_at a 7 ok; result_at a 6 ok; result_at b 3 fail; } >"$T/up"
	run -0 sm-pg-write <"$T/up"
	run -0 psql_q "SELECT target, last_ok, coalesce(to_char(down_since AT TIME ZONE 'UTC', 'HH24:MI:SS'), '-'),
	    to_char(last_change_at AT TIME ZONE 'UTC', 'HH24:MI:SS') FROM targets ORDER BY target"
	[ "${lines[0]}" = "a|t|-|10:00:06" ]
	[ "${lines[1]}" = "b|f|10:00:01|10:00:01" ]
}

# state_of TARGET: last_ok|last_checked_at|down_since|last_change_at (times
# as HH:MI:SS, '-' for none).
state_of() {
	psql_q "SELECT last_ok, to_char(last_checked_at AT TIME ZONE 'UTC', 'HH24:MI:SS'),
	    coalesce(to_char(down_since AT TIME ZONE 'UTC', 'HH24:MI:SS'), '-'),
	    to_char(last_change_at AT TIME ZONE 'UTC', 'HH24:MI:SS')
	    FROM targets WHERE target = '$1'"
}

@test "pg-write: targets state from batches that overlap the stored state" {
	# Each group of results is one batch: made in a file first, so that
	# --linger cannot split a group that is slow to come.
	result_at x 10 ok | sm-pg-write >/dev/null
	[ "$(state_of x)" = "t|10:00:10|-|10:00:10" ]
	# The failing run began before the stored state, which says up: the
	# change is the first result after it.
	{ result_at x 8 fail; result_at x 14 fail; result_at x 12 fail; } >"$T/b"
	sm-pg-write <"$T/b" >/dev/null
	[ "$(state_of x)" = "f|10:00:14|10:00:12|10:00:12" ]
	# A flip among the results newer than the stored state.
	{ result_at x 16 fail; result_at x 13 fail; result_at x 15 ok; } >"$T/b"
	sm-pg-write <"$T/b" >/dev/null
	[ "$(state_of x)" = "f|10:00:16|10:00:16|10:00:16" ]
	# An older up result and newer failures: still the same failing run.
	{ result_at x 11 ok; result_at x 17 fail; result_at x 18 fail; } >"$T/b"
	sm-pg-write <"$T/b" >/dev/null
	[ "$(state_of x)" = "f|10:00:18|10:00:16|10:00:16" ]
	{ result_at x 9 fail; result_at x 19 fail; } >"$T/b"
	sm-pg-write <"$T/b" >/dev/null
	[ "$(state_of x)" = "f|10:00:19|10:00:16|10:00:16" ]
	# Up since before the stored (down) state: the change is the first
	# result after it, to the microsecond as the server reads its time.
	result_at x 19 ok | jq -c '.started_at = "2026-11-23T10:00:19.0000015Z"' >"$T/frac"
	{ result_at x 18 ok | jq -c '.started_at = "2026-11-23T10:00:18.5Z"'; cat "$T/frac"; result_at x 20 ok; } >"$T/b"
	sm-pg-write <"$T/b" >/dev/null
	[ "$(state_of x)" = "t|10:00:20|-|10:00:19" ]
	[ "$(psql_q "SELECT t.last_change_at = c.started_at AND c.started_at > '2026-11-23T10:00:19Z'
	    FROM targets AS t, checks AS c WHERE t.target = 'x' AND c.id = '$(jq -r .id "$T/frac")'")" = t ]
	[ "$(psql_q "SELECT count(*) FROM checks WHERE target = 'x'")" = 15 ]
}

@test "pg-write: a stream partly stored before is stored once, in one batch or many" {
	"$GEN" -n 30 -t 4 -f 3 >"$T/in"
	head -n 10 "$T/in" | sm-pg-write >/dev/null
	# One batch whose first ten are stored: COPY meets a duplicate, the
	# batch goes through staging and skips them.
	run -0 --separate-stderr env SM_STATS_INTERVAL=1h sm-pg-write -b 30 <"$T/in"
	[ "$output" = "$(cat "$T/in")" ]
	[[ "$stderr" == *" stored=20 duplicates=10 acked=30 "* ]]
	# New records after the redelivery are stored too, and a redelivered
	# stream in small batches as well.
	"$GEN" -n 20 -t 4 -f 3 -S 7 >"$T/more"
	cat "$T/in" "$T/more" | sm-pg-write -b 7 >"$T/acks"
	cmp <(cat "$T/in" "$T/more") "$T/acks"
	[ "$(psql_q "SELECT count(*) || ' ' || count(DISTINCT id) FROM checks")" = "50 50" ]
}

@test "pg-write: writers given the same stream at once store it once" {
	local k pids=()
	"$GEN" -n 3000 -t 30 -f 4 >"$T/in"
	sm-pg-write -m 2>/dev/null
	for k in 1 2 3; do
		sm-pg-write -b 100 <"$T/in" >"$T/acks$k" 2>"$T/err$k" &
		pids+=($!)
	done
	for k in "${pids[@]}"; do
		wait_ok "$k"
	done
	for k in 1 2 3; do
		cmp "$T/in" "$T/acks$k"
	done
	[ "$(psql_q "SELECT count(*) || ' ' || count(DISTINCT id) FROM checks")" = "3000 3000" ]
	# The newest result of each target is its state.
	[ "$(psql_q "SELECT count(*) FROM targets AS t WHERE last_checked_at =
	    (SELECT max(started_at) FROM checks AS c WHERE c.target = t.target)")" = 30 ]
}

@test "pg-write: an invalid line is reported with its number and skipped" {
	"$GEN" -n 6 >"$T/good"
	{
		sed -n 1,2p "$T/good"
		echo 'this is not json'
		sed -n 3p "$T/good"
		sed -n 4p "$T/good" | jq -c 'del(.started_at)'
		sed -n 5,6p "$T/good"
	} >"$T/in"
	run -0 --separate-stderr sm-pg-write -A <"$T/in"
	[ "$output" = "$(sed -e 4d "$T/good")" ]
	[[ "$stderr" == *"sm-pg-write: error: <stdin>:3: "*"this is not json"* ]]
	[[ "$stderr" == *"<stdin>:5: field \"started_at\" is required"* ]]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 5 ]

	# With --dead-letter the whole line lands in the file, with the reason.
	# By default the invalid JSON object is acknowledged in its place
	# (the line that is not JSON cannot be).
	run -0 --separate-stderr sm-pg-write --dead-letter "$T/dead" <"$T/in"
	[ "$output" = "$(sed -e 3d "$T/in")" ]
	[ "$(jq -r '"\(.line) \(.input)"' "$T/dead" | head -n 1)" = "3 this is not json" ]
	[ "$(jq -r .line "$T/dead" | tail -n 1)" = 5 ]
	jq -e '.error | test("started_at")' <(tail -n 1 "$T/dead")
}

@test "pg-write: --strict stops with 65 at the first invalid line, after storing what came before" {
	"$GEN" -n 5 >"$T/good"
	{ sed -n 1,3p "$T/good"; echo '{"v":1,"id":"x"}'; sed -n 4,5p "$T/good"; } >"$T/in"
	run -65 --separate-stderr sm-pg-write --strict <"$T/in"
	[ "$output" = "$(sed -n 1,3p "$T/good")" ]
	[[ "$stderr" == *"<stdin>:4:"* ]]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 3 ]
}

@test "pg-write: a database that is not there gives 69 within --retry-for, no password shown" {
	local port start
	port=$(free_port)
	start=$SECONDS
	run -69 --separate-stderr sm-pg-write -r 1s \
		-d "postgresql://someone:Sup3rSecretPw@127.0.0.1:$port/nodb" < <("$GEN" -n 3)
	((SECONDS - start <= 8))
	[ -z "$output" ]
	[[ "$stderr" == *"giving up"* ]]
	[[ "$stderr" != *Sup3rSecretPw* ]]
	run -69 --separate-stderr env SM_PG_DSN="host=127.0.0.1 port=$port password=Sup3rSecretPw" \
		sm-pg-write -r 300ms </dev/null
	[[ "$stderr" != *Sup3rSecretPw* ]]
	# A connection string that does not parse: 78, and still not echoed.
	run -78 --separate-stderr sm-pg-write -d "host=x password=Sup3rSecretPw =" </dev/null
	[[ "$stderr" != *Sup3rSecretPw* ]]
	# A wrong password against the real server: refused, not printed.
	run -69 --separate-stderr sm-pg-write -r 300ms \
		-d "host=$PGHOST port=$PGPORT user=nobody_here password=Sup3rSecretPw" </dev/null
	[[ "$stderr" != *Sup3rSecretPw* ]]
}

# exit_within PID SECONDS: the process ends within SECONDS; its status is
# left in $rc.
exit_within() {
	local deadline=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null; do
		((SECONDS < deadline)) || { echo "process $1 still running after $2 s" >&2; return 1; }
		sleep 0.05
	done
	rc=0
	wait "$1" || rc=$?
}

@test "pg-write: a signal stops it at once while it waits for a database" {
	local port
	port=$(free_port)
	# At start: nobody listens on the port.
	sm-pg-write -r 5m -d "host=127.0.0.1 port=$port" </dev/null >"$T/out" 2>"$T/err" &
	local writer=$!
	track_pid "$writer"
	wait_for grep -q 'retrying in' "$T/err"
	kill -TERM "$writer"
	exit_within "$writer" 5
	[ "$rc" -eq 69 ]
	grep -q 'stopping on signal 15 while it is unavailable' "$T/err"

	# Mid-stream (the writer thread's wait): the database stops taking
	# connections, a batch is held; SIGINT stops it, nothing acknowledged.
	"$GEN" -n 5 >"$T/in"
	mkfifo "$T/fifo"
	sm-pg-write -r 5m -b 5 -l 1h <"$T/fifo" >"$T/acks" 2>"$T/err" &
	writer=$!
	track_pid "$writer"
	exec 7>"$T/fifo"
	wait_for psql_q "SELECT 1 FROM checks LIMIT 0"
	psql -X -q -d postgres -v ON_ERROR_STOP=1 \
		-c "ALTER DATABASE \"$PGDATABASE\" ALLOW_CONNECTIONS false" \
		-c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$PGDATABASE'" >/dev/null
	cat "$T/in" >&7
	wait_for grep -q 'retrying in' "$T/err"
	kill -INT "$writer"
	exit_within "$writer" 5
	exec 7>&-
	[ "$rc" -eq 69 ]
	grep -q 'stopping on signal 2 while it is unavailable' "$T/err"
	[ ! -s "$T/acks" ]
	psql -X -q -d postgres -c "ALTER DATABASE \"$PGDATABASE\" ALLOW_CONNECTIONS true"
	[ "$(stored_count)" = 0 ]
}

@test "pg-write: a record the server refuses goes to the dead letter, the rest is stored" {
	"$GEN" -n 30 -t 3 >"$T/good"
	jq -c 'if (.duration_ms | floor) == 45 and .target == "site-2" then .status = 99999999999
	       elif (.duration_ms | floor) == 50 then .redirects = 3000000000 else . end' \
		"$T/good" >"$T/in"
	bad=$(jq -c 'select(.status == 99999999999 or .redirects == 3000000000) | .id' "$T/in" | wc -l)
	[ "$bad" -ge 2 ]
	run -0 --separate-stderr sm-pg-write -b 10 --dead-letter "$T/dead" \
		--stats-interval 1h <"$T/in"
	# Acks: every record in input order, the refused ones once they are in
	# the dead letter (so that offsets move on).
	[ "$output" = "$(cat "$T/in")" ]
	[ "$(psql_q "SELECT count(*) FROM checks")" = $((30 - bad)) ]
	[ "$(wc -l <"$T/dead")" = "$bad" ]
	jq -e 'select(.error | test("out of range")) | .input | fromjson | .id' "$T/dead"
	[ "$(jq -r '.input | fromjson | .id' "$T/dead" | sort)" = \
	  "$(jq -r 'select(.status == 99999999999 or .redirects == 3000000000) | .id' "$T/in" | sort)" ]
	[[ "$stderr" == *"refused by the server: "*"out of range"* ]]
	[[ "$stderr" == *"stats: in=30 stored=$((30 - bad)) duplicates=0 acked=30 dead=$bad invalid=0 "* ]]

	# --ack-stored-only: stdout is exactly what was stored.
	new_db
	run -0 --separate-stderr sm-pg-write -A -b 10 <"$T/in"
	[ "$output" = "$(jq -c 'select(.status != 99999999999 and .redirects != 3000000000)' "$T/in")" ]
	[ "$(psql_q "SELECT count(*) FROM checks")" = $((30 - bad)) ]
}

@test "pg-write: PostgreSQL restarting mid-stream loses nothing and doubles nothing" {
	own_postgres
	"$GEN" -n 3000 -t 20 -f 7 >"$T/in"
	mkfifo "$T/fifo"
	sm-pg-write -b 50 -l 20ms -r 60s --stats-interval 1h <"$T/fifo" >"$T/acks" 2>"$T/err" &
	local writer=$!
	track_pid "$writer"
	# A feeder that keeps the stream going (paced, not synchronising), and
	# holds the second half back until the restart is done, so that the
	# writer meets a dead connection whatever the timing.
	{
		local i=0 line
		while IFS= read -r line; do
			printf '%s\n' "$line"
			i=$((i + 1))
			((i % 100)) || sleep 0.02
			if ((i == 1500)); then
				wait_for test -e "$T/restarted"
			fi
		done <"$T/in"
	} >"$T/fifo" &
	local feeder=$!
	track_pid "$feeder"
	wait_for stored_more_than 0
	pg_restart
	touch "$T/restarted"
	wait_ok "$feeder"
	wait_ok "$writer"
	grep -q 'retrying' "$T/err"
	cmp "$T/in" "$T/acks"
	grep -Eq 'stats: in=3000 .* reconnects=[1-9][0-9]* ' "$T/err"
	[ "$(psql_q "SELECT count(*) || ' ' || count(DISTINCT id) FROM checks")" = "3000 3000" ]
}

@test "pg-write: SIGTERM commits and acks the open batch, then exits 0" {
	"$GEN" -n 20 >"$T/in"
	mkfifo "$T/fifo"
	sm-pg-write -l 1h <"$T/fifo" >"$T/acks" 2>"$T/err" &
	local writer=$!
	track_pid "$writer"
	exec 7>"$T/fifo"
	wait_for psql_q "SELECT 1 FROM checks LIMIT 0"
	wait_for idle_in_poll "$writer"
	local before
	before=$(sed -n 's/^rchar: //p' "/proc/$writer/io")
	cat "$T/in" >&7
	# The lines are read (and held: the batch lingers for an hour).
	wait_for read_at_least "$writer" $((before + $(wc -c <"$T/in")))
	[ "$(stored_count)" = 0 ]
	kill -TERM "$writer"
	wait_ok "$writer"
	exec 7>&-
	cmp "$T/in" "$T/acks"
	[ "$(psql_q "SELECT count(*) FROM checks")" = 20 ]
}

@test "pg-write: a partial batch is written after --linger while stdin stays open" {
	"$GEN" -n 3 >"$T/in"
	mkfifo "$T/fifo"
	sm-pg-write -l 100ms <"$T/fifo" >"$T/acks" 2>"$T/err" &
	local writer=$!
	track_pid "$writer"
	exec 7>"$T/fifo"
	cat "$T/in" >&7
	wait_for stored_is 3
	wait_for cmp -s "$T/in" "$T/acks"
	exec 7>&-
	wait_ok "$writer"
}

@test "pg-write: --stats-interval writes the totals to stderr on time, idle or busy, and at exit" {
	local now lag
	now=$(date +%s%3N)
	# Newest started_at: now - 58 s.
	"$GEN" -n 3 -s $((now - 60000)) -i 1000 >"$T/good"
	{
		cat "$T/good"
		sed -n 1p "$T/good"     # stored already: a duplicate
		echo 'this is not json' # invalid, and never acked
	} >"$T/in"
	mkfifo "$T/fifo"
	sm-pg-write --stats-interval 100ms -l 50ms <"$T/fifo" >"$T/acks" 2>"$T/err" &
	local writer=$!
	track_pid "$writer"
	exec 7>"$T/fifo"
	# Nothing read yet: the stats clock alone brings the lines, again and
	# again.
	wait_for has_stats "$T/err" 'in=0 stored=0 duplicates=0 acked=0 dead=0 invalid=0 batches=0 pending=0 reconnects=0 lag_ms=-' 3
	cat "$T/in" >&7  # one write (< PIPE_BUF): one batch
	# Idle again after the commit: more lines come, with the same totals.
	wait_for has_stats "$T/err" 'in=5 stored=3 duplicates=1 acked=4 dead=0 invalid=1 batches=1 pending=0 reconnects=0 lag_ms=[0-9]+' 3
	# Totals since the start, not per interval.
	sed -n 2p "$T/good" >&7
	wait_for has_stats "$T/err" 'in=6 stored=3 duplicates=2 acked=5 dead=0 invalid=1 batches=2 pending=0 reconnects=0 lag_ms=[0-9]+'
	exec 7>&-
	wait_ok "$writer"
	# The last line at exit holds the totals; lag_ms is from the newest
	# started_at committed.
	tail -n 1 "$T/err" >"$T/last"
	has_stats "$T/last" 'in=6 stored=3 duplicates=2 acked=5 dead=0 invalid=1 batches=2 pending=0 reconnects=0 lag_ms=[0-9]+'
	lag=$(sed 's/.*lag_ms=//' "$T/last")
	((lag >= 58000 && lag < 58000 + 60000))
	[ "$(wc -l <"$T/acks")" = 5 ]

	# SM_STATS_INTERVAL is the default (here only the line at exit comes);
	# --stats-interval 0 turns it off; off without either.
	run -0 --separate-stderr env SM_STATS_INTERVAL=1h sm-pg-write <"$T/in"
	[ "$(grep -c 'stats: ' <<<"$stderr")" = 1 ]
	has_stats <(printf '%s\n' "$stderr") 'in=5 stored=0 duplicates=4 acked=4 dead=0 invalid=1 batches=1 pending=0 reconnects=0 lag_ms=[0-9]+'
	run -0 --separate-stderr env SM_STATS_INTERVAL=1h sm-pg-write --stats-interval 0 <"$T/in"
	[[ "$stderr" != *"stats: "* ]]
	run -0 --separate-stderr sm-pg-write <"$T/in"
	[[ "$stderr" != *"stats: "* ]]
	run -64 sm-pg-write --stats-interval bogus </dev/null
	run -64 env SM_STATS_INTERVAL=bogus sm-pg-write </dev/null
}

@test "pg-write: checks is partitioned by day, made on demand; --retention drops old days" {
	local now day=86400000
	now=$(date +%s%3N)
	{
		"$GEN" -n 4 -s $((now - 10 * day))
		"$GEN" -n 4 -s $((now - 5 * day))
		"$GEN" -n 4 -s $((now - 60000)) -i 1000
	} >"$T/in"
	run -0 --separate-stderr sm-pg-write <"$T/in"
	[ "$output" = "$(cat "$T/in")" ]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 12 ]
	# Each row sits in the partition of its UTC day.
	run -0 psql_q "SELECT count(*) FROM checks
	    WHERE tableoid::regclass::text <> 'checks_p' || to_char(started_at AT TIME ZONE 'UTC', 'YYYYMMDD')"
	[ "$output" = 0 ]
	[ "$(psql_q "SELECT count(DISTINCT tableoid) FROM checks")" = 3 ]

	run -0 --separate-stderr sm-pg-write --migrate --retention 7
	[[ "$stderr" == *"retention: dropped 2 day partitions"* ]]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 8 ]
	[ "$(psql_q "SELECT count(*) FROM checks WHERE started_at < now() - interval '7 days'")" = 0 ]

	# With --retention, results older than it are acknowledged, not stored
	# (their partition is not made again).
	"$GEN" -n 3 -s $((now - 9 * day)) >"$T/expired"
	run -0 --separate-stderr sm-pg-write -R 7d <"$T/expired"
	[ "$output" = "$(cat "$T/expired")" ]
	[[ "$stderr" == *"skipped 3 results older than the retention"* ]]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 8 ]
	[ "$(psql_q "SELECT count(*) FROM pg_inherits WHERE inhparent = 'checks'::regclass
	    AND inhrelid::regclass::text < 'checks_p' || to_char(now() - interval '7 days', 'YYYYMMDD')")" = 0 ]

	# A writer whose cached partition was dropped by another makes it again.
	"$GEN" -n 2 -s $((now - 10 * day)) >"$T/old"
	mkfifo "$T/fifo"
	sm-pg-write -l 10ms <"$T/fifo" >"$T/acks" 2>"$T/err" &
	local writer=$!
	track_pid "$writer"
	exec 7>"$T/fifo"
	cat "$T/old" >&7
	wait_for stored_is 10
	sm-pg-write -m -R 7d 2>/dev/null
	[ "$(psql_q "SELECT count(*) FROM checks")" = 8 ]
	"$GEN" -n 3 -s $((now - 10 * day + 5000)) >&7
	wait_for stored_is 11
	exec 7>&-
	wait_ok "$writer"
	[ "$(wc -l <"$T/acks")" = 5 ]
}

@test "pg-write: writers sharing an empty database store everything once" {
	local k pids=()
	for k in 1 2 3 4; do
		# Results across several days: partitions made concurrently.
		"$GEN" -n 1500 -t 30 -i 600000 -f 4 -S "$k" >"$T/in$k"
	done
	for k in 1 2 3 4; do
		sm-pg-write -b 100 <"$T/in$k" >"$T/acks$k" 2>"$T/err$k" &
		pids+=($!)
	done
	for k in "${pids[@]}"; do
		wait_ok "$k"
	done
	for k in 1 2 3 4; do
		cmp "$T/in$k" "$T/acks$k"
	done
	[ "$(psql_q "SELECT count(*) || ' ' || count(DISTINCT id) FROM checks")" = "6000 6000" ]
	[ "$(psql_q "SELECT count(*) FROM targets")" = 30 ]
	! grep -v 'applied schema migration' "$T"/err*
}

@test "pg-write: sm-check's own results are stored as they are" {
	local port spid
	# An https server too, so that sm-check's real tls object is stored.
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$T/key.pem" -out "$T/cert.pem" -days 10 -subj "/CN=sitemon-pgw" \
		-addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
	port=$(free_port)
	/usr/bin/python3 "$SM_TOP/tests/fixtures/httpd.py" --cert "$T/cert.pem" \
		--key "$T/key.pem" "$port" </dev/null >"$T/srv.out" 2>&1 3>&- &
	spid=$!
	track_pid "$spid"
	wait_for grep -q ready "$T/srv.out"
	printf '%s\n' "$HTTP_URL/ok" "$HTTP_URL/status/500" "$CLOSED_URL" \
		"{\"url\":\"https://127.0.0.1:$port/ok\",\"ca_file\":\"$T/cert.pem\"}" | sm-check >"$T/in"
	[ "$(wc -l <"$T/in")" = 4 ]
	# -s: jq 1.6's -e goes by the last input's output, and the https
	# result need not be the last line.
	jq -se 'map(select(.url | startswith("https:"))) | length == 1 and all(.ok and .tls.chain_not_after != null)' "$T/in"
	run -0 --separate-stderr sm-pg-write <"$T/in"
	[ "$output" = "$(cat "$T/in")" ]
	psql_q "SELECT row_to_json(c) FROM (SELECT id, target, ok, status, error_kind,
	    duration_ms, dns_ms, connect_ms, tls_ms, ttfb_ms, bytes, http_version,
	    remote_ip, tls_version,
	    to_char(tls_cert_not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS tls_cert_not_after,
	    tls_cert_issuer,
	    to_char(tls_chain_not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS tls_chain_not_after
	    FROM checks) AS c" | jq -cS . | sort >"$T/rows"
	jq -cS '{id, target, ok, status, error_kind, duration_ms,
	    dns_ms: .phases.dns_ms, connect_ms: .phases.connect_ms,
	    tls_ms: .phases.tls_ms, ttfb_ms: .phases.ttfb_ms, bytes, http_version,
	    remote_ip, tls_version: .tls.version,
	    tls_cert_not_after: .tls.cert_not_after, tls_cert_issuer: .tls.cert_issuer,
	    tls_chain_not_after: .tls.chain_not_after}' "$T/in" |
		sort >"$T/want"
	diff "$T/want" "$T/rows"
}

@test "pg-write: a database at schema version 3 gains migration 4; sm-check's cut bodies, sizes, hops, tls_error and certificate facts are stored" {
	local port spid
	"$GEN" -n 10 -t 2 -f 5 -S 1 >"$T/old"
	run -0 --separate-stderr sm-pg-write <"$T/old"
	schema_v3
	[ "$(psql_q "SELECT max(version) FROM schema_migrations")" = 3 ]

	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$T/key.pem" -out "$T/cert.pem" -days 10 -subj "/CN=sitemon-pgw" \
		-addext "subjectAltName=IP:127.0.0.1,DNS:pgw.invalid" 2>/dev/null
	port=$(free_port)
	/usr/bin/python3 "$SM_TOP/tests/fixtures/httpd.py" --cert "$T/cert.pem" \
		--key "$T/key.pem" "$port" </dev/null >"$T/srv.out" 2>&1 3>&- &
	spid=$!
	track_pid "$spid"
	wait_for grep -q ready "$T/srv.out"
	printf '%s\n' \
		"{\"target\":\"cut\",\"url\":\"$SCRIPTED_URL/big?bytes=5000\",\"max_body_bytes\":1000,\"regex\":\"x\"}" \
		"{\"target\":\"gzip\",\"url\":\"$SCRIPTED_URL/gzip?bytes=10000\"}" \
		"{\"target\":\"hops\",\"url\":\"$SCRIPTED_URL/chain?n=2\"}" \
		"{\"target\":\"selfsigned\",\"url\":\"https://127.0.0.1:$port/ok\"}" | sm-check >"$T/in"
	[ "$(wc -l <"$T/in")" = 4 ]
	run -0 --separate-stderr sm-pg-write <"$T/in"
	[ "$output" = "$(cat "$T/in")" ]
	[[ "$stderr" == *"applied schema migration 4 (checks_whole_truth)"* ]]
	# The rows stored before have the new columns NULL.
	[ "$(psql_q "SELECT count(*) FROM checks WHERE truncated IS NULL AND tls_error IS NULL AND hops IS NULL")" = 10 ]
	ts() { echo "to_char($1 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS $1"; }
	psql_q "SELECT row_to_json(c) FROM (SELECT id, tls_error, truncated, content_length,
	    wire_bytes, hops, final_phases, regex_ms, $(ts tls_cert_not_before),
	    tls_cert_subject, tls_cert_sans, tls_cert_sha256
	    FROM checks WHERE truncated IS NOT NULL) AS c" | jq -cS . | sort >"$T/rows"
	jq -cS '{id, tls_error, truncated, content_length, wire_bytes, hops, final_phases,
	    regex_ms: .phases.regex_ms, tls_cert_not_before: .tls.cert_not_before,
	    tls_cert_subject: .tls.cert_subject, tls_cert_sans: .tls.cert_sans,
	    tls_cert_sha256: .tls.cert_sha256}' "$T/in" | sort >"$T/want"
	diff "$T/want" "$T/rows"
	# What each row holds is what was asked for.
	[ "$(psql_q "SELECT truncated || ' ' || content_length || ' ' || bytes || ' ' || (regex_ms >= 0)
	    FROM checks WHERE target = 'cut'")" = "true 5000 1000 true" ]
	[ "$(psql_q "SELECT wire_bytes < bytes FROM checks WHERE target = 'gzip'")" = t ]
	[ "$(psql_q "SELECT jsonb_array_length(hops) || ' ' || (final_phases->>'ttfb_ms' IS NOT NULL)
	    FROM checks WHERE target = 'hops'")" = "2 true" ]
	[ "$(psql_q "SELECT tls_error || ' ' || (tls_cert_sans ? 'DNS:pgw.invalid') || ' ' || tls_cert_subject
	    FROM checks WHERE target = 'selfsigned'")" = "self_signed true CN = sitemon-pgw" ]
}

@test "pg-write: killed mid-stream, every ack is stored; a rerun completes without doubles" {
	"$GEN" -n 2500 -t 40 -f 9 >"$T/in"
	mkfifo "$T/fifo"
	sm-pg-write -b 50 -l 10ms <"$T/fifo" >"$T/acks" 2>"$T/err" &
	local writer=$!
	track_pid "$writer"
	{
		local i=0 line
		while IFS= read -r line; do
			printf '%s\n' "$line"
			i=$((i + 1))
			((i % 100)) || sleep 0.01
		done <"$T/in"
	} >"$T/fifo" 2>/dev/null &
	local feeder=$!
	track_pid "$feeder"
	wait_for stored_more_than 300
	kill -KILL "$writer"
	wait "$writer" || true
	wait "$feeder" || true
	# The acks are a prefix of the input, and each is in the database.
	# (A SIGKILL can cut the last ack line short: a reader ignores an
	# unterminated line, and so does this check.)
	local n
	n=$(wc -l <"$T/acks")
	[ "$n" -gt 0 ]
	head -n "$n" "$T/acks" >"$T/acks.complete"
	cmp "$T/acks.complete" <(head -n "$n" "$T/in")
	jq -r .id "$T/acks.complete" | sort >"$T/acked"
	psql_q "SELECT id FROM checks" | sort >"$T/stored"
	[ -z "$(comm -23 "$T/acked" "$T/stored")" ]
	# Redelivered from the start, as Kafka would: stored once.
	run -0 --separate-stderr sm-pg-write <"$T/in"
	[ "$(psql_q "SELECT count(*) || ' ' || count(DISTINCT id) FROM checks")" = "2500 2500" ]
}

@test "pg-write: a writer role with only the grants it needs works on a migrated schema" {
	local role="w_$PGDATABASE"
	run -0 --separate-stderr sm-pg-write --migrate
	psql_q "CREATE ROLE $role LOGIN;
	    GRANT SELECT, INSERT ON checks TO $role;
	    GRANT SELECT, INSERT, UPDATE ON targets TO $role;
	    GRANT SELECT ON schema_migrations TO $role;
	    GRANT SELECT, INSERT, UPDATE, DELETE ON rollup_pending, rollup_hourly,
	        rollup_daily, outages TO $role;
	    GRANT EXECUTE ON FUNCTION sm_checks_ensure_partitions(date[]) TO $role;
	    REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
	"$GEN" -n 30 -t 3 -i 3600000 >"$T/in"   # spans two days: new partitions
	run -0 --separate-stderr sm-pg-write -b 7 \
		-d "host=$PGHOST port=$PGPORT dbname=$PGDATABASE user=$role" <"$T/in"
	[ "$output" = "$(cat "$T/in")" ]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 30 ]
	# The functions are not open to everyone (a failed retention round is
	# reported, not fatal).
	run -0 --separate-stderr sm-pg-write -m -R 1d \
		-d "host=$PGHOST port=$PGPORT dbname=$PGDATABASE user=$role"
	[[ "$stderr" == *"retention: permission denied"* ]]
}
