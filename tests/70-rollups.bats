#!/usr/bin/env bats
# sm-pg-write's rollups and outages: equal to the same aggregates computed
# by SQL from the raw rows (tests/fixtures/rollup-diff.sql), after a replay,
# a partial replay, out-of-order batches, across a UTC day boundary, and
# when migration 5 builds them from rows stored before it.
load helpers
bats_require_minimum_version 1.5.0

GEN="$BATS_TEST_DIRNAME/fixtures/results-gen"
DIFF_SQL="$BATS_TEST_DIRNAME/fixtures/rollup-diff.sql"

setup() {
	T=$(mktemp -d "${SM_TEST_TMP:-/tmp}/t.XXXXXX")
	chmod 755 "$T"
	new_db
}

# results FILE START_MS: three probe locations, 5 targets, a failure every
# 7th check, durations spread over many histogram buckets, some timeouts,
# one check every 20 s per location, from START_MS for 3 h.
results() {
	local out=$1 start=$2 p seed=1
	: >"$out"
	for p in a b c; do
		"$GEN" -n 540 -t 5 -f 7 -s "$((start + seed * 7))" -i 20000 -S "$seed" |
			jq -c --arg p "$p" '.probe = $p
				| .duration_ms = (.duration_ms * ((.started_at[14:16] | tonumber) % 13 + 1) / 3)
				| if (.ok | not) and (.started_at[15:16] == "3")
				  then .error_kind = "timeout" | .status = null | .bytes = null
				  else . end' >>"$out"
		seed=$((seed + 1))
	done
}

# rollups_match: hourly, daily and outages agree with the raw rows.
rollups_match() {
	local u v
	for u in hour day; do
		v=rollup_hourly_all
		[ "$u" = day ] && v=rollup_daily_all
		psql -X -q -v unit=$u -v view=$v -f "$DIFF_SQL" >"$T/diff.$u" 2>&1 ||
			{ cat "$T/diff.$u" >&2; return 1; }
		if [ -s "$T/diff.$u" ]; then
			echo "rollups ($u) differ from the raw rows:" >&2
			head -n 20 "$T/diff.$u" >&2
			return 1
		fi
	done
}

@test "rollups: equal SQL over the raw rows, across a day boundary, folded or pending" {
	# 22:30Z to 01:30Z: three hours over midnight.
	results "$T/r" 1795473000000
	run -0 sm-pg-write -b 200 --fold-every 0 <"$T/r" >/dev/null
	[ "$(psql_q "SELECT count(*) FROM checks")" = 1620 ]
	[ "$(psql_q "SELECT count(DISTINCT bucket) FROM rollup_daily")" = 2 ]
	[ "$(psql_q "SELECT count(*) FROM rollup_pending")" = 0 ]
	[ "$(psql_q "SELECT sum(checks) FROM rollup_hourly")" = 1620 ]
	[ "$(psql_q "SELECT count(*) FROM outages WHERE error_kind = 'timeout'")" -gt 0 ]
	rollups_match
	# Unfolded: the same figures through the views.
	new_db
	run -0 sm-pg-write -b 200 --fold-every 1h <"$T/r" >/dev/null
	rollups_match
}

@test "rollups: a replay and a partial replay count nothing twice" {
	results "$T/r" 1795473000000
	head -n 900 "$T/r" >"$T/first"
	run -0 sm-pg-write -b 100 <"$T/first" >/dev/null
	rollups_match
	# Everything again: half of it stored before, in batches that mix
	# stored and new rows (the staging path).
	run -0 sm-pg-write -b 100 <"$T/r" >/dev/null
	[ "$(psql_q "SELECT sum(checks) FROM rollup_hourly_all")" = 1620 ]
	rollups_match
	# Duplicates within a batch, too.
	cat "$T/r" "$T/r" | sm-pg-write -b 5000 >/dev/null
	[ "$(psql_q "SELECT sum(checks) FROM rollup_daily_all")" = 1620 ]
	rollups_match
}

@test "rollups: out-of-order batches give the same rollups and outages" {
	results "$T/r" 1795473000000
	# Shuffled (a fixed order), in small batches: most keys get checks
	# older than ones stored before.
	shuf --random-source=<(yes) "$T/r" >"$T/shuf"
	! cmp -s "$T/r" "$T/shuf"
	run -0 sm-pg-write -b 37 <"$T/shuf" >/dev/null
	rollups_match
	# Reversed, into another database.
	new_db
	tac "$T/r" | sm-pg-write -b 50 >/dev/null
	rollups_match
	[ "$(psql_q "SELECT count(*) FROM outages")" -gt 50 ]
}

@test "rollups: an open outage is extended, closed and split by later batches" {
	local t0=1795473000000
	"$GEN" -n 6 -t 1 -s $t0 -i 60000 -S 1 | jq -c '.ok = false
		| .error_kind = "connect" | .error = "refused" | .status = null' >"$T/down"
	run -0 sm-pg-write <"$T/down" >/dev/null
	[ "$(psql_q "SELECT count(*), count(ended_at) FROM outages")" = "1|0" ]
	[ "$(psql_q "SELECT error_kind FROM outages")" = connect ]
	# An ok check after it: closed there.
	"$GEN" -n 1 -t 1 -s $((t0 + 6 * 60000)) -S 2 >"$T/up"
	run -0 sm-pg-write <"$T/up" >/dev/null
	[ "$(psql_q "SELECT extract(epoch FROM ended_at - started_at)::int FROM outages")" = 360 ]
	# A late ok check in the middle: two outages.
	"$GEN" -n 1 -t 1 -s $((t0 + 2 * 60000 + 30000)) -S 3 >"$T/late"
	run -0 sm-pg-write <"$T/late" >/dev/null
	[ "$(psql_q "SELECT count(*), count(ended_at) FROM outages")" = "2|2" ]
	rollups_match
}

@test "rollups: migration 5 builds them from the rows stored before it" {
	results "$T/r" 1795473000000
	run -0 sm-pg-write --no-rollups <"$T/r" >/dev/null
	[ "$(psql_q "SELECT count(*) FROM rollup_hourly_all")" = 0 ]
	# A database from before migration 5, with those rows.
	psql_q "DROP VIEW rollup_hourly_all, rollup_daily_all;
		DROP TABLE rollup_hourly, rollup_daily, rollup_pending, outages;
		DROP FUNCTION sm_duration_bucket, sm_rollup_group, sm_rollup_merge, sm_rollup_fold,
			sm_outages_rebuild, sm_rollup_drop_before;
		DELETE FROM schema_migrations WHERE version = 5" >/dev/null
	run -0 sm-pg-write -m
	[[ "$output" == *"applied schema migration 5 (rollups_outages)"* ]]
	[ "$(psql_q "SELECT count(*) FROM rollup_pending")" = 0 ]
	rollups_match
	# And the writer carries on from there.
	"$GEN" -n 30 -t 5 -f 3 -s 1795484000000 -i 1000 -S 9 | jq -c '.probe = "a"' |
		sm-pg-write >/dev/null
	rollups_match
}

@test "rollups: a version missing below the latest is applied" {
	run -0 sm-pg-write -m
	psql_q "DROP VIEW rollup_hourly_all, rollup_daily_all;
		DROP TABLE rollup_hourly, rollup_daily, rollup_pending, outages;
		DROP FUNCTION sm_duration_bucket, sm_rollup_group, sm_rollup_merge, sm_rollup_fold,
			sm_outages_rebuild, sm_rollup_drop_before;
		DELETE FROM schema_migrations WHERE version = 5;
		INSERT INTO schema_migrations (version, name) VALUES (99, 'later')" >/dev/null
	run -0 sm-pg-write -m
	[[ "$output" == *"applied schema migration 5 (rollups_outages)"* ]]
	[ "$(psql_q "SELECT to_regclass('rollup_hourly') IS NOT NULL")" = t ]
}

@test "rollups: --rollup-retention keeps rollups longer than --retention keeps rows" {
	local now old
	now=$(($(date +%s) * 1000))
	old=$((now - 10 * 86400000))
	"$GEN" -n 20 -t 2 -s "$old" -i 60000 -S 1 >"$T/r"
	"$GEN" -n 20 -t 2 -s $((now - 4 * 86400000)) -i 60000 -S 2 >>"$T/r"
	"$GEN" -n 20 -t 2 -s $((now - 3600000)) -i 60000 -S 3 >>"$T/r"
	run -0 sm-pg-write <"$T/r" >/dev/null
	run -64 sm-pg-write -m --rollup-retention 5d
	[[ "$output" == *"--rollup-retention must be at least --retention"* ]]
	run -64 sm-pg-write -m -R 5d --rollup-retention 2d
	run -0 sm-pg-write -m -R 2d --rollup-retention 7d
	# Rows: only the last day's; rollups: the last 7 days'.
	[ "$(psql_q "SELECT count(*) FROM checks")" = 20 ]
	[ "$(psql_q "SELECT sum(checks) FROM rollup_daily_all")" = 40 ]
	[ "$(psql_q "SELECT sum(checks) FROM rollup_hourly_all")" = 40 ]
}

@test "rollups: --no-rollups leaves them alone" {
	"$GEN" -n 20 -t 2 -f 3 -S 1 >"$T/r"
	run -0 sm-pg-write --no-rollups <"$T/r" >/dev/null
	[ "$(psql_q "SELECT count(*) FROM checks")" = 20 ]
	[ "$(psql_q "SELECT count(*) FROM rollup_hourly_all")" = 0 ]
	[ "$(psql_q "SELECT count(*) FROM outages")" = 0 ]
}

# lines_are FILE N: FILE has N lines.
lines_are() {
	[ "$(wc -l <"$1")" -eq "$2" ]
}

# fold_waits: a fold is waiting for a lock.
fold_waits() {
	[ "$(psql_q "SELECT count(*) FROM pg_stat_activity
	    WHERE wait_event_type = 'Lock' AND query LIKE '%sm_rollup_fold%'")" -ge 1 ]
}

pending_empty() {
	[ "$(psql_q "SELECT count(*) FROM rollup_pending")" -eq 0 ]
}

@test "rollups: a fold that waits (a lock on the rollups) holds up no batch; it folds everything once free" {
	results "$T/r" 1795473000000
	sm-pg-write --migrate </dev/null 2>/dev/null
	# Someone holds rollup_hourly: every fold blocks on it.
	mkfifo "$T/lockin"
	psql -X -q -v ON_ERROR_STOP=1 <"$T/lockin" >"$T/lock.out" 2>&1 3>&- &
	local locker=$!
	track_pid "$locker"
	exec 5>"$T/lockin"
	echo "BEGIN; LOCK TABLE rollup_hourly IN ACCESS EXCLUSIVE MODE; SELECT 'locked';" >&5
	wait_for grep -q locked "$T/lock.out"

	mkfifo "$T/in"
	sm-pg-write -b 100 -l 50ms --fold-every 100ms <"$T/in" >"$T/acks" 2>"$T/err" 3>&- 5>&- &
	local writer=$!
	track_pid "$writer"
	exec 6>"$T/in"
	head -n 200 "$T/r" >&6
	wait_for lines_are "$T/acks" 200
	# The first fold is waiting for the lock now; the batches go on.
	wait_for fold_waits
	tail -n +201 "$T/r" >&6
	WAIT_TIMEOUT=30 wait_for lines_are "$T/acks" 1620
	[ "$(psql_q "SELECT count(*) FROM checks")" = 1620 ]
	# (rollup_hourly itself cannot be read while it is locked)
	[ "$(psql_q "SELECT count(*) FROM rollup_pending")" -gt 0 ]

	# Free: the waiting fold takes what its statement saw, the next
	# ones the rest; nothing counted twice.
	echo "COMMIT;" >&5
	exec 5>&-
	wait "$locker"
	WAIT_TIMEOUT=30 wait_for pending_empty
	exec 6>&-
	wait "$writer"
	[ "$(psql_q "SELECT sum(checks) FROM rollup_hourly")" = 1620 ]
	rollups_match
}
