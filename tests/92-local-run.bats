#!/usr/bin/env bats
# scripts/sm-local (what `make run` runs): starts a throwaway PostgreSQL and
# the dev broker when none are configured, prints one line per stored
# result, and on Ctrl-C stops everything it started.

load helpers

# Run sm-local with SIGINT at its default, as a terminal's Ctrl-C finds it
# (a background job of a non-interactive shell would otherwise ignore it).
start_local() {
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
	YAML
	env -u SM_PG_DSN -u SM_KAFKA_BROKERS -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE \
		SITES="$T/sites.yaml" SM_LOCAL_STATE="$T/state" TMPDIR="$T" \
		/usr/bin/python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$SM_TOP/scripts/sm-local" >"$T/out" 2>"$T/err" &
	LOCAL_PID=$!
	track_pid "$LOCAL_PID"
}

has_up_and_down() {
	grep -Eq '^ok 200 [0-9]+ms up http://127\.0\.0\.1:[0-9]+/ok$' "$T/out" &&
		grep -Eq '^FAIL connect [0-9]+ms down http://127\.0\.0\.1:[0-9]+/$' "$T/out"
}

# page_shows URL: the page lists both targets, "down" as down.
page_shows() {
	curl -fsS "$1" -o "$T/page.html" 2>/dev/null &&
		grep -q 'class="target down" data-target="down"' "$T/page.html" &&
		grep -q 'data-target="up"' "$T/page.html"
}

@test "local run: stored results are printed, Ctrl-C stops everything it started" {
	start_local
	WAIT_TIMEOUT=60 wait_for has_up_and_down
	# What it started: a PostgreSQL cluster in its state dir, a dev broker.
	local pg_pid brokers
	pg_pid=$(head -n 1 "$T/state/pg/data/postmaster.pid")
	brokers=$(head -n 1 "$T/state/broker.out")
	kill -0 "$pg_pid"
	kcat -L -b "$brokers" -m 5 >/dev/null
	grep -q 'throwaway PostgreSQL' "$T/err"
	# The status page (scripts/sm-status-page), served on 127.0.0.1.
	local url
	url=$(grep -o 'status page on http://127\.0\.0\.1:[0-9]*/' "$T/err" | cut -d' ' -f4)
	[ -n "$url" ]
	WAIT_TIMEOUT=30 wait_for page_shows "$url"

	kill -INT "$LOCAL_PID"
	local rc=0
	wait "$LOCAL_PID" || rc=$?
	[ "$rc" -eq 0 ]
	grep -q 'sm-local: stopped' "$T/err"
	# PostgreSQL, the broker and every pipeline stage are gone (each of
	# them names a path under $T: the sites file, the ack FIFO, the data).
	! kill -0 "$pg_pid" 2>/dev/null
	[ ! -e "$T/state/pg/data/postmaster.pid" ]
	run kcat -L -b "$brokers" -m 2
	[ "$status" -ne 0 ]
	run pgrep -f "$T/"
	[ "$status" -eq 1 ]
	[ -z "$(ls -d "$T"/sm-consumer.* 2>/dev/null)" ]
}
