#!/usr/bin/env bats
# sm-alert: incident events from result records.  Most tests feed result
# records with chosen started_at values (sm-alert takes time from the
# records); a few run the real pipeline: sm-check from three probe
# locations against the scripted server, through the dev broker and
# sm-kafka-sub --ack.

load helpers

bats_require_minimum_version 1.5.0

FAST_GROUP=(-X session.timeout.ms=3000 -X heartbeat.interval.ms=500)

# 2025-11-24T16:00:00Z: the records' time 0.
BASE=1764000000
NREC=0

# res TARGET PROBE SECONDS OK [STATUS] [DURATION_MS]: one result record,
# started SECONDS after BASE.  Ids are unique per test.
res() {
	local t id
	NREC=$((NREC + 1))
	t=$(date -u -d "@$((BASE + $3))" +%Y-%m-%dT%H:%M:%S.000Z)
	id=$(printf '01900000-0000-7000-8000-%012x' "$NREC")
	if [ "$4" = 1 ]; then
		printf '{"v":1,"id":"%s","target":"%s","url":"http://x/","labels":{},"probe":"%s","scheduled_at":null,"started_at":"%s","ok":true,"status":200,"error_kind":null,"error":null,"duration_ms":%s}\n' \
			"$id" "$1" "$2" "$t" "${6:-12.5}"
	else
		printf '{"v":1,"id":"%s","target":"%s","url":"http://x/","labels":{},"probe":"%s","scheduled_at":null,"started_at":"%s","ok":false,"status":%s,"error_kind":"http_status","error":"HTTP %s","duration_ms":3.5}\n' \
			"$id" "$1" "$2" "$t" "${5:-500}" "${5:-500}"
	fi
}

# at SECONDS: the RFC 3339 text of BASE + SECONDS.
at() {
	date -u -d "@$((BASE + $1))" +%Y-%m-%dT%H:%M:%S.000Z
}

# rounds TARGET PATTERN [PROBES] [STEP]: one result per probe per
# character of PATTERN (1 ok, 0 failing), round i at i*STEP seconds.
rounds() {
	local i c p step=${4:-60}
	for ((i = 0; i < ${#2}; i++)); do
		c=${2:i:1}
		for p in ${3:-a b c}; do
			res "$1" "$p" $((i * step)) "$c"
		done
	done
}

sites() {
	printf 'defaults:\n  interval: 60s\n%s\ntargets:\n  - name: web\n    url: http://web.example/\n    labels: {team: a}\n' "${1:-}" >"$T/sites.yaml"
}

# alert [ARGS]: sm-alert over $T/in with $T/sites.yaml; events in $output.
alert() {
	run -0 --separate-stderr sm-alert "$@" "$T/sites.yaml" <"$T/in"
	printf '%s\n' "$output" >"$T/events"
	! grep -q '"event"' "$T/events" ||
		grep '"event"' "$T/events" | "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/event.schema.json"
}

# summary: one "event target since at locations" line per event.
summary() {
	jq -r '[.event, .target, .since, .at, (.locations | join(","))] | join(" ")' "$T/events"
}

@test "alert: lib's event_validate (tests/unit/test_event)" {
	run -0 "$SM_TOP/tests/unit/test_event"
	! grep -q '^not ok' <<<"$output"
}

@test "alert: 200->500->200 from 3 locations: down after failure_threshold at quorum, up after success_threshold, stable ids" {
	sites
	# rounds 2..5 fail everywhere; location c also fails in round 1
	{
		res web a 0 1; res web b 0 1; res web c 0 1
		res web a 60 1; res web b 60 1; res web c 60 0
		for i in 2 3 4 5; do for p in a b c; do res web $p $((i * 60)) 0; done; done
		for i in 6 7 8; do for p in a b c; do res web $p $((i * 60)) 1; done; done
	} >"$T/in"
	alert
	run -0 summary
	# c's streak started at 60 s; a and b reach 3 failures at 240 s: a
	# alone is not a quorum (c is down since 180 s: a is the second)
	[ "${lines[0]}" = "down web $(at 60) $(at 240) a,c" ]
	[ "${lines[1]}" = "up web $(at 60) $(at 420) a,b,c" ]
	[ "${#lines[@]}" -eq 2 ]
	run -0 jq -r '.incident' "$T/events"
	[ "${lines[0]}" = "${lines[1]}" ]
	run -0 jq -r '.id' "$T/events"
	[[ "${lines[0]}" == */down ]] && [[ "${lines[1]}" == */up ]]
	run -0 jq -c '.reason' <(head -1 "$T/events")
	json_eq "$output" '{"error_kind":"http_status","error":"HTTP 500","status":500}'
	run -0 jq -c '[.url, .labels, .locations_total, (.results | length)]' <(head -1 "$T/events")
	json_eq "$output" '["http://web.example/",{"team":"a"},3,2]'
	# The same input gives the same ids (they come from the results).
	cp "$T/events" "$T/events1"
	alert
	cmp "$T/events" "$T/events1"
}

@test "alert: alerts: false turns a target's alerting off, in defaults or in the target (sm-alert starts, no event)" {
	# A bare false was once refused by the rules' interning (exit 70,
	# "out of memory") before any line was read.
	{ for i in 0 1 2 3 4 5; do for p in a b c; do res web $p $((i * 60)) 0; done; done; } >"$T/in"
	sites "  alerts: false"
	alert
	[ -z "$output" ]
	printf 'targets:\n  - name: web\n    url: http://web.example/\n    alerts: false\n  - name: other\n    url: http://other.example/\n' >"$T/sites.yaml"
	sed 's/"target":"web"/"target":"other"/' "$T/in" >>"$T/in2"
	cat "$T/in2" >>"$T/in"
	alert
	run -0 summary
	[ "${#lines[@]}" -eq 1 ]
	[ "${lines[0]}" = "down other $(at 0) $(at 120) a,b" ]
}

@test "alert: one location failing alone makes no down at the default quorum; quorum: 1 alerts from it" {
	sites
	{ for i in 0 1 2 3 4 5; do res web a $((i * 60)) 0; res web b $((i * 60)) 1; res web c $((i * 60)) 1; done; } >"$T/in"
	alert
	[ -z "$output" ]
	sites "  alerts: {quorum: 1}"
	alert
	run -0 summary
	[ "${lines[0]}" = "down web $(at 0) $(at 120) a" ]
	[ "${#lines[@]}" -eq 1 ]
	# Two locations of three: the majority.
	sites
	{ for i in 0 1 2 3; do res web a $((i * 60)) 0; res web b $((i * 60)) 0; res web c $((i * 60)) 1; done; } >"$T/in"
	alert
	run -0 summary
	[ "${lines[0]}" = "down web $(at 0) $(at 120) a,b" ]
}

@test "alert: a location that stopped reporting counts neither up nor down in the quorum" {
	sites
	# a and b fail, c is fine, d reported once (ok) and went silent: down
	# once d is past stale_after (3 x 60 s), 2 of the 3 reporting
	{ res web d 0 1; for i in 0 1 2 3 4 5; do
		res web a $((i * 60)) 0; res web b $((i * 60)) 0; res web c $((i * 60)) 1
	done; } >"$T/in"
	alert
	run -0 summary
	# d's silence is its own event (stale, the whole location), not a vote
	[ "${lines[0]}" = "down web $(at 0) $(at 240) a,b" ]
	[ "${lines[1]}" = "stale * $(at 0) $(at 180) d" ]
	[ "${#lines[@]}" -eq 2 ]
	# d is down (3 failures) and goes silent, then a fails: 1 of the 2
	# reporting is no majority (with d counted, 2 of 3 would be)
	{ for i in 0 1 2 3 4 5 6 7; do
		[ $i -gt 2 ] || res web d $((i * 60)) 0
		res web a $((i * 60)) $((i < 4)); res web b $((i * 60)) 1
	done; } >"$T/in"
	alert
	run -0 summary
	[ "${lines[0]}" = "stale * $(at 120) $(at 300) d" ]
	[ "${#lines[@]}" -eq 1 ]
}

@test "alert: results out of order or twice change nothing" {
	sites
	{ rounds web 1100011; } >"$T/ordered"
	cp "$T/ordered" "$T/in"
	alert
	cp "$T/events" "$T/want"
	[ "$(wc -l <"$T/want")" -eq 2 ]
	# every record twice, and an old success after the failures began
	{ while read -r l; do echo "$l"; echo "$l"; done <"$T/ordered"
	} >"$T/in"
	alert
	cmp "$T/events" "$T/want"
	{ head -12 "$T/ordered"; sed -n 1,3p "$T/ordered"; tail -n +13 "$T/ordered"; } >"$T/in"
	alert
	cmp "$T/events" "$T/want"
}

@test "alert: a silent location is one stale event, not one per target and no down; its return resolves it" {
	printf 'defaults:\n  interval: 60s\ntargets:\n' >"$T/sites.yaml"
	for t in w1 w2 w3; do printf '  - {name: %s, url: "http://%s.example/"}\n' $t $t >>"$T/sites.yaml"; done
	{
		for i in $(seq 0 9); do
			for t in w1 w2 w3; do
				for p in a b c; do
					# c stops after round 2 and comes back at round 8
					if [ $p = c ] && [ $i -gt 2 ] && [ $i -lt 8 ]; then continue; fi
					res $t $p $((i * 60)) 1
				done
			done
		done
	} >"$T/in"
	alert
	run -0 jq -c '[.event, .target, .locations, .detail.location, .resolution]' "$T/events"
	[ "${lines[0]}" = '["stale","*",["c"],"c",null]' ]
	[ "${lines[1]}" = '["resolved","*",["c"],"c","recovered"]' ]
	[ "${#lines[@]}" -eq 2 ]
	run -0 jq -r '.at' <(head -1 "$T/events")
	# last seen at 120 s, stale after 3 x 60 s
	[ "$output" = "$(at 300)" ]
	run -0 jq -r .incident "$T/events"
	[ "${lines[0]}" = "${lines[1]}" ]
	# A location that went on reporting other targets: stale for that one.
	{ for i in $(seq 0 9); do for t in w1 w2 w3; do for p in a b c; do
		[ $t = w2 ] && [ $p = b ] && [ $i -gt 1 ] && continue
		res $t $p $((i * 60)) 1; done; done; done; } >"$T/in"
	alert
	run -0 jq -c '[.event, .target, .locations, .since, .at]' "$T/events"
	[ "${lines[0]}" = "[\"stale\",\"w2\",[\"b\"],\"$(at 60)\",\"$(at 240)\"]" ]
	[ "${#lines[@]}" -eq 1 ]
}

# v2_checkpoint FILE: rewrite sm-alert's checkpoint FILE in format 2 (its
# header without the watermark and the locations).
v2_checkpoint() {
	/usr/bin/python3 - "$1" <<-'EOF'
	import struct, sys
	def fnv(b, h=0xcbf29ce484222325):
	    for c in b:
	        h = ((h ^ c) * 0x100000001b3) & 0xffffffffffffffff
	    return h
	d = open(sys.argv[1], "rb").read()
	magic = b"sm-alert checkpoint 3\n"
	assert d.startswith(magic)
	hlen = struct.unpack_from("<I", d, len(magic))[0]
	p = len(magic) + 4 + 16
	n = struct.unpack_from("<I", d, p)[0]
	p += 4
	for _ in range(n):
	    tl = struct.unpack_from("<I", d, p)[0]
	    p += 4 + tl + 4 + 8
	head = b"sm-alert checkpoint 2\n" + struct.pack("<I", p + 8) + d[len(magic) + 4:p]
	head += struct.pack("<Q", fnv(head))
	out = head + d[hlen:-8]
	open(sys.argv[1], "wb").write(out + struct.pack("<Q", fnv(out)))
	EOF
}

@test "alert: a checkpoint of format 2 is read: a silent location announced before the upgrade is closed after it, under its id" {
	printf 'defaults:\n  interval: 60s\ntargets:\n' >"$T/sites.yaml"
	for t in w1 w2 w3; do printf '  - {name: %s, url: "http://%s.example/"}\n' $t $t >>"$T/sites.yaml"; done
	for i in $(seq 0 9); do for t in w1 w2 w3; do for p in a b c; do
		if [ $p = c ] && [ $i -gt 2 ] && [ $i -lt 8 ]; then continue; fi
		res $t $p $((i * 60)) 1
	done; done; done >"$T/all"
	cp "$T/all" "$T/in"
	alert
	cp "$T/events" "$T/want"
	# rounds 0-6 (27 + 24 lines): c's silence is announced
	head -n 51 "$T/all" >"$T/in"
	alert -S "$T/state"
	[ "$(jq -r .event "$T/events")" = stale ]
	cp "$T/events" "$T/got"
	v2_checkpoint "$T/state"
	tail -n +52 "$T/all" >"$T/in"
	alert -S "$T/state"
	[ "$(jq -r .event "$T/events")" = resolved ]
	cat "$T/events" >>"$T/got"
	diff "$T/got" "$T/want"
}

@test "alert: reminder every remind_every while down, numbered in the id" {
	sites "  alerts: {remind_every: 5m, failure_threshold: 1}"
	rounds web 00000000000011 "a" >"$T/in"
	alert
	run -0 jq -r '.id | sub("^[0-9a-f]{32}/"; "")' "$T/events"
	[ "$(echo $output)" = "down reminder/1 reminder/2 up" ]
	run -0 jq -r .at "$T/events"
	[ "${lines[1]}" = "$(at 300)" ]
	[ "${lines[2]}" = "$(at 600)" ]
	# --now: the timers run at the end of the input too.
	sites "  alerts: {remind_every: 5m, failure_threshold: 1, stale_after: 1h}"
	rounds web 000 "a" >"$T/in"
	alert --now "$(at 700)"
	run -0 jq -r '.id | sub("^[0-9a-f]{32}/"; "")' "$T/events"
	[ "$(echo $output)" = "down reminder/2" ]
}

@test "alert: maintenance: no events inside a window; a target still down alerts at its end; recurring in Europe/Berlin" {
	sites "  alerts:
    maintenance:
      - {start: $(at 100), end: $(at 400)}"
	# down from 120 s (inside), still down after 400 s
	rounds web 11000000 >"$T/in"
	alert
	run -0 summary
	[ "${lines[0]}" = "down web $(at 120) $(at 420) a,b,c" ]
	[ "${#lines[@]}" -eq 1 ]
	# down and up again inside the window: nothing at all
	rounds web 1100111111 >"$T/in"
	sites "  alerts:
    maintenance:
      - {start: $(at 100), end: $(at 600)}"
	alert
	[ -z "$output" ]
	# BASE is Monday 2025-11-24 16:00 UTC = 17:00 in Berlin (CET)
	sites "  alerts:
    maintenance:
      - {days: [mon], at: \"17:02\", duration: 5m, tz: Europe/Berlin}"
	rounds web 11000000 >"$T/in"
	alert
	run -0 summary
	[ "${lines[0]}" = "down web $(at 120) $(at 420) a,b,c" ]
	# the same hour in UTC is not a window on that day
	sites "  alerts:
    maintenance:
      - {days: [mon], at: \"17:02\", duration: 5m}"
	alert
	run -0 summary
	[ "${lines[0]}" = "down web $(at 120) $(at 240) a,b" ]
}

# cert_res PROBE SECONDS NOT_BEFORE_S NOT_AFTER_S: an https result with a
# leaf certificate valid from/to those offsets.
cert_res() {
	res web "$1" "$2" 1 | jq -c --arg nb "$(at "$3")" --arg na "$(at "$4")" \
		'. + {tls: {version: "TLSv1.3", cert_not_before: $nb, cert_not_after: $na, cert_issuer: "CN=x", chain_not_after: $na}}'
}

@test "alert: cert_expiring once per certificate, within cert_days or the lifetime fraction; renewed resolves it" {
	sites
	D=86400
	{
		# a 90-day certificate with 20 days left: not yet (14 d)
		cert_res a 0 $((-70 * D)) $((20 * D))
		# 10 days left, seen three times: one event
		cert_res a $((10 * D)) $((-70 * D)) $((20 * D))
		cert_res a $((10 * D + 1)) $((-70 * D)) $((20 * D))
		cert_res a $((10 * D + 60)) $((-70 * D)) $((20 * D))
		# renewed
		cert_res a $((11 * D)) $((11 * D)) $((101 * D))
		# a 6-day certificate: alerts under 2 days left (a third), not
		# at 5 days although that is under 14
		cert_res a $((12 * D)) $((12 * D)) $((18 * D))
		cert_res a $((15 * D)) $((12 * D)) $((18 * D))
		cert_res a $((16 * D + 60)) $((12 * D)) $((18 * D))
	} >"$T/in"
	alert
	run -0 jq -c '[.event, .resolution, .detail.which, .detail.days_left, .at]' "$T/events"
	[ "${lines[0]}" = "[\"cert_expiring\",null,\"leaf\",10,\"$(at $((10 * D)))\"]" ]
	[ "${lines[1]}" = "[\"resolved\",\"renewed\",null,null,\"$(at $((11 * D)))\"]" ]
	[ "${lines[2]}" = "[\"cert_expiring\",null,\"leaf\",1,\"$(at $((16 * D + 60)))\"]" ]
	[ "${#lines[@]}" -eq 3 ]
	run -0 jq -r .incident "$T/events"
	[ "${lines[0]}" = "${lines[1]}" ] && [ "${lines[0]}" != "${lines[2]}" ]
}

@test "alert: flapping is reported once, not as a stream of down and up" {
	sites "  alerts: {failure_threshold: 1, success_threshold: 1, flap_changes: 3, flap_window: 30m}"
	# down, up, down, up ... every minute, then down for 40 min, then up
	rounds web "0101010101010$(printf '0%.0s' $(seq 40))11" "a" >"$T/in"
	alert
	run -0 jq -r '[.event, .resolution // "", .at] | join(" ")' "$T/events"
	# three changes are plain events; the 4th within 30 min is flapping;
	# 30 min after the last change flapping ends, the down incident
	# announced before it is still open and closes when the site is up
	[ "${lines[0]}" = "down  $(at 0)" ]
	[ "${lines[1]}" = "up  $(at 60)" ]
	[ "${lines[2]}" = "down  $(at 120)" ]
	[ "${lines[3]}" = "flapping  $(at 180)" ]
	[ "${lines[4]}" = "resolved ended $(at $((12 * 60 + 31 * 60)))" ]
	[ "${lines[5]}" = "up  $(at $((53 * 60)))" ]
	[ "${#lines[@]}" -eq 6 ]
	run -0 jq -r '.incident' "$T/events"
	[ "${lines[2]}" = "${lines[5]}" ] && [ "${lines[3]}" = "${lines[4]}" ]
	run -0 jq -r 'select(.event == "flapping") | .detail.changes' "$T/events"
	[ "$output" = 4 ]
}

@test "alert: slow when p95 over slow_window exceeds slow_ms, back under 80% resolves it" {
	sites "  alerts: {slow_ms: 1000, slow_window: 10m}"
	{
		for i in $(seq 0 5); do res web a $((i * 60)) 1 "" 100; done
		for i in $(seq 6 15); do res web a $((i * 60)) 1 "" 2500; done
		for i in $(seq 16 40); do res web a $((i * 60)) 1 "" 900; done
		for i in $(seq 41 55); do res web a $((i * 60)) 1 "" 300; done
	} >"$T/in"
	alert
	run -0 jq -r '[.event, .resolution // "", .detail.slow_ms] | join(" ")' "$T/events"
	[ "${lines[0]}" = "slow  1000" ]
	[ "${lines[1]}" = "resolved recovered 1000" ]
	[ "${#lines[@]}" -eq 2 ]
}

@test "alert: SIGHUP reloads the rules; a removed target closes its incident with resolved removed" {
	printf 'defaults:\n  interval: 60s\ntargets:\n  - {name: web, url: "http://web.example/"}\n  - {name: api, url: "http://api.example/"}\n' >"$T/sites.yaml"
	mkfifo "$T/fifo"
	sm-alert "$T/sites.yaml" <"$T/fifo" >"$T/events" 2>"$T/err" 3>&- &
	pid=$!
	track_pid $pid
	exec 7>"$T/fifo"
	{ rounds web 0000; rounds api 1111; } >&7
	wait_for grep -q '"down"' "$T/events"
	printf 'defaults:\n  interval: 60s\n  alerts: {failure_threshold: 1}\ntargets:\n  - {name: api, url: "http://api.example/"}\n' >"$T/sites.yaml"
	kill -HUP $pid
	wait_for grep -q 'reloaded, 1 targets' "$T/err"
	wait_for grep -q '"resolved"' "$T/events"
	# the new rules hold: one failure is down now
	res api a 600 0 >&7
	res api b 600 0 >&7
	wait_for grep -q '"target":"api".*"down"\|"event":"down".*"target":"api"' "$T/events"
	# a broken file keeps the old rules
	echo 'targets: [' >"$T/sites.yaml"
	kill -HUP $pid
	wait_for grep -q 'not reloaded' "$T/err"
	exec 7>&-
	wait $pid
	run -0 jq -c 'select(.target == "web") | [.event, .resolution]' "$T/events"
	[ "${lines[0]}" = '["down",null]' ]
	[ "${lines[1]}" = '["resolved","removed"]' ]
	run -0 jq -r 'select(.target == "web") | .incident' "$T/events"
	[ "${lines[0]}" = "${lines[1]}" ]
}

# has_lines FILE N: FILE has at least N lines.
has_lines() {
	[ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]
}

# dedup FILE: the events of FILE, one per id, as "id event since".
# A line cut short by a kill is left out.
dedup() {
	jq -rR 'fromjson? // empty | [.id, .event, .since, .target] | join(" ")' "$1" | sort -u
}

@test "alert: SIGKILL five times during a recorded sequence: the same events after dedup, no incident under two ids" {
	printf 'defaults:\n  interval: 60s\n  alerts: {remind_every: 10m}\ntargets:\n' >"$T/sites.yaml"
	for t in $(seq 1 20); do printf '  - {name: t%s, url: "http://t%s.example/"}\n' $t $t >>"$T/sites.yaml"; done
	# outages of different lengths per target, 3 locations, 60 rounds
	/usr/bin/python3 - "$BASE" >"$T/in" <<-'EOF'
	import sys, datetime
	base = int(sys.argv[1]); n = 0
	for r in range(60):
	    for t in range(1, 21):
	        for p in "abc":
	            down = (r // (3 + t % 7)) % 3 == 1
	            if p == "c" and t % 5 == 0 and r > 40:
	                continue
	            n += 1
	            ts = datetime.datetime.fromtimestamp(base + r * 60 + t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
	            ok = "false" if down else "true"
	            print('{"v":1,"id":"01900000-0000-7000-8000-%012x","target":"t%d","url":"http://x/","labels":{},"probe":"%s","scheduled_at":null,"started_at":"%s","ok":%s,"status":%d,"error_kind":%s,"error":null,"duration_ms":1}'
	                  % (n, t, p, ts, ok, 500 if down else 200, '"http_status"' if down else "null"))
	EOF
	total=$(wc -l <"$T/in")
	run -0 --separate-stderr sm-alert "$T/sites.yaml" <"$T/in"
	printf '%s\n' "$output" >"$T/want"
	[ "$(wc -l <"$T/want")" -gt 40 ]
	# kill -9 mid-stream, after a different number of events each time;
	# each restart reads the whole file again (a replay from the start,
	# as sm-kafka-sub would from an old committed offset)
	: >"$T/got"
	for n in 3 10 20 30 45; do
		rm -f "$T/f"
		mkfifo "$T/f"
		sm-alert -S "$T/state" -c 5ms "$T/sites.yaml" <"$T/f" >"$T/got.$n" 2>>"$T/err" 3>&- &
		pid=$!
		# line by line: slow enough for the kill to land mid-stream
		(while IFS= read -r l; do printf '%s\n' "$l" || exit 0; done <"$T/in" >"$T/f") 2>/dev/null 3>&- &
		feeder=$!
		wait_for has_lines "$T/got.$n" $n
		kill -9 $pid
		wait $pid || true
		wait $feeder || true
		cat "$T/got.$n" >>"$T/got"
		[ -z "$(tail -c 1 "$T/got")" ] || echo >>"$T/got"
	done
	# the first kill came before the end of the input
	[ "$(wc -l <"$T/got.3")" -lt "$(wc -l <"$T/want")" ]
	sm-alert -S "$T/state" "$T/sites.yaml" <"$T/in" >>"$T/got" 2>>"$T/err"
	diff <(dedup "$T/got") <(dedup "$T/want")
	# no incident under a second id
	[ "$(jq -rR 'fromjson? // empty | .incident' "$T/got" | sort -u)" = "$(jq -r .incident "$T/want" | sort -u)" ]
}

@test "alert: sm-kafka-sub --ack through a FIFO, kill -9 of sm-alert and its reader: the outbox gives again what was lost" {
	printf 'defaults:\n  interval: 60s\ntargets:\n' >"$T/sites.yaml"
	for t in $(seq 1 10); do printf '  - {name: t%s, url: "http://t%s.example/"}\n' $t $t >>"$T/sites.yaml"; done
	TOPIC=$(new_topic)
	G="g_$TOPIC"
	# 3 rounds failing, 3 not, ...; 300 results: their events and acks
	# fit in a pipe's buffer
	{ for r in $(seq 0 9); do for t in $(seq 1 10); do for p in a b c; do
		if [ $(((r / 3 + t) % 2)) = 1 ]; then res t$t $p $((r * 60 + t)) 0; else res t$t $p $((r * 60 + t)) 1; fi
	done; done; done; } >"$T/in"
	run -0 --separate-stderr sm-alert "$T/sites.yaml" <"$T/in"
	printf '%s\n' "$output" >"$T/want"
	[ "$(wc -l <"$T/want")" -gt 20 ]
	sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/in"
	: >"$T/got"
	# the stand-in for sm-notify reads 3 lines and then no more; sm-alert
	# reads all 300 results and checkpoints them
	export NOTIFY_MAX=3 ALERT_OPTS="--stats-interval 50ms"
	start_pipeline
	wait_for grep -q 'in=300 .*checkpoints=[1-9]' "$T/alert.err"
	# kill -9 both: the events and acks in the pipe between them are lost,
	# and the checkpoint holds every result
	kill -9 "$(cat "$T/notify.pid")" "$(cat "$T/alert.pid")"
	wait $PIPE || true
	rm -f "$T/sub.pid" "$T/alert.pid" "$T/notify.pid"
	[ "$(grep -c '"event"' "$T/got")" -lt "$(wc -l <"$T/want")" ]
	# after the restart sm-kafka-sub redelivers from the committed offset:
	# the results change nothing, the outbox writes their events again
	unset NOTIFY_MAX ALERT_OPTS
	start_pipeline -e
	run -0 timeout 120 bash -c "while kill -0 $PIPE 2>/dev/null; do sleep 0.1; done"
	diff <(grep '"event"' "$T/got" | dedup /dev/stdin) <(dedup "$T/want")
	# everything was acknowledged and committed
	run -0 --separate-stderr timeout 60 sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "$G" "${FAST_GROUP[@]}" -e
	[ -z "$output" ]
}

# acks_both N: the two pipelines acknowledged N results between them.
acks_both() {
	[ "$(cat "$T/p1/got" "$T/p2/got" | grep -c '"kafka"')" -ge "$1" ]
}

@test "alert: two sm-alert processes in one consumer group split the targets: each event from one of them" {
	printf 'defaults:\n  interval: 60s\ntargets:\n' >"$T/sites.yaml"
	for t in $(seq 1 12); do printf '  - {name: t%s, url: "http://t%s.example/"}\n' $t $t >>"$T/sites.yaml"; done
	TOPIC=$(new_topic)
	export GROUP="g_$TOPIC"
	{ for r in $(seq 0 9); do for t in $(seq 1 12); do for p in a b c; do
		if [ $(((r / 3 + t) % 2)) = 1 ]; then res t$t $p $((r * 60 + t)) 0; else res t$t $p $((r * 60 + t)) 1; fi
	done; done; done; } >"$T/in"
	run -0 --separate-stderr sm-alert "$T/sites.yaml" <"$T/in"
	printf '%s\n' "$output" >"$T/want"
	mkdir "$T/p1" "$T/p2"
	: >"$T/p1/got"
	: >"$T/p2/got"
	PD=$T/p1 start_pipeline -v
	P1=$PIPE
	PD=$T/p2 start_pipeline -v
	P2=$PIPE
	# both joined and own partitions before anything is published
	wait_for grep -q 'assigned' "$T/p1/sub.err"
	wait_for grep -q 'assigned' "$T/p2/sub.err"
	sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/in"
	wait_for acks_both 360
	for d in p1 p2; do kill -TERM "$(cat "$T/$d/sub.pid")"; done
	wait $P1 || true
	wait $P2 || true
	# each side got some targets, no target on both, no event twice
	[ "$(grep -c '"event"' "$T/p1/got")" -gt 0 ] && [ "$(grep -c '"event"' "$T/p2/got")" -gt 0 ]
	comm -12 <(jq -r 'select(.event) | .target' "$T/p1/got" | sort -u) \
		<(jq -r 'select(.event) | .target' "$T/p2/got" | sort -u) >"$T/both"
	[ ! -s "$T/both" ]
	diff <(cat "$T/p1/got" "$T/p2/got" | grep '"event"' | dedup /dev/stdin) <(dedup "$T/want")
	[ "$(cat "$T/p1/got" "$T/p2/got" | grep -c '"event"')" -eq "$(wc -l <"$T/want")" ]
}

# kafka PARTITION FIRST_OFFSET: add Kafka coordinates to the result lines
# on stdin, offsets counting up from FIRST_OFFSET.
kafka() {
	awk -v p="$1" -v o="$2" '{ sub(/}$/, ",\"kafka\":{\"topic\":\"tp\",\"partition\":" p ",\"offset\":" o++ "}}"); print }'
}

@test "alert: -P: a partition moves to a peer and back, its state with it; a process behind a peer leaves the partition to it" {
	sites
	printf '  - name: api\n    url: http://api.example/\n' >>"$T/sites.yaml"
	# web: ok, failing 4 rounds (down), ok (up), failing again (down)
	rounds web 100001111000 >"$T/in"
	alert
	cp "$T/events" "$T/want"
	[ "$(grep -c '"down"' "$T/want")" -eq 2 ]
	# rounds 0-4 to A, 5-8 to B, 9-11 to A again (one partition, 3 results
	# a round)
	kafka 0 0 <"$T/in" >"$T/all"
	sed -n 1,15p "$T/all" >"$T/a1"
	sed -n 16,27p "$T/all" >"$T/b1"
	sed -n 28,36p "$T/all" >"$T/a2"
	export SM_ALERT_PEERS="$T/*.state"
	run -0 --separate-stderr sm-alert -S "$T/a.state" "$T/sites.yaml" <"$T/a1"
	printf '%s\n' "$output" | grep '"event"' >"$T/got"
	[ "$(grep -c '"down"' "$T/got")" -eq 1 ]
	run -0 --separate-stderr sm-alert -S "$T/b.state" "$T/sites.yaml" <"$T/b1"
	[[ "$stderr" == *"partition tp/0: took over the state of $T/a.state (offset 14)"* ]]
	printf '%s\n' "$output" | { grep '"event"' || true; } >>"$T/got"
	# B announces no down of its own; its up closes A's incident
	[ "$(grep -c '"down"' "$T/got")" -eq 1 ]
	[ "$(jq -r 'select(.event == "up") | .incident' "$T/got")" = "$(jq -r 'select(.event == "down") | .incident' "$T/got")" ]
	# back to A after a gap in the offsets: it takes B's state, not its own
	run -0 --separate-stderr sm-alert -S "$T/a.state" "$T/sites.yaml" <"$T/a2"
	[[ "$stderr" == *"took over the state of $T/b.state (offset 26)"* ]]
	printf '%s\n' "$output" | { grep '"event"' || true; } >>"$T/got"
	diff <(dedup "$T/got") <(dedup "$T/want")
	# B sees another partition (api's): at its checkpoint A is ahead on
	# tp/0, so B drops web's state, and says nothing of web (kept, its
	# state would say web's location a went silent: stale)
	res api a 5000 1 | kafka 1 0 >"$T/b2"
	run -0 --separate-stderr sm-alert -S "$T/b.state" -n "$(at 5060)" "$T/sites.yaml" <"$T/b2"
	[[ "$stderr" == *"partition tp/0: a peer is ahead (offset 35, here 26): 1 targets' state left to it"* ]]
	! grep '"event"' <<<"$output" | grep -q '"target":"web"'
}

# assigned_n DIR N: sm-kafka-sub of DIR logged at least N assignments.
assigned_n() {
	[ "$(grep -c 'assigned' "$T/$1/sub.err")" -ge "$2" ]
}

# acks_in DIR N: the pipeline of DIR acknowledged at least N results.
acks_in() {
	[ "$(grep -c '"kafka"' "$T/$1/got")" -ge "$2" ]
}

# ups_n N: at least N up events from the two pipelines.
ups_n() {
	[ "$(cat "$T/p1/got" "$T/p2/got" | grep -c '"event":"up"')" -ge "$1" ]
}

# committed_all DIR: sm-kafka-sub of DIR committed every offset its
# pipeline acknowledged.
committed_all() {
	local p o
	jq -r 'select(.kafka) | "\(.kafka.partition) \(.kafka.offset)"' "$T/$1/got" |
		sort -n -k1,1 -k2,2 | awk '{m[$1] = $2} END {for (p in m) print p, m[p] + 1}' |
		while read -r p o; do
			grep -q "committed $TOPIC \[$p\] at $o" "$T/$1/sub.err" || return 1
		done
}

# rebalance_midway HOW: two pipelines in one group (-P through
# SM_ALERT_PEERS), an outage of every target; after its down the first
# pipeline stops (HOW: term, its reader stops; kill, kill -9 of all three
# processes) and the second takes its partitions.
rebalance_midway() {
	printf 'defaults:\n  interval: 60s\ntargets:\n' >"$T/sites.yaml"
	for t in $(seq 1 12); do printf '  - {name: t%s, url: "http://t%s.example/"}\n' $t $t >>"$T/sites.yaml"; done
	TOPIC=$(new_topic)
	export GROUP="g_$TOPIC"
	# every target: round 0 ok, rounds 1-7 failing (down at round 3),
	# rounds 8-9 ok (up at round 9); the rebalance comes after round 4
	for r in $(seq 0 9); do for t in $(seq 1 12); do for p in a b c; do
		if [ "$r" -ge 1 ] && [ "$r" -le 7 ]; then res t$t $p $((r * 60 + t)) 0; else res t$t $p $((r * 60 + t)) 1; fi
	done; done; done >"$T/in"
	run -0 --separate-stderr sm-alert "$T/sites.yaml" <"$T/in"
	printf '%s\n' "$output" >"$T/want"
	[ "$(grep -c '"down"' "$T/want")" -eq 12 ] && [ "$(grep -c '"up"' "$T/want")" -eq 12 ]
	head -n $((5 * 36)) "$T/in" >"$T/in1"
	tail -n +$((5 * 36 + 1)) "$T/in" >"$T/in2"
	mkdir "$T/p1" "$T/p2"
	: >"$T/p1/got"
	: >"$T/p2/got"
	# each process finds the other's checkpoint by the pattern
	export SM_ALERT_PEERS="$T/p?/state"
	PD=$T/p1 start_pipeline -v
	P1=$PIPE
	PD=$T/p2 start_pipeline -v
	P2=$PIPE
	wait_for assigned_n p1 1
	wait_for assigned_n p2 1
	sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/in1"
	wait_for acks_both 180
	# both own some of the targets, each announced its targets' down
	[ "$(grep -c '"down"' "$T/p1/got")" -gt 0 ] && [ "$(grep -c '"down"' "$T/p2/got")" -gt 0 ]
	[ "$(cat "$T/p1/got" "$T/p2/got" | grep -c '"down"')" -eq 12 ]
	# the first process stops mid-outage; the second takes its partitions
	n=$(grep -c 'assigned' "$T/p2/sub.err")
	if [ "$1" = kill ]; then
		# what it acknowledged is committed: not redelivered to the other
		wait_for committed_all p1
		kill -9 "$(cat "$T/p1/sub.pid")" "$(cat "$T/p1/alert.pid")" "$(cat "$T/p1/notify.pid")"
	else
		kill -TERM "$(cat "$T/p1/sub.pid")"
	fi
	wait $P1 || true
	wait_for assigned_n p2 $((n + 1))
	n=$(grep -c '"kafka"' "$T/p2/got")
	sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/in2"
	wait_for ups_n 12
	wait_for acks_in p2 $((n + 5 * 36))
	kill -TERM "$(cat "$T/p2/sub.pid")"
	wait $P2 || true
	grep -q 'took over the state of' "$T/p2/alert.err"
	# one down per target, under one incident id; every up closes it
	cat "$T/p1/got" "$T/p2/got" | jq -r 'select(.event == "down") | "\(.target) \(.incident)"' | sort -u >"$T/downs"
	[ "$(wc -l <"$T/downs")" -eq 12 ]
	[ "$(cut -d' ' -f1 "$T/downs" | sort -u | wc -l)" -eq 12 ]
	cat "$T/p1/got" "$T/p2/got" | jq -r 'select(.event == "up") | "\(.target) \(.incident)"' | sort -u >"$T/ups"
	diff "$T/downs" "$T/ups"
	# and the events are those of one sm-alert over all of it
	diff <(cat "$T/p1/got" "$T/p2/got" | grep '"event"' | dedup /dev/stdin) <(dedup "$T/want")
}

@test "alert: a rebalance mid-outage hands the partition's state over (-P): the open incident keeps its id, no down twice" {
	rebalance_midway term
}

@test "alert: kill -9 of one pipeline mid-outage: the other takes its partitions and state (-P), no down twice, no incident under two ids" {
	rebalance_midway kill
}

@test "alert: -P: location-wide incidents go to the process holding the lowest partition; a checkpoint left far behind holds none" {
	printf 'defaults:\n  interval: 60s\ntargets:\n  - {name: w1, url: "http://w1.example/"}\n  - {name: w2, url: "http://w2.example/"}\n' >"$T/sites.yaml"
	# w1 on partition tp/0, w2 on tp/1; location c silent from round 3
	# to round 11, back at rounds 12-13
	for r in $(seq 0 13); do for p in a b c; do
		[ $p = c ] && [ "$r" -ge 3 ] && [ "$r" -le 11 ] && continue
		res w1 $p $((r * 60)) 1
	done; done | kafka 0 0 >"$T/w1"
	for r in $(seq 0 13); do for p in a b c; do
		[ $p = c ] && [ "$r" -ge 3 ] && [ "$r" -le 11 ] && continue
		res w2 $p $((r * 60 + 1)) 1
	done; done | kafka 1 0 >"$T/w2"
	# one sm-alert over all of it, in time order
	cat "$T/w1" "$T/w2" | jq -sc 'sort_by(.started_at) | .[]' >"$T/in"
	alert
	grep '"event"' "$T/events" >"$T/want"
	[ "$(jq -r '[.event, .target, .since] | join(" ")' "$T/want" | paste -sd,)" = "stale * $(at 121),resolved * $(at 121)" ]
	export SM_ALERT_PEERS="$T/*.state"
	: >"$T/got"
	# A: w1's rounds 0-2, then gone for a while
	run -0 --separate-stderr sm-alert -S "$T/a.state" "$T/sites.yaml" < <(sed -n 1,9p "$T/w1")
	printf '%s\n' "$output" | { grep '"event"' || true; } >>"$T/got"
	# B: w2's rounds 0-11.  A holds the lower partition, but its
	# checkpoint fell more than stale_after behind: B owns the silence
	run -0 --separate-stderr sm-alert -S "$T/b.state" "$T/sites.yaml" < <(sed -n 1,27p "$T/w2")
	printf '%s\n' "$output" | { grep '"event"' || true; } >>"$T/got"
	[[ "$stderr" == *"location-wide incidents are mine now"* ]]
	[ "$(jq -r '[.event, .target, .since] | join(" ")' "$T/got")" = "stale * $(at 121)" ]
	# A back with w1's rounds 3-11: it holds tp/0, so it owns the
	# incident now, goes on with B's, and announces nothing
	run -0 --separate-stderr sm-alert -S "$T/a.state" "$T/sites.yaml" < <(sed -n 10,27p "$T/w1")
	printf '%s\n' "$output" | { grep '"event"' || true; } >>"$T/got"
	[[ "$stderr" == *"location c: its stale incident goes on here (announced by a peer)"* ]]
	[ "$(grep -c '"event"' "$T/got")" -eq 1 ]
	# c back: B (no longer the owner) says nothing, A closes it
	run -0 --separate-stderr sm-alert -S "$T/b.state" "$T/sites.yaml" < <(sed -n '28,$p' "$T/w2")
	[[ "$stderr" == *"location-wide incidents go to the peer holding partition tp/0"* ]]
	! grep -q '"event"' <<<"$output"
	run -0 --separate-stderr sm-alert -S "$T/a.state" "$T/sites.yaml" < <(sed -n '28,$p' "$T/w1")
	printf '%s\n' "$output" | { grep '"event"' || true; } >>"$T/got"
	diff <(dedup "$T/got") <(dedup "$T/want")
	[ "$(wc -l <"$T/got")" -eq 2 ]
}

# silent_location HOW: two pipelines in one group (-P through
# SM_ALERT_PEERS); location c stops reporting every target at round 3 and
# comes back at round 8.  Rounds are published one at a time, each after
# both pipelines acknowledged the one before (results come in real time).
# HOW: none; term: the pipeline that announced the silence stops
# mid-silence (a rebalance), and the other one takes its partitions; kill:
# the same by kill -9 of its three processes.
silent_location() {
	printf 'defaults:\n  interval: 60s\ntargets:\n' >"$T/sites.yaml"
	for t in $(seq 1 12); do printf '  - {name: t%s, url: "http://t%s.example/"}\n' $t $t >>"$T/sites.yaml"; done
	TOPIC=$(new_topic)
	export GROUP="g_$TOPIC"
	for r in $(seq 0 9); do for t in $(seq 1 12); do for p in a b c; do
		[ $p = c ] && [ "$r" -ge 3 ] && [ "$r" -le 7 ] && continue
		res t$t $p $((r * 60 + t)) 1
	done; done; done >"$T/in"
	run -0 --separate-stderr sm-alert "$T/sites.yaml" <"$T/in"
	printf '%s\n' "$output" >"$T/want"
	# one sm-alert over all of it: the silence, then its end
	[ "$(jq -r '[.event, .target, .locations[0]] | join(" ")' "$T/want" | tr '\n' ,)" = 'stale * c,resolved * c,' ]
	mkdir "$T/p1" "$T/p2"
	: >"$T/p1/got"
	: >"$T/p2/got"
	export SM_ALERT_PEERS="$T/p?/state"
	PD=$T/p1 start_pipeline -v
	P1=$PIPE
	PD=$T/p2 start_pipeline -v
	P2=$PIPE
	wait_for assigned_n p1 1
	wait_for assigned_n p2 1
	local r n=0 owner= other= dead= k
	for r in $(seq 0 9); do
		# lines of round r: 36, or 24 while c is silent
		jq -c "select(.started_at >= \"$(at $((r * 60)))\" and .started_at < \"$(at $((r * 60 + 60)))\")" "$T/in" >"$T/round"
		n=$((n + $(wc -l <"$T/round")))
		sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC" <"$T/round"
		if [ -z "$dead" ]; then wait_for acks_both $n; else wait_for acks_in "$owner" $n; fi
		if [ "$r" = 6 ]; then
			# the silence (since round 2's last result, 180 s) is
			# announced by one of them
			wait_for grep -q '"event":"stale"' "$T/p1/got" "$T/p2/got"
			if grep -q '"event":"stale"' "$T/p1/got"; then owner=p1 other=p2; else owner=p2 other=p1; fi
		fi
		if [ "$r" = 7 ] && [ "$1" != none ]; then
			# mid-silence, its round 7 acknowledged (so its
			# checkpoint holds the announcement) and committed
			wait_for committed_all $owner
			k=$(grep -c 'assigned' "$T/$other/sub.err")
			if [ "$1" = kill ]; then
				kill -9 "$(cat "$T/$owner/sub.pid")" "$(cat "$T/$owner/alert.pid")" "$(cat "$T/$owner/notify.pid")"
			else
				kill -TERM "$(cat "$T/$owner/sub.pid")"
			fi
			if [ $owner = p1 ]; then wait $P1 || true; else wait $P2 || true; fi
			wait_for assigned_n $other $((k + 1))
			dead=$owner owner=$other
			n=$(grep -c '"kafka"' "$T/$owner/got")
		fi
	done
	wait_for grep -q '"event":"resolved"' "$T/p1/got" "$T/p2/got"
	for d in p1 p2; do kill -TERM "$(cat "$T/$d/sub.pid")" 2>/dev/null || true; done
	wait $P1 || true
	wait $P2 || true
	cat "$T/p1/got" "$T/p2/got" | grep '"event"' >"$T/events"
	# one stale event and one resolved, under the incident id a single
	# sm-alert over all of it gives; nothing else (no stale per target)
	[ "$(grep -c '"event":"stale"' "$T/events")" -eq 1 ]
	[ "$(grep -c '"event":"resolved"' "$T/events")" -eq 1 ]
	[ "$(wc -l <"$T/events")" -eq 2 ]
	[ "$(jq -r .incident "$T/events" | sort -u)" = "$(jq -r .incident "$T/want" | sort -u)" ]
	diff <(dedup "$T/events") <(dedup "$T/want")
	if [ "$1" != none ]; then
		# announced by the one stopped, closed by the other
		grep -q '"event":"resolved"' "$T/$owner/got"
		grep -q 'stale incident goes on here' "$T/$owner/alert.err"
	else
		# both from the owner of location-wide incidents
		[ "$(grep -c '"event"' "$T/$owner/got")" -eq 2 ]
	fi
}

@test "alert: -P: a whole location gone silent is one stale event from one of two processes, one id; its return closes it once" {
	silent_location none
}

@test "alert: -P: a rebalance moves the silent location's incident: the process that announced it stops, the other closes it under its id" {
	silent_location term
}

@test "alert: -P: kill -9 of the process that announced a silent location: the other closes the same incident, none announced twice" {
	silent_location kill
}

@test "alert: --wall-clock notices a whole fleet gone silent (nothing else moves record time)" {
	printf 'defaults:\n  interval: 1s\n  timeout: 500ms\ntargets:\n  - {name: web, url: "http://web.example/"}\n' >"$T/sites.yaml"
	mkfifo "$T/fifo"
	sm-alert -w "$T/sites.yaml" <"$T/fifo" >"$T/events" 2>"$T/err" 3>&- &
	pid=$!
	track_pid $pid
	exec 7>"$T/fifo"
	now=$(date -u +%s)
	BASE=$now
	for p in a b; do res web $p 0 1; done >&7
	# stale_after is 3 s: both locations, once each, by the wall clock
	wait_for has_lines "$T/events" 2
	exec 7>&-
	wait $pid
	run -0 jq -c '[.event, .target, .locations]' "$T/events"
	[ "${lines[0]}" = '["stale","*",["a"]]' ]
	[ "${lines[1]}" = '["stale","*",["b"]]' ]
	[ "${#lines[@]}" -eq 2 ]
}

@test "alert: sm-schedule --check reports alerts errors at line:column; sm-alert refuses them with 78" {
	cat >"$T/sites.yaml" <<-'EOF'
	defaults:
	  alerts:
	    failure_treshold: 3
	targets:
	  - url: http://a.example/
	    alerts:
	      quorum: lots
	      stale_after: 5
	      maintenance:
	        - {days: [mon], at: "25:00", duration: 1h, tz: Mars/Olympus}
	        - {start: 2026-01-02T00:00:00Z, end: 2026-01-01T00:00:00Z}
	EOF
	run -78 --separate-stderr sm-schedule --check "$T/sites.yaml"
	grep -qF "sites.yaml:3:5: alerts: unknown key \"failure_treshold\" (did you mean \"failure_threshold\"?)" <<<"$stderr"
	grep -qF "sites.yaml:7:15: alerts: \"quorum\" must be majority" <<<"$stderr"
	grep -qF "sites.yaml:8:20: alerts: \"stale_after\" must be a duration" <<<"$stderr"
	grep -qF "sites.yaml:10:29: alerts: maintenance \"at\" must be a local time HH:MM" <<<"$stderr"
	grep -qF "unknown time zone \"Mars/Olympus\"" <<<"$stderr"
	grep -qF "sites.yaml:11:11: alerts: maintenance \"end\" must be after \"start\"" <<<"$stderr"
	run -78 --separate-stderr sm-alert "$T/sites.yaml" </dev/null
	grep -qF "sites.yaml:3:5:" <<<"$stderr"
	run -64 sm-alert
	run -0 sm-alert --help
	[[ "$output" == *"usage: sm-alert"* ]]
}

@test "alert: schema/sites.schema.json agrees with sm-schedule on alerts" {
	cat >"$T/good.yaml" <<-'EOF'
	{"defaults": {"alerts": {"failure_threshold": 2, "quorum": "majority", "remind_every": "1h",
	   "maintenance": [{"days": ["sat", "Sun"], "at": "02:30", "duration": "2h", "tz": "Europe/Berlin"}]}},
	 "targets": [{"url": "http://127.0.0.1:9/", "alerts": {"quorum": 1, "cert_days": 7, "cert_fraction": 0.2,
	   "slow_ms": 1500, "slow_window": "10m", "flap_changes": 3, "flap_window": "1h", "stale_after": "5m",
	   "maintenance": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-25T00:00:00Z"}]}},
	  {"url": "http://127.0.0.1:8/", "alerts": false}]}
	EOF
	run -0 sm-schedule --check "$T/good.yaml"
	run -0 "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/sites.schema.json" < <(jq -c . "$T/good.yaml")
	local bad
	for bad in '{"alerts": {"quorum": 0}}' '{"alerts": {"failure_treshold": 3}}' \
		'{"alerts": {"remind_every": "soon"}}' '{"alerts": {"cert_fraction": 1.5}}' \
		'{"alerts": {"maintenance": [{"days": ["mon"], "at": "25:00", "duration": "1h"}]}}' \
		'{"alerts": {"maintenance": [{"start": "2026-12-24T00:00:00Z"}]}}' \
		'{"alerts": {"maintenance": [{"start": "2026-12-24T00:00:00Z", "end": "2026-12-25T00:00:00Z", "at": "02:00"}]}}' \
		'{"alerts": {"stale_after": "off"}}' '{"alerts": 3}'; do
		printf '{"targets": [{"url": "http://127.0.0.1/", "alerts": %s}]}\n' "$(jq -c .alerts <<<"$bad")" >"$T/bad.yaml"
		run -78 sm-schedule --check "$T/bad.yaml"
		run -1 "$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/sites.schema.json" <"$T/bad.yaml"
	done
}

@test "alert: bad lines are reported and skipped (acked when they carry kafka); --strict exits 65" {
	sites
	{ echo 'not json'; echo '{"v":1,"target":"web","kafka":{"topic":"t","partition":0,"offset":7}}'; res web a 0 1; } >"$T/in"
	alert
	[ "$output" = '{"v":1,"kafka":{"topic":"t","partition":0,"offset":7}}' ]
	grep -q '<stdin>:1:' <<<"$stderr"
	run -65 --separate-stderr sm-alert --strict "$T/sites.yaml" <"$T/in"
}

@test "alert: a result whose tls or regex member has the wrong type is refused by name, as sm-pg-write refuses it" {
	sites
	# Line 1 is sm-check's shape (taken by the scan); each other line
	# breaks one member of it.  A refused line with kafka is acked.
	res web a 0 1 | jq -c '.tls = {"version": "TLSv1.3", "cert_not_after": "2027-01-01T00:00:00Z",
		"cert_days_left": 30, "cert_sans": ["DNS:web", "IP:127.0.0.1"], "cert_sha256": null}
		| .regex = {"pattern": "ok", "matched": true} | .kafka = {"topic": "t", "partition": 0, "offset": 0}' >"$T/one"
	{
		cat "$T/one"
		jq -c '.tls.version = 1 | .kafka.offset = 1' "$T/one"
		jq -c '.tls.cert_not_after = "soon" | .kafka.offset = 2' "$T/one"
		jq -c '.tls.cert_sans = ["DNS:web", 7] | .kafka.offset = 3' "$T/one"
		jq -c '.tls.cert_days_left = "30" | .kafka.offset = 4' "$T/one"
		jq -c '.regex.matched = "yes" | .kafka.offset = 5' "$T/one"
		jq -c '.regex.pattern = null | .kafka.offset = 6' "$T/one"
	} >"$T/in"
	alert
	[ "$(jq -r 'select(.kafka and (.event | not)) | .kafka.offset' "$T/events" | paste -sd' ')" = "0 1 2 3 4 5 6" ]
	grep -qF '<stdin>:2: field "tls.version" must be a string or null' <<<"$stderr"
	grep -qF '<stdin>:3: field "tls.cert_not_after" must be an RFC 3339 time or null' <<<"$stderr"
	grep -qF '<stdin>:4: field "tls.cert_sans" must hold strings only' <<<"$stderr"
	grep -qF '<stdin>:5: field "tls.cert_days_left" must be an integer or null' <<<"$stderr"
	grep -qF '<stdin>:6: field "regex.matched" must be true or false' <<<"$stderr"
	grep -qF '<stdin>:7: field "regex.pattern" must be a string' <<<"$stderr"
	[ "$(grep -c '^sm-alert: error: <stdin>:' <<<"$stderr")" = 6 ]
	! grep -q '<stdin>:1:' <<<"$stderr"
}

# ---- end to end: sm-check from three locations, the dev broker ------------

# Producer pipelines run in process groups of their own: stopped whole.
teardown() {
	local g
	for g in ${PGIDS:-}; do kill -TERM -- "-$g" 2>/dev/null || true; done
	# the pipelines of $T, and of $T/p1 and $T/p2 (two in one group)
	for g in sub alert notify p1/sub p1/alert p1/notify p2/sub p2/alert p2/notify; do
		[ ! -s "$T/$g.pid" ] || kill -9 "$(cat "$T/$g.pid")" 2>/dev/null || true
	done
	for g in ${CLEANUP_PIDS:-}; do kill "$g" 2>/dev/null || true; done
	rm -rf "$T"
}

# set_status STATUS LOC...: what the scripted server answers each location.
set_status() {
	local s=$1 p
	shift
	for p in "$@"; do
		curl -fsS "$SCRIPTED_URL/set?id=$SW-$p&status=$s" >/dev/null
	done
}

# check_round LOC...: one sm-check run per location (its own switch on the
# scripted server), results published to $TOPIC.
check_round() {
	local p
	for p in "$@"; do
		echo "{\"target\":\"site\",\"url\":\"$SCRIPTED_URL/switch?id=$SW-$p\"}" |
			sm-check --probe-location "$p"
	done | sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC"
}

# acks_n N: at least N lines with kafka coordinates in $T/got.
acks_n() {
	[ "$(grep -c '"kafka"' "$T/got" 2>/dev/null)" -ge "$1" ]
}

# events_n N: at least N events in $T/got.
events_n() {
	[ "$(grep -c '"event"' "$T/got" 2>/dev/null)" -ge "$1" ]
}

# start_pipeline: sm-kafka-sub --ack FIFO | sm-alert -S | a stand-in for
# sm-notify (every line to $T/got, the kafka lines back to the FIFO).
start_pipeline() {
	export T TOPIC
	local PD=${PD:-$T}
	export PD
	[ -p "$PD/ack" ] || mkfifo "$PD/ack"
	{ bash -c 'echo $$ >"$PD/sub.pid"; exec sm-kafka-sub -b "$SM_TEST_BROKERS" -t "$TOPIC" -G "${GROUP:-g_$TOPIC}" -X session.timeout.ms=3000 -X heartbeat.interval.ms=500 '"${1:-}"' --ack "$PD/ack"' 2>>"$PD/sub.err" |
		bash -c 'echo $$ >"$PD/alert.pid"; exec sm-alert -S "$PD/state" -c 50ms ${ALERT_OPTS:-} "$T/sites.yaml"' 2>>"$PD/alert.err" |
		bash -c 'echo $$ >"$PD/notify.pid"
			n=0
			while IFS= read -r l; do
				printf "%s\n" "$l" >>"$PD/got"
				case $l in *\"kafka\"*) printf "%s\n" "$l" >&3 ;; esac
				n=$((n + 1))
				# NOTIFY_MAX: a stand-in that stops reading (stuck)
				[ "$n" = "${NOTIFY_MAX:-}" ] && exec tail -f /dev/null
			done 3>"$PD/ack"'; } &
	PIPE=$!
	track_pid $PIPE
	wait_for test -s "$PD/alert.pid"
	wait_for test -s "$PD/sub.pid"
	wait_for test -s "$PD/notify.pid"
}

stop_pipeline() {
	kill -TERM "$(cat "$T/sub.pid")" 2>/dev/null || true
	wait $PIPE || true
	rm -f "$T/sub.pid" "$T/alert.pid" "$T/notify.pid"
}

@test "alert (e2e): a site flips 200->500->200 as three sm-check locations see it: events per thresholds and quorum" {
	printf 'defaults:\n  interval: 60s\ntargets:\n  - {name: site, url: "%s/switch"}\n' "$SCRIPTED_URL" >"$T/sites.yaml"
	TOPIC=$(new_topic)
	SW="sw$RANDOM$RANDOM"
	: >"$T/got"
	start_pipeline
	check_round eu us ap
	# 500 for eu only: it is down alone, never a quorum
	set_status 500 eu
	for i in 1 2 3 4; do check_round eu us ap; done
	# now for all: us and ap reach 3 failures in the third round
	set_status 500 us ap
	check_round eu us ap
	check_round eu us ap
	wait_for grep -c '"kafka"' "$T/got"
	! events_n 1
	check_round eu us ap
	wait_for events_n 1
	set_status 200 eu us ap
	check_round eu us ap
	check_round eu us ap
	wait_for events_n 2
	stop_pipeline
	run -0 jq -r 'select(.event) | [.event, (.locations | join(",")), .reason.error_kind // "", .reason.status] | join(" ")' "$T/got"
	# decided at us's result: eu (down since its own outage) and us
	[ "${lines[0]}" = "down eu,us http_status 500" ]
	[ "${lines[1]}" = "up eu,us,ap  200" ]
	[ "${#lines[@]}" -eq 2 ]
	run -0 jq -r 'select(.event) | .incident' "$T/got"
	[ "${lines[0]}" = "${lines[1]}" ]
	# since: eu's first failure (it never had 2 successes in between)
	since=$(jq -r 'select(.event == "down") | .since' "$T/got")
	first=$(kcat -C -b "$SM_TEST_BROKERS" -t "$TOPIC" -e -q | jq -rs 'map(select(.probe == "eu" and .ok == false)) | .[0].started_at')
	[ "$since" = "$first" ]
	# and the results named are real result ids
	kcat -C -b "$SM_TEST_BROKERS" -t "$TOPIC" -e -q | jq -r .id >"$T/ids"
	for id in $(jq -r 'select(.event) | .results[]' "$T/got"); do grep -qx "$id" "$T/ids"; done
}

@test "alert (e2e): one location's producer stops: one stale event, no down" {
	printf 'defaults:\n  interval: 1s\n  timeout: 500ms\ntargets:\n  - {name: site, url: "%s/ok"}\n' "$SCRIPTED_URL" >"$T/sites.yaml"
	TOPIC=$(new_topic)
	export TOPIC T
	: >"$T/got"
	start_pipeline
	for p in eu us ap; do
		setsid bash -c 'sm-schedule "$T/sites.yaml" | sm-check --probe-location '$p' | sm-kafka-pub -b "$SM_TEST_BROKERS" -t "$TOPIC"' \
			2>>"$T/prod.err" &
		eval "prod_$p=$!"
		PGIDS="${PGIDS:-} $!"
	done
	wait_for grep -q '"kafka"' "$T/got"
	kill -TERM -- "-$prod_ap"
	# 3 x 1 s after ap's last result, while eu and us go on
	wait_for events_n 1
	# eu and us go on: 6 more results and still that one event
	wait_for acks_n $(($(grep -c '"kafka"' "$T/got") + 6))
	run -0 jq -c 'select(.event) | [.event, .target, .locations, .detail.location]' "$T/got"
	[ "${lines[0]}" = '["stale","*",["ap"],"ap"]' ]
	[ "${#lines[@]}" -eq 1 ]
	stop_pipeline
}

@test "alert (e2e): cert_expiring from a real short-lived certificate (openssl), once, and not before a third of its lifetime" {
	d="$T/tls"
	mkdir -p "$d"
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$d/s.key" -out "$d/s.crt" -days 3 -subj "/CN=127.0.0.1" \
		-addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
	port=$(free_port)
	/usr/bin/python3 "$SM_TOP/tests/fixtures/httpd.py" --cert "$d/s.crt" --key "$d/s.key" "$port" \
		</dev/null >"$d/out" 2>"$d/log" 3>&- &
	track_pid $!
	wait_for grep -q ready "$d/out"
	mk() {
		printf 'defaults:\n  interval: 60s\n%s\ntargets:\n  - {name: tls, url: "https://127.0.0.1:%s/ok", ca_file: "%s"}\n' \
			"$1" "$port" "$d/s.crt" >"$T/sites.yaml"
	}
	mk ""
	sm-schedule --once "$T/sites.yaml" >"$T/targets"
	for p in eu us eu; do sm-check --probe-location $p <"$T/targets"; done >"$T/in"
	jq -e '.ok and .tls.cert_not_after != null' "$T/in" >/dev/null
	# 3 days left is under cert_days (14) but not under a third of the
	# 3-day lifetime: no alert
	alert
	[ -z "$output" ]
	# cert_days alone: one event for the three results
	mk "  alerts: {cert_fraction: 0}"
	alert
	run -0 jq -r '[.event, .detail.which, .detail.days_left, .detail.not_after == (input_filename | "x")] | .[0:3] | join(" ")' "$T/events"
	[ "$output" = "cert_expiring leaf 2" ]
	run -0 jq -r .detail.not_after "$T/events"
	[ "$output" = "$(date -u -d "$(openssl x509 -in "$d/s.crt" -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%S.000Z)" ]
}
