#!/usr/bin/env bats
# The whole pipeline, end to end, on real components: sm-schedule -> sm-check
# -> sm-kafka-pub -> dev broker -> sm-kafka-sub -> sm-pg-write -> PostgreSQL,
# with the ack FIFO that makes the consumer side lossless.

bats_require_minimum_version 1.5.0

load helpers

write_sites() {
	cat >"$T/sites.yaml" <<-YAML
	defaults:
	  timeout: 3s
	targets:
	  - name: up
	    url: $HTTP_URL/ok
	    interval: 30s
	  - name: server-error
	    url: $HTTP_URL/status/500
	    interval: 30s
	  - name: wrong-body
	    url: $HTTP_URL/ok
	    regex: "this text is not on the page"
	    interval: 30s
	  - name: refused
	    url: $CLOSED_URL
	    interval: 30s
	YAML
}

produce() {
	sm-schedule --once "$T/sites.yaml" | sm-check | tee "$T/results.ndjson" |
		sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC"
}

# consume GROUP: the consumer side with the ack FIFO, until the topic's end.
consume() {
	rm -f "$T/ack"
	mkfifo "$T/ack"
	timeout 60 bash -c 'set -o pipefail
		sm-kafka-sub -b "$1" -t "$2" -G "$3" -o beginning -e --ack "$4" |
			sm-pg-write >"$4"' _ "$SM_TEST_BROKERS" "$TOPIC" "$1" "$T/ack"
}

@test "pipeline: four local targets end up in PostgreSQL with the right verdicts" {
	new_db
	TOPIC=$(new_topic)
	write_sites
	produce
	[ "$(wc -l <"$T/results.ndjson")" -eq 4 ]
	consume g1

	run psql_q "select target, ok, coalesce(status::text, '-'), coalesce(error_kind, '-')
	            from checks order by target"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "refused|f|-|connect" ]
	[ "${lines[1]}" = "server-error|f|500|http_status" ]
	[ "${lines[2]}" = "up|t|200|-" ]
	[ "${lines[3]}" = "wrong-body|f|200|body_mismatch" ]
	[ "${#lines[@]}" -eq 4 ]

	run psql_q "select target, last_ok, coalesce(last_status::text, '-'),
	                   coalesce(last_error_kind, '-'), url
	            from targets order by target"
	[ "${lines[0]}" = "refused|f|-|connect|$CLOSED_URL" ]
	[ "${lines[1]}" = "server-error|f|500|http_status|$HTTP_URL/status/500" ]
	[ "${lines[2]}" = "up|t|200|-|$HTTP_URL/ok" ]
	[ "${lines[3]}" = "wrong-body|f|200|body_mismatch|$HTTP_URL/ok" ]

	# The ids in PostgreSQL are exactly the ids sm-check minted.
	diff <(jq -r .id "$T/results.ndjson" | sort) <(psql_q "select id from checks order by id")
}

@test "pipeline: consuming the same topic again stores nothing twice" {
	new_db
	TOPIC=$(new_topic)
	write_sites
	produce
	consume "g1_$TOPIC"
	consume "g2_$TOPIC"   # a new group reads the whole topic again
	produce               # four new probes, new ids
	consume "g1_$TOPIC"   # the first group reads only what is new
	[ "$(psql_q 'select count(*) from checks')" -eq 8 ]
	[ "$(psql_q 'select count(distinct id) from checks')" -eq 8 ]
	[ "$(psql_q 'select count(*) from targets')" -eq 4 ]
}

@test "pipeline: real sm-check and sm-schedule output matches the JSON Schemas" {
	write_sites
	sm-schedule --once "$T/sites.yaml" >"$T/targets.ndjson"
	run "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/target.schema.json" <"$T/targets.ndjson"
	echo "$output"
	[ "$status" -eq 0 ]
	sm-check <"$T/targets.ndjson" >"$T/results.ndjson"
	run "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/result.schema.json" <"$T/results.ndjson"
	echo "$output"
	[ "$status" -eq 0 ]
	# A schema that can fail: a result with a bad error_kind is refused.
	jq -c '.error_kind = "nonsense"' "$T/results.ndjson" >"$T/bad.ndjson"
	run "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/result.schema.json" <"$T/bad.ndjson"
	[ "$status" -eq 1 ]
}

@test "scripts: sm-producer --once and sm-consumer store every result" {
	new_db
	TOPIC=$(new_topic)
	write_sites
	SM_KAFKA_BROKERS=$SM_TEST_BROKERS SM_KAFKA_TOPIC=$TOPIC \
		timeout 60 "$SM_TOP/scripts/sm-producer" --once "$T/sites.yaml"
	TMPDIR=$T SM_KAFKA_BROKERS=$SM_TEST_BROKERS SM_KAFKA_TOPIC=$TOPIC SM_KAFKA_GROUP="g_$TOPIC" \
		SM_KAFKA_SUB_OPTS="-o beginning -e" \
		timeout 60 "$SM_TOP/scripts/sm-consumer" --echo >"$T/acked.ndjson"
	[ "$(psql_q 'select count(*) from checks')" -eq 4 ]
	[ "$(jq -s length "$T/acked.ndjson")" -eq 4 ]
	# The consumer script removed its private FIFO directory.
	run bash -c 'ls -d "$1"/sm-consumer.* 2>/dev/null' _ "$T"
	[ -z "$output" ]
}

@test "scripts: SIGTERM to sm-producer's process group drains the probe in flight into Kafka, exit 0" {
	local id pid rc=0
	id=$(hold_id)
	TOPIC=$(new_topic)
	cat >"$T/sites.yaml" <<-YAML
	targets:
	  - name: held
	    url: $SCRIPTED_URL/hold?id=$id
	    interval: 5s
	    timeout: 5s
	YAML
	SM_KAFKA_BROKERS=$SM_TEST_BROKERS SM_KAFKA_TOPIC=$TOPIC \
		setsid "$SM_TOP/scripts/sm-producer" "$T/sites.yaml" >"$T/out" 2>"$T/err" &
	pid=$!
	track_pid "$pid"
	WAIT_TIMEOUT=15 wait_for held_is "$id" 1
	# As systemd (KillMode=control-group) or Ctrl-C does: every stage
	# gets the signal while the probe is in flight.
	kill -TERM -- "-$pid"
	release "$id"
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ] || { echo "sm-producer: exit $rc"; cat "$T/err"; false; }
	run -0 kcat -C -b "$SM_TEST_BROKERS" -t "$TOPIC" -e -q -f '%k %s\n'
	[ "${#lines[@]}" -ge 1 ]
	[ "${lines[0]%% *}" = held ]
	run -0 jq -r '[.target, .ok, (.url | contains("/hold"))] | @tsv' <<<"${lines[0]#* }"
	[ "$output" = "$(printf 'held\ttrue\ttrue')" ]
}

@test "scripts: a stage that dies takes its pipeline down with its own exit status" {
	# sm-schedule refuses the sites file (78): the producer exits 78.
	printf 'targets:\n  - {name: x, url: "ftp://127.0.0.1/"}\n' >"$T/bad.yaml"
	SM_KAFKA_BROKERS=$SM_TEST_BROKERS run -78 --separate-stderr \
		timeout 60 "$SM_TOP/scripts/sm-producer" "$T/bad.yaml"
	[[ "$stderr" == *'sm-schedule: error: '*'bad.yaml:2:'* ]]
	# sm-pg-write cannot reach its database (69): the consumer exits 69,
	# and its private FIFO directory is gone.
	TOPIC=$(new_topic)
	echo '{"target":"x"}' | kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC"
	TMPDIR=$T SM_KAFKA_BROKERS=$SM_TEST_BROKERS SM_KAFKA_TOPIC=$TOPIC SM_KAFKA_GROUP="g_$TOPIC" \
		SM_KAFKA_SUB_OPTS="-o beginning" SM_PG_DSN="host=$T/nowhere dbname=x" \
		SM_PG_WRITE_OPTS="--retry-for 1s" \
		run -69 --separate-stderr timeout 60 "$SM_TOP/scripts/sm-consumer"
	[[ "$stderr" == *'sm-pg-write: error: '* ]]
	run bash -c 'ls -d "$1"/sm-consumer.* 2>/dev/null' _ "$T"
	[ -z "$output" ]
}
