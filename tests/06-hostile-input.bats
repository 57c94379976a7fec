#!/usr/bin/env bats
# Hostile input against every program that quotes what it reads: one bad
# line gives exactly one stderr line, control characters and bytes that
# are not UTF-8 escaped; URL passwords never reach stderr however they are
# written; a URL without a password is never changed; the edges of the
# line length and of JSON hold.  (docs/threat-model.md)

load helpers
bats_require_minimum_version 1.5.0

# A JSON key that decodes to CR, LF, a forged log line, ESC, NEL (C1) and
# U+2028: printed raw, it would look like a line of the program's own.
FORGED_KEY='k\u000d\u000aprog: info: forged\u001b[2K\u0085\u2028'
# What the line must show instead (diag escapes the decoded bytes).
FORGED_SHOWN='k\x0d\x0aprog: info: forged\x1b[2K\xc2\x85\xe2\x80\xa8'

# errs STATUS CMD...: run CMD, stdout to $T/out and stderr to $T/err; it
# must exit with STATUS.
errs() {
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	if [ "$rc" -ne "$want" ]; then
		cat "$T/err" >&2
		echo "exit status $rc, expected $want: $*" >&2
		return 1
	fi
}

# clean_stderr FILE: no control character (but the newlines), no C1
# control, no U+2028/2029, and valid UTF-8.
clean_stderr() {
	! LC_ALL=C grep -aqP '[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]' "$1"
	iconv -f UTF-8 -t UTF-8 "$1" >/dev/null
}

@test "hostile: sm-check: a key with CR, LF, ESC, NEL, U+2028 is one escaped stderr line" {
	printf '%s\n' "{\"url\":\"http://127.0.0.1:9/\",\"$FORGED_KEY\":1}" >"$T/in"
	printf 'not json \r\x1b[2K\xc2\x9b2K\xff tail\n' >>"$T/in"
	errs 0 sm-check <"$T/in"
	[ ! -s "$T/out" ]
	[ "$(wc -l <"$T/err")" -eq 2 ]
	clean_stderr "$T/err"
	grep -qF "<stdin>:1: unknown field \"$FORGED_SHOWN\"" "$T/err"
	grep -qF '<stdin>:2: not a target record or URL' "$T/err"
	grep -qF 'not json \x0d\x1b[2K\xc2\x9b2K\xff tail' "$T/err"
}

@test "hostile: sm-check: a password stays out of stderr however the URL is written, however long" {
	long=$(printf 'S%.0s' $(seq 300))
	printf '%s\n' \
		'{"url":"http:\/\/bob:hunter2@127.0.0.1:9\/","timeout_ms":"x"}' \
		'{"url":"http://bob:hunter2\u0040127.0.0.1:9/","timeout_ms":"x"}' \
		'{"url":"http\u003a//bob\u003ahunter2@127.0.0.1:9/","timeout_ms":"x"}' \
		"{\"timeout_ms\":\"x\",\"url\":\"http://bob:$long@127.0.0.1:9/\"}" \
		"{\"url\":\"http://bob:$long@127.0.0.1:9/\",\"timeout_ms\":\"x\"}" \
		'{"url":"http:/bob:hunter2@127.0.0.1:9/","timeout_ms":"x"}' >"$T/in"
	errs 0 sm-check <"$T/in"
	[ "$(wc -l <"$T/err")" -eq 6 ]
	! grep -q hunter2 "$T/err"
	! grep -q SSSS "$T/err"
	[ "$(grep -c 'bob:\*\*\*@' "$T/err")" -eq 4 ]
	[ "$(grep -c 'bob:\*\*\*\\u0040' "$T/err")" -eq 1 ]
}

@test "hostile: sm-check: a URL with '@' in its path or query is stored as it is" {
	u="$HTTP_URL/ok?to=a:b@c"
	printf '%s\n' "$u" "{\"url\":\"$u\"}" >"$T/in"
	run -0 --separate-stderr sm-check <"$T/in"
	[ "${#lines[@]}" -eq 2 ]
	for l in "${lines[@]}"; do
		jq -e --arg u "$u" '.ok and .target == $u and .url == $u and .final_url == $u' <<<"$l"
	done
}

@test "hostile: sm-check: a line of exactly SM_MAX_LINE (1 MiB) is read; one byte more is refused" {
	/usr/bin/python3 - "$T/in" <<-'PY'
	import sys
	head, tail = '{"url":"http://127.0.0.1:9/","labels":{"p":"', '"}}'
	with open(sys.argv[1], "w") as f:
	    for n in (1048576, 1048577):
	        f.write(head + "x" * (n - len(head) - len(tail)) + tail + "\n")
	PY
	run -0 --separate-stderr sm-check <"$T/in"
	[ "${#lines[@]}" -eq 1 ]
	[ "$(jq -r '.labels.p | length' <<<"${lines[0]}")" -eq $((1048576 - 47)) ]
	[[ "$stderr" == *"<stdin>:2: line too long"* ]]
}

@test "hostile: a raw NUL byte after a number is not JSON; nor is a URL line cut by a NUL" {
	printf '{"url":"http://127.0.0.1:9/","timeout_ms":100\0}\nhttp://127.0.0.1:9/\0junk\n' >"$T/in"
	run -0 --separate-stderr sm-check <"$T/in"
	[ -z "$output" ]
	[[ "$stderr" == *'<stdin>:2: not a target record or URL (must not contain NUL): http://127.0.0.1:9/\x00junk'* ]]
	[[ "$stderr" == *"<stdin>:1: invalid JSON at column 46: NUL byte: "*'"timeout_ms":100\x00}'* ]]
}

@test "hostile: sm-kafka-pub: a bad line is one escaped line; an undelivered record shows no password" {
	port=$(free_port)
	printf 'x \r\x1b[2K\xc2\x9b\xff\n' >"$T/in"
	printf '%s\n' '{"target":"a","url":"http:\/\/bob:hunter2@h\/"}' >>"$T/in"
	errs 69 sm-kafka-pub -b "127.0.0.1:$port" -t lost -X message.timeout.ms=500 <"$T/in"
	clean_stderr "$T/err"
	[ "$(grep -c '<stdin>:1:' "$T/err")" -eq 1 ]
	grep -qF 'x \x0d\x1b[2K\xc2\x9b\xff' "$T/err"
	grep -qF '<stdin>:2: not delivered to lost' "$T/err"
	! grep -q hunter2 "$T/err"
}

@test "hostile: sm-kafka-pub exits 74 when it cannot write its dead-letter file, as the others do" {
	printf 'not json\n' >"$T/in"
	run -74 --separate-stderr sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$(new_topic)" \
		--dead-letter /dev/full <"$T/in"
	[[ "$stderr" == *"/dev/full: cannot write dead letter for <stdin>:1: No space left on device"* ]]
	run -74 --separate-stderr sm-check -d /dev/full <"$T/in"
	new_db
	run -74 --separate-stderr sm-pg-write -D /dev/full <"$T/in"
}

@test "hostile: sm-kafka-sub: a hostile ack line is one escaped stderr line" {
	TOPIC=$(new_topic)
	echo '{"n":0}' | kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 0
	printf 'not json \r\x1b[2K\xc2\x9b\xff\n{"kafka":{"topic":"\\u000d\\u000aforged"}}\n' >"$T/acks"
	sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "g_$TOPIC" --ack "$T/acks" \
		>"$T/out" 2>"$T/err" &
	track_pid $!
	wait_for grep -q "$T/acks:2:" "$T/err"
	clean_stderr "$T/err"
	[ "$(grep -c "$T/acks:1:" "$T/err")" -eq 1 ]
	grep -qF 'not json \x0d\x1b[2K\xc2\x9b\xff' "$T/err"
	[ "$(grep -c "forged" "$T/err")" -eq 1 ]
}

@test "hostile: sm-pg-write: a value with CR and LF quoted in an error is one escaped line" {
	new_db
	printf '%s\n' '{"v":1,"id":"01a20aa3-3d80-700b-8000-0000000b0000","target":"a","url":"http://a/","probe":"p","started_at":"2026-11-23T23:00:00.000Z","ok":false,"status":null,"error_kind":"x\u000d\u000asm-pg-write: info: forged","error":"e","duration_ms":1}' >"$T/in"
	errs 0 sm-pg-write <"$T/in"
	clean_stderr "$T/err"
	[ "$(grep -c 'forged' "$T/err")" -eq 1 ]
	grep -qF 'unknown kind "x\x0d\x0asm-pg-write: info: forged"' "$T/err"
}

@test "hostile: sm-schedule: a key with CR and LF in an NDJSON target list is one escaped line" {
	printf '%s\n' "{\"url\":\"http://127.0.0.1:9/\",\"$FORGED_KEY\":1}" >"$T/t.ndjson"
	errs 78 sm-schedule -c -f "$T/t.ndjson"
	clean_stderr "$T/err"
	[ "$(wc -l <"$T/err")" -eq 1 ]
	grep -qF "unknown key \"$FORGED_SHOWN\"" "$T/err"
}

@test "hostile: sm-kafka-sub: a message too long for one line once its kafka object is in is dead-lettered, not stalled" {
	TOPIC=$(new_topic)
	# Offsets 0 and 1 give lines of exactly SM_MAX_LINE and one byte
	# more once ',"kafka":{…}' is spliced in; offset 2 is small.
	/usr/bin/python3 - "$TOPIC" "$T/msgs" <<-'PY'
	import sys
	topic, path = sys.argv[1], sys.argv[2]
	with open(path, "w") as f:
	    for off, extra in ((0, 0), (1, 1)):
	        coords = ',"kafka":{"topic":"%s","partition":0,"offset":%d}' % (topic, off)
	        n = 1048576 - len(coords) + extra   # the value, "}" included
	        f.write('{"p":"' + "x" * (n - 8) + '"}\n')
	    f.write('{"n":2}\n')
	PY
	kcat -P -b "$SM_TEST_BROKERS" -t "$TOPIC" -p 0 -X message.max.bytes=2000000 <"$T/msgs"
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" \
		-G "g_$TOPIC" -e --dead-letter "$T/dead"
	[ "${#lines[@]}" -eq 2 ]
	[ "${#lines[0]}" -eq 1048576 ]
	jq -e '.kafka.offset == 0' <<<"${lines[0]}"
	jq -e '.n == 2 and .kafka.offset == 2' <<<"${lines[1]}"
	run -0 jq -c '[.offset, .reason]' "$T/dead"
	[ "$output" = '[1,"longer than 1048576 bytes with its \"kafka\" object"]' ]
}

@test "hostile: sm-schedule --check prints a target name with control characters escaped" {
	printf '%s\n' '{"target":"a\u001b[2Kb\u000dc","url":"http://127.0.0.1:9/"}' >"$T/t.ndjson"
	errs 0 sm-schedule -c -f "$T/t.ndjson"
	clean_stderr "$T/out"
	grep -qF '  a\x1b[2Kb\x0dc: line 1, every 1m' "$T/out"
}

@test "hostile: sm-schedule: an interval out of range in defaults is refused (no use after free: make SAN=1)" {
	printf 'defaults:\n  interval: 1000000000000s\n  labels: {team: web}\ntargets:\n  - {name: a, url: "http://127.0.0.1:9/"}\n' >"$T/sites.yaml"
	errs 78 sm-schedule -c "$T/sites.yaml"
	grep -qF 'sites.yaml:2:13: field "interval" must be between 100ms and 31d' "$T/err"
}

@test "hostile: a probe location of 256 bytes is stored with its rollups; a longer one, or a longer target name, is refused at the first program" {
	# The location sits beside the target name in the outage and rollup
	# index keys: the longest name (1024 bytes) and the longest location
	# (256) must both be storable, and what the index would refuse must
	# be refused as one line before PostgreSQL sees it.
	local loc name
	new_db
	loc=$(head -c 256 /dev/urandom | base64 -w0 | head -c 256)
	name=$(head -c 1024 /dev/urandom | base64 -w0 | head -c 1024)
	printf '{"target":"%s","url":"%s"}\n' "$name" "$CLOSED_URL" |
		sm-check --strict -l "$loc" >"$T/max.ndjson"
	sm-pg-write --strict <"$T/max.ndjson" >/dev/null
	psql_q "SELECT sm_rollup_fold()" >/dev/null
	[ "$(psql_q "SELECT octet_length(probe) FROM checks")" = 256 ]
	[ "$(psql_q "SELECT count(*) FROM outages WHERE probe = '$loc' AND target = '$name'")" = 1 ]
	[ "$(psql_q "SELECT count(*) FROM rollup_hourly WHERE probe = '$loc'")" = 1 ]

	# sm-check refuses a longer location before probing, from -l or
	# from the environment.
	errs 64 sm-check -l "${loc}x" </dev/null
	grep -qF 'the probe location (-l, SM_PROBE_LOCATION) is 257 bytes, more than the 256 it may take' "$T/err"
	SM_PROBE_LOCATION="${loc}x" errs 64 sm-check </dev/null

	# Records made elsewhere, each checked on its decoded bytes: a
	# 257-byte location, a 1025-byte name, a 256-byte location written
	# with escapes (longer as text: stored), a location of 254 characters
	# that are 258 bytes: one stderr line for each refused one, the good
	# one stored, every line acknowledged in its place.
	local esc line
	esc="$(printf '\\u0061%.0s' $(seq 10))$(printf 'a%.0s' $(seq 246))"
	jq -c --arg p "${loc}x" '.id = "01a20aa3-3d80-700b-8000-00000000a001" | .probe = $p' "$T/max.ndjson" >"$T/in"
	jq -c --arg n "${name}x" '.id = "01a20aa3-3d80-700b-8000-00000000a002" | .target = $n' "$T/max.ndjson" >>"$T/in"
	line=$(jq -c '.id = "01a20aa3-3d80-700b-8000-00000000a003" | .probe = "ESC"' "$T/max.ndjson")
	printf '%s\n' "${line/'"ESC"'/"\"$esc\""}" >>"$T/in"
	jq -c --arg p "$loc" '.id = "01a20aa3-3d80-700b-8000-00000000a004" | .probe = ($p | .[0:250]) + "\u00e9\u00e9\u00e9\u00e9"' "$T/max.ndjson" >>"$T/in"
	errs 0 sm-pg-write <"$T/in"
	[ "$(wc -l <"$T/err")" -eq 3 ]
	grep -qF '<stdin>:1: field "probe" is 257 bytes, more than the 256 it may take' "$T/err"
	grep -qF '<stdin>:2: field "target" is 1025 bytes, more than the 1024 it may take' "$T/err"
	grep -qF '<stdin>:4: field "probe" is 258 bytes, more than the 256 it may take' "$T/err"
	[ "$(wc -l <"$T/out")" -eq 4 ]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 2 ]
	[ "$(psql_q "SELECT probe FROM checks WHERE id = '01a20aa3-3d80-700b-8000-00000000a003'")" = "$(printf 'a%.0s' $(seq 256))" ]

	# sm-alert reads results too: the same two lines, the same words.
	printf 'targets:\n  - name: x\n    url: %s\n' "$CLOSED_URL" >"$T/sites.yaml"
	errs 0 sm-alert "$T/sites.yaml" <"$T/in"
	grep -qF '<stdin>:1: field "probe" is 257 bytes' "$T/err"
	grep -qF '<stdin>:2: field "target" is 1025 bytes' "$T/err"
	grep -qF '<stdin>:4: field "probe" is 258 bytes' "$T/err"
	! grep -q '<stdin>:3:' "$T/err"
}

@test "hostile: sm-alert refuses a result without url, as sm-pg-write does, by its scan too" {
	printf 'targets:\n  - name: t\n    url: http://127.0.0.1:9/\n' >"$T/sites.yaml"
	jq -nc '{v: 1, id: "01a20aa3-3d80-700b-8000-00000000b001", target: "t",
		probe: "p", started_at: "2026-01-01T00:00:00Z", ok: false,
		status: null, error_kind: "connect", duration_ms: 1}' >"$T/in"
	errs 0 sm-alert "$T/sites.yaml" <"$T/in"
	[ "$(wc -l <"$T/err")" -eq 1 ]
	grep -qF '<stdin>:1: field "url" is required' "$T/err"
	new_db
	errs 0 sm-pg-write <"$T/in"
	grep -qF '<stdin>:1: field "url" is required' "$T/err"
}

# refused_lines FILE: the line numbers of FILE's "<stdin>:N: " errors, once
# each, sorted.
refused_lines() {
	sed -n 's/^.*: error: <stdin>:\([0-9]*\): .*/\1/p' "$1" | sort -u
}

@test "hostile: sm-alert and sm-pg-write refuse exactly the results schema/result.schema.json refuses" {
	# Every field and member of a full result (sm-check's every field,
	# Kafka coordinates and a redirect hop) set to each of twenty values
	# of every JSON type, or removed: python3-jsonschema (an implementation
	# of its own) reads the schema, the two programs their code.  Twice:
	# with the hop, and without it (the records both programs' scans
	# take; sm-pg-write leaves hops to its tree).
	local fp second
	fp=$(printf 'AB:%.0s' $(seq 31))AB
	jq -c . >"$T/full" <<EOF
{"v":1,"id":"01a20aa3-3d80-700b-8000-00000000d000","target":"t",
 "url":"https://t.example/","labels":{"env":"x","team":"web"},"probe":"p",
 "scheduled_at":"2026-01-01T00:00:00Z","started_at":"2026-01-01T00:00:00.5Z",
 "ok":false,"status":200,"error_kind":"body_mismatch","error":"regex",
 "tls_error":null,"duration_ms":1.5,
 "phases":{"dns_ms":0.1,"connect_ms":0.2,"tls_ms":0.4,"ttfb_ms":0.3,
   "transfer_ms":0.1,"regex_ms":0.01},
 "bytes":10,"truncated":false,"content_length":10,"wire_bytes":null,
 "http_version":"1.1","remote_ip":"127.0.0.1","redirects":1,
 "final_url":"https://t.example/",
 "hops":[{"url":"http://t.example/","status":301,
   "location":"https://t.example/","time_ms":0.5}],
 "final_phases":{"dns_ms":0,"connect_ms":0.1,"tls_ms":0.2,"ttfb_ms":0.2,
   "transfer_ms":0},
 "regex":{"pattern":"ok","matched":false},
 "tls":{"version":"TLSv1.3","cert_not_after":"2027-01-01T00:00:00Z",
   "cert_not_before":"2026-01-01T00:00:00Z","cert_days_left":365,
   "cert_issuer":"CN=ca","chain_not_after":"2027-01-01T00:00:00Z",
   "cert_subject":"CN=t","cert_sans":["DNS:t.example","IP:127.0.0.1"],
   "cert_sha256":"$fp"},
 "kafka":{"topic":"r","partition":0,"offset":7}}
EOF
	"$SM_TOP/tests/fixtures/json-variants" <"$T/full" >"$T/in"
	second=$(($(wc -l <"$T/in") + 1))
	jq -c 'del(.hops, .final_phases) | .redirects = 0 | .id = "01a20aa3-3d80-700b-8000-00000000d001"' "$T/full" |
		"$SM_TOP/tests/fixtures/json-variants" >>"$T/in"
	[ "$(wc -l <"$T/in")" -gt 2000 ]
	run -1 "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/result.schema.json" <"$T/in"
	sed -n 's/^line \([0-9]*\):.*/\1/p' <<<"$output" | sort -u >"$T/schema"
	# Each kind of mistake is there, and the bases are valid.
	[ "$(wc -l <"$T/schema")" -gt 1000 ]
	! grep -qx 1 "$T/schema"
	! grep -qx "$second" "$T/schema"

	printf 'targets:\n  - name: t\n    url: https://t.example/\n' >"$T/sites.yaml"
	errs 0 sm-alert "$T/sites.yaml" <"$T/in"
	refused_lines "$T/err" >"$T/alert"
	new_db
	errs 0 sm-pg-write --dead-letter "$T/dead" <"$T/in"
	refused_lines "$T/err" >"$T/pgw"
	# The same lines, none of them refused by the server instead.
	diff "$T/schema" "$T/pgw"
	diff "$T/schema" "$T/alert"
	! grep -q 'refused by the server' "$T/err"
	# Each refused line in the dead letter; every line acknowledged.
	[ "$(wc -l <"$T/dead")" = "$(wc -l <"$T/schema")" ]
	[ "$(wc -l <"$T/out")" = "$(wc -l <"$T/in")" ]
}

@test "hostile: sm-check refuses exactly the targets schema/target.schema.json refuses" {
	# The same comparison for sm-check's input: every field of a target
	# that sets them all, each set to twenty values or removed.  The
	# targets taken are probed (a closed port, refused at once); only the
	# refusals are compared.
	jq -c --arg url "$CLOSED_URL" '.url = $url' >"$T/target" <<-EOF
	{"target":"t","url":"http://127.0.0.1:9/x","method":"GET",
	 "headers":{"X-A":"b"},"timeout_ms":1000,"follow_redirects":true,
	 "max_redirects":3,"expect_status":["2xx",301],"regex":"ok",
	 "regex_absent":"bad","tls_verify":true,
	 "ca_file":"/etc/ssl/certs/ca-certificates.crt","max_body_bytes":1000,
	 "ip_version":4,"labels":{"env":"x"},
	 "scheduled_at":"2026-01-01T00:00:00.000Z"}
	EOF
	"$SM_TOP/tests/fixtures/json-variants" <"$T/target" >"$T/in"
	[ "$(wc -l <"$T/in")" -gt 300 ]
	run -1 "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/target.schema.json" <"$T/in"
	sed -n 's/^line \([0-9]*\):.*/\1/p' <<<"$output" | sort -u >"$T/schema"
	[ "$(wc -l <"$T/schema")" -gt 200 ]
	! grep -qx 1 "$T/schema"
	errs 0 sm-check -c 64 <"$T/in"
	refused_lines "$T/err" >"$T/check"
	diff "$T/schema" "$T/check"
	# Every target taken gave one result, valid by the result schema.
	[ "$(wc -l <"$T/out")" = "$(($(wc -l <"$T/in") - $(wc -l <"$T/schema")))" ]
	"$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/result.schema.json" <"$T/out"
}

@test "hostile: an optional field of the wrong type is refused by sm-alert and by sm-pg-write alike, naming the field; valid records beside it pass" {
	# sm-alert's scan does not read these fields, but it must not take a
	# record result_validate refuses (sm-pg-write would refuse it).  Each
	# case: a jq edit of a valid record, and the field its error names.
	local cases=(
		'.labels = 5|labels'
		'.scheduled_at = 5|scheduled_at'
		'.scheduled_at = "yesterday"|scheduled_at'
		'.tls_error = 1|tls_error'
		'.phases = "fast"|phases'
		'.phases.dns_ms = "1"|phases.dns_ms'
		'.phases.regex_ms = -1|phases.regex_ms'
		'.bytes = 1.5|bytes'
		'.truncated = null|truncated'
		'.content_length = -1|content_length'
		'.wire_bytes = "9"|wire_bytes'
		'.http_version = 2|http_version'
		'.remote_ip = []|remote_ip'
		'.redirects = true|redirects'
		'.final_url = {}|final_url'
		'.hops = {}|hops'
		'.hops = [{url: "http://t/", location: "https://t/", time_ms: 1}]|hops[0]'
		'.hops = [{url: "http://t/", status: 301, location: "https://t/", time_ms: null}, 1]|hops[1]'
		'.hops = [{url: "http://t/", status: 301, location: "https://t/", time_ms: "1"}]|hops[0]'
		'.final_phases = []|final_phases'
		'.final_phases = {tls_ms: "x"}|final_phases.tls_ms'
		'.regex = "x"|regex'
		'.tls = "x"|tls'
		'.kafka = "x"|kafka'
		'.kafka = {topic: "r", partition: 1}|kafka'
		'.kafka = {topic: "r", partition: 1.5, offset: 2}|kafka'
	)
	local base c n=1 bad=${#cases[@]}
	base='{"v":1,"id":"01a20aa3-3d80-700b-8000-00000000c000","target":"t",
		"url":"https://t.example/","labels":{"env":"x"},"probe":"p",
		"scheduled_at":"2026-01-01T00:00:00Z","started_at":"2026-01-01T00:00:00Z",
		"ok":true,"status":200,"error_kind":null,"error":null,"tls_error":null,
		"duration_ms":1.5,"phases":{"dns_ms":0.1,"connect_ms":0.2,"tls_ms":null,
		"ttfb_ms":0.3,"transfer_ms":0.1},"bytes":10,"truncated":false,
		"content_length":10,"wire_bytes":null,"http_version":"2",
		"remote_ip":"127.0.0.1","redirects":0,"final_url":"https://t.example/",
		"regex":{"pattern":"x","matched":true},
		"tls":{"version":"TLSv1.3","cert_not_after":"2027-01-01T00:00:00Z"}}'
	# First a valid record, last one with a hop and Kafka coordinates,
	# between them the wrong ones.
	jq -c . <<<"$base" >"$T/in"
	for c in "${cases[@]}"; do
		n=$((n + 1))
		jq -c --arg id "01a20aa3-3d80-700b-8000-00000000c$(printf %03d "$n")" \
			".id = \$id | ${c%|*}" <<<"$base" >>"$T/in"
	done
	jq -c '.id = "01a20aa3-3d80-700b-8000-00000000cfff" | .redirects = 1 |
		.hops = [{url: "http://t.example/", status: 301,
		          location: "https://t.example/", time_ms: 0.5}] |
		.final_phases = {dns_ms: 0, connect_ms: 0.1, tls_ms: null,
		                 ttfb_ms: 0.2, transfer_ms: 0} |
		.kafka = {topic: "r", partition: 0, offset: 7}' <<<"$base" >>"$T/in"

	printf 'targets:\n  - name: t\n    url: https://t.example/\n' >"$T/sites.yaml"
	errs 0 sm-alert --stats-interval 1h "$T/sites.yaml" <"$T/in"
	[ "$(grep -c ': error: ' "$T/err")" -eq "$bad" ]
	grep -qF "in=$((bad + 2)) bad=$bad unknown_target=0 " "$T/err"
	# The valid record with Kafka coordinates is acknowledged.
	grep -qxF '{"v":1,"kafka":{"topic":"r","partition":0,"offset":7}}' "$T/out"
	cp "$T/err" "$T/alert.err"
	new_db
	errs 0 sm-pg-write <"$T/in"
	[ "$(grep -c ': error: ' "$T/err")" -eq "$bad" ]
	[ "$(psql_q "SELECT count(*) FROM checks")" = 2 ]
	n=1
	for c in "${cases[@]}"; do
		n=$((n + 1))
		grep -qF "<stdin>:$n: field \"${c##*|}\" " "$T/alert.err" ||
			{ echo "sm-alert, line $n: no error naming ${c##*|}" >&2; return 1; }
		grep -qF "<stdin>:$n: field \"${c##*|}\" " "$T/err" ||
			{ echo "sm-pg-write, line $n: no error naming ${c##*|}" >&2; return 1; }
	done
	clean_stderr "$T/alert.err"
}
