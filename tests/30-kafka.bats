#!/usr/bin/env bats
# sm-kafka-pub and sm-kafka-sub against the dev broker, with kcat as the
# independent client on the other side.

load helpers

# Every test gets its own groups: the mock broker holds a group that a
# member just left for a while.
setup() {
	T=$(mktemp -d "${SM_TEST_TMP:-/tmp}/t.XXXXXX")
	G1="g1_$(new_topic)"
	G2="g2_$(new_topic)"
	export G1 G2
	chmod 755 "$T"
}

bats_require_minimum_version 1.5.0

# The mock broker makes a group that a member just left wait for
# session.timeout.ms before the next join: keep it short where a test
# restarts a consumer in the same group.
FAST_GROUP=(-X session.timeout.ms=3000 -X heartbeat.interval.ms=500)

# kcat_all TOPIC: every message of TOPIC as "key<TAB>value", sorted.
kcat_all() {
	kcat -C -b "$SM_TEST_BROKERS" -t "$1" -e -q -f '%k\t%s\n' | sort
}

# lines FILE: number of lines in FILE (0 when it does not exist yet).
lines_in() {
	[ -f "$1" ] && wc -l <"$1" || echo 0
}

has_lines() {
	[ "$(lines_in "$1")" -ge "$2" ]
}

# ack_new_until N: acknowledge the records emitted since the last call;
# true once N are out.
ack_new_until() {
	local n
	n=$(lines_in "$T/out")
	sed -n "$((ACKED + 1)),${n}p" "$T/out" >>"$T/acks"
	ACKED=$n
	[ "$n" -ge "$1" ]
}

@test "kafka-pub: kcat reads what sm-kafka-pub wrote, key = target" {
	TOPIC=$(new_topic)
	printf '%s\n' '{"v":1,"target":"alpha","ok":true}' \
		'{"v":1,"target":"beta","ok":false}' \
		'{"v":1,"target":"gamma","n":3}' >"$T/in"
	run -0 sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/in"
	run -0 kcat_all "$TOPIC"
	[ "${#lines[@]}" -eq 3 ]
	[ "${lines[0]}" = $'alpha\t{"v":1,"target":"alpha","ok":true}' ]
	[ "${lines[1]}" = $'beta\t{"v":1,"target":"beta","ok":false}' ]
	[ "${lines[2]}" = $'gamma\t{"v":1,"target":"gamma","n":3}' ]
}

@test "kafka-pub: an invalid line is reported with its line number and skipped" {
	TOPIC=$(new_topic)
	printf '%s\n' '{"target":"a"}' 'not json at all' '[1,2]' '{"target":"b"}' >"$T/in"
	run -0 --separate-stderr sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/in"
	[[ "$stderr" == *"sm-kafka-pub: error: <stdin>:2: invalid JSON"*"not json at all"* ]]
	[[ "$stderr" == *"<stdin>:3: not a JSON object"* ]]
	run -0 kcat_all "$TOPIC"
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = $'a\t{"target":"a"}' ]
	[ "${lines[1]}" = $'b\t{"target":"b"}' ]
}

@test "kafka-pub: JSON edge cases are judged as jansson judges them" {
	TOPIC=$(new_topic)
	printf '%s\n' '{"a":1,"a":2}' '{"s":"\u0000"}' '{"s":"\ud83d\ude00","target":"x"}' \
		'{"s":"\ud800"}' '{"n":123456789012345678901234567890}' '{"n":1e400}' \
		'{"target":"caf\u00e9"}' '{"target":42}' '{"target":1.50}' '{"b":{"a":1,"a":2}}' >"$T/in"
	printf '{"x":"\xff"}\n' >>"$T/in"
	run -0 --separate-stderr sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/in"
	for n in 1 2 4 5 6 10 11; do
		[[ "$stderr" == *"<stdin>:$n: "* ]] || { echo "line $n not refused"; false; }
	done
	run -0 kcat_all "$TOPIC"
	[ "${#lines[@]}" -eq 4 ]
	[ "${lines[0]}" = $'1.5\t{"target":1.50}' ]
	[ "${lines[1]}" = $'42\t{"target":42}' ]
	[ "${lines[2]}" = $'café\t{"target":"caf\\u00e9"}' ]
	[ "${lines[3]}" = $'x\t{"s":"\\ud83d\\ude00","target":"x"}' ]
}

@test "kafka-pub: --strict stops at the first invalid line with 65" {
	TOPIC=$(new_topic)
	printf '%s\n' '{"target":"a"}' '{oops' '{"target":"b"}' >"$T/in"
	run -65 --separate-stderr sm-kafka-pub --strict -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/in"
	[[ "$stderr" == *"<stdin>:2:"* ]]
	# What came before the bad line was still delivered.
	run -0 kcat_all "$TOPIC"
	[ "${lines[0]}" = $'a\t{"target":"a"}' ]
	[ "${#lines[@]}" -eq 1 ]
}

@test "kafka-pub: --key-field, --tee after delivery, --failure-topic" {
	TOPIC=$(new_topic)
	FAILED=$(new_topic)
	printf '%s\n' '{"id":"1","target":"a","ok":true}' '{"id":"2","target":"b","ok":false}' >"$T/in"
	run -0 --separate-stderr sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" \
		--key-field id --tee --failure-topic "$FAILED" <"$T/in"
	[ "$(sort <<<"$output")" = "$(sort "$T/in")" ]
	run -0 kcat_all "$TOPIC"
	[ "$output" = $'1\t{"id":"1","target":"a","ok":true}' ]
	run -0 kcat_all "$FAILED"
	[ "$output" = $'2\t{"id":"2","target":"b","ok":false}' ]
}

@test "kafka-pub: no broker listening, short message.timeout.ms: 69 and a dead letter" {
	port=$(free_port)
	printf '%s\n' '{"target":"a","id":"x1"}' '{"target":"b","id":"x2"}' >"$T/in"
	run -69 --separate-stderr sm-kafka-pub -b "127.0.0.1:$port" -t lost \
		-X message.timeout.ms=1000 --dead-letter "$T/dead" <"$T/in"
	[[ "$stderr" == *"2 failed"* ]]
	run -0 jq -c '[.line, .topic, .record.id, (.reason | test("timed out"))]' "$T/dead"
	[ "${lines[0]}" = '[1,"lost","x1",true]' ]
	[ "${lines[1]}" = '[2,"lost","x2",true]' ]
	# Without --dead-letter the whole record is on stderr.
	run -69 --separate-stderr sm-kafka-pub -b "127.0.0.1:$port" -t lost \
		-X message.timeout.ms=500 <<<'{"target":"c","id":"x3"}'
	[[ "$stderr" == *'<stdin>:1: not delivered to lost: Local: Message timed out: {"target":"c","id":"x3"}'* ]]
}

@test "kafka: an unknown -X property is refused with librdkafka's own text (78)" {
	run -78 sm-kafka-pub -b "$SM_TEST_BROKERS" -t x -X no.such.property=1 </dev/null
	[ "$output" = 'sm-kafka-pub: error: No such configuration property: "no.such.property"' ]
	run -78 sm-kafka-sub -b "$SM_TEST_BROKERS" -t x -G g -X enable.idempotence=maybe
	[[ "$output" == *'Expected bool value for "enable.idempotence": true or false'* ]]
	run -64 sm-kafka-pub -t x -X novalue
	run -64 sm-kafka-pub -t x </dev/null
	[[ "$output" == *"no brokers"* ]]
	run -64 sm-kafka-sub -b "$SM_TEST_BROKERS" -t x
	[[ "$output" == *"no group"* ]]
}

@test "kafka: -F properties file applies, and its errors name path:line (78)" {
	printf '# comment\n\nlinger.ms = 7\nclient.id=from-file\n' >"$T/good.properties"
	run -0 sm-kafka-pub -b 127.0.0.1:1 -t x -F "$T/good.properties" -X dump
	[[ "$output" == *$'\nqueue.buffering.max.ms = 7\n'* ]]
	[[ "$output" == *$'\nclient.id = from-file\n'* ]]
	printf 'linger.ms=5\n\nbogus.thing=1\n' >"$T/bad.properties"
	run -78 sm-kafka-sub -b 127.0.0.1:1 -t x -G g -F "$T/bad.properties"
	[ "$output" = "sm-kafka-sub: error: $T/bad.properties:3: No such configuration property: \"bogus.thing\"" ]
	printf 'linger.ms\n' >"$T/bad2.properties"
	run -78 sm-kafka-pub -b 127.0.0.1:1 -t x -F "$T/bad2.properties"
	[ "$output" = "sm-kafka-pub: error: $T/bad2.properties:1: expected property=value" ]
	run -78 sm-kafka-pub -b 127.0.0.1:1 -t x -F "$T/missing.properties"
}

# stats_lines_at_least FILE N: N stats lines in FILE.
stats_lines_at_least() {
	[ "$(grep -c ': info: stats: ' "$1")" -ge "$2" ]
}

@test "kafka-pub: --stats-interval writes cumulative counts to stderr; SM_STATS_INTERVAL is the default" {
	TOPIC=$(new_topic)
	mkfifo "$T/in"
	sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" --stats-interval 100ms \
		<"$T/in" >"$T/out" 2>"$T/err" &
	pid=$!
	track_pid $pid
	exec 8>"$T/in"
	printf '%s\n' '{"target":"a"}' 'not json' '{"target":"b"}' '{"target":"c"}' >&8
	# The input stays open: the line comes from the idle wait, on time.
	STATS='sm-kafka-pub: info: stats: in=4 delivered=3 failed=0 invalid=1 queue=0'
	wait_for grep -qxF "$STATS" "$T/err"
	# Idle, it would wait 1 s a turn: 5 more lines in under 3 s.
	WAIT_TIMEOUT=3 wait_for stats_lines_at_least "$T/err" $(($(grep -c ': info: stats: ' "$T/err") + 5))
	exec 8>&-
	wait "$pid"
	[ "$(tail -n 1 "$T/err")" = "$STATS" ]

	# From the environment: no period passes, the last line still comes.
	SM_STATS_INTERVAL=1h run -0 --separate-stderr sm-kafka-pub -b "$SM_TEST_BROKERS" \
		-t "$TOPIC" <<<'{"target":"d"}'
	[ "$stderr" = 'sm-kafka-pub: info: stats: in=1 delivered=1 failed=0 invalid=0 queue=0' ]
	# The flag wins; off by default.
	SM_STATS_INTERVAL=1h run -0 --separate-stderr sm-kafka-pub -b "$SM_TEST_BROKERS" \
		-t "$TOPIC" --stats-interval 0 <<<'{"target":"e"}'
	[ -z "$stderr" ]
	run -0 --separate-stderr sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <<<'{"target":"f"}'
	[ -z "$stderr" ]
	run -64 sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" --stats-interval bogus </dev/null
	[[ "$output" == *'--stats-interval: "bogus" is not a duration'* ]]
	SM_STATS_INTERVAL=bogus run -64 sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" </dev/null
	[[ "$output" == *'SM_STATS_INTERVAL: "bogus" is not a duration'* ]]
}

@test "kafka: -X dump shows TLS and SASL settings, the password masked" {
	printf 'hunter2-from-file\n' >"$T/pw"
	run -0 sm-kafka-pub -b broker.example:9093 -t x --ca /etc/ca.pem \
		--cert /etc/client.pem --key /etc/client.key \
		--sasl-mechanism SCRAM-SHA-512 --sasl-user monitor \
		--sasl-password-file "$T/pw" -X dump
	[[ "$output" == *$'\nmetadata.broker.list = broker.example:9093\n'* ]]
	[[ "$output" == *$'\nsecurity.protocol = sasl_ssl\n'* ]]
	[[ "$output" == *$'\nssl.ca.location = /etc/ca.pem\n'* ]]
	[[ "$output" == *$'\nssl.certificate.location = /etc/client.pem\n'* ]]
	[[ "$output" == *$'\nssl.key.location = /etc/client.key\n'* ]]
	[[ "$output" == *$'\nsasl.mechanisms = SCRAM-SHA-512\n'* ]]
	[[ "$output" == *$'\nsasl.username = monitor\n'* ]]
	[[ "$output" == *$'\nsasl.password = [redacted]\n'* ]]
	[[ "$output" == *$'\nenable.idempotence = true\n'* ]]
	[[ "$output" == *$'\nrequest.required.acks = -1\n'* ]]
	[[ "$output" != *hunter2* ]]

	# The same from the environment, for the consumer.
	SM_KAFKA_BROKERS=env-broker:9093 SM_KAFKA_CA=/env/ca.pem SM_KAFKA_CERT=/env/c.pem \
		SM_KAFKA_KEY=/env/c.key SM_KAFKA_SASL_MECHANISM=PLAIN SM_KAFKA_SASL_USER=envuser \
		SM_KAFKA_SASL_PASSWORD=hunter3-from-env SM_KAFKA_GROUP=envgroup \
		run -0 sm-kafka-sub -t x -X dump
	[[ "$output" == *$'\nmetadata.broker.list = env-broker:9093\n'* ]]
	[[ "$output" == *$'\nssl.ca.location = /env/ca.pem\n'* ]]
	[[ "$output" == *$'\nssl.key.location = /env/c.key\n'* ]]
	[[ "$output" == *$'\nsasl.mechanisms = PLAIN\n'* ]]
	[[ "$output" == *$'\nsasl.username = envuser\n'* ]]
	[[ "$output" == *$'\nsasl.password = [redacted]\n'* ]]
	[[ "$output" == *$'\ngroup.id = envgroup\n'* ]]
	[[ "$output" == *$'\nenable.auto.commit = false\n'* ]]
	[[ "$output" == *$'\nenable.auto.offset.store = false\n'* ]]
	[[ "$output" != *hunter3* ]]

	# TLS alone is ssl; flags win over the environment.
	SM_KAFKA_BROKERS=env-broker:9093 run -0 sm-kafka-pub -b flag-broker:9093 -t x --ca /ca.pem -X dump
	[[ "$output" == *$'\nsecurity.protocol = ssl\n'* ]]
	[[ "$output" == *$'\nmetadata.broker.list = flag-broker:9093\n'* ]]

	# Secrets never come from argv; a user without a password is refused.
	run -64 sm-kafka-pub -b b:1 -t x -X sasl.password=hunter4
	[[ "$output" != *hunter4* ]]
	run -78 env -u SM_KAFKA_SASL_PASSWORD sm-kafka-pub -b b:1 -t x --sasl-user u -X dump

	# SCRAM-SHA-256 too; a mechanism outside the three is refused.
	SM_KAFKA_SASL_PASSWORD=pw run -0 sm-kafka-sub -b b:1 -t x \
		--sasl-mechanism SCRAM-SHA-256 --sasl-user u -X dump
	[[ "$output" == *$'\nsasl.mechanisms = SCRAM-SHA-256\n'* ]]
	run -64 sm-kafka-pub -b b:1 -t x --sasl-mechanism BOGUS -X dump
	[[ "$output" == *"--sasl-mechanism BOGUS: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"* ]]
	SM_KAFKA_SASL_MECHANISM=scram run -78 sm-kafka-sub -b b:1 -t x -X dump
}

@test "kafka-sub: consumes what kcat produced, coordinates added, -e exits at the end" {
	TOPIC=$(new_topic)
	printf '%s\n' '{"v":1,"n":0}' '{"v":1,"n":1}' '{}' | kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 0
	printf '%s\n' '{"v":1,"n":2}' | kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 2
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" -e
	[ "${#lines[@]}" -eq 4 ]
	# Partitions interleave: put the lines in (partition, offset) order.
	run -0 jq -s -c 'sort_by(.kafka.partition, .kafka.offset) | .[]' <<<"$output"
	json_eq "${lines[0]}" "{\"v\":1,\"n\":0,\"kafka\":{\"topic\":\"$TOPIC\",\"partition\":0,\"offset\":0}}"
	json_eq "${lines[1]}" "{\"v\":1,\"n\":1,\"kafka\":{\"topic\":\"$TOPIC\",\"partition\":0,\"offset\":1}}"
	json_eq "${lines[2]}" "{\"kafka\":{\"topic\":\"$TOPIC\",\"partition\":0,\"offset\":2}}"
	json_eq "${lines[3]}" "{\"v\":1,\"n\":2,\"kafka\":{\"topic\":\"$TOPIC\",\"partition\":2,\"offset\":0}}"
}

@test "kafka: sm-kafka-pub to sm-kafka-sub keeps every record, with several topics" {
	A=$(new_topic)
	B=$(new_topic)
	for i in $(seq 1 200); do echo "{\"v\":1,\"target\":\"t$((i % 7))\",\"i\":$i}"; done >"$T/in"
	run -0 sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$A" <"$T/in"
	echo '{"i":"other"}' | sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$B"
	SM_KAFKA_BROKERS=$SM_TEST_BROKERS SM_KAFKA_TOPIC="$A,$B" SM_KAFKA_GROUP="$G1" \
		run -0 --separate-stderr timeout 60 sm-kafka-sub -e
	[ "${#lines[@]}" -eq 201 ]
	diff <(jq -c 'del(.kafka)' <<<"$output" | sort) <(cat "$T/in"; echo '{"i":"other"}') >/dev/null ||
		diff <(jq -c 'del(.kafka)' <<<"$output" | sort) <( (cat "$T/in"; echo '{"i":"other"}') | sort)
	# Records of one target keep their order (same key, same partition).
	run -0 jq -s -c '[.[] | select(.target == "t3") | .i] | . == sort' <<<"$output"
	[ "$output" = true ]
}

@test "kafka-sub: with --ack only acknowledged offsets are committed; a restart re-delivers the rest" {
	TOPIC=$(new_topic)
	for i in $(seq 0 9); do echo "{\"n\":$i}"; done | kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 0
	: >"$T/acks"
	sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" "${FAST_GROUP[@]}" -e \
		--ack "$T/acks" --drain-timeout 200ms --stats-interval 50ms >"$T/out1" 2>"$T/err1" &
	pid=$!
	track_pid $pid
	wait_for has_lines "$T/out1" 10
	# Acknowledge 0-4 and 6: only offsets up to 4 may be committed.
	jq -c 'select(.kafka.offset < 5 or .kafka.offset == 6)' "$T/out1" >>"$T/acks"
	# -e does not end it: offset 5 is still unacknowledged.  It has
	# taken the six acknowledgements and goes on, over three stats lines
	# (100 ms of its clock).
	wait_for eval '[ "$(grep -c "stats: out=10 acked=6 invalid=0 unacked=4 " "$T/err1")" -ge 3 ]'
	kill -0 $pid
	kill -TERM $pid
	wait "$pid"  # exit 0: a drained stop
	grep -Eq 'stopping: waiting for [1-9][0-9]* acknowledgements?, then the final commit; a second signal exits at once' "$T/err1"

	# The restart starts at 5, the first unacknowledged record.  Every
	# record it emits is acked at once through the FIFO.
	mkfifo "$T/fifo"
	run -0 timeout 60 bash -c 'sm-kafka-sub -b "$1" -t "$2" -G "$G1" "${@:4}" -o stored -e --ack "$3" |
		tee "$3.out" >"$3"' _ "$SM_TEST_BROKERS" "$TOPIC" "$T/fifo" "${FAST_GROUP[@]}"
	run -0 jq -c .kafka.offset "$T/fifo.out"
	[ "$(echo $output)" = "5 6 7 8 9" ]

	# Everything is committed now: nothing more to read.
	: >"$T/acks2"
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" \
		"${FAST_GROUP[@]}" -e --ack "$T/acks2"
	[ -z "$output" ]
}

@test "kafka-sub: JSON edge cases are judged as jansson judges them, valid values kept as sent" {
	TOPIC=$(new_topic)
	printf '%s\n' '{"a":1,"a":2}' '{"s":"\u0000"}' '{"s":"\ud83d\ude00","target":"x"}' \
		'{"s":"\ud800"}' '{"n":123456789012345678901234567890}' '{"n":1e400}' \
		'{"target":"caf\u00e9"}' '{"target":42}' '{"target":1.50}' '{"b":{"a":1,"a":2}}' >"$T/in"
	printf '{"x":"\xff"}\n' >>"$T/in"
	printf '%s\n' '{"kafka":1,"x":2}' '{"k\u0061fka":1}' ' { "a" : 1 } ' >>"$T/in"
	kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 0 <"$T/in"
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" \
		-e --dead-letter "$T/dead"
	K='"kafka":{"topic":"'$TOPIC'","partition":0,"offset":'
	[ "${#lines[@]}" -eq 7 ]
	[ "${lines[0]}" = '{"s":"\ud83d\ude00","target":"x",'"$K"'2}}' ]
	[ "${lines[1]}" = '{"target":"caf\u00e9",'"$K"'6}}' ]
	[ "${lines[2]}" = '{"target":42,'"$K"'7}}' ]
	[ "${lines[3]}" = '{"target":1.50,'"$K"'8}}' ]
	# A "kafka" field of the value's own is replaced.
	json_eq "${lines[4]}" '{'"$K"'11},"x":2}'
	json_eq "${lines[5]}" '{'"$K"'12}}'
	[ "${lines[6]}" = '{ "a" : 1 ,'"$K"'13}}' ]
	run -0 jq -c .offset "$T/dead"
	[ "$(tr '\n' ' ' <<<"$output")" = "0 1 3 4 5 9 10 " ]
}

@test "kafka-sub: a message that is not a JSON object goes to the dead letter and does not block" {
	TOPIC=$(new_topic)
	printf '%s\n' '{"n":0}' 'garbage' '[1]' '{"n":3}' | kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 1
	mkfifo "$T/fifo"
	run -0 timeout 60 bash -c 'sm-kafka-sub -b "$1" -t "$2" -G "$G1" "${@:5}" -e --ack "$3" --dead-letter "$4" |
		tee "$3.out" >"$3"' _ "$SM_TEST_BROKERS" "$TOPIC" "$T/fifo" "$T/dead" "${FAST_GROUP[@]}"
	run -0 jq -c '[.n, .kafka.offset]' "$T/fifo.out"
	[ "${lines[0]}" = '[0,0]' ]
	[ "${lines[1]}" = '[3,3]' ]
	[ "${#lines[@]}" -eq 2 ]
	run -0 jq -c '[.partition, .offset, .value, (.reason | length > 0)]' "$T/dead"
	[ "${lines[0]}" = '[1,1,"garbage",true]' ]
	[ "${lines[1]}" = '[1,2,"[1]",true]' ]
	# All four were committed: the dead letters count as acknowledged.
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" \
		"${FAST_GROUP[@]}" -e
	[ -z "$output" ]
	# Without --dead-letter: one stderr line with the coordinates.
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G2" -e
	[[ "$stderr" == *"$TOPIC [1] offset 1: invalid JSON"*"garbage"* ]]
}

@test "kafka-sub: the ack stream closing ends the consumer after committing what was acked" {
	TOPIC=$(new_topic)
	for i in 0 1 2; do echo "{\"n\":$i}"; done | kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 0
	mkfifo "$T/fifo"
	# The acker takes two records, acks the first only, and exits.
	run -69 --separate-stderr timeout 60 bash -c 'set -o pipefail
		sm-kafka-sub -b "$1" -t "$2" -G "$G1" "${@:4}" --ack "$3" |
		{ head -n 1 >"$3"; cat >/dev/null; }' _ "$SM_TEST_BROKERS" "$TOPIC" "$T/fifo" "${FAST_GROUP[@]}"
	[[ "$stderr" == *"closed with"*"unacknowledged"* ]]
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" \
		"${FAST_GROUP[@]}" -e
	run -0 jq -c .n <<<"$output"
	[ "$(echo $output)" = "1 2" ]
}

@test "kafka-sub: -o end skips what is there; --max-inflight bounds unacked records" {
	TOPIC=$(new_topic)
	for i in $(seq 0 49); do echo "{\"n\":$i}"; done | kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 0
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G2" -o end -e
	[ -z "$output" ]
	: >"$T/acks"
	sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" --max-inflight 10 \
		--ack "$T/acks" --stats-interval 50ms >"$T/out" 2>"$T/err" &
	track_pid $!
	wait_for has_lines "$T/out" 10
	# Paused at 10 while nothing is acknowledged: three stats lines in a
	# row (100 ms of its clock) say 10 out, 10 unacknowledged.
	wait_for eval '[ "$(grep -c "stats: out=10 acked=0 invalid=0 unacked=10 " "$T/err")" -ge 3 ]'
	[ "$(lines_in "$T/out")" -eq 10 ]
	ACKED=0
	wait_for ack_new_until 50
	[ "$(lines_in "$T/out")" -eq 50 ]
}

@test "kafka-sub: --stats-interval writes cumulative counts and the lag to stderr; SM_STATS_INTERVAL is the default" {
	TOPIC=$(new_topic)
	printf '%s\n' '{"n":0}' '{"n":1}' 'garbage' '{"n":3}' '{"n":4}' |
		kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 0
	# Acks through a FIFO held open (a file would be looked at every
	# 100 ms anyway).
	mkfifo "$T/acks"
	exec 9<>"$T/acks"
	sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" --ack "$T/acks" \
		--drain-timeout 0 --stats-interval 100ms >"$T/out" 2>"$T/err" &
	pid=$!
	track_pid $pid
	wait_for has_lines "$T/out" 4
	head -n 2 "$T/out" >&9
	# Offsets 0-2 acknowledged (the dead letter counts): one commit; every
	# message consumed: no lag.
	STATS='sm-kafka-sub: info: stats: out=4 acked=2 invalid=1 unacked=2 committed=1 lag=0'
	wait_for grep -qxF "$STATS" "$T/err"
	# Idle, it would wait 1 s a turn: 5 more lines in under 3 s.
	WAIT_TIMEOUT=3 wait_for stats_lines_at_least "$T/err" $(($(grep -c ': info: stats: ' "$T/err") + 5))
	# Before the group's assignment the lag is unknown.
	grep -qxF 'sm-kafka-sub: info: stats: out=0 acked=0 invalid=0 unacked=0 committed=0 lag=-' "$T/err"
	kill -TERM "$pid"
	wait "$pid"
	exec 9>&-
	[ "$(tail -n 1 "$T/err")" = "$STATS" ]

	# From the environment: the last line at the end, though no period
	# passed.  Without --ack, written is done: nothing is unacked.
	SM_STATS_INTERVAL=1h run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" \
		-t "$TOPIC" -G "$G2" -e
	[ "${#lines[@]}" -eq 4 ]
	re='^sm-kafka-sub: info: stats: out=4 acked=0 invalid=1 unacked=0 committed=[12] lag=0$'
	[[ "$(tail -n 1 <<<"$stderr")" =~ $re ]]
	run -64 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G2" --stats-interval bogus
	[[ "$output" == *'--stats-interval: "bogus" is not a duration'* ]]
	SM_STATS_INTERVAL=bogus run -64 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G2"
	[[ "$output" == *'SM_STATS_INTERVAL: "bogus" is not a duration'* ]]
}

# private_broker: a broker of this test's own, driven through the FIFO on
# fd 7 ("down all", "up all"; see sm-devbroker --help).
private_broker() {
	mkfifo "$T/ctl"
	sm-devbroker -n 3 <"$T/ctl" >"$T/broker.out" 2>"$T/broker.err" &
	track_pid $!
	exec 7>"$T/ctl"
	wait_for test -s "$T/broker.out"
	BROKERS=$(head -n 1 "$T/broker.out")
}

# fifo_empty PATH: nothing is waiting in the FIFO to be read.
fifo_empty() {
	/usr/bin/python3 -c 'import fcntl, os, struct, sys, termios
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
n = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
sys.exit(0 if n == 0 else 1)' "$1"
}

# broker_cmd CMD: send CMD and wait for its answer.
broker_cmd() {
	local n
	n=$(grep -c -E '^(ok|error)' "$T/broker.out" || true)
	echo "$1" >&7
	wait_for eval '[ "$(grep -c -E "^(ok|error)" "$T/broker.out")" -gt '"$n"' ]'
	tail -n 1 "$T/broker.out" | grep -qx ok
}

# start_pub_on_private_broker: sm-kafka-pub --tee on a private broker,
# reading the FIFO $T/in that fd 8 writes to, a stats line every 50 ms;
# its pid in $pid.
start_pub_on_private_broker() {
	private_broker
	TOPIC=$(new_topic)
	mkfifo "$T/in"
	sm-kafka-pub -b "$BROKERS" -t "$TOPIC" --tee --stats-interval 50ms \
		<"$T/in" >"$T/out" 2>"$T/err" &
	pid=$!
	track_pid $pid
	exec 8>"$T/in"
}

@test "kafka-pub: the brokers go down mid-stream and come back: every record once, no restart" {
	start_pub_on_private_broker
	for i in $(seq 1 100); do echo "{\"target\":\"t$((i % 9))\",\"id\":$i}"; done >&8
	wait_for has_lines "$T/out" 100
	broker_cmd "down all"
	for i in $(seq 101 200); do echo "{\"target\":\"t$((i % 9))\",\"id\":$i}"; done >&8
	# Every record read, none of the new ones confirmed while down: in
	# three stats lines in a row (over 100 ms of its own clock).
	wait_for eval '[ "$(grep -c "stats: in=200 delivered=100 " "$T/err")" -ge 3 ]'
	[ "$(lines_in "$T/out")" -eq 100 ]
	broker_cmd "up all"
	WAIT_TIMEOUT=60 wait_for has_lines "$T/out" 200
	exec 8>&-
	wait "$pid"  # exit 0: everything delivered
	run -0 kcat -C -b "$BROKERS" -t "$TOPIC" -e -q -f '%s\n'
	[ "${#lines[@]}" -eq 200 ]
	[ "$(jq -r .id <<<"$output" | sort -n | uniq | wc -l)" -eq 200 ]
	exec 7>&-
}

# reading_stopped WRITER: sm-kafka-pub's last three stats lines in $T/err
# count the same lines read, and WRITER is blocked writing to its pipe.
reading_stopped() {
	local ins
	ins=$(grep "stats: in=" "$T/err" | tail -n 3 | sed 's/.*stats: in=\([0-9]*\) .*/\1/')
	[ "$(wc -l <<<"$ins")" -eq 3 ] && [ "$(sort -u <<<"$ins" | wc -l)" -eq 1 ] &&
		grep -q pipe_write "/proc/$1/wchan"
}

@test "kafka-pub: a full queue stops the reading of stdin until it drains" {
	private_broker
	TOPIC=$(new_topic)
	mkfifo "$T/in"
	sm-kafka-pub -b "$BROKERS" -t "$TOPIC" --tee -X queue.buffering.max.messages=50 \
		--stats-interval 50ms <"$T/in" >"$T/out" 2>"$T/err" &
	pid=$!
	track_pid $pid
	exec 8>"$T/in"
	"$BATS_TEST_DIRNAME/fixtures/results-gen" -n 5000 >"$T/results"
	head -n 1 "$T/results" >&8
	wait_for has_lines "$T/out" 1
	broker_cmd "down all"
	# 5000 records of ~700 bytes: far more than the queue, the pipe and the
	# line buffer (1 MiB) hold.
	sed 1d "$T/results" >&8 &
	writer=$!
	track_pid $writer
	# sm-kafka-pub stopped reading: its count of lines read stays the
	# same over three stats lines (100 ms of its clock) while the writer
	# sleeps in the kernel's pipe write.
	wait_for reading_stopped "$writer"
	rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
	[ "$rss" -lt 65536 ]  # KiB
	broker_cmd "up all"
	WAIT_TIMEOUT=60 wait_for has_lines "$T/out" 5000
	wait "$writer"
	exec 8>&-
	wait "$pid"
	run -0 kcat -C -b "$BROKERS" -t "$TOPIC" -e -q -f '%s\n'
	diff <(jq -r .id "$T/results" | sort) <(jq -r .id <<<"$output" | sort)
	exec 7>&-
}

@test "kafka-pub: SIGTERM while the brokers are down drains once they are back, exit 0" {
	start_pub_on_private_broker
	echo '{"target":"a","id":1}' >&8
	# A fresh broker's first delivery (producer id, metadata) once took
	# over 20 s on a loaded machine.
	WAIT_TIMEOUT=60 wait_for has_lines "$T/out" 1
	broker_cmd "down all"
	for i in 2 3 4 5; do echo "{\"target\":\"a\",\"id\":$i}" >&8; done
	wait_for fifo_empty "$T/in"  # sm-kafka-pub has read them
	kill -TERM "$pid"
	# What the stage before drains after the signal is read to EOF.
	echo '{"target":"a","id":6}' >&8
	exec 8>&-
	broker_cmd "up all"
	wait "$pid"  # exit 0: the queued records were delivered in the drain
	[ "$(lines_in "$T/out")" -eq 6 ]
	run -0 kcat -C -b "$BROKERS" -t "$TOPIC" -e -q -f '%s\n'
	[ "$(jq -r .id <<<"$output" | sort -n | tr '\n' ' ')" = "1 2 3 4 5 6 " ]
	exec 7>&-
}

@test "kafka-pub: after SIGTERM an input that never ends is read for half of --flush-timeout, then delivered, exit 0" {
	private_broker
	TOPIC=$(new_topic)
	mkfifo "$T/in"
	sm-kafka-pub -b "$BROKERS" -t "$TOPIC" --tee --flush-timeout 2s <"$T/in" >"$T/out" 2>"$T/err" &
	pid=$!
	track_pid $pid
	exec 8>"$T/in"
	echo '{"target":"a","id":1}' >&8
	WAIT_TIMEOUT=60 wait_for has_lines "$T/out" 1
	kill -TERM "$pid"
	echo '{"target":"a","id":2}' >&8
	# fd 8 stays open: only the read deadline ends the reading.
	wait "$pid"
	grep -q 'input still open 1000 ms after the signal: reading no more' "$T/err"
	run -0 kcat -C -b "$BROKERS" -t "$TOPIC" -e -q -f '%s\n'
	[ "$(jq -r .id <<<"$output" | sort -n | tr '\n' ' ')" = "1 2 " ]
	exec 8>&- 7>&-
}

@test "kafka-sub: a second signal stops it at once, even when no coordinator answers: 69" {
	private_broker
	TOPIC=$(new_topic)
	for i in 1 2 3; do echo "{\"n\":$i}"; done | kcat -P -b "$BROKERS" -t "$TOPIC"
	# With the brokers gone, the final commit and leaving the group would
	# wait for a coordinator for up to the (long) session timeout.
	sm-kafka-sub -b "$BROKERS" -t "$TOPIC" -G g -o beginning -X session.timeout.ms=60000 \
		>"$T/out" 2>"$T/err" &
	pid=$!
	track_pid $pid
	WAIT_TIMEOUT=60 wait_for has_lines "$T/out" 3
	broker_cmd "down all"
	kill -TERM "$pid"
	# Signals do not queue: wait until the first one was seen.
	wait_for grep -q 'stopping: the final commit, then leaving the group; a second signal exits at once' "$T/err"
	kill -TERM "$pid"
	WAIT_TIMEOUT=10 wait_for eval '! kill -0 '"$pid"' 2>/dev/null'
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 69 ]
	grep -q 'second signal: exiting without the final commit' "$T/err"
	# Every record was written out before it stopped.
	[ "$(lines_in "$T/out")" -eq 3 ]
	exec 7>&-
}

@test "kafka-pub: --flush-timeout bounds the drain: the undelivered are dead-lettered, 69" {
	private_broker
	TOPIC=$(new_topic)
	echo '{"target":"a","id":0}' | sm-kafka-pub -b "$BROKERS" -t "$TOPIC"
	broker_cmd "down all"
	run -69 --separate-stderr timeout 30 sm-kafka-pub -b "$BROKERS" -t "$TOPIC" \
		--flush-timeout 1s --dead-letter "$T/dead" <<<'{"target":"a","id":1}'
	run -0 jq -c '[.record.id, .line]' "$T/dead"
	[ "$output" = '[1,1]' ]
	broker_cmd "up all"
	exec 7>&-
}

@test "kafka-sub: two consumers share a group; SIGKILL one and the other re-delivers only unacked" {
	TOPIC=$(new_topic)
	for p in 0 1 2 3; do
		for i in $(seq 0 9); do echo "{\"p\":$p,\"i\":$i}"; done |
			kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p $p
	done
	COOP=(-X partition.assignment.strategy=cooperative-sticky "${FAST_GROUP[@]}")
	: >"$T/ackA"
	sm-kafka-sub -v -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" "${COOP[@]}" \
		--ack "$T/ackA" >"$T/outA" 2>"$T/errA" &
	A=$!
	track_pid $A
	wait_for has_lines "$T/outA" 40
	# A acknowledges all of partitions 0 and 1, half of 2 and 3.
	jq -c 'select(.kafka.partition < 2 or .kafka.offset < 5)' "$T/outA" >>"$T/ackA"
	wait_for eval '[ "$(grep -c "committed $TOPIC \[[01]\] at 10\|committed $TOPIC \[[23]\] at 5" "$T/errA")" -ge 4 ]'
	: >"$T/ackB"
	sm-kafka-sub -v -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" "${COOP[@]}" \
		--ack "$T/ackB" --drain-timeout 0 --stats-interval 50ms >"$T/outB" 2>"$T/errB" &
	B=$!
	track_pid $B
	# The group shares the partitions: B gets some while A runs.
	WAIT_TIMEOUT=40 wait_for grep -q "assigned $TOPIC" "$T/errB"
	kill -KILL $A
	# A's partitions move to B, which starts at the first unacked record;
	# it emits nothing more over three stats lines (100 ms of its clock)
	# with every partition's lag at 0.
	WAIT_TIMEOUT=40 wait_for has_lines "$T/outB" 10
	WAIT_TIMEOUT=40 wait_for eval '[ "$(grep -c "stats: out=10 .* lag=0$" "$T/errB")" -ge 3 ]'
	run -0 jq -c '[.kafka.partition, .kafka.offset, .p, .i]' "$T/outB"
	[ "$(sort <<<"$output" | tr '\n' ' ')" = "[2,5,2,5] [2,6,2,6] [2,7,2,7] [2,8,2,8] [2,9,2,9] [3,5,3,5] [3,6,3,6] [3,7,3,7] [3,8,3,8] [3,9,3,9] " ]
	kill -TERM $B
	wait $B
}

# exits_within SECONDS PID: the process ends within SECONDS (polled); its
# status in $EXIT.
exits_within() {
	local deadline=$((SECONDS + $1))
	while kill -0 "$2" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			echo "pid $2 still running after $1 s" >&2
			return 1
		fi
		sleep 0.05
	done
	EXIT=0
	wait "$2" || EXIT=$?
}

# committed_or_said ERRFILE: $EXIT is 0, or 69 with the failed commit on
# stderr.
committed_or_said() {
	[ "$EXIT" -eq 0 ] && return 0
	[ "$EXIT" -eq 69 ] && grep -q 'error: commit: Broker: ' "$1" && return 0
	echo "exit $EXIT" >&2
	cat "$1" >&2
	return 1
}

@test "kafka-sub: two consumers stopped one right after the other exit while the group rebalances, eager and cooperative" {
	# The first one leaving makes the group rebalance while the second
	# is closing: librdkafka 2.0 could then wait forever inside the
	# rebalance callback (rd_kafka_rebalance_protocol, #4041).
	TOPIC=$(new_topic)
	for p in 0 1 2 3; do echo "{\"p\":$p}" | kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p $p; done
	local strategy round A B G
	for strategy in range,roundrobin cooperative-sticky; do
		for round in 1 2 3; do
			G="g_${round}_$strategy_$TOPIC"
			sm-kafka-sub -v -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G" "${FAST_GROUP[@]}" \
				-X partition.assignment.strategy=$strategy >/dev/null 2>"$T/errA" &
			A=$!
			track_pid $A
			sm-kafka-sub -v -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G" "${FAST_GROUP[@]}" \
				-X partition.assignment.strategy=$strategy >/dev/null 2>"$T/errB" &
			B=$!
			track_pid $B
			WAIT_TIMEOUT=40 wait_for grep -q "assigned $TOPIC" "$T/errA"
			WAIT_TIMEOUT=40 wait_for grep -q "assigned $TOPIC" "$T/errB"
			kill -TERM $A
			wait_for grep -q stopping "$T/errA"
			kill -TERM $B
			# Each ends: 0, or 69 when its final commit met the
			# rebalance (documented: the next owner re-delivers).
			exits_within 30 $A
			committed_or_said "$T/errA"
			exits_within 30 $B
			committed_or_said "$T/errB"

		done
	done
}

stored_at_least() {
	[ "$(psql_q 'select count(*) from checks' 2>/dev/null || echo 0)" -ge "$1" ]
}

@test "kafka: the consumer side SIGKILLed at random points and restarted loses nothing" {
	new_db
	TOPIC=$(new_topic)
	N=20000
	"$BATS_TEST_DIRNAME/fixtures/results-gen" -n $N -t 50 >"$T/results"
	run -0 sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" -X compression.codec=lz4 <"$T/results"
	mkfifo "$T/ack" "$T/data"
	for round in 1 2 3; do
		sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G1" "${FAST_GROUP[@]}" \
			--ack "$T/ack" >"$T/data" 2>>"$T/sub.err" &
		SUB=$!
		sm-pg-write -b 500 <"$T/data" >"$T/ack" 2>>"$T/pgw.err" &
		PGW=$!
		track_pid "$SUB $PGW"
		WAIT_TIMEOUT=60 wait_for stored_at_least $((round * 4000 + RANDOM % 3000)) || { cat "$T/sub.err" "$T/pgw.err" >&2; psql_q "select count(*) from checks" >&2; false; }
		kill -KILL $SUB $PGW
		wait $SUB $PGW 2>/dev/null || true
	done
	run -0 --separate-stderr timeout 120 bash -c 'sm-kafka-sub -b "$1" -t "$2" -G "$G1" "${@:4}" -e --ack "$3" |
		sm-pg-write >"$3"' _ "$SM_TEST_BROKERS" "$TOPIC" "$T/ack" "${FAST_GROUP[@]}"
	[ "$(psql_q 'select count(*) from checks')" -eq $N ]
	diff <(jq -r .id "$T/results" | sort) <(psql_q 'select id from checks order by id')
}

@test "kafka: sm-kafka-pub batches for 50 ms and sm-kafka-sub's fetches wait 100 ms by default; -X overrides both" {
	# librdkafka's own 5 ms and 500 ms cost the pipeline a request per
	# record and half a second of latency (bench/pipeline.bench).
	run -0 sm-kafka-pub -b 127.0.0.1:1 -t x -X dump
	grep -qx 'queue.buffering.max.ms = 50' <<<"$output"
	run -0 sm-kafka-pub -b 127.0.0.1:1 -t x -X linger.ms=5 -X dump
	grep -qx 'queue.buffering.max.ms = 5' <<<"$output"
	run -0 sm-kafka-sub -b 127.0.0.1:1 -t x -G g -X dump
	grep -qx 'fetch.wait.max.ms = 100' <<<"$output"
	run -0 sm-kafka-sub -b 127.0.0.1:1 -t x -G g -X fetch.wait.max.ms=500 -X dump
	grep -qx 'fetch.wait.max.ms = 500' <<<"$output"
}
