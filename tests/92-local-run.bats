#!/usr/bin/env bats
# scripts/sm-local (what `make run` runs): starts a PostgreSQL and the dev
# broker when none are configured, prints one line per stored result (with
# what explains a failure), stops everything it started on Ctrl-C, in an
# order that loses nothing, and when a pipeline dies.  Every script answers
# --help without starting anything.

bats_require_minimum_version 1.5.0

load helpers

sites_up_down_missing() {
	cat >"$T/sites.yaml" <<-YAML
	targets:
	  - name: up
	    url: $HTTP_URL/ok
	    interval: 1s
	    timeout: 1s
	  - name: down
	    url: $CLOSED_URL
	    interval: 1s
	    timeout: 1s
	  - name: missing
	    url: $HTTP_URL/no/such/page
	    interval: 1s
	    timeout: 1s
	YAML
}

# start_local [ARGS]: sm-local in a process group of its own with SIGINT at
# its default, as a terminal's Ctrl-C finds it (a background job of a
# non-interactive shell would otherwise ignore it).  LOCAL_PID is both its
# pid and its process group id.
start_local() {
	env -u SM_PG_DSN -u SM_KAFKA_BROKERS -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE \
		SITES="$T/sites.yaml" SM_LOCAL_STATE="$T/state" TMPDIR="$T" \
		setsid /usr/bin/python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$SM_TOP/scripts/sm-local" "$@" >"$T/out" 2>"$T/err" &
	LOCAL_PID=$!
	track_pid "$LOCAL_PID"
}

has_lines() {
	grep -Eq '^ok 200 [0-9]+ms up http://127\.0\.0\.1:[0-9]+/ok$' "$T/out" &&
		grep -Eq '^FAIL connect [0-9]+ms down http://127\.0\.0\.1:[0-9]+/: .*(refused|connect)' "$T/out" &&
		grep -Eq '^FAIL http_status 404 [0-9]+ms missing http://127\.0\.0\.1:[0-9]+/no/such/page: status 404, expected 2xx$' "$T/out"
}

# page_shows URL: the page lists the targets, "down" as down.
page_shows() {
	curl -fsS "$1" -o "$T/page.html" 2>/dev/null &&
		grep -q 'class="target down" data-target="down"' "$T/page.html" &&
		grep -q 'data-target="up"' "$T/page.html"
}

# local_exit_within SECONDS: sm-local ends in time; its status in $rc.
local_exit_within() {
	local deadline=$((SECONDS + $1))
	while kill -0 "$LOCAL_PID" 2>/dev/null; do
		((SECONDS < deadline)) || { echo "sm-local still running after $1 s" >&2; return 1; }
		sleep 0.05
	done
	rc=0
	wait "$LOCAL_PID" || rc=$?
}

# all_stopped PG_PID BROKERS: PostgreSQL, the broker and every process
# naming a path under $T (sites file, ack FIFO, data dir) are gone.
all_stopped() {
	! kill -0 "$1" 2>/dev/null
	[ ! -e "$T/state/pg/data/postmaster.pid" ]
	run kcat -L -b "$2" -m 2
	[ "$status" -ne 0 ]
	run pgrep -f "$T/"
	[ "$status" -eq 1 ]
	[ -z "$(ls -d "$T"/sm-consumer.* 2>/dev/null)" ]
}

@test "local run: failures say why; make psql reaches the sitemon database; Ctrl-C stops in order, quietly" {
	sites_up_down_missing
	start_local
	WAIT_TIMEOUT=60 wait_for has_lines
	local pg_pid brokers n dsn
	pg_pid=$(head -n 1 "$T/state/pg/data/postmaster.pid")
	brokers=$(head -n 1 "$T/state/broker.out")
	kill -0 "$pg_pid"
	kcat -L -b "$brokers" -m 5 >/dev/null
	# The status page (scripts/sm-status-page), served on 127.0.0.1.
	local url
	url=$(grep -o 'status page on http://127\.0\.0\.1:[0-9]*/' "$T/err" | cut -d' ' -f4)
	[ -n "$url" ]
	WAIT_TIMEOUT=30 wait_for page_shows "$url"
	# The alerting side: the target that is down is announced on the
	# terminal (examples/receivers-local.yaml), with the error; the one
	# that is up is not.
	WAIT_TIMEOUT=60 wait_for grep -Eq '^ALERT DOWN down http://127\.0\.0\.1:[0-9]*/ since .*(refused|connect)' "$T/err" ||
		{ cat "$T/err" >&2; false; }
	! grep -q '^ALERT DOWN up ' "$T/err"

	# The way in: a printed command ready to paste, and make psql.
	dsn=$(sed -n 's/^sm-local:   psql "\(.*\)"$/\1/p' "$T/err")
	[[ "$dsn" == *"dbname=sitemon"* ]]
	[ "$(psql -X -Atq "$dsn" -c 'select current_database()')" = sitemon ]
	n=$(psql -X -Atq "$dsn" -c "select count(*) from checks where target = 'missing' and status = 404")
	((n >= 1))
	run -0 env SM_LOCAL_STATE="$T/state" make -s -C "$SM_TOP" psql <<<'select current_database();'
	[[ "$output" == *sitemon* ]]

	# Ctrl-C from a terminal: SIGINT to the whole foreground process group.
	cp "$T/err" "$T/err.before"
	kill -INT -- "-$LOCAL_PID"
	local_exit_within 90
	[ "$rc" -eq 0 ]
	grep -q 'sm-local: stopped' "$T/err"
	# Nothing alarming while stopping: only the stages' info lines and
	# sm-local's own (no librdkafka errors, no "Terminated").
	if tail -n +"$(($(wc -l <"$T/err.before") + 1))" "$T/err" |
		grep -Ev '^(sm-[a-z-]+: info: |sm-local: )' >"$T/alarming"; then
		cat "$T/alarming" >&2
		false
	fi
	all_stopped "$pg_pid" "$brokers"
}

@test "local run: a mistake in the sites file is reported and nothing is left running (78)" {
	printf 'targets:\n  - name: x\n    url: http://127.0.0.1:9/\n    intervall: 1s\n' >"$T/sites.yaml"
	start_local
	local_exit_within 20
	[ "$rc" -eq 78 ]
	grep -q 'sites.yaml:4:5: unknown key "intervall"' "$T/err"
	[ ! -e "$T/state/pg/data/postmaster.pid" ]
	run pgrep -f "$T/"
	[ "$status" -eq 1 ]
}

@test "local run: a producer that dies stops the run with its status, and what it started" {
	sites_up_down_missing
	start_local
	WAIT_TIMEOUT=60 wait_for has_lines
	local pg_pid brokers
	pg_pid=$(head -n 1 "$T/state/pg/data/postmaster.pid")
	brokers=$(head -n 1 "$T/state/broker.out")
	pkill -KILL -f "^sm-schedule $T/sites.yaml"
	local_exit_within 90
	[ "$rc" -eq 137 ]
	grep -q 'sm-local: the producer .* exited with status 137' "$T/err"
	grep -q 'sm-local: stopped' "$T/err"
	all_stopped "$pg_pid" "$brokers"
}

@test "scripts: every script answers --help and -h without starting anything" {
	local s opt
	mkdir "$T/bin"
	# Stand-ins that record being run.
	for s in apt-get dpkg-query initdb pg_ctl setsid sm-devbroker sm-schedule \
		sm-check sm-kafka-pub sm-kafka-sub sm-pg-write bats; do
		printf '#!/bin/sh\necho "%s" >>"%s/started"\n' "$s" "$T" >"$T/bin/$s"
		chmod +x "$T/bin/$s"
	done
	for s in "$SM_TOP"/scripts/sm-* "$SM_TOP"/scripts/install-deps "$SM_TOP"/tests/run "$SM_TOP"/bench/run "$SM_TOP"/.ci/run; do
		[ -x "$s" ] || continue
		for opt in --help -h; do
			run -0 env PATH="$T/bin:$PATH" SM_LOCAL_STATE="$T/state" SM_KAFKA_BROKERS=127.0.0.1:9 \
				timeout 10 "$s" "$opt"
			[[ "$output" == *"usage: $(basename "$s")"* || "$output" == *"usage: ${s#"$SM_TOP"/}"* ]] ||
				{ echo "$s $opt: no usage line in: $output"; false; }
		done
	done
	[ ! -e "$T/started" ] || { cat "$T/started"; false; }
	[ ! -e "$T/state" ]
}
