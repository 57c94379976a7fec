#!/usr/bin/env bats
# The alerting side as it is deployed (scripts/sm-alerting): results in
# Kafka, sm-kafka-sub on its own consumer group, sm-alert, sm-notify to a
# real HTTP receiver, and the ack stream back to sm-kafka-sub.  What the
# pieces promise together: each incident is delivered once, every result
# is committed, and a restart delivers nothing twice.
load helpers
bats_require_minimum_version 1.5.0

# res TARGET OK AGO: a result of TARGET from location "a", AGO seconds ago.
res() {
	local t
	t=$(date -u -d "@$(($(date +%s) - $3))" +%Y-%m-%dT%H:%M:%S.000Z)
	jq -nc --arg target "$1" --argjson ok "$2" --arg t "$t" --arg id "$(cat /proc/sys/kernel/random/uuid)" '
		{v: 1, id: $id, target: $target, url: "http://\($target).example/",
		 labels: {}, probe: "a", scheduled_at: null, started_at: $t, ok: $ok,
		 status: (if $ok then 200 else 503 end),
		 error_kind: (if $ok then null else "http_status" end),
		 error: (if $ok then null else "status 503, expected 2xx" end),
		 duration_ms: 12.5}'
}

# start_alerting: sm-alerting in a session of its own (as a service
# manager runs it); ALERTING is its pid and session id.
start_alerting() {
	SM_KAFKA_BROKERS=$SM_TEST_BROKERS SM_KAFKA_TOPIC=$TOPIC SM_ALERT_GROUP="g_$TOPIC" \
		SM_SITES="$T/sites.yaml" SM_RECEIVERS="$T/r.yaml" SM_STATE_DIR="$T/state" \
		SM_KAFKA_SUB_OPTS="-X session.timeout.ms=3000 -X heartbeat.interval.ms=500" \
		SM_ALERT_OPTS="-w --stats-interval 100ms" \
		TMPDIR="$T" setsid "$SM_TOP/scripts/sm-alerting" </dev/null >"$T/alerting.out" 2>>"$T/alerting.err" 3>&- &
	ALERTING=$!
	track_pid "$ALERTING"
}

# stop_alerting: SIGTERM to its session, as systemctl stop sends it; it
# must end by itself, with status 0.
stop_alerting() {
	kill -TERM -- "-$ALERTING"
	local deadline=$((SECONDS + 60)) rc=0
	while kill -0 "$ALERTING" 2>/dev/null; do
		((SECONDS < deadline)) || { echo "sm-alerting still running after 60 s" >&2; return 1; }
		sleep 0.05
	done
	wait "$ALERTING" || rc=$?
	[ "$rc" -eq 0 ] || { echo "sm-alerting exited with $rc" >&2; cat "$T/alerting.err" >&2; return 1; }
	# Nothing of its session is left.
	! pgrep -s "$ALERTING" >/dev/null
}

# delivered: "TARGET EVENT" per request the receiver answered, sorted.
delivered() {
	jq -r 'select(.path == "/hook" and .status == 200) | .body | fromjson |
		"\(.target) \(.event)"' "$RECV_LOG" | sort
}

# show: what the stages said and what was delivered (for a failure).
show() {
	echo "--- sm-alerting's stderr:"
	cat "$T/alerting.err"
	echo "--- delivered:"
	delivered
}

delivered_are() {
	[ "$(delivered | paste -sd,)" = "$1" ]
}

@test "alerting: sm-alerting delivers each incident once to a webhook, commits every result, and a restart resends nothing" {
	start_receiver
	TOPIC=$(new_topic)
	cat >"$T/sites.yaml" <<-'EOF'
	defaults:
	  interval: 60s
	targets:
	  - {name: flaky, url: "http://flaky.example/"}
	  - {name: steady, url: "http://steady.example/"}
	EOF
	cat >"$T/r.yaml" <<-EOF
	receivers:
	  hook:
	    type: webhook
	    url: $RECV/hook
	    retry_for: 30s
	    backoff_min: 50ms
	default: hook
	EOF
	# flaky: three failures (down), then two successes (up); steady: fine.
	{
		for ago in 300 240 180; do res flaky false $ago; res steady true $ago; done
		for ago in 120 60; do res flaky true $ago; res steady true $ago; done
	} >"$T/in"
	sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/in"

	start_alerting
	WAIT_TIMEOUT=60 wait_for delivered_are "flaky down,flaky up" || { show; false; }
	# Each delivery has the idempotency key "<incident>/<event>".
	[ "$(jq -r 'select(.path == "/hook") | .key' "$RECV_LOG" | sort -u | wc -l)" -eq 2 ]
	jq -e -s '[.[] | select(.path == "/hook") | (.body | fromjson) as $e | .key == $e.id] | all' "$RECV_LOG"
	# Stop once sm-alert has read all ten results (the partitions are
	# not all fetched at once) and checkpointed, which releases its acks.
	WAIT_TIMEOUT=60 wait_for grep -Eq '^sm-alert: info: stats: in=10 .*checkpoints=[1-9]' "$T/alerting.err" ||
		{ show; false; }
	stop_alerting

	# Every result was acknowledged through the ack stream and committed:
	# the group has nothing left to read.
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "g_$TOPIC" \
		-X session.timeout.ms=3000 -X heartbeat.interval.ms=500 -e
	[ -z "$output" ] || { echo "left: $output"; show; false; }

	# After a restart with the same state, new results make a new
	# incident; the old ones are neither replayed nor delivered again.
	{ for ago in 50 40 30; do res steady false $ago; done; } | sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC"
	start_alerting
	WAIT_TIMEOUT=60 wait_for delivered_are "flaky down,flaky up,steady down" || { show; false; }
	stop_alerting
	delivered_are "flaky down,flaky up,steady down"
	[ "$(jq -r 'select(.path == "/hook") | .key' "$RECV_LOG" | sort | uniq -d | wc -l)" -eq 0 ]
	# Nothing alarming on the way: only the stages' info lines.
	! grep -Ev '^sm-[a-z-]+: info: ' "$T/alerting.err"
}

# pg_start: start the test's own PostgreSQL again (stopped by pg_stop),
# on the socket and port of own_postgres.
pg_start() {
	sm_as_pg pg_ctl -D "$OWN_PG_DATA" -l "$T/pg/log" -w -t 60 \
		-o "-k $T/pg -p $PGPORT -c listen_addresses='' -c fsync=off" start >/dev/null
}

# pg_stop: stop it at once, as a crash or a lost host would.
pg_stop() {
	sm_as_pg pg_ctl -D "$OWN_PG_DATA" -m immediate -w stop >/dev/null
}

# stored_is N: the database holds N distinct results.
stored_is() {
	[ "$(psql_q "SELECT count(DISTINCT id) FROM checks" 2>/dev/null)" = "$1" ]
}

@test "alerting: with PostgreSQL down, the storage side waits but down and up are delivered on time; once it is back every result is stored" {
	start_receiver
	TOPIC=$(new_topic)
	own_postgres
	printf 'defaults:\n  interval: 60s\ntargets:\n' >"$T/sites.yaml"
	for i in $(seq 1 8); do printf '  - {name: w%s, url: "http://w%s.example/"}\n' $i $i >>"$T/sites.yaml"; done
	cat >"$T/r.yaml" <<-EOF
	receivers:
	  hook:
	    type: webhook
	    url: $RECV/hook
	    retry_for: 30s
	    backoff_min: 50ms
	default: hook
	EOF
	# The storage side, on its group, stores a first round.
	TMPDIR=$T SM_KAFKA_BROKERS=$SM_TEST_BROKERS SM_KAFKA_TOPIC=$TOPIC SM_KAFKA_GROUP="store_$TOPIC" \
		SM_KAFKA_SUB_OPTS="-X session.timeout.ms=3000 -X heartbeat.interval.ms=500" \
		setsid "$SM_TOP/scripts/sm-consumer" </dev/null >/dev/null 2>"$T/storage.err" 3>&- &
	STORAGE=$!
	track_pid "$STORAGE"
	# (recent results: sm-alert -w would call a location silent 3
	# intervals after its newest one)
	for i in $(seq 1 8); do res w$i true 60; done | sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC"
	WAIT_TIMEOUT=60 wait_for stored_is 8

	# PostgreSQL goes away.  The alerting side gets the same environment
	# (SM_PG_DSN, PGHOST, PGPORT point at the stopped server).
	pg_stop
	! psql_q "SELECT 1" 2>/dev/null
	start_alerting
	# every target: three failures (down), two successes (up)
	for i in $(seq 1 8); do
		for ago in 50 40 30; do res w$i false $ago; done
		for ago in 20 10; do res w$i true $ago; done
	done >"$T/outage"
	want=$(for i in $(seq 1 8); do printf 'w%s down,w%s up,' $i $i; done)
	# on time: within 30 s of the results, while nothing can be stored
	start=$SECONDS
	sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/outage"
	WAIT_TIMEOUT=30 wait_for delivered_are "${want%,}" || { show; cat "$T/storage.err"; false; }
	echo "delivered in $((SECONDS - start)) s" >&3
	# the storage side is still there, waiting for the database
	kill -0 "$STORAGE"
	! psql_q "SELECT 1" 2>/dev/null

	# PostgreSQL back: the storage side stores every result, once.
	pg_start
	WAIT_TIMEOUT=60 wait_for stored_is 48 || { cat "$T/storage.err"; false; }
	[ "$(psql_q "SELECT count(*) FROM checks")" -eq 48 ]
	stop_alerting
	delivered_are "${want%,}"
	kill -TERM -- "-$STORAGE"
	wait "$STORAGE"
}
