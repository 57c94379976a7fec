# setup_suite.bash - start the real services once per test run and fail
# loudly if one does not come up.  Every process started here is stopped by
# PID in teardown_suite.

suite_fail() {
	echo "setup_suite: $*" >&2
	for f in "$SM_TEST_TMP"/*.log "$SM_TEST_TMP"/pg/log; do
		[ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
	done
	return 1
}

# wait_line FILE SECONDS: wait until FILE has a first line, print it.
wait_line() {
	local deadline=$((SECONDS + $2))
	until [ -s "$1" ] && head -n 1 "$1" | grep -q .; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
	head -n 1 "$1"
}

start_postgres() {
	local bindir port
	bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -x "$bindir/initdb" ] || { suite_fail "PostgreSQL server not installed (run: make deps)"; return 1; }
	export PATH="$bindir:$PATH"
	port=$(free_port)
	mkdir -p "$SM_TEST_TMP/pg"
	[ "$(id -u)" = 0 ] && chown postgres "$SM_TEST_TMP/pg"
	export PG_DATA="$SM_TEST_TMP/pg/data"
	sm_as_pg initdb -D "$PG_DATA" -U sm --auth=trust -E UTF8 --no-sync \
		>"$SM_TEST_TMP/pg/initdb.log" 2>&1 || { suite_fail "initdb failed"; return 1; }
	sm_as_pg pg_ctl -D "$PG_DATA" -l "$SM_TEST_TMP/pg/log" -w -t 30 \
		-o "-k $SM_TEST_TMP/pg -p $port -c listen_addresses='' -c fsync=off -c max_connections=200 -c log_line_prefix='%m [%p] %d '" \
		start >/dev/null || { suite_fail "PostgreSQL did not start"; return 1; }
	export PGHOST="$SM_TEST_TMP/pg" PGPORT="$port" PGUSER=sm PGDATABASE=postgres
}

start_broker() {
	sm-devbroker -n 3 </dev/null >"$SM_TEST_TMP/broker.out" 2>"$SM_TEST_TMP/broker.log" 3>&- &
	echo $! >"$SM_TEST_TMP/broker.pid"
	SM_TEST_BROKERS=$(wait_line "$SM_TEST_TMP/broker.out" 20) ||
		{ suite_fail "sm-devbroker did not print its bootstrap servers"; return 1; }
	export SM_TEST_BROKERS
}

start_nginx() {
	local dir="$SM_TEST_TMP/nginx" port
	port=$(free_port)
	mkdir -p "$dir/www"
	head -c 1048576 /dev/zero | tr '\0' 'x' >"$dir/www/big"
	sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" \
		"$SM_TOP/tests/fixtures/nginx.conf.in" >"$dir/nginx.conf"
	chmod -R a+rX "$dir"
	nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
		</dev/null >"$SM_TEST_TMP/nginx.log" 2>&1 3>&- &
	echo $! >"$SM_TEST_TMP/nginx.pid"
	export HTTP_URL="http://127.0.0.1:$port"
	local deadline=$((SECONDS + 20))
	until curl -fsS -o /dev/null "$HTTP_URL/ok" 2>/dev/null; do
		((SECONDS < deadline)) || { suite_fail "nginx did not come up on $HTTP_URL"; return 1; }
		sleep 0.05
	done
}

start_scripted() {
	local port
	port=$(free_port)
	/usr/bin/python3 "$SM_TOP/tests/fixtures/httpd.py" "$port" \
		</dev/null >"$SM_TEST_TMP/httpd.out" 2>"$SM_TEST_TMP/httpd.log" 3>&- &
	echo $! >"$SM_TEST_TMP/httpd.pid"
	wait_line "$SM_TEST_TMP/httpd.out" 20 >/dev/null ||
		{ suite_fail "scripted HTTP server did not come up"; return 1; }
	export SCRIPTED_URL="http://127.0.0.1:$port"
}

setup_suite() {
	load helpers
	export SM_TOP
	SM_TOP=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	local p
	for p in "$SM_TOP"/tools/*/; do PATH="$p:$PATH"; done
	export PATH
	# SM_TEST_ALLOW_MISSING=1 lets one program's suite run while another
	# program does not build yet (development only; CI never sets it).
	for p in sm-schedule sm-check sm-kafka-pub sm-kafka-sub sm-pg-write sm-devbroker sm-alert sm-notify sm-report; do
		command -v "$p" >/dev/null || [ "${SM_TEST_ALLOW_MISSING:-}" = 1 ] ||
			{ echo "setup_suite: $p not built (run: make)" >&2; return 1; }
	done
	SM_TEST_TMP=$(mktemp -d /tmp/sitemon-test.XXXXXX)
	chmod 755 "$SM_TEST_TMP"
	export SM_TEST_TMP
	start_postgres && start_broker && start_nginx && start_scripted || return 1
	export CLOSED_URL="http://127.0.0.1:$(free_port)/"
}

teardown_suite() {
	local f
	for f in broker nginx httpd; do
		[ -f "$SM_TEST_TMP/$f.pid" ] && kill "$(cat "$SM_TEST_TMP/$f.pid")" 2>/dev/null
	done
	if [ -n "${PG_DATA:-}" ] && [ -d "$PG_DATA" ]; then
		sm_as_pg pg_ctl -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1
	fi
	rm -rf "$SM_TEST_TMP"
}
