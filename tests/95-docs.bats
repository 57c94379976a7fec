#!/usr/bin/env bats
# Every program has --help, --version and a man page that agree.

bats_require_minimum_version 1.5.0

load helpers

PROGRAMS="sm-schedule sm-check sm-kafka-pub sm-kafka-sub sm-pg-write sm-devbroker sm-alert sm-notify sm-report"

@test "docs: every program answers --help and --version with exit 0" {
	local p
	for p in $PROGRAMS; do
		run "$p" --help
		[ "$status" -eq 0 ] || { echo "$p --help: $status"; false; }
		[[ "$output" == *"usage: $p"* ]] || { echo "$p --help has no usage line"; false; }
		run "$p" --version
		[ "$status" -eq 0 ]
		[[ "$output" == "$p (sitemon) "* ]] || { echo "$p --version: $output"; false; }
	done
}

@test "docs: a bad option is a usage error (64)" {
	local p
	for p in $PROGRAMS; do
		run "$p" --no-such-option
		[ "$status" -eq 64 ] || { echo "$p: status $status"; false; }
	done
}

@test "docs: man pages are clean mdoc and list every long option of --help" {
	local p opt
	for p in $PROGRAMS; do
		[ -f "$SM_TOP/man/$p.1" ] || { echo "no man/$p.1"; false; }
		run mandoc -T lint -W warning "$SM_TOP/man/$p.1"
		[ "$status" -eq 0 ] || { echo "$output"; false; }
		for opt in $("$p" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
			grep -Eq -- "Fl (\\\\)?-${opt#--}" "$SM_TOP/man/$p.1" ||
				{ echo "man/$p.1 does not document $opt"; false; }
		done
		grep -q '^\.Sh EXIT STATUS' "$SM_TOP/man/$p.1"
		grep -q '^\.Sh EXAMPLES' "$SM_TOP/man/$p.1"
	done
}

@test "docs: every man page renders at 80 columns without a warning" {
	local m n=0
	for m in "$SM_TOP"/man/*.[1-8]; do
		run --separate-stderr env MANWIDTH=80 man --warnings=all -l "$m"
		[ "$status" -eq 0 ] || { echo "$m: man exited $status"; false; }
		[ -z "$stderr" ] || { echo "${m#"$SM_TOP"/}: $stderr"; false; }
		[ -n "$output" ]
		n=$((n + 1))
	done
	((n >= 7))
}

@test "docs: the docs are for users and the next engineer: no internal notes, development.md linked" {
	# Notes of a development machine or a session do not belong in the
	# docs; docs/development.md does, linked from the README.
	run grep -rIl -e '/wor[k]/' -e 'delete before releas[e]' -e 'HELPERS-BRIE[F]' \
		"$SM_TOP/README.md" "$SM_TOP/docs" "$SM_TOP/man" "$SM_TOP/examples" \
		"$SM_TOP/bench" "$SM_TOP/fuzz/README.md"
	[ "$status" -eq 1 ] || { echo "$output"; false; }
	[ -f "$SM_TOP/docs/development.md" ]
	grep -q '(docs/development.md)' "$SM_TOP/README.md"
	# What it says the helpers are, they are.
	local h
	for h in wait_for new_db new_topic free_port json_eq track_pid psql_q sm_as_pg; do
		grep -q "^$h()" "$SM_TOP/tests/helpers.bash" || { echo "no helper $h"; false; }
		grep -q "\`$h" "$SM_TOP/docs/development.md" || { echo "$h not in development.md"; false; }
	done
}

@test "tests/run: runs test files and the tests within them in parallel, SM_TEST_JOBS=1 one by one" {
	command -v parallel >/dev/null || skip "GNU parallel not installed (run: make deps)"
	mkdir "$T/suite"
	# Each test waits (3 s at most) for the others to have started: only
	# tests that run at the same time pass.
	local f
	for f in a b; do
		cat >"$T/suite/$f.bats" <<-EOF
		meet() {
			touch "$T/suite/started.\$1"
			local i
			for i in \$(seq 60); do
				[ -e "$T/suite/started.a1" ] && [ -e "$T/suite/started.a2" ] &&
					[ -e "$T/suite/started.b1" ] && return 0
				sleep 0.05
			done
			return 1
		}
		EOF
		# (printf: bats would rewrite an @test line of this file's own)
		printf '%s "%s" { meet %s; }\n' @test "${f}1" "${f}1" >>"$T/suite/$f.bats"
	done
	printf '%s "%s" { meet %s; }\n' @test a2 a2 >>"$T/suite/a.bats"
	# A clean environment: nothing of this bats run (BATS_*, its libexec
	# in PATH) leaks in.
	local path
	path=$(tr ':' '\n' <<<"$PATH" | grep -v 'bats-core' | paste -sd:)
	run env -i PATH="$path" HOME="$HOME" SM_TEST_JOBS=3 \
		"$SM_TOP/tests/run" "$T/suite/a.bats" "$T/suite/b.bats"
	[ "$status" -eq 0 ] || { echo "$output"; false; }
	[ "${lines[-1]}" = "3 passed, 0 failed" ]
	rm -f "$T"/suite/started.*
	run -1 env -i PATH="$path" HOME="$HOME" SM_TEST_JOBS=1 \
		"$SM_TOP/tests/run" "$T/suite/a.bats" "$T/suite/b.bats"
	[ "${lines[-1]}" = "1 passed, 2 failed" ]
}

@test "docs: make install puts programs, man pages and scripts under DESTDIR" {
	make -s -C "$SM_TOP" install DESTDIR="$T/root" PREFIX=/usr >/dev/null
	local p
	for p in $PROGRAMS; do
		[ -x "$T/root/usr/bin/$p" ]
		[ -f "$T/root/usr/share/man/man1/$p.1" ]
	done
	[ -x "$T/root/usr/bin/sm-producer" ]
	[ -x "$T/root/usr/bin/sm-consumer" ]
	[ -x "$T/root/usr/bin/sm-alerting" ]
	[ -f "$T/root/usr/share/man/man5/receivers.yaml.5" ]
}

@test "units: systemd-analyze verify passes on the installed units, their man pages found" {
	make -s -C "$SM_TOP" install PREFIX="$T/usr" >/dev/null
	local u
	for u in sitemon-producer sitemon-consumer; do
		grep -qx "ExecStart=$T/usr/bin/sm-${u#sitemon-}" "$T/usr/lib/systemd/system/$u.service"
	done
	# systemd-analyze only warns (exit 0) on a line it cannot parse, so
	# stderr must be empty too.
	run -0 --separate-stderr env MANPATH="$T/usr/share/man" \
		systemd-analyze verify "$T"/usr/lib/systemd/system/sitemon-*.service
	[ -z "$stderr" ] || { echo "$stderr" >&2; false; }
}

@test "docs: examples/sitemon.env names every SM_ variable the programs and scripts read" {
	local v missing=""
	# SM_LOCAL_STATE belongs to the local run (make run), not to a service.
	# In C a variable is a string ("SM_PG_DSN"), in the scripts $SM_...
	for v in $( { grep -rhoE '"SM_[A-Z_]+"' "$SM_TOP"/tools/*/*.c "$SM_TOP"/lib/*.c
		grep -hoE '[$][{]?SM_[A-Z_]+' "$SM_TOP"/scripts/sm-producer "$SM_TOP"/scripts/sm-consumer "$SM_TOP"/scripts/sm-alerting
	} | tr -d '"${' | sort -u); do
		grep -qE "^#? ?$v=" "$SM_TOP/examples/sitemon.env" || missing="$missing $v"
	done
	[ -z "$missing" ] || { echo "not in examples/sitemon.env:$missing" >&2; false; }
}

# doc_queries FILE: the SQL examples of FILE (indented blocks that begin
# with "select"), each ended by ";" on a line of its own, NUL-separated.
doc_queries() {
	awk '/^    select/ { q = 1 } q && /^$/ { q = 0; printf "%c", 0 }
	     q { sub(/^    /, ""); print }
	     END { if (q) printf "%c", 0 }' "$1"
}

@test "docs: the SQL in docs/operations.md runs and finds what it says" {
	local now day q out=() cert
	new_db
	now=$(date +%s%3N) day=86400000
	# site-0: an intermediate expires in 5 days; site-1: renewed since
	# an older check; site-2: its own certificate expires in 10 days;
	# site-3: plain http; site-4: down.
	iso() { date -u -d "@$(($1 / 1000))" +%Y-%m-%dT%H:%M:%S.000Z; }
	{
		"$SM_TOP/tests/fixtures/results-gen" -n 1 -t 1 -s $((now - 3600000)) |
			jq -c --arg a "$(iso $((now + 3 * day)))" \
				'.target = "site-1" | .tls.cert_not_after = $a | .tls.chain_not_after = $a'
		"$SM_TOP/tests/fixtures/results-gen" -n 5 -t 5 -s "$now" -f 5 |
			jq -c --arg soon "$(iso $((now + 5 * day)))" --arg ten "$(iso $((now + 10 * day)))" \
				--arg far "$(iso $((now + 90 * day)))" '
				if .target == "site-0" then .tls.cert_not_after = $far | .tls.chain_not_after = $soon
				elif .target == "site-2" then .tls.cert_not_after = $ten | .tls.chain_not_after = $ten
				elif .target == "site-3" then .tls = null
				else .tls.cert_not_after = $far | .tls.chain_not_after = $far end'
	} >"$T/in"
	sm-pg-write <"$T/in" >/dev/null
	while IFS= read -r -d '' q; do
		run -0 psql -X -v ON_ERROR_STOP=1 -At -F '|' -c "$q"
		out+=("$output")
		[[ "$q" == *tls_chain_not_after* ]] && cert=$output
	done < <(doc_queries "$SM_TOP/docs/operations.md")
	[ "${#out[@]}" -eq 2 ]
	# The down targets: site-4 only.
	[[ "${out[0]}" == "site-4|"*"|http_status|"* ]]
	[ "$(wc -l <<<"${out[0]}")" -eq 1 ]
	# The certificates: site-0 (its intermediate) first, then site-2.
	[ "$(cut -d'|' -f1 <<<"$cert" | paste -sd,)" = "site-0,site-2" ]
}

@test "docs: the README's queries (latest state, uptime and p95, failures) answer right on real rows" {
	local now q out=() want
	new_db
	now=$(date +%s%3N)
	# 40 checks over the last 40 minutes, site-0 and site-1 in turn; every
	# 4th one fails (http_status 500), all of them site-1's.
	"$SM_TOP/tests/fixtures/results-gen" -n 40 -t 2 -f 4 -i 60000 -s $((now - 40 * 60000)) >"$T/in"
	# And one of yesterday's, outside the last 24 hours.
	"$SM_TOP/tests/fixtures/results-gen" -n 1 -t 1 -f 1 -s $((now - 30 * 3600000)) >>"$T/in"
	sm-pg-write <"$T/in" >/dev/null
	while IFS= read -r -d '' q; do
		run -0 psql -X -v ON_ERROR_STOP=1 -At -F '|' -c "$q"
		out+=("$output")
	done < <(doc_queries "$SM_TOP/README.md")
	[ "${#out[@]}" -eq 3 ]
	# Latest state: site-0 up, site-1 down since its last (failed) check.
	[[ "$(sed -n 1p <<<"${out[0]}")" == "site-0|t|200||2"*"|" ]] ||
		{ echo "${out[0]}"; false; }
	[[ "$(sed -n 2p <<<"${out[0]}")" == "site-1|f|500|http_status|"*"|"?* ]] ||
		{ echo "${out[0]}"; false; }
	# Uptime and p95 over the last 24 hours, p95 computed here the same
	# way (linear interpolation between the closest ranks).
	p95() {
		jq -r --arg t "$1" --argjson since $((now - 24 * 3600000)) '
			select(.target == $t and (.started_at | sub("\\.[0-9]+Z$"; "Z") | fromdate) * 1000 > $since)
			| .duration_ms' "$T/in" | sort -g |
			awk '{ x[NR] = $1 } END { p = 0.95 * (NR - 1); lo = int(p);
				v = x[lo + 1] + (p - lo) * (x[lo + 2] - x[lo + 1]); printf "%.1f", v }'
	}
	want="site-0|20|100.00|$(p95 site-0)
site-1|20|50.00|$(p95 site-1)"
	[ "${out[1]}" = "$want" ] || { printf 'got:\n%s\nwant:\n%s\n' "${out[1]}" "$want"; false; }
	# The failures, newest first, with their error line: 10 in the last
	# 40 minutes and yesterday's.
	[ "$(wc -l <<<"${out[2]}")" -eq 11 ]
	[ "$(cut -d'|' -f2-4 <<<"${out[2]}" | sort -u | head -n 1)" = "site-0|http_status|500" ]
	[[ "$(head -n 1 <<<"${out[2]}")" == *"|site-1|http_status|500|"?* ]]
	[ "$(cut -d'|' -f1 <<<"${out[2]}")" = "$(cut -d'|' -f1 <<<"${out[2]}" | sort -r)" ]
}
