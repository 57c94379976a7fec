#!/usr/bin/env bats
# Every program has --help, --version and a man page that agree.

bats_require_minimum_version 1.5.0

load helpers

PROGRAMS="sm-schedule sm-check sm-kafka-pub sm-kafka-sub sm-pg-write sm-devbroker sm-report"

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

@test "docs: make install puts programs, man pages and scripts under DESTDIR" {
	make -s -C "$SM_TOP" install DESTDIR="$T/root" PREFIX=/usr >/dev/null
	local p
	for p in $PROGRAMS; do
		[ -x "$T/root/usr/bin/$p" ]
		[ -f "$T/root/usr/share/man/man1/$p.1" ]
	done
	[ -x "$T/root/usr/bin/sm-producer" ]
	[ -x "$T/root/usr/bin/sm-consumer" ]
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
		grep -hoE '[$][{]?SM_[A-Z_]+' "$SM_TOP"/scripts/sm-producer "$SM_TOP"/scripts/sm-consumer
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
