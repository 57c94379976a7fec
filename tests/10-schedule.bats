#!/usr/bin/env bats
# sm-schedule: sites.yaml and NDJSON input, validation with file:line:column,
# --once, --check, --shard, timed emission on the wall-aligned phase, SIGHUP
# reload, and skipping ticks when stdout is blocked.  Nothing is fetched: the
# URLs only need to be valid.

bats_require_minimum_version 1.5.0
load helpers

# sites [FILE]: write stdin to FILE ($T/sites.yaml by default).
sites() {
	cat >"${1:-$T/sites.yaml}"
}

# schedule ARGS...: run sm-schedule; $output is stdout, $stderr stderr.
schedule() {
	run --separate-stderr sm-schedule "$@"
}

# refused FILE WANT...: the configuration is refused with 78 and stderr
# holds each WANT (a "file:line:column: message" substring).
refused() {
	local file=$1 want
	shift
	run --separate-stderr sm-schedule --check "$file"
	[ "$status" -eq 78 ] || { echo "status $status, stderr: $stderr"; return 1; }
	[ -z "$output" ] || { echo "stdout not empty: $output"; return 1; }
	for want in "$@"; do
		[[ "$stderr" == *"$want"* ]] ||
			{ printf 'stderr lacks: %s\nstderr:\n%s\n' "$want" "$stderr"; return 1; }
	done
}

# unix_ms: each line's scheduled_at as unix milliseconds.
unix_ms() {
	jq -r '.scheduled_at | ((.[0:19] + "Z" | fromdate) * 1000 + (.[20:23] | tonumber))'
}

# ---- --once and defaults ----------------------------------------------------

@test "schedule: --once emits every target once with the defaults applied" {
	sites <<-'YAML'
	# An operator's file: defaults first, then the targets.
	defaults:
	  interval: 30s
	  timeout: 5s
	  expect_status: [200, "3xx"]
	  headers:
	    User-Agent: sitemon-test
	  labels: {env: prod, team: web}
	targets:
	  - name: home
	    url: http://127.0.0.1:9/
	  - name: api
	    url: https://127.0.0.1:9/health
	    method: POST
	    body: '{"ping": true}'
	    timeout_ms: 2000
	    expect_status: 204
	    regex: '"status":\s*"ok"'
	    labels: {team: api, env: ~}
	    follow_redirects: false
	    max_redirects: 0
	    tls_verify: no
	    ip_version: 4
	    max_body_bytes: 65536
	  - url: http://127.0.0.1:9/unnamed
	    regex_absent: error
	    ca_file: /etc/ssl/certs/ca-certificates.crt
	YAML
	schedule --once "$T/sites.yaml"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 3 ]
	# Every line carries scheduled_at, one and the same instant, now-ish.
	printf '%s\n' "$output" >"$T/out"
	[ "$(jq -r .scheduled_at "$T/out" | sort -u | wc -l)" -eq 1 ]
	local at now
	at=$(head -n 1 "$T/out" | unix_ms)
	now=$(date +%s%3N)
	((now - at >= 0 && now - at < 10000))

	json_eq "$(jq -c 'del(.scheduled_at)' <<<"${lines[0]}")" '{
		"v": 1, "target": "home", "url": "http://127.0.0.1:9/",
		"timeout_ms": 5000, "expect_status": [200, "3xx"],
		"headers": {"User-Agent": "sitemon-test"},
		"labels": {"env": "prod", "team": "web"}}'
	json_eq "$(jq -c 'del(.scheduled_at)' <<<"${lines[1]}")" '{
		"v": 1, "target": "api", "url": "https://127.0.0.1:9/health",
		"method": "POST", "body": "{\"ping\": true}", "timeout_ms": 2000,
		"expect_status": [204], "regex": "\"status\":\\s*\"ok\"",
		"headers": {"User-Agent": "sitemon-test"}, "labels": {"team": "api"},
		"follow_redirects": false, "max_redirects": 0, "tls_verify": false,
		"ip_version": 4, "max_body_bytes": 65536}'
	json_eq "$(jq -c 'del(.scheduled_at)' <<<"${lines[2]}")" '{
		"v": 1, "target": "http://127.0.0.1:9/unnamed",
		"url": "http://127.0.0.1:9/unnamed", "timeout_ms": 5000,
		"expect_status": [200, "3xx"], "regex_absent": "error",
		"ca_file": "/etc/ssl/certs/ca-certificates.crt",
		"headers": {"User-Agent": "sitemon-test"},
		"labels": {"env": "prod", "team": "web"}}'
}

@test "schedule: \${VAR} is taken from the environment; \$\${ is a literal" {
	sites <<-'YAML'
	targets:
	  - name: ${SITE}-home
	    url: http://${HOST}/
	    headers: {Authorization: "Bearer ${TOKEN}"}
	    regex: 'ok$|x$${HOME}'
	YAML
	SITE=shop HOST=127.0.0.1:9 TOKEN=s3cret schedule --once "$T/sites.yaml"
	[ "$status" -eq 0 ] || { echo "$stderr"; false; }
	[ "$(jq -r .target <<<"$output")" = shop-home ]
	[ "$(jq -r .url <<<"$output")" = http://127.0.0.1:9/ ]
	[ "$(jq -r .headers.Authorization <<<"$output")" = "Bearer s3cret" ]
	[ "$(jq -r .regex <<<"$output")" = 'ok$|x${HOME}' ]
	# ${NAME:-default}: the default when unset or empty.
	sites <<-'YAML'
	targets:
	  - name: ${SM_TEST_NAME:-fallback}
	    url: http://${SM_TEST_HOST:-127.0.0.1:9}/${SM_TEST_PATH:-}
	YAML
	SM_TEST_HOST= schedule --once "$T/sites.yaml"
	[ "$(jq -r '"\(.target) \(.url)"' <<<"$output")" = "fallback http://127.0.0.1:9/" ]
	SM_TEST_NAME=given schedule --once "$T/sites.yaml"
	[ "$(jq -r .target <<<"$output")" = given ]
}

@test "schedule: YAML anchors and << merge keys work in targets" {
	sites <<-'YAML'
	x-unused: &unused {anything: [goes, here]}
	targets:
	  - &base
	    name: a
	    url: http://127.0.0.1:9/a
	    timeout: 2s
	    interval: 10s
	  - <<: *base
	    name: b
	YAML
	schedule --once "$T/sites.yaml"
	[ "$status" -eq 0 ]
	[ "$(jq -r '"\(.target) \(.url) \(.timeout_ms)"' <<<"$output" | paste -sd,)" = \
	  "a http://127.0.0.1:9/a 2000,b http://127.0.0.1:9/a 2000" ]
	# An error in an anchored node is reported once, however often used.
	printf '  - &bad {name: c, url: "http://127.0.0.1:9/c", bogus: 1}\n  - <<: *bad\n    name: d\n  - *base\n' >>"$T/sites.yaml"
	refused "$T/sites.yaml" "sites.yaml:10:49: unknown key \"bogus\"" \
		"sites.yaml:4:11: target \"a\" is listed more than once (through a YAML alias)"
	[ "$(grep -c 'bogus' <<<"$stderr")" -eq 1 ]
}

# ---- refused configurations ---------------------------------------------------

@test "schedule: an interval or timeout without a unit is refused, quoted or not" {
	sites <<-'YAML'
	targets:
	  - {name: a, url: "http://127.0.0.1:9/a", interval: 30}
	  - {name: b, url: "http://127.0.0.1:9/b", interval: "30"}
	  - {name: c, url: "http://127.0.0.1:9/c", timeout: '5'}
	YAML
	refused "$T/sites.yaml" \
		"sites.yaml:2:54: \"30\" needs a unit" \
		"sites.yaml:3:54: \"30\" needs a unit" \
		"sites.yaml:4:53: \"5\" needs a unit"
	cat >"$T/targets.ndjson" <<-'EOF'
	{"target":"a","url":"http://127.0.0.1:9/a","interval":"30"}
	{"target":"b","url":"http://127.0.0.1:9/b","timeout":"5"}
	{"target":"c","url":"http://127.0.0.1:9/c","interval":30}
	EOF
	run --separate-stderr sm-schedule --check -f "$T/targets.ndjson"
	[ "$status" -eq 78 ]
	[[ "$stderr" == *"targets.ndjson:1:55: \"30\" needs a unit"* ]]
	[[ "$stderr" == *"targets.ndjson:2:54: \"5\" needs a unit"* ]]
	# A JSON number is whole seconds (sm-schedule(1), -f).
	[[ "$stderr" != *"targets.ndjson:3:"* ]]
}

@test "schedule: unknown keys are refused with a did-you-mean" {
	sites <<-'YAML'
	defaults:
	  timout: 5s
	targets:
	  - name: a
	    url: http://127.0.0.1:9/
	    expected-status: 200
	    frobnicate: 1
	tagrets: []
	YAML
	refused "$T/sites.yaml" \
		"$T/sites.yaml:2:3: unknown key \"timout\" (did you mean \"timeout\"?)" \
		"$T/sites.yaml:6:5: unknown key \"expected-status\" (did you mean \"expect_status\"?)" \
		"$T/sites.yaml:7:5: unknown key \"frobnicate\""$'\n' \
		"$T/sites.yaml:8:1: unknown key \"tagrets\" (did you mean \"targets\"?)"
}

@test "schedule: a url that is not http or https is refused" {
	sites <<-'YAML'
	targets:
	  - name: a
	    url: ftp://127.0.0.1/file
	YAML
	refused "$T/sites.yaml" "$T/sites.yaml:3:10: field \"url\""
}

@test "schedule: a regex PCRE2 cannot compile is refused" {
	sites <<-'YAML'
	targets:
	  - name: a
	    url: http://127.0.0.1:9/
	    regex: "ok"
	    regex_absent: "(unclosed"
	YAML
	refused "$T/sites.yaml" \
		"$T/sites.yaml:5:19: field \"regex_absent\": invalid PCRE2 pattern at offset 9"
}

@test "schedule: a bad status range is refused" {
	sites <<-'YAML'
	targets:
	  - name: a
	    url: http://127.0.0.1:9/
	    expect_status: [200, "308-301"]
	YAML
	refused "$T/sites.yaml" "$T/sites.yaml:4:20: field \"expect_status\""
}

@test "schedule: a duplicate name is refused at the second one" {
	sites <<-'YAML'
	targets:
	  - name: a
	    url: http://127.0.0.1:9/1
	  - name: a
	    url: http://127.0.0.1:9/2
	  - url: http://127.0.0.1:9/same
	  - url: http://127.0.0.1:9/same
	YAML
	refused "$T/sites.yaml" \
		"$T/sites.yaml:4:11: duplicate target name \"a\" (first at line 2)" \
		"$T/sites.yaml:7:10: duplicate target name \"http://127.0.0.1:9/same\" (first at line 6)"
}

@test "schedule: an interval shorter than the timeout is refused" {
	sites <<-'YAML'
	defaults:
	  interval: 5s
	targets:
	  - name: a
	    url: http://127.0.0.1:9/
	    timeout: 6s
	  - name: b
	    url: http://127.0.0.1:9/
	    interval: 2s
	YAML
	refused "$T/sites.yaml" \
		"$T/sites.yaml:2:13: interval 5s is shorter than timeout 6s" \
		"$T/sites.yaml:9:15: interval 2s is shorter than timeout 10s"
}

@test "schedule: an unset \${VAR} is refused, and not echoed with secrets" {
	sites <<-'YAML'
	targets:
	  - name: a
	    url: http://127.0.0.1:9/
	    headers:
	      Authorization: Bearer ${SM_TEST_UNSET_TOKEN}
	YAML
	unset SM_TEST_UNSET_TOKEN
	refused "$T/sites.yaml" \
		"$T/sites.yaml:5:29: environment variable SM_TEST_UNSET_TOKEN is not set"
	[[ "$stderr" != *Bearer* ]]
}

@test "schedule: a password in a url never reaches stderr or the --check summary" {
	sites <<-'YAML'
	targets:
	  - url: http://bob:hunter2@127.0.0.1:9/
	YAML
	schedule --check "$T/sites.yaml"
	[ "$status" -eq 0 ]
	[[ "$output" == *"http://bob:"*"@127.0.0.1:9/: line 2"* ]]
	[[ "$output$stderr" != *hunter2* ]]
	printf '  - url: http://bob:hunter2@127.0.0.1:9/\n' >>"$T/sites.yaml"
	refused "$T/sites.yaml" "sites.yaml:3:10: duplicate target name \"http://bob:"
	[[ "$stderr" != *hunter2* ]]
}

@test "schedule: every error of a file is reported at once, in file order" {
	sites <<-'YAML'
	defaults:
	  timeout: 5s
	  tls_verfy: false
	targets:
	  - name: one
	    url: gopher://127.0.0.1/
	  - name: two
	    url: http://127.0.0.1:9/
	    regex: "[a-"
	    expect_status: "2xx-3xx"
	  - name: one
	    url: http://127.0.0.1:9/
	    interval: 1s
	    timeout: 1m
	  - name: four
	    url: http://${SM_TEST_UNSET_HOST}/
	    method: get
	    max_redirects: 500
	    interval: 30
	YAML
	unset SM_TEST_UNSET_HOST
	refused "$T/sites.yaml" \
		"sites.yaml:3:3: unknown key \"tls_verfy\" (did you mean \"tls_verify\"?)" \
		"sites.yaml:6:10: field \"url\"" \
		"sites.yaml:9:12: field \"regex\": invalid PCRE2 pattern" \
		"sites.yaml:10:20: field \"expect_status\"" \
		"sites.yaml:11:11: duplicate target name \"one\" (first at line 5)" \
		"sites.yaml:13:15: interval 1s is shorter than timeout 1m" \
		"sites.yaml:16:17: environment variable SM_TEST_UNSET_HOST is not set" \
		"sites.yaml:17:13: field \"method\"" \
		"sites.yaml:18:20: field \"max_redirects\"" \
		"sites.yaml:19:15: \"30\" needs a unit" \
		"sites.yaml: 10 errors"
	# Sorted by position: the line numbers never go down.
	grep -o 'sites.yaml:[0-9]*:' <<<"$stderr" | cut -d: -f2 >"$T/lines"
	sort -n -c "$T/lines"
}

@test "schedule: YAML syntax errors, a missing file and a non-mapping are refused" {
	printf 'targets:\n  - name: a\n   url: [\n' >"$T/syntax.yaml"
	refused "$T/syntax.yaml" "$T/syntax.yaml:3:"
	refused "$T/nonexistent.yaml" "$T/nonexistent.yaml: No such file or directory"
	printf -- '- just\n- a list\n' >"$T/list.yaml"
	refused "$T/list.yaml" "$T/list.yaml:1:1: expected a mapping"
	printf 'targets:\n  - http://127.0.0.1/\n' >"$T/scalar.yaml"
	refused "$T/scalar.yaml" "$T/scalar.yaml:2:5: a target must be a mapping"
	printf 'defaults:\n  name: x\ntargets: []\n' >"$T/defname.yaml"
	refused "$T/defname.yaml" "$T/defname.yaml:2:3: \"name\" cannot be a default"
	# Aliases of aliases cannot blow up memory ("billion laughs").
	{
		echo 'x-a0: &a0 [x, x, x, x, x, x, x, x, x, x]'
		for i in 1 2 3 4 5 6 7 8 9; do
			echo "x-a$i: &a$i [*a$((i - 1)), *a$((i - 1)), *a$((i - 1)), *a$((i - 1)), *a$((i - 1)), *a$((i - 1)), *a$((i - 1)), *a$((i - 1)), *a$((i - 1)), *a$((i - 1))]"
		done
		echo 'targets: [{url: "http://127.0.0.1:9/", labels: {k: *a9}}]'
	} >"$T/lol.yaml"
	refused "$T/lol.yaml" "values once aliases are expanded"
}

# ---- --check, --shard, usage --------------------------------------------------

@test "schedule: --check validates and prints a summary, exit 0" {
	sites <<-'YAML'
	defaults: {interval: 1m}
	targets:
	  - {name: a, url: "http://127.0.0.1:9/a"}
	  - {name: b, url: "http://127.0.0.1:9/b", interval: 30s, timeout: 3s}
	YAML
	schedule --check "$T/sites.yaml"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "$T/sites.yaml: ok: 2 targets, 0.05 checks/s" ]
	[[ "${lines[1]}" == "  a: line 3, every 1m, timeout 10s, next 20"* ]]
	[[ "${lines[2]}" == "  b: line 4, every 30s, timeout 3s, next 20"* ]]
	[ -z "$stderr" ]
	schedule -c --shard 0/1 "$T/sites.yaml"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "$T/sites.yaml: ok: 2 targets, 2 in shard 0/1, 0.05 checks/s" ]
}

@test "schedule: --shard splits the targets into disjoint shards that cover them all" {
	{
		echo "targets:"
		for i in $(seq 1 60); do
			printf '  - {name: site-%d, url: "http://127.0.0.1:9/%d"}\n' "$i" "$i"
		done
	} | sites
	schedule --once "$T/sites.yaml"
	printf '%s\n' "$output" | jq -r .target | sort >"$T/all"
	[ "$(wc -l <"$T/all")" -eq 60 ]
	local shard # not "i": bats' run changes it
	for shard in 0 1 2 3; do
		schedule --once --shard "$shard/4" "$T/sites.yaml"
		[ "$status" -eq 0 ]
		printf '%s\n' "$output" | jq -r .target | sed '/^$/d' >"$T/shard$shard"
		# Each shard holds some targets (60 names over 4 shards).
		[ -s "$T/shard$shard" ]
	done
	# Disjoint, and their union is everything.
	sort "$T"/shard? >"$T/union"
	diff "$T/all" "$T/union"
	[ "$(sort -u "$T/union" | wc -l)" -eq 60 ]
	# The shard is FNV-1a (64 bit) of the name mod N: a documented contract,
	# so that every host and version splits the same way.
	python3 -c '
import sys
for name in sys.stdin.read().split():
    h = 0xcbf29ce484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001b3) % 2**64
    if h % 4 == 3:
        print(name)' <"$T/all" | sort >"$T/want3"
	diff "$T/want3" <(sort "$T/shard3")
	# The environment gives the default; the option wins.
	SM_SHARD=1/4 schedule --once "$T/sites.yaml"
	diff <(printf '%s\n' "$output" | jq -r .target) "$T/shard1"
	SM_SHARD=1/4 schedule --once -s 2/4 "$T/sites.yaml"
	diff <(printf '%s\n' "$output" | jq -r .target) "$T/shard2"
}

@test "schedule: bad usage exits 64" {
	sites <<<'targets: []'
	run -64 sm-schedule
	run -64 sm-schedule "$T/sites.yaml" "$T/sites.yaml"
	run -64 sm-schedule --shard 4/4 "$T/sites.yaml"
	run -64 sm-schedule --shard 1 "$T/sites.yaml"
	run -64 sm-schedule --shard a/b "$T/sites.yaml"
	run -64 sm-schedule --once --check "$T/sites.yaml"
	run -64 sm-schedule --frobnicate "$T/sites.yaml"
}

@test "schedule: --help and --version" {
	run -0 sm-schedule --help
	[[ "${lines[0]}" == "usage: sm-schedule [-1c] [-s i/N] sites.yaml" ]]
	[[ "$output" == *"--shard i/N"* ]]
	run -0 sm-schedule -h
	run -0 sm-schedule --version
	[[ "$output" == "sm-schedule (sitemon) "* ]]
	run -0 sm-schedule -V
}

# ---- NDJSON input ---------------------------------------------------------------

@test "schedule: -f reads NDJSON target records with an interval" {
	cat >"$T/targets.ndjson" <<-'EOF'
	# one target record per line; blank lines and comments are skipped
	{"v":1,"target":"a","url":"http://127.0.0.1:9/a","interval":"30s"}

	{"target":"b","url":"http://127.0.0.1:9/b","interval":"1m","timeout_ms":2000,"labels":{"env":"test"}}
	EOF
	schedule --once -f "$T/targets.ndjson"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 2 ]
	json_eq "$(jq -c 'del(.scheduled_at)' <<<"${lines[1]}")" \
		'{"v":1,"target":"b","url":"http://127.0.0.1:9/b","timeout_ms":2000,"labels":{"env":"test"}}'
	# Its own output, fed back, schedules the same targets.
	printf '%s\n' "$output" >"$T/again.ndjson"
	schedule --check --file "$T/again.ndjson"
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == *": ok: 2 targets"* ]]
	# And from stdin.
	run --separate-stderr sm-schedule --once -f - <"$T/targets.ndjson"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 2 ]
}

@test "schedule: -f reports bad NDJSON records with line numbers, all at once" {
	cat >"$T/targets.ndjson" <<-'EOF'
	{"target":"a","url":"http://127.0.0.1:9/a","interval":"30s"}
	{"target":"b","url":"file:///etc/passwd"}
	not json
	{"target":"c","url":"http://127.0.0.1:9/c","regex":"(","intervall":"1m"}
	{"target":"a","url":"http://127.0.0.1:9/a2"}
	EOF
	run --separate-stderr sm-schedule --check -f "$T/targets.ndjson"
	[ "$status" -eq 78 ]
	[[ "$stderr" == *"targets.ndjson:2:21: field \"url\""* ]]
	[[ "$stderr" == *"targets.ndjson:3:3: invalid JSON"* ]]
	[[ "$stderr" == *"targets.ndjson:4:"*": field \"regex\": invalid PCRE2 pattern"* ]]
	[[ "$stderr" == *"targets.ndjson:4:"*": unknown key \"intervall\" (did you mean \"interval\"?)"* ]]
	[[ "$stderr" == *"targets.ndjson:5:11: duplicate target name \"a\" (first at line 1)"* ]]
}

# ---- timed emission ---------------------------------------------------------

@test "schedule: an interval of 1s emits a record every 1000 ms on a stable phase" {
	sites <<-'YAML'
	targets:
	  - name: every-second
	    url: http://127.0.0.1:9/
	    interval: 1s
	    timeout: 500ms
	YAML
	# --ramp 0: no first check at start, every tick on the phase.
	timeout 20 sm-schedule --ramp 0 "$T/sites.yaml" 2>/dev/null | head -n 3 >"$T/a" || true
	[ "$(wc -l <"$T/a")" -eq 3 ]
	unix_ms <"$T/a" >"$T/a.ms"
	# Consecutive ticks are exactly one interval apart.
	[ "$(awk 'NR > 1 { print $1 - prev } { prev = $1 }' "$T/a.ms" | sort -u)" = 1000 ]
	# The phase comes from the name, not the start time: a new process
	# fires at the same offset within the second.
	timeout 20 sm-schedule --ramp 0 "$T/sites.yaml" 2>/dev/null | head -n 1 >"$T/b" || true
	[ "$(unix_ms <"$T/b" | awk '{ print $1 % 1000 }')" = \
	  "$(awk 'NR == 1 { print $1 % 1000 }' "$T/a.ms")" ]
	# Records are emitted when due: scheduled_at is in the past, barely.
	local last
	last=$(tail -n 1 "$T/a.ms")
	((last <= $(date +%s%3N)))
}

# phase_of NAME: the target's phase (ms within its interval) from --check's
# "next" time; needs INTERVAL_MS.
phase_of() {
	sm-schedule --check "$T/sites.yaml" | sed -n "s/^  $1: .* next //p" |
		jq -R 'sub("Z$"; "") | ((.[0:19] + "Z" | fromdate) * 1000 + (.[20:23] | tonumber))' |
		awk -v i="$INTERVAL_MS" '{ print $1 % i }'
}

# has_records NAME N: at least N records of NAME in $T/out.
has_records() {
	(($(grep -c "\"target\":\"$1\"" "$T/out") >= $2))
}

@test "schedule: at start every target is checked within --ramp, then on its phase" {
	sites <<-'YAML'
	targets:
	  - {name: beat, url: "http://127.0.0.1:9/b", interval: 1s, timeout: 500ms}
	  - {name: five, url: "http://127.0.0.1:9/5", interval: 5m}
	  - {name: fifteen, url: "http://127.0.0.1:9/15", interval: 15m}
	  - {name: hourly, url: "http://127.0.0.1:9/h", interval: 1h}
	YAML
	local t0 name first n
	t0=$(date +%s%3N)
	sm-schedule --ramp 1500ms "$T/sites.yaml" >"$T/out" 2>"$T/err" 3>&- &
	track_pid $!
	# Every target within the ramp, though three of them are due only
	# minutes from now at their phase.
	for name in five fifteen hourly; do
		wait_for has_records "$name" 1
		first=$(grep "\"target\":\"$name\"" "$T/out" | unix_ms)
		# scheduled_at: at most the ramp after the start (and the load).
		((first >= t0 && first <= t0 + 1500 + 1000)) ||
			{ echo "$name first at +$((first - t0)) ms"; false; }
	done
	# The 1s target's ramp is its interval; after its first check it
	# goes on at its phase, at least half an interval later, one interval
	# apart, and its first check is never repeated at once.
	wait_for has_records beat 4
	grep '"target":"beat"' "$T/out" | unix_ms >"$T/beat.ms"
	((first = $(head -n 1 "$T/beat.ms"), first >= t0 && first <= t0 + 1000 + 1000))
	[ "$(sed -n 2p "$T/beat.ms")" -ge $((first + 500)) ]
	awk 'NR > 2 && $1 - prev != 1000 { print "gap " $1 - prev; bad = 1 }
	     { prev = $1 } END { exit bad }' "$T/beat.ms"
	local phase
	phase=$(INTERVAL_MS=1000 phase_of beat)
	[ -n "$phase" ]
	awk -v p="$phase" 'NR > 1 && $1 % 1000 != p { print "off phase: " $1; bad = 1 }
	     END { exit bad }' "$T/beat.ms"
	# The others are not checked twice within the ramp.
	for name in five fifteen hourly; do
		n=$(grep -c "\"target\":\"$name\"" "$T/out")
		[ "$n" -eq 1 ] || { echo "$name: $n records"; false; }
	done
}

@test "schedule: --ramp 0 leaves every target to its phase; a bad --ramp is 64" {
	sites <<-'YAML'
	targets:
	  - {name: beat, url: "http://127.0.0.1:9/b", interval: 1s, timeout: 500ms}
	  - {name: hourly, url: "http://127.0.0.1:9/h", interval: 1h}
	YAML
	sm-schedule --ramp 0 "$T/sites.yaml" >"$T/out" 2>"$T/err" 3>&- &
	track_pid $!
	wait_for has_records beat 2
	local phase
	phase=$(INTERVAL_MS=1000 phase_of beat)
	grep '"target":"beat"' "$T/out" | unix_ms |
		awk -v p="$phase" '$1 % 1000 != p { print "off phase: " $1; bad = 1 } END { exit bad }'
	# The hourly one waits for its phase (unless that is now).
	phase=$(INTERVAL_MS=3600000 phase_of hourly)
	local now
	now=$(($(date +%s%3N) % 3600000))
	if ((phase > now + 5000 || phase < now - 5000)); then
		! grep -q '"target":"hourly"' "$T/out"
	fi
	schedule --ramp soon "$T/sites.yaml"
	[ "$status" -eq 64 ]
	[[ "$stderr" == *"--ramp"* ]]
}

@test "schedule: 10,000 targets at 60s are spread evenly over the minute" {
	{
		echo "targets:"
		for i in $(seq 1 10000); do
			printf '  - {name: site-%d, url: "http://127.0.0.1:9/%d"}\n' "$i" "$i"
		done
	} | sites
	schedule --check "$T/sites.yaml"
	[ "$status" -eq 0 ]
	# The second of the minute each target is next due at: the phase.
	printf '%s\n' "${lines[@]:1}" | sed 's/.* next //' | cut -c18-19 |
		sort | uniq -c >"$T/per-second"
	# Every second of the minute has its share (~167), none a burst.
	[ "$(wc -l <"$T/per-second")" -eq 60 ]
	awk '$1 < 125 || $1 > 209 { print "second " $2 ": " $1; bad = 1 } END { exit bad }' \
		"$T/per-second"
}

# ---- signals --------------------------------------------------------------------

# count NAME: records of target NAME in $T/out so far.
count() {
	grep -c "\"target\":\"$1\"" "$T/out" || true
}

# more_than NAME N: more than N records of NAME in $T/out.
more_than() {
	[ "$(count "$1")" -gt "$2" ]
}

@test "schedule: SIGHUP reloads: a new target starts, a bad file keeps the old set" {
	sites <<-'YAML'
	defaults: {interval: 1s, timeout: 1s}
	targets:
	  - {name: first, url: "http://127.0.0.1:9/1"}
	YAML
	# --ramp 0: every tick on the phase (the first check is tested below).
	sm-schedule --ramp 0 "$T/sites.yaml" >"$T/out" 2>"$T/err" 3>&- &
	local pid=$!
	track_pid "$pid"
	wait_for grep -q '"target":"first"' "$T/out"

	printf '  - {name: second, url: "http://127.0.0.1:9/2"}\n' >>"$T/sites.yaml"
	kill -HUP "$pid"
	wait_for grep -q '"target":"second"' "$T/out"
	wait_for grep -q 'reloaded .*: 2 targets (1 new, 0 changed, 0 removed)' "$T/err"

	# A broken file is reported and the running set stays.
	cp "$T/sites.yaml" "$T/good.yaml"
	printf '  - {name: third, url: "ftp://127.0.0.1/"}\n' >>"$T/sites.yaml"
	kill -HUP "$pid"
	wait_for grep -q 'reload of .* failed; keeping the 2 current targets' "$T/err"
	grep -q "sites.yaml:5:24: field \"url\"" "$T/err"
	local n name
	wait_for more_than second "$(count second)"
	! grep -q '"target":"third"' "$T/out"

	# Removing a target stops it.
	printf 'defaults: {interval: 1s, timeout: 1s}\ntargets:\n  - {name: second, url: "http://127.0.0.1:9/2"}\n' >"$T/sites.yaml"
	kill -HUP "$pid"
	wait_for grep -q 'reloaded .*: 1 targets (0 new, 0 changed, 1 removed)' "$T/err"
	n=$(count first)
	wait_for more_than second "$(($(count second) + 1))"
	[ "$(count first)" -eq "$n" ]

	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ]
	# Through three reloads each target kept its rhythm: no tick twice, none
	# off its phase (a tick skipped on a stalled machine is no failure).
	for name in first second; do
		grep "\"target\":\"$name\"" "$T/out" | unix_ms |
			awk 'NR > 1 && ($1 - prev <= 0 || ($1 - prev) % 1000) { print "gap " $1 - prev; bad = 1 }
			     { prev = $1 } END { exit bad }'
	done
	# Every line is a whole record.
	jq -e . "$T/out" >/dev/null
}

# catches_hup PID: PID has its SIGHUP handler in place (SigCgt bit 0).
catches_hup() {
	local m
	m=$(awk '$1 == "SigCgt:" { print $2 }' "/proc/$1/status") && ((0x$m & 1))
}

@test "schedule: a reload loads beside the running schedule, which keeps its rhythm" {
	# 100,000 targets take a second or more to load: ticks go on meanwhile.
	awk 'BEGIN {
		print "targets:"
		print "  - {name: beat, url: \"http://127.0.0.1:9/\", interval: 2s, timeout: 1s}"
		for (i = 0; i < 100000; i++)
			printf "  - {name: s%d, url: \"http://127.0.0.1:9/%d\", interval: 1h}\n", i, i
	}' >"$T/sites.yaml"
	# --ramp 0: every tick of beat on its phase (the first check is
	# tested above).
	sm-schedule --ramp 0 "$T/sites.yaml" >"$T/out" 2>"$T/err" 3>&- &
	local pid=$!
	track_pid "$pid"
	# A SIGHUP during the first load is acted on once it is loaded.
	wait_for catches_hup "$pid"
	kill -HUP "$pid"
	WAIT_TIMEOUT=60 wait_for grep -q '"target":"beat"' "$T/out"
	WAIT_TIMEOUT=60 wait_for grep -q 'reloaded .*: 100001 targets' "$T/err"
	# SIGHUPs during a load: one more load follows, with the last file.
	kill -HUP "$pid"
	printf '  - {name: added, url: "http://127.0.0.1:9/added", interval: 2s, timeout: 1s}\n' >>"$T/sites.yaml"
	kill -HUP "$pid"
	kill -HUP "$pid"
	WAIT_TIMEOUT=60 wait_for grep -q '"target":"added"' "$T/out"
	grep -q 'reloaded .*: 100002 targets (1 new, 0 changed, 0 removed); loaded in [0-9]* ms, swapped in [0-9]* ms' "$T/err"
	# SIGTERM during a load: exit 0 all the same.
	kill -HUP "$pid"
	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ] || { cat "$T/err"; false; }
	# No tick of beat was skipped or moved while the loads went on.
	! grep -q skipped "$T/err"
	grep '"target":"beat"' "$T/out" | unix_ms |
		awk 'NR > 1 && $1 - prev != 2000 { print "gap " $1 - prev; bad = 1 }
		     { prev = $1 } END { exit bad }'
}

@test "schedule: SIGTERM and SIGINT stop it with exit 0" {
	sites <<<'targets: [{name: a, url: "http://127.0.0.1:9/", interval: 1s, timeout: 1s}]'
	local sig pid st
	for sig in TERM INT; do
		sm-schedule "$T/sites.yaml" >"$T/out" 2>"$T/err" 3>&- &
		pid=$!
		track_pid "$pid"
		# Its handlers are in place once it has emitted a record.
		wait_for grep -q '"target":"a"' "$T/out"
		kill -"$sig" "$pid"
		st=0
		wait "$pid" || st=$?
		[ "$st" -eq 0 ] || { echo "SIG$sig: status $st"; cat "$T/err"; false; }
	done
}

# ---- the stats line (--stats-interval) ------------------------------------------

# run_idle [ARG...]: run sm-schedule ARGs on no targets until it is up,
# then stop it; its stderr is in $T/err.
run_idle() {
	sites <<<'targets: []'
	# The last run's line must not satisfy the wait below: a SIGTERM
	# sent before the program handles it is lost and the wait hangs.
	rm -f "$T/err"
	sm-schedule "$@" "$T/sites.yaml" >/dev/null 2>"$T/err" 3>&- &
	local pid=$! st=0
	track_pid "$pid"
	wait_for grep -q 'no targets; waiting for SIGHUP' "$T/err"
	kill -TERM "$pid"
	wait "$pid" || st=$?
	[ "$st" -eq 0 ]
}

# nstats PATTERN: how many stats lines of $T/err match PATTERN (an ERE).
nstats() {
	grep -Ec "^sm-schedule: info: stats: $1\$" "$T/err" || true
}

# stats_ge N PATTERN: at least N stats lines match PATTERN (for wait_for).
stats_ge() {
	[ "$(nstats "$2")" -ge "$1" ]
}

@test "schedule: --stats-interval writes cumulative counters on stderr, on time even when idle" {
	# Due in 30 days at the earliest: only the stats clock wakes the loop.
	sites <<-'YAML'
	targets:
	  - {name: idle, url: "http://127.0.0.1:9/", interval: 30d, timeout: 1s}
	YAML
	sm-schedule --stats-interval 100ms "$T/sites.yaml" >"$T/out" 2>"$T/err" 3>&- &
	local pid=$!
	track_pid "$pid"
	wait_for stats_ge 3 'targets=1 emitted=0 skipped=0 reloads=0'

	# A reload adds a target due every second: the counters go on.
	printf '  - {name: beat, url: "http://127.0.0.1:9/b", interval: 1s, timeout: 1s}\n' >>"$T/sites.yaml"
	kill -HUP "$pid"
	wait_for grep -q '"target":"beat"' "$T/out"
	wait_for stats_ge 1 'targets=2 emitted=[1-9][0-9]* skipped=0 reloads=1'

	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ] || { cat "$T/err"; false; }
	# The last line has the final counts: every record written, and only
	# those, counted as emitted.
	[ "$(tail -n 1 "$T/err")" = \
	  "sm-schedule: info: stats: targets=2 emitted=$(grep -c . "$T/out") skipped=0 reloads=1" ] ||
		{ cat "$T/err"; wc -l "$T/out"; false; }
}

@test "schedule: SM_STATS_INTERVAL is the default of --stats-interval; a bad one is a usage error" {
	# Off by default: no stats line, not even at exit.
	run_idle
	[ "$(nstats '.*')" -eq 0 ]
	# On (a period longer than the run): just the last line, at exit.
	SM_STATS_INTERVAL=1h run_idle
	[ "$(nstats '.*')" -eq 1 ]
	[ "$(nstats 'targets=0 emitted=0 skipped=0 reloads=0')" -eq 1 ]
	# The option wins over the environment; 0 turns the line off.
	SM_STATS_INTERVAL=1h run_idle --stats-interval 0
	[ "$(nstats '.*')" -eq 0 ]
	run -64 sm-schedule --stats-interval bogus "$T/sites.yaml"
	[[ "$output" == *'--stats-interval: "bogus" is not a duration'* ]]
	run -64 sm-schedule --stats-interval -1s "$T/sites.yaml"
	SM_STATS_INTERVAL=bogus run -64 sm-schedule "$T/sites.yaml"
	[[ "$output" == *'SM_STATS_INTERVAL: "bogus"'* ]]
}

# ---- backpressure -------------------------------------------------------------------

@test "schedule: a blocked stdout skips ticks and says so instead of bunching them" {
	{
		echo "defaults: {interval: 1s, timeout: 1s}"
		echo "targets:"
		for i in $(seq 1 3000); do
			printf '  - {name: s%d, url: "http://127.0.0.1:9/%d"}\n' "$i" "$i"
		done
	} | sites
	# The reader does not read until sm-schedule has said it skipped ticks
	# (the pipe fills within a second), then reads for two seconds.
	local start=$SECONDS
	timeout -s TERM 30 sm-schedule --stats-interval 200ms "$T/sites.yaml" 2>"$T/err" | {
		WAIT_TIMEOUT=20 wait_for grep -q 'warning: skipped' "$T/err"
		timeout 2 cat || true
	} >"$T/out"
	local elapsed=$((SECONDS - start + 1))
	grep -Eq 'sm-schedule: warning: skipped [0-9]+ ticks that could not be written on time' "$T/err"
	# The stats line counts them too.
	grep -Eq '^sm-schedule: info: stats: targets=3000 emitted=[0-9]+ skipped=[1-9][0-9]* reloads=0$' "$T/err"
	# What did get through: whole records, none twice, and never more than
	# one per target per second (nothing bunched up after the stall).
	jq -e . "$T/out" >/dev/null
	[ "$(jq -r '"\(.target) \(.scheduled_at)"' "$T/out" | sort | uniq -d | wc -l)" -eq 0 ]
	jq -r .target "$T/out" | sort | uniq -c |
		awk -v max="$elapsed" '$1 > max { print "too many for " $2 ": " $1; bad = 1 } END { exit bad }'
}

@test "schedule: ticks are skipped and reported while stdout is blocked in the middle of a record" {
	# Records of 50 KB (a target record may take 64 KiB): the second one
	# fills the pipe (64 KiB) inside it, and the ticks that come due
	# meanwhile must still be skipped and said so, not wait for the reader.
	local body
	body=$(head -c 50000 /dev/zero | tr '\0' x)
	printf 'targets:\n  - {name: big, url: "http://127.0.0.1:9/", interval: 1s, timeout: 500ms, method: POST, body: "%s"}\n' \
		"$body" | sites
	timeout -s TERM 30 sm-schedule --ramp 0 "$T/sites.yaml" 2>"$T/err" | {
		WAIT_TIMEOUT=10 wait_for grep -q 'warning: skipped' "$T/err"
		timeout 2 cat >/dev/null || true
	}
	grep -Eq 'sm-schedule: warning: skipped [1-9][0-9]* ticks that could not be written on time' "$T/err"
}

# ---- the shipped example and the JSON Schema ------------------------------------

@test "schedule: examples/sites.yaml is valid" {
	schedule --check "$SM_TOP/examples/sites.yaml"
	[ "$status" -eq 0 ] || { echo "$stderr"; false; }
	[[ "${lines[0]}" == *"examples/sites.yaml: ok: "* ]]
}

@test "schedule: schema/sites.schema.json agrees with sm-schedule" {
	# JSON is YAML: one file for both validators.
	cat >"$T/good.yaml" <<-'EOF'
	{"defaults": {"interval": "1m", "timeout": "5s", "labels": {"env": "prod"}},
	 "targets": [
	  {"name": "a", "url": "https://127.0.0.1:9/", "expect_status": [200, "3xx", "301-308"],
	   "headers": {"X-A": "b"}, "tls_verify": false, "ip_version": 4, "labels": {"env": null}},
	  {"url": "http://${HOST}/", "timeout_ms": 2000, "method": "HEAD", "regex": "ok"}]}
	EOF
	HOST=127.0.0.1:9 schedule --check "$T/good.yaml"
	[ "$status" -eq 0 ] || { echo "$stderr"; false; }
	run -0 "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/sites.schema.json" \
		< <(jq -c . "$T/good.yaml")

	local bad
	for bad in '{"targets": [{"url": "http://127.0.0.1/", "timout": "5s"}]}' \
		'{"targets": [{"url": "ftp://127.0.0.1/"}]}' \
		'{"targets": [{"url": "http://127.0.0.1/", "expect_status": "200-"}]}' \
		'{"targets": [{"url": "http://127.0.0.1/", "interval": "soon"}]}' \
		'{"defaults": {"name": "x"}, "targets": []}' \
		'{"targets": [{"url": "http://127.0.0.1/", "timeout": "1s", "timeout_ms": 5}]}' \
		'{"targetz": []}'; do
		printf '%s\n' "$bad" >"$T/bad.yaml"
		run -78 sm-schedule --check "$T/bad.yaml"
		run -1 "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/sites.schema.json" <"$T/bad.yaml"
	done
}

# ---- hostile and careless sites.yaml (issue 13) -------------------------------

@test "schedule: an out-of-range value of every ranged key is refused at its position, in targets, defaults, NDJSON and a reload" {
	# interval out of its 100ms..31d range once freed the key it then read
	# (a use-after-free that ASan aborts on); every ranged key is tried.
	local kv n=0 want=()
	{
		printf 'targets:\n'
		for kv in 'interval: 50ms' 'interval: 40d' 'timeout_ms: 0' \
			'timeout: 2h' 'max_redirects: 51' 'max_body_bytes: 0' \
			'max_body_bytes: 1073741825' 'expect_status: 600' 'ip_version: 5'; do
			n=$((n + 1))
			printf '  - {name: t%d, url: "http://127.0.0.1:9/", %s}\n' "$n" "$kv"
			want+=("sites.yaml:$((n + 1)):")
		done
	} | sites
	refused "$T/sites.yaml" "${want[@]}" "sites.yaml: 9 errors"
	[[ "$stderr" == *"sites.yaml:2:"*"field \"interval\" must be between 100ms and 31d"* ]]
	[[ "$stderr" != *AddressSanitizer* ]]

	printf 'defaults: {interval: 50ms}\ntargets:\n  - url: http://127.0.0.1:9/\n' | sites
	refused "$T/sites.yaml" "sites.yaml:1:22: field \"interval\" must be between 100ms and 31d"

	printf '%s\n' '{"url":"http://127.0.0.1:9/a","interval":"50ms"}' \
		'{"url":"http://127.0.0.1:9/b","interval":9223372036854775807}' >"$T/t.ndjson"
	run --separate-stderr sm-schedule --check -f "$T/t.ndjson"
	[ "$status" -eq 78 ]
	[[ "$stderr" == *"t.ndjson:1:42: field \"interval\" must be between 100ms and 31d"* ]]
	[[ "$stderr" == *"t.ndjson:2:42: field \"interval\" must be a duration"* ]]
	[[ "$stderr" != *"runtime error"* && "$stderr" != *AddressSanitizer* ]]

	# The same through a SIGHUP: the running set stays, the process lives.
	printf 'targets:\n  - {name: a, url: "http://127.0.0.1:9/", interval: 1s, timeout: 1s}\n' | sites
	sm-schedule "$T/sites.yaml" >"$T/out" 2>"$T/err" &
	local pid=$!
	track_pid "$pid"
	wait_for grep -q '"target":"a"' "$T/out"
	printf 'targets:\n  - {name: a, url: "http://127.0.0.1:9/", interval: 50ms}\n' | sites
	kill -HUP "$pid"
	wait_for grep -q 'reload of .* failed; keeping the 1 current targets' "$T/err"
	grep -q 'sites.yaml:2:53: field "interval" must be between 100ms and 31d' "$T/err"
	kill -0 "$pid"
	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	[ "$st" -eq 0 ]
}

@test "schedule: nesting deeper than 64 levels is refused where it starts, before the parser spends its time" {
	# 300,000 open brackets once kept libyaml busy for minutes.
	/usr/bin/python3 -c 'print("targets: " + "[" * 300000 + "]" * 300000)' >"$T/deep.yaml"
	run --separate-stderr timeout 20 sm-schedule --check "$T/deep.yaml"
	[ "$status" -eq 78 ]
	[[ "$stderr" == *"deep.yaml:1:73: nested more than 64 levels deep"* ]]
	# Block and flow mappings in a target's labels, and through an alias.
	/usr/bin/python3 -c 'print("targets:\n  - url: http://127.0.0.1:9/\n    labels: " + "{a: " * 100000 + "x" + "}" * 100000)' >"$T/deep2.yaml"
	run --separate-stderr timeout 20 sm-schedule --check "$T/deep2.yaml"
	[ "$status" -eq 78 ]
	[[ "$stderr" == *"deep2.yaml:3:257: nested more than 64 levels deep"* ]]
	/usr/bin/python3 -c 'print("x-a: &a " + "[" * 40 + "]" * 40 + "\nx-b: &b " + "[" * 30 + "*a" + "]" * 30 + "\ntargets: []")' >"$T/deep3.yaml"
	refused "$T/deep3.yaml" "deep3.yaml:2:39: nested more than 64 levels deep once alias \"*a\" is expanded"
}

@test "schedule: 100,000 targets without aliases load in bounded memory" {
	# ~10 values each: 1.1 million nodes, which the alias-expansion guard
	# once counted and refused.
	/usr/bin/python3 - "$T/big.yaml" <<-'PY'
	import sys
	with open(sys.argv[1], "w") as f:
	    f.write("defaults: {interval: 1m, timeout: 5s}\ntargets:\n")
	    for i in range(100000):
	        f.write("  - {name: t%d, url: 'http://127.0.0.1:9/%d', method: HEAD, "
	                "max_redirects: 2, expect_status: [200, 3xx], "
	                "labels: {team: t%d, tier: '1'}}\n" % (i, i, i % 7))
	PY
	run --separate-stderr /usr/bin/time -f 'rss_kib %M' sm-schedule --check "$T/big.yaml"
	[ "$status" -eq 0 ] || { echo "$stderr" | head -5; false; }
	[[ "${lines[0]}" == *"big.yaml: ok: 100000 targets"* ]]
	local rss
	rss=$(awk '$1 == "rss_kib" { print $2 }' <<<"$stderr")
	echo "peak RSS $rss KiB"
	# (ASan's shadow memory would say nothing about the loader)
	if ! ldd "$(command -v sm-schedule)" | grep -q libasan; then
		((rss < 100 * 1024))
	fi
}

@test "schedule: errors of the YAML reader (invalid UTF-8, control characters, NUL) have line:column" {
	printf 'targets:\n  - url: http://127.0.0.1:9/\n    labels: {a: "x\377y"}\n' >"$T/utf8.yaml"
	refused "$T/utf8.yaml" "utf8.yaml:3:19: invalid leading UTF-8 octet (byte 0xFF)"
	printf 'targets:\n  - url: http://127.0.0.1:9/\n    labels: {a: "\303\251x\001y"}\n' >"$T/ctl.yaml"
	refused "$T/ctl.yaml" "ctl.yaml:3:20: control characters are not allowed (U+0001)"
	printf 'targets:\n\r\n  - url: http://127.0.0.1:9/ \000\n' >"$T/nul.yaml"
	refused "$T/nul.yaml" "nul.yaml:3:30: control characters are not allowed (U+0000)"
	# Far into a file: past what libyaml holds at once.
	{
		printf 'targets:\n'
		for i in $(seq 3000); do printf '  - url: http://127.0.0.1:9/%d\n' "$i"; done
		printf '  - url: http://127.0.0.1:9/\377\n'
	} >"$T/far.yaml"
	refused "$T/far.yaml" "far.yaml:3002:29: invalid leading UTF-8 octet"
	[ "${#lines[@]}" -eq 0 ]
	[ "$(grep -c . <<<"$stderr")" -eq 1 ]
}

@test "schedule: what --check accepts, sm-check accepts: edge values of every string field travel or are refused at their position" {
	# Each candidate is one target's extra keys.  Those --check accepts go
	# through --once into sm-check --strict, which exits 65 on the first
	# record it refuses; each must give one result.
	local big60 big70 c k=0 accepted=0
	big60=$(head -c 60000 /dev/zero | tr '\0' 'b')
	big70=$(head -c 70000 /dev/zero | tr '\0' 'b')
	local -a cands=(
		'labels: {a: "x\x01\x1f\x7fy", "": "", "k\tv": "\u2028\U0001F600"}'
		'headers: {X-A: "tab\there \x7f \x01 é"}'
		'body: "line1\nline2\r\n\x01"'
		"body: \"$big60\""
		'url: "HTTP://u:p%40ss@127.0.0.1:9/a?b=%00&c=é#frag"'
		'url: "http://[::1]:9/"'
		'name: "n\x01\u00e9 \\ \""'
		'method: PROPFIND'
		'expect_status: ["1xx", 599, "200-204"]'
		'regex: "(?i)\\bok\\b"'
		'regex_absent: "é+"'
		'ca_file: /nonexistent/ca.pem'
		'timeout_ms: 3600000'
		'max_body_bytes: 1073741824'
		'ip_version: "6"'
		"labels: {$(seq -s, -f 'k%g: v' 500)}"
	)
	for c in "${cands[@]}"; do
		k=$((k + 1))  # (bats' run sets i)
		{
			printf 'targets:\n  - interval: 2h\n    %s\n' "$c"
			[[ "$c" == name:* ]] || printf '    name: t%d\n' "$k"
			[[ "$c" == url:* ]] || printf '    url: http://127.0.0.1:9/\n'
		} >"$T/c$k.yaml"
		run --separate-stderr sm-schedule --check "$T/c$k.yaml"
		[ "$status" -eq 0 ] || { echo "refused: $c: $stderr"; false; }
		sm-schedule --once "$T/c$k.yaml" >>"$T/all.ndjson"
		accepted=$((accepted + 1))
	done
	run --separate-stderr sm-check --strict -c 16 <"$T/all.ndjson"
	[ "$status" -eq 0 ] || { echo "sm-check: $stderr"; false; }
	[ "$(grep -c . <<<"$output")" -eq "$accepted" ]
	[[ "$stderr" != *"error:"* ]]

	# What cannot travel is refused by --check, at the value.
	printf 'targets:\n  - url: http://127.0.0.1:9/\n    labels: {a: "x\\0y"}\n    headers: {X-A: "b\\0c"}\n    body: "\\0"\n' >"$T/nul.yaml"
	refused "$T/nul.yaml" \
		"nul.yaml:3:13: field \"labels\": value of \"a\" must not contain NUL" \
		"nul.yaml:4:14: field \"headers\": value of \"X-A\" must not contain NUL" \
		"nul.yaml:5:11: field \"body\" must not contain NUL"
	printf 'targets:\n  - url: http://127.0.0.1:9/\n    labels: {"a\\0b": x}\n' >"$T/nulkey.yaml"
	refused "$T/nulkey.yaml" "nulkey.yaml:3:14: a key must not contain NUL"
	printf 'targets:\n  - url: http://127.0.0.1:9/\n    body: "%s"\n' "$big70" >"$T/big.yaml"
	refused "$T/big.yaml" "big.yaml:2:5: target \"http://127.0.0.1:9/\": its record would be 70"
	[[ "$stderr" == *"more than the 65536 a target record may take"* ]]
	# The same from NDJSON records.
	printf '{"url":"http://127.0.0.1:9/","labels":{"a":"x\\u0000"}}\n' >"$T/nul.ndjson"
	run --separate-stderr sm-schedule --check -f "$T/nul.ndjson"
	[ "$status" -eq 78 ]
	[[ "$stderr" == *"nul.ndjson:1:"* ]]
}

@test "schedule: a target name of 1024 bytes (the maximum) is stored in PostgreSQL; a longer one is refused by --check at its value" {
	# PostgreSQL's btree indexes on the name refuse index rows over 2704
	# bytes; a name that PostgreSQL cannot compress (random base64 here)
	# reaches that at about 2680 bytes, less the probe's name in the
	# outages and rollups keys.  1024 bytes is the documented maximum.
	local max euro
	new_db
	max=$(head -c 1024 /dev/urandom | base64 -w0 | head -c 1024)
	[ "${#max}" -eq 1024 ]
	printf 'targets:\n  - name: "%s"\n    url: "%s"\n    labels: {team: web}\n' \
		"$max" "$CLOSED_URL" >"$T/max.yaml"
	schedule --check "$T/max.yaml"
	[ "$status" -eq 0 ] || { echo "$stderr"; false; }
	sm-schedule --once "$T/max.yaml" | sm-check --strict | sm-pg-write --strict >/dev/null
	psql_q "SELECT sm_rollup_fold()" >/dev/null
	[ "$(psql_q "SELECT target FROM checks")" = "$max" ]
	[ "$(psql_q "SELECT octet_length(target) FROM checks")" = 1024 ]
	[ "$(psql_q "SELECT count(*) FROM targets WHERE target = '$max'")" = 1 ]
	[ "$(psql_q "SELECT count(*) FROM outages WHERE target = '$max'")" = 1 ]
	[ "$(psql_q "SELECT count(*) FROM rollup_hourly WHERE target = '$max'")" = 1 ]

	# One byte more; a name counts bytes, not characters (342 x U+20AC
	# is 1026 bytes); a target without a name is named after its url.
	euro=$(printf '\u20ac%.0s' $(seq 342))
	printf 'targets:\n  - name: "%sx"\n    url: http://127.0.0.1:9/\n  - name: "%s"\n    url: http://127.0.0.1:9/a\n  - url: "http://127.0.0.1:9/%s"\n  - name: fine\n    url: "http://127.0.0.1:9/%s"\n' \
		"$max" "$euro" "$max" "$max" >"$T/over.yaml"
	refused "$T/over.yaml" \
		'over.yaml:2:11: field "target" is 1025 bytes, more than the 1024 a name may take' \
		'over.yaml:4:11: field "target" is 1026 bytes, more than the 1024 a name may take' \
		'over.yaml:6:10: field "url" names the target, and at 1043 bytes it is longer than the 1024 a name may take'
	[ "$(grep -c 'error:' <<<"$stderr")" -eq 4 ] # three, and the count
	# The same from NDJSON, and sm-check refuses such a record too.
	printf '{"target":"%sx","url":"http://127.0.0.1:9/"}\n' "$max" >"$T/over.ndjson"
	schedule --check -f "$T/over.ndjson"
	[ "$status" -eq 78 ]
	[[ "$stderr" == *'over.ndjson:1:11: field "target" is 1025 bytes'* ]]
	run --separate-stderr sm-check --strict <"$T/over.ndjson"
	[ "$status" -eq 65 ]
	[[ "$stderr" == *'field "target" is 1025 bytes'* ]]
	# The JSON Schemas say so (in characters: all ASCII here).
	local n
	for n in "$max" "${max}x"; do
		jq -nc --arg n "$n" '{targets: [{name: $n, url: "http://127.0.0.1:9/"}]}' >"$T/s.json"
		run "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/sites.schema.json" <"$T/s.json"
		[ "$status" -eq $((${#n} > 1024)) ]
		jq -nc --arg n "$n" '{v: 1, target: $n, url: "http://127.0.0.1:9/"}' >"$T/r.json"
		run "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/target.schema.json" <"$T/r.json"
		[ "$status" -eq $((${#n} > 1024)) ]
	done
}

@test "schedule: YAML 1.2 core forms: 0x and 0o integers, !!str and !!int tags, << merges in defaults, headers and labels" {
	sites <<-'YAML'
	x-h: &h {X-Common: "1", X-Over: base}
	x-l: &l {team: web}
	defaults:
	  <<: {timeout: 2s}
	targets:
	  - name: !!str 0x10
	    url: http://127.0.0.1:9/
	    max_redirects: 0x0A
	    max_body_bytes: 0o777
	    timeout_ms: !!int "1500"
	    expect_status: [0xC8, !!str 3xx]
	    body: !!str ~
	    headers: {<<: *h, X-Over: mine}
	    labels:
	      <<: [*l, {tier: "2", team: other}]
	      id: !!str 007
	      note: !!str null
	  - name: b
	    url: http://127.0.0.1:9/b
	YAML
	schedule --once "$T/sites.yaml"
	[ "$status" -eq 0 ] || { echo "$stderr"; false; }
	json_eq "$(head -n 1 <<<"$output" | jq -c 'del(.scheduled_at)')" \
		'{"v":1,"target":"0x10","url":"http://127.0.0.1:9/","body":"~","timeout_ms":1500,
		  "max_redirects":10,"max_body_bytes":511,"expect_status":[200,"3xx"],
		  "headers":{"X-Common":"1","X-Over":"mine"},
		  "labels":{"team":"web","tier":"2","id":"007","note":"null"}}'
	[ "$(tail -n 1 <<<"$output" | jq -c .timeout_ms)" = 2000 ]

	# What a tag or the core schema refuses is said at the value.
	sites <<-'YAML'
	targets:
	  - url: http://127.0.0.1:9/
	    max_redirects: !!int ten
	    timeout_ms: 0x8000000000000000
	    max_body_bytes: .inf
	    labels: !!set {a: b}
	    '<<': {quoted: is a key}
	YAML
	refused "$T/sites.yaml" \
		"sites.yaml:3:20: \"ten\" is not an integer" \
		"sites.yaml:4:17: 0x8000000000000000 is too large for an integer" \
		"sites.yaml:5:21: .inf is not a finite number" \
		"sites.yaml:6:13: tag \"tag:yaml.org,2002:set\" does not fit a mapping" \
		"sites.yaml:7:5: unknown key \"<<\""
}

@test "schedule: an empty or null targets is refused; targets: [] is accepted with a warning" {
	local t
	for t in 'targets:' 'targets: ~' $'defaults: {interval: 1m}\ntargets:\n# - url: http://127.0.0.1:9/'; do
		printf '%s\n' "$t" | sites
		refused "$T/sites.yaml" "\"targets\" is empty: list the targets (write \"targets: []\" for none)"
	done
	printf 'targets: []\n' | sites
	schedule --check "$T/sites.yaml"
	[ "$status" -eq 0 ]
	[[ "$stderr" == *"warning: $T/sites.yaml:1:10: \"targets\" is an empty list: nothing will be checked"* ]]
}

@test "schedule: defaults after targets still apply (the file is read again)" {
	sites <<-'YAML'
	targets:
	  - {name: a, url: "http://127.0.0.1:9/a", labels: &lab {team: web}}
	  - {name: b, url: "http://127.0.0.1:9/b", timeout: 1s}
	  - {name: c, url: "http://127.0.0.1:9/c", interval: 5s}
	defaults:
	  labels: *lab
	  interval: 3s
	  timeout: 2s
	YAML
	schedule --once "$T/sites.yaml"
	[ "$status" -eq 0 ] || { echo "$stderr"; false; }
	[ "$(jq -r '"\(.target):\(.timeout_ms // 10000):\(.labels.team)"' <<<"$output" | paste -sd,)" = \
	  "a:2000:web,b:1000:web,c:2000:web" ]
	# An error that depends on the defaults is found, and said once.
	printf '  - {name: d, url: "http://127.0.0.1:9/d", interval: 1s}\n' >"$T/extra"
	sed -i '4r '"$T/extra" "$T/sites.yaml"
	refused "$T/sites.yaml" "sites.yaml:5:54: interval 1s is shorter than timeout 2s"
	[ "$(grep -c 'error' <<<"$stderr")" -eq 1 ]
}

@test "schedule: a sites.yaml over 256 MiB is refused before it is parsed" {
	printf 'targets: []\n' >"$T/huge.yaml"
	truncate -s 300M "$T/huge.yaml" # (sparse: nothing is written)
	run --separate-stderr timeout 10 sm-schedule --check "$T/huge.yaml"
	[ "$status" -eq 78 ]
	[[ "$stderr" == *"huge.yaml:1:1: the file is larger than 256 MiB"* ]]
}

@test "schedule: '<<' merges only mappings, in target fields and in alerts alike; merged keys yield to those given" {
	cat >"$T/bad.yaml" <<-'EOF'
	x-num: &num 3
	defaults:
	  <<: *num
	targets:
	  - url: http://127.0.0.1:9/
	EOF
	refused "$T/bad.yaml" 'bad.yaml:1:8: "<<" merges mappings only'
	cat >"$T/bad.yaml" <<-'EOF'
	targets:
	  - url: http://127.0.0.1:9/
	    alerts:
	      <<: [{quorum: 1}, 3]
	EOF
	refused "$T/bad.yaml" 'bad.yaml:4:25: "<<" merges mappings only'
	[ "$(grep -c 'merges mappings only' <<<"$stderr")" -eq 1 ]

	# Given first, then the first merged mapping, then the next: down
	# after 2 failures (given), up after 3 successes (*a's, not *b's 4).
	cat >"$T/good.yaml" <<-'EOF'
	x-a: &a {failure_threshold: 5, success_threshold: 3}
	x-b: &b {failure_threshold: 7, success_threshold: 4}
	targets:
	  - name: t
	    url: http://127.0.0.1:9/
	    alerts:
	      failure_threshold: 2
	      <<: [*a, *b]
	EOF
	run -0 sm-schedule --check "$T/good.yaml"
	local i ok
	for i in 1 2 3 4 5; do
		ok=$([ "$i" -le 2 ] && echo false || echo true)
		jq -nc --argjson i "$i" --argjson ok "$ok" '{v: 1,
			id: "01a20aa3-3d80-700b-8000-00000000000\($i)", target: "t",
			url: "http://127.0.0.1:9/", probe: "p",
			started_at: "2026-01-01T00:0\($i):00Z", ok: $ok,
			status: (if $ok then 200 else null end),
			error_kind: (if $ok then null else "connect" end),
			duration_ms: 1}'
	done >"$T/results"
	run -0 --separate-stderr sm-alert "$T/good.yaml" <"$T/results"
	[ "$(jq -r '"\(.event) \(.at)"' <<<"$output")" = "down 2026-01-01T00:02:00.000Z
up 2026-01-01T00:05:00.000Z" ]
}
