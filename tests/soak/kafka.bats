#!/usr/bin/env bats
# Long Kafka tests (make soak): the consumer side SIGKILLed through a
# 100,000-record stream, and the brokers down for a full minute under
# sm-kafka-pub.  Each test runs its own sm-devbroker, sized so that the
# mock cluster's 5 MiB per partition never drops data.

load ../helpers

bats_require_minimum_version 1.5.0

setup() {
	T=$(mktemp -d "${SM_TEST_TMP:-/tmp}/t.XXXXXX")
	chmod 755 "$T"
	G1="g1_$(new_topic)"
	export G1
}

# A group that a member left waits for session.timeout.ms before the next
# join in the mock broker: keep it short, restarts happen in one group.
FAST_GROUP=(-X session.timeout.ms=3000 -X heartbeat.interval.ms=500)

lines_in() {
	[ -f "$1" ] && wc -l <"$1" || echo 0
}

has_lines() {
	[ "$(lines_in "$1")" -ge "$2" ]
}

# private_broker [-T TOPIC:P]...: a broker of this test's own, driven through
# the FIFO on fd 7 ("down all", "up all"; see sm-devbroker --help).
private_broker() {
	mkfifo "$T/ctl"
	sm-devbroker -n 3 "$@" <"$T/ctl" >"$T/broker.out" 2>"$T/broker.err" &
	track_pid $!
	exec 7>"$T/ctl"
	wait_for test -s "$T/broker.out"
	BROKERS=$(head -n 1 "$T/broker.out")
}

# broker_cmd CMD: send CMD and wait for its answer.
broker_cmd() {
	local n
	n=$(grep -c -E '^(ok|error)' "$T/broker.out" || true)
	echo "$1" >&7
	wait_for eval '[ "$(grep -c -E "^(ok|error)" "$T/broker.out")" -gt '"$n"' ]'
	tail -n 1 "$T/broker.out" | grep -qx ok
}

stored() {
	psql_q 'select count(*) from checks' 2>/dev/null || echo 0
}

stored_at_least() {
	[ "$(stored)" -ge "$1" ]
}

gone() {
	! kill -0 "$1" 2>/dev/null
}

@test "kafka soak: 100,000 records, the consumer side SIGKILLed five times at random points: every id stored once" {
	new_db
	TOPIC=$(new_topic)
	N=100000
	private_broker -T "$TOPIC:16"
	"$BATS_TEST_DIRNAME/../fixtures/results-gen" -n $N -t 500 -f 7 >"$T/results"
	# 16 partitions and lz4 keep every partition far below the mock's 5 MiB.
	run -0 sm-kafka-pub -b "$BROKERS" -t "$TOPIC" -X compression.codec=lz4 <"$T/results"
	mkfifo "$T/ack" "$T/data"
	for round in 1 2 3 4 5; do
		sm-kafka-sub -b "$BROKERS" -t "$TOPIC" -G "$G1" "${FAST_GROUP[@]}" \
			--ack "$T/ack" >"$T/data" 2>>"$T/sub.err" &
		SUB=$!
		sm-pg-write -b 500 <"$T/data" >"$T/ack" 2>>"$T/pgw.err" &
		PGW=$!
		track_pid "$SUB $PGW"
		# A random point of this round's share of the stream.
		at=$(( (round - 1) * N / 6 + RANDOM % (N / 6) ))
		WAIT_TIMEOUT=120 wait_for stored_at_least "$at" ||
			{ tail "$T/sub.err" "$T/pgw.err" >&2; stored >&2; false; }
		# Kill the consumer, the writer, or both.
		case $((RANDOM % 3)) in
		0) victims="$SUB" names=sm-kafka-sub ;;
		1) victims="$PGW" names=sm-pg-write ;;
		*) victims="$SUB $PGW" names="sm-kafka-sub and sm-pg-write" ;;
		esac
		echo "# round $round: SIGKILL $names at $(stored) stored" >&3
		kill -KILL $victims
		# The survivor notices its peer has gone and exits by itself.
		WAIT_TIMEOUT=60 wait_for gone "$SUB"
		WAIT_TIMEOUT=60 wait_for gone "$PGW"
		wait $SUB $PGW 2>/dev/null || true
	done
	run -0 --separate-stderr timeout 300 bash -c 'sm-kafka-sub -b "$1" -t "$2" -G "$G1" "${@:4}" -e --ack "$3" |
		sm-pg-write >"$3"' _ "$BROKERS" "$TOPIC" "$T/ack" "${FAST_GROUP[@]}"
	[ "$(stored)" -eq $N ]
	diff <(jq -r .id "$T/results" | sort) <(psql_q 'select id from checks order by id')
	# Every message is in Kafka too: the mock dropped nothing.
	[ "$(kcat -C -b "$BROKERS" -t "$TOPIC" -e -q -f '%o\n' | wc -l)" -eq $N ]
	exec 7>&-
}

@test "kafka soak: every broker down for 60 s mid-stream, then back: every record once, no restart" {
	TOPIC=$(new_topic)
	private_broker -T "$TOPIC:16"
	mkfifo "$T/in"
	sm-kafka-pub -b "$BROKERS" -t "$TOPIC" --tee <"$T/in" >"$T/out" 2>"$T/err" &
	pid=$!
	track_pid $pid
	exec 8>"$T/in"
	"$BATS_TEST_DIRNAME/../fixtures/results-gen" -n 3000 -t 50 >"$T/results"
	sed -n 1,1000p "$T/results" >&8
	wait_for has_lines "$T/out" 1000
	broker_cmd "down all"
	down_at=$SECONDS
	# Records keep coming while the cluster is away: they wait in the queue.
	sed -n 1001,2000p "$T/results" >&8
	while ((SECONDS - down_at < 60)); do
		[ "$(lines_in "$T/out")" -eq 1000 ]  # nothing confirmed while down
		kill -0 $pid                        # and no exit: no restart needed
		sleep 5
	done
	broker_cmd "up all"
	sed -n 2001,3000p "$T/results" >&8
	WAIT_TIMEOUT=120 wait_for has_lines "$T/out" 3000
	exec 8>&-
	wait "$pid"  # exit 0: everything delivered
	run -0 kcat -C -b "$BROKERS" -t "$TOPIC" -e -q -f '%s\n'
	[ "${#lines[@]}" -eq 3000 ]
	diff <(jq -r .id "$T/results" | sort) <(jq -r .id <<<"$output" | sort)
	# --tee confirmed each record once as well.
	diff <(jq -r .id "$T/results" | sort) <(jq -r .id "$T/out" | sort)
	exec 7>&-
}
