#!/usr/bin/env bats
# sm-devbroker: a real Kafka protocol endpoint (kcat talks to it), with the
# fault controls the tests use.

load helpers

# Conditions for wait_for, evaluated afresh on every poll.
oks_at_least() { [ "$(grep -cx ok "$T/out")" -ge "$1" ]; }
lines_at_least() { [ "$(wc -l <"$T/out")" -ge "$1" ]; }

# start_broker: a private broker whose stdin is the FIFO $T/ctl.
start_broker() {
	mkfifo "$T/ctl"
	sm-devbroker -n 2 -T seeded:3 <"$T/ctl" >"$T/out" 2>"$T/err" &
	track_pid $!
	exec 7>"$T/ctl"
	wait_for test -s "$T/out"
	BROKERS=$(head -n 1 "$T/out")
}

@test "devbroker: prints its bootstrap servers and kcat sees the brokers and topics" {
	start_broker
	[[ "$BROKERS" =~ ^127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+$ ]]
	run kcat -L -b "$BROKERS" -t seeded
	[ "$status" -eq 0 ]
	[[ "$output" == *"2 brokers:"* ]]
	[[ "$output" == *'topic "seeded" with 3 partitions'* ]]
	exec 7>&-
}

@test "devbroker: a record produced with kcat is consumed with kcat" {
	start_broker
	echo '{"target":"a"}' | kcat -P -b "$BROKERS" -t roundtrip -k a
	run kcat -C -b "$BROKERS" -t roundtrip -e -q -f '%k=%s\n'
	[ "$output" = 'a={"target":"a"}' ]
	exec 7>&-
}

@test "devbroker: fault commands answer ok, bad ones an error" {
	start_broker
	echo "down 1" >&7
	wait_for grep -qx ok "$T/out"
	echo "up all" >&7
	echo "down 9" >&7
	echo "rtt 2 5" >&7
	echo "bogus" >&7
	wait_for lines_at_least 6
	run sed -n '2,6p' "$T/out"
	[ "${lines[0]}" = ok ]
	[ "${lines[1]}" = ok ]
	[ "${lines[2]}" = "error: no such broker" ]
	[ "${lines[3]}" = ok ]
	[ "${lines[4]}" = "error: unknown command" ]
	exec 7>&-
}

@test "devbroker: with every broker down kcat cannot produce; back up, it can" {
	start_broker
	echo "down all" >&7
	wait_for grep -qx ok "$T/out"
	run timeout 20 kcat -P -b "$BROKERS" -t down -X message.timeout.ms=1500 <<<"lost"
	[ "$status" -ne 0 ]
	echo "up all" >&7
	wait_for oks_at_least 2
	echo kept | timeout 20 kcat -P -b "$BROKERS" -t down
	run kcat -C -b "$BROKERS" -t down -e -q
	[ "$output" = kept ]
	exec 7>&-
}

@test "devbroker: SIGTERM stops it with status 0" {
	sm-devbroker </dev/null >"$T/out" 2>"$T/err" &
	local pid=$!
	wait_for test -s "$T/out"
	kill -TERM "$pid"
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
}
