# helpers.bash - loaded by every suite (`load helpers`).
# The services (PostgreSQL, dev broker, nginx, scripted server) are started
# once per run by setup_suite.bash; these helpers give each test its own
# temp dir, database and topic, and polling with a deadline.

setup() {
	T=$(mktemp -d "${SM_TEST_TMP:-/tmp}/t.XXXXXX")
	chmod 755 "$T"
}

teardown() {
	local pid
	for pid in ${CLEANUP_PIDS:-}; do
		kill "$pid" 2>/dev/null || true
	done
	if [ -n "${OWN_PG_DATA:-}" ]; then
		sm_as_pg pg_ctl -D "$OWN_PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$T"
}

# Remember a background process of this test so teardown stops it.
track_pid() {
	CLEANUP_PIDS="${CLEANUP_PIDS:-} $1"
}

# wait_for CMD...: run CMD until it succeeds, at most WAIT_TIMEOUT seconds.
wait_for() {
	local deadline=$((SECONDS + ${WAIT_TIMEOUT:-20}))
	until "$@"; do
		if ((SECONDS >= deadline)); then
			echo "timed out after ${WAIT_TIMEOUT:-20}s waiting for: $*" >&2
			return 1
		fi
		sleep 0.05
	done
}

free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# new_db: a fresh database for this test; exports PGDATABASE and SM_PG_DSN.
new_db() {
	PGDATABASE="t$(date +%s%N)_$RANDOM"
	createdb "$PGDATABASE"
	export PGDATABASE
	export SM_PG_DSN="host=$PGHOST port=$PGPORT user=$PGUSER dbname=$PGDATABASE"
}

# new_topic: print a topic name no other test uses.
new_topic() {
	echo "t_${BATS_TEST_NUMBER:-0}_$(date +%s%N)_$RANDOM"
}

# psql_q SQL: one value or rows, unaligned, no headers.
psql_q() {
	psql -X -v ON_ERROR_STOP=1 -Atq -c "$1"
}

# own_postgres: a PostgreSQL cluster of this test's own, in $T/pg, for a
# test that stops or restarts it (the suite's cluster serves the tests
# running meanwhile).  Points PGHOST, PGPORT and PG_DATA (so pg_restart) at
# it, makes a database (new_db); teardown stops it.
own_postgres() {
	local port
	port=$(free_port)
	mkdir -p "$T/pg"
	[ "$(id -u)" = 0 ] && chown postgres "$T/pg"
	sm_as_pg initdb -D "$T/pg/data" -U "$PGUSER" --auth=trust -E UTF8 --no-sync \
		>"$T/pg/initdb.log" 2>&1 || { cat "$T/pg/initdb.log" >&2; return 1; }
	OWN_PG_DATA="$T/pg/data"
	sm_as_pg pg_ctl -D "$OWN_PG_DATA" -l "$T/pg/log" -w -t 60 \
		-o "-k $T/pg -p $port -c listen_addresses='' -c fsync=off" start >/dev/null ||
		{ tail -n 20 "$T/pg/log" >&2; return 1; }
	export PGHOST="$T/pg" PGPORT="$port" PG_DATA="$OWN_PG_DATA"
	new_db
}

# pg_restart: restart the test's PostgreSQL (fast shutdown) and wait for it:
# only a cluster of own_postgres, never the one the other tests share.
pg_restart() {
	[ -n "${OWN_PG_DATA:-}" ] || { echo "pg_restart: call own_postgres first" >&2; return 1; }
	sm_as_pg pg_ctl -D "$PG_DATA" -m fast -w restart -l "$PG_DATA/../log" >/dev/null
}

sm_as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# json_eq A B: the two JSON texts are equal once keys are sorted.
json_eq() {
	local a b
	a=$(jq -S . <<<"$1") || return 1
	b=$(jq -S . <<<"$2") || return 1
	if [ "$a" != "$b" ]; then
		printf 'JSON differs:\n--- got\n%s\n--- want\n%s\n' "$a" "$b" >&2
		return 1
	fi
}

# The scripted server's /hold: hold_id makes a unique id, held_is ID N is
# true when N requests wait on it, release ID answers them.
hold_id() {
	echo "h${BATS_TEST_NUMBER}_$$_$RANDOM"
}

held_is() {
	[ "$(curl -fsS "$SCRIPTED_URL/held?id=$1")" = "$2" ]
}

release() {
	curl -fsS -o /dev/null "$SCRIPTED_URL/release?id=$1"
}

# start_receiver: the HTTP receiver fixture; sets RECV (its base url) and
# RECV_LOG (one JSON line per request it answered).
start_receiver() {
	local port
	port=$(free_port)
	RECV_LOG="$T/recv.log"
	: >"$RECV_LOG"
	/usr/bin/python3 "$SM_TOP/tests/fixtures/receiver.py" "$port" "$RECV_LOG" \
		>"$T/recv.out" 2>"$T/recv.err" 3>&- &
	track_pid $!
	wait_for grep -q ready "$T/recv.out"
	RECV="http://127.0.0.1:$port"
}
