#!/usr/bin/env bats
# sm-report: its figures from sm-pg-write's rollups and outages (and only
# from them), its formats, and the status page in a real browser.
load helpers
bats_require_minimum_version 1.5.0

GEN="$BATS_TEST_DIRNAME/fixtures/results-gen"
# Screenshots of the status page are kept here (gitignored).
ARTIFACTS="${SM_TEST_ARTIFACTS:-$SM_TOP/tests/artifacts}"

setup() {
	T=$(mktemp -d "${SM_TEST_TMP:-/tmp}/t.XXXXXX")
	chmod 755 "$T"
	new_db
}

# history: from T0 (three whole hours ago), one check a minute per target
# for two hours, from probe "a":
#   web   ok but for a 10-minute outage from T0+30m (checks 30..39 fail)
#   api   always ok
#   shop  ok for an hour, then failing since T0+60m (still down)
# and "web" from probe "b" as well, always ok.
history() {
	local now
	now=$(($(date +%s) * 1000))
	T0=$((now / 3600000 * 3600000 - 3 * 3600000))
	{
		"$GEN" -n 120 -t 1 -s "$T0" -i 60000 -S 1 | jq -c '.target = "web"
			| .probe = "a" | .labels = {team: "web", env: "prod"}'
		"$GEN" -n 120 -t 1 -s "$((T0 + 1000))" -i 60000 -S 2 | jq -c '.target = "web"
			| .probe = "b" | .labels = {team: "web", env: "prod"}'
		"$GEN" -n 120 -t 1 -s "$((T0 + 2000))" -i 60000 -S 3 | jq -c '.target = "api"
			| .probe = "a" | .labels = {team: "api", env: "prod"}'
		"$GEN" -n 120 -t 1 -s "$((T0 + 3000))" -i 60000 -S 4 | jq -c '.target = "shop"
			| .probe = "a" | .labels = {team: "web", env: "prod"}'
	} | jq -c --argjson t0 "$T0" '
		((.started_at | sub("\\.[0-9]+Z$"; "Z") | fromdate) * 1000 - $t0) as $off
		| if (.target == "web" and .probe == "a" and $off >= 1800000 and $off < 2400000)
		     or (.target == "shop" and $off >= 3600000)
		  then .ok = false | .status = 503 | .error_kind = "http_status"
		       | .error = "status 503 not in 2xx"
		  else .ok = true | .status = 200 | .error_kind = null | .error = null end' \
		>"$T/in"
	sm-pg-write <"$T/in" >/dev/null
}

# approx A B TOLERANCE: |A - B| <= TOLERANCE
approx() {
	awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }' ||
		{ echo "$1 is not within $3 of $2" >&2; return 1; }
}

@test "report: --help prints the synopsis, bad options exit 64" {
	run -0 sm-report --help
	[[ "${lines[0]}" == "usage: sm-report "* ]]
	run -0 sm-report -V
	[[ "$output" == "sm-report (sitemon) "* ]]
	run -64 sm-report --no-such-option
	run -64 sm-report -f xml
	run -64 sm-report -l novalue
	run -64 sm-report -s 2026-13-01T00:00:00Z
	run -64 sm-report extra
}

@test "report: uptime by time and by checks, outages, MTTR, state since, per target" {
	history
	run -0 sm-report -f json
	echo "$output" >"$T/r.json"
	local gen now web shop
	gen=$(jq -r '.generated_at | sub("\\.[0-9]+Z$"; "Z") | fromdate' "$T/r.json")
	web=$(jq -c '.targets[] | select(.target == "web")' "$T/r.json")
	shop=$(jq -c '.targets[] | select(.target == "shop")' "$T/r.json")
	# Worst first: shop (down) first.
	[ "$(jq -r '[.targets[].target] | join(" ")' "$T/r.json")" = "shop web api" ]
	# web: 230 of 240 checks ok; one 10-minute outage from probe a;
	# by time the mean of a (10 min down) and b (none).
	[ "$(jq -r .checks <<<"$web")" = 240 ]
	[ "$(jq -r .ok_checks <<<"$web")" = 230 ]
	approx "$(jq -r .uptime_by_checks <<<"$web")" "$(echo "230/240" | bc -l)" 1e-9
	approx "$(jq -r .uptime_by_time <<<"$web")" \
		"$(echo "1 - 0.5 * 600 / ($gen - $T0 / 1000)" | bc -l)" 1e-3
	[ "$(jq -r .outage_count <<<"$web")" = 1 ]
	[ "$(jq -r .mttr_s <<<"$web")" = 600 ]
	[ "$(jq -r .longest_outage_s <<<"$web")" = 600 ]
	[ "$(jq -r '.outages[0].start' <<<"$web")" = "$(date -ud "@$((T0 / 1000 + 1800))" +%Y-%m-%dT%H:%M:%S.000Z)" ]
	[ "$(jq -r .errors.http_status <<<"$web")" = 10 ]
	# Certificates: the leaf's and the chain's expiry of the last checks.
	[ "$(jq -r .cert_not_after <<<"$web")" = "$(jq -rs 'map(.tls.cert_not_after) | max' "$T/in")" ]
	[ "$(jq -r .chain_not_after <<<"$web")" = "$(jq -rs 'map(.tls.chain_not_after) | max' "$T/in")" ]
	# shop: down since T0+60m, its outage open.
	[ "$(jq -r .state <<<"$shop")" = down ]
	[ "$(jq -r .since <<<"$shop")" = "$(date -ud "@$((T0 / 1000 + 3600 + 3))" +%Y-%m-%dT%H:%M:%S.000Z)" ]
	[ "$(jq -r '.outages[0].end' <<<"$shop")" = null ]
	[ "$(jq -r .mttr_s <<<"$shop")" = null ]
	approx "$(jq -r .longest_outage_s <<<"$shop")" "$((gen - T0 / 1000 - 3603))" 5
	# p50/p95/p99 within the histogram's bound (9.1%) of the durations'.
	local p
	for p in 50 95 99; do
		approx "$(jq -r ".p${p}_ms" <<<"$web")" \
			"$(jq -s "[.[] | select(.target == \"web\") | .duration_ms] | sort
				| .[(length * $p / 100 | ceil) - 1]" "$T/in")" \
			"$(jq -s "[.[] | select(.target == \"web\") | .duration_ms] | sort
				| .[(length * $p / 100 | ceil) - 1] * 0.091" "$T/in")"
	done
}

@test "report: reads rollups and outages only, never the raw rows" {
	history
	sm-report -f json | jq -c 'del(.generated_at) | .targets[] |= (del(.longest_outage_s, .uptime_by_time) | .outages[] |= del(.length_s))' >"$T/before"
	psql_q "TRUNCATE checks" >/dev/null
	sm-report -f json | jq -c 'del(.generated_at) | .targets[] |= (del(.longest_outage_s, .uptime_by_time) | .outages[] |= del(.length_s))' >"$T/after"
	cmp "$T/before" "$T/after"
	[ "$(jq '.targets | length' "$T/after")" = 3 ]
	[ "$(jq '.targets[0].checks' "$T/after")" = 120 ]
}

# A window of whole days and partial ones: two days and more of history
# from probe "a", one check every 10 minutes, every 5th failed, from
# 20:00Z four days ago.  The report's window starts at 22:00Z three days
# ago: its first two hours come from the hourly rollups, the two whole
# days after them from the daily ones, today from the hourly ones again.
@test "report: whole days from the daily rollups, the window's edges from the hourly ones; the page's daily bars" {
	local d0 start n since s_ms day
	d0=$(( $(date +%s) / 86400 * 86400 ))
	start=$(( (d0 - 4 * 86400 + 20 * 3600) * 1000 ))
	n=$(( ($(date +%s) * 1000 - start) / 600000 ))
	"$GEN" -n "$n" -t 1 -s "$start" -i 600000 -f 5 -S 7 |
		jq -c '.target = "x" | .probe = "a"' >"$T/in"
	sm-pg-write <"$T/in" >/dev/null
	s_ms=$(( (d0 - 3 * 86400 + 22 * 3600) * 1000 ))
	since=$(date -ud "@$((s_ms / 1000))" +%Y-%m-%dT%H:%M:%SZ)
	# expect FILTER: checks and ok checks of the input that pass FILTER (jq).
	expect() {
		jq -rs "[.[] | select($1)] | \"\\(length) \\(map(select(.ok)) | length)\"" "$T/in"
	}
	# Pending rows, then the same folded.
	local round
	for round in pending folded; do
		run -0 sm-report -f json -s "$since"
		[ "$(jq -r '.targets[0] | "\(.checks) \(.ok_checks)"' <<<"$output")" = \
			"$(expect ".started_at >= \"${since%Z}.000Z\"")" ]
		# The page: one bar per UTC day, whole days whatever the window.
		sm-report -f html -o "$T/page.html"
		for day in 1 2 3; do
			day=$(date -ud "@$((d0 - day * 86400))" +%F)
			read -r total ok <<<"$(expect ".started_at | startswith(\"$day\")")"
			grep -Fq "<title>$day: " "$T/page.html"
			grep -Eq "<title>$day: [0-9.]+% up \\($ok of $total checks ok\\)</title>" "$T/page.html"
		done
		psql_q "SELECT sm_rollup_fold()" >/dev/null
		[ "$(psql_q "SELECT count(*) FROM rollup_pending")" = 0 ]
	done
}

@test "report: text fits 100 columns, worst first; csv; --target and --label filter" {
	history
	run -0 sm-report
	[ "$(printf '%s\n' "$output" | awk '{ print length($0) }' | sort -n | tail -n 1)" -le 100 ]
	[[ "${lines[1]}" == TARGET* ]]
	[[ "${lines[2]}" == "shop "*" DOWN "* ]]
	[[ "${lines[3]}" == "web "*" up "* ]]
	run -0 sm-report -f csv
	[ "${#lines[@]}" = 4 ]
	[[ "${lines[0]}" == "target,url,state,since,checks,"* ]]
	run -0 sm-report -f csv -t 'w*'
	[ "${#lines[@]}" = 2 ]
	[[ "${lines[1]}" == web,* ]]
	run -0 sm-report -f json -l team=web -l env=prod
	[ "$(jq -r '[.targets[].target] | join(" ")' <<<"$output")" = "shop web" ]
	# A window before the history: no checks.
	run -0 sm-report -f json -s 2020-01-01T00:00:00Z -u 2020-01-02T00:00:00Z
	[ "$(jq '[.targets[].checks] | add' <<<"$output")" = 0 ]
}

@test "report: openmetrics passes promtool check metrics" {
	history
	run -0 sm-report -f openmetrics
	[[ "$output" == *'sitemon_up{target="shop"} 0'* ]]
	[[ "$output" == *'sitemon_uptime_ratio{target="web",basis="checks"} 0.9583333333'* ]]
	[ "${lines[-1]}" = "# EOF" ]
	sm-report -f openmetrics >"$T/m.prom"
	run -0 promtool check metrics <"$T/m.prom"
}

@test "report: error budget from the slo: in sites.yaml" {
	history
	cat >"$T/sites.yaml" <<-EOF
	defaults:
	  interval: 1m
	targets:
	  - name: web
	    url: https://web.example.test/
	    slo: 99.5%
	  - name: api
	    url: https://api.example.test/
	    slo: 99.9
	EOF
	run -0 sm-report -f json -S "$T/sites.yaml"
	local web
	web=$(jq -c '.targets[] | select(.target == "web")' <<<"$output")
	[ "$(jq -r .slo <<<"$web")" = 99.5 ]
	# 1 - (1 - uptime) / 0.005
	approx "$(jq -r .error_budget_left <<<"$web")" \
		"$(jq -r '1 - (1 - .uptime_by_time) / 0.005' <<<"$web")" 1e-6
	[ "$(jq -r '.targets[] | select(.target == "api") | .error_budget_left' <<<"$output")" = 1 ]
	[ "$(jq -r '.targets[] | select(.target == "shop") | .slo' <<<"$output")" = null ]
	printf 'targets:\n  - name: web\n    url: https://x/\n    slo: 120\n' >"$T/bad.yaml"
	run -78 sm-report -S "$T/bad.yaml"
	[[ "$output" == *"bad.yaml:4:10: slo: \"120\" is not a percentage"* ]]
}

@test "report: the status page in chromium: rows, down since, tooltips, 375 and 1280 px" {
	history
	run -0 sm-report -f html -o "$T/status.html" -g team
	[ "$(stat -c %a "$T/status.html")" = 644 ]
	[ -z "$(ls "$T" | grep 'status.html.tmp')" ]
	# Self-contained: no script, no external reference.
	! grep -Eqi '<script|<link|src=|url\(|@import|https?://[^"<]*"' "$T/status.html"
	mkdir -p "$ARTIFACTS"
	run -0 /usr/bin/python3 "$BATS_TEST_DIRNAME/fixtures/page-check.py" \
		"$T/status.html" "$ARTIFACTS" web 375 1280
	echo "$output" >"$T/page.json"
	# No console message at all (a CSP refusal would be one).
	[ "$(jq '.console | length' "$T/page.json")" = 0 ]
	# Styles applied: the CSP hash matches the <style>.
	[ "$(jq -r .state_color "$T/page.json")" != "rgb(0, 0, 0)" ]
	# One row per target, grouped by team (api, then web's worst first).
	[ "$(jq -r '[.rows[].target] | join(" ")' "$T/page.json")" = "api shop web" ]
	# The down target, down since T0+60m (its first failed check).
	local since
	since=$(date -ud "@$((T0 / 1000 + 3600))" '+%Y-%m-%d %H:%MZ')
	[ "$(jq -r '.rows[] | select(.target == "shop") | .class' "$T/page.json")" = "target down" ]
	[[ "$(jq -r '.rows[] | select(.target == "shop") | .head' "$T/page.json")" == *"Down"*"since $since"* ]]
	[ "$(jq -r '.rows[] | select(.target == "shop") | .since[0]' "$T/page.json")" = "$since" ]
	[[ "$(jq -r '.rows[] | select(.target == "web") | .head' "$T/page.json")" == *"Up"* ]]
	# 90 bars; today's tooltip gives the day's share of ok checks.
	[ "$(jq '.tooltips | length' "$T/page.json")" = 90 ]
	local day0 day1 n0 ok0
	day0=$(date -ud "@$((T0 / 1000))" +%F)
	if [ "$day0" = "$(date -u +%F)" ]; then
		[ "$(jq -r '.tooltips[-1]' "$T/page.json")" = "$day0: 95.833% up (230 of 240 checks ok)" ]
	else
		# The history crosses midnight: two days share it.
		n0=$(jq -s --arg d "$day0" '[.[] | select(.target == "web" and (.started_at | startswith($d)))] | length' "$T/in")
		ok0=$(jq -s --arg d "$day0" '[.[] | select(.target == "web" and .ok and (.started_at | startswith($d)))] | length' "$T/in")
		[[ "$(jq -r '.tooltips[-2]' "$T/page.json")" == "$day0: "*" up ($ok0 of $n0 checks ok)" ]]
	fi
	[ "$(jq -r '.tooltips[0]' "$T/page.json")" = "$(date -ud '89 days ago' +%F): no data" ]
	# No sideways scrolling on a phone or a desktop.
	[ "$(jq '.widths["375"] | .scroll <= .inner' "$T/page.json")" = true ]
	[ "$(jq '.widths["1280"] | .scroll <= .inner' "$T/page.json")" = true ]
	[ -s "$ARTIFACTS/status-375.png" ]
	[ -s "$ARTIFACTS/status-1280.png" ]
}

@test "report: the page's charts, open and recent outages, expiring certificates, states in words, dark scheme" {
	history
	run -0 sm-report -f html -o "$T/page.html" --cert-warn 3650d
	# Two p50/p95 charts per target, each with both lines (told apart by
	# dash, not by colour alone) where it has data.
	[ "$(grep -o '<figcaption>Last 24 hours: p50 (solid), p95 (dashed)</figcaption>' "$T/page.html" | wc -l)" = 3 ]
	[ "$(grep -o '<figcaption>Last 30 days: p50 (solid), p95 (dashed)</figcaption>' "$T/page.html" | wc -l)" = 3 ]
	[ "$(grep -o '<path class="p50" d="M' "$T/page.html" | wc -l)" = 6 ]
	[ "$(grep -o '<path class="p95" d="M' "$T/page.html" | wc -l)" = 6 ]
	# Open outages: shop's; recent ones: web's, which ended.
	sed -n '/<h2>Open outages<\/h2>/,/<\/section>/p' "$T/page.html" >"$T/open"
	grep -q '<span class="name">shop</span>' "$T/open"
	! grep -q '<span class="name">web</span>' "$T/open"
	sed -n '/<h2>Recent outages<\/h2>/,/<\/section>/p' "$T/page.html" >"$T/recent"
	grep -q '<span class="name">web</span>.*ended' "$T/recent"
	# Certificates within --cert-warn: each target's, with its days left.
	sed -n '/<h2>Certificates expiring soon<\/h2>/,/<\/section>/p' "$T/page.html" >"$T/certs"
	[ "$(grep -c '<li><span class="name">' "$T/certs")" = 3 ]
	grep -Eq 'certificate expires [0-9-]+ [0-9:]+Z \([0-9]+ days\)' "$T/certs"
	# A state is a word and a symbol, not a colour alone.
	grep -q '<span class="state down">&#9660; Down</span>' "$T/page.html"
	grep -q '<span class="state up">&#9650; Up</span>' "$T/page.html"
	# The system's dark mode is followed.
	grep -q '@media (prefers-color-scheme:dark)' "$T/page.html"
	# Without --cert-warn's long window, none of them is listed.
	run -0 sm-report -f html -o "$T/page2.html" --cert-warn 1d
	sed -n '/<h2>Certificates expiring soon<\/h2>/,/<\/section>/p' "$T/page2.html" | grep -q 'None\.'
}

@test "report: sm-schedule accepts slo: and refuses a bad one where it is" {
	printf 'defaults:\n  slo: "99.5%%"\ntargets:\n  - name: a\n    url: %s/ok\n    slo: 99.9\n' \
		"$HTTP_URL" >"$T/good.yaml"
	run -0 sm-schedule -c "$T/good.yaml"
	# Not passed on in the target record.
	run -0 sm-schedule -1 "$T/good.yaml"
	[ "$(jq -c 'has("slo")' <<<"$output")" = false ]
	printf 'targets:\n  - name: a\n    url: %s/ok\n    slo: 100\n' "$HTTP_URL" >"$T/bad.yaml"
	run -78 sm-schedule -c "$T/bad.yaml"
	[[ "$output" == *"bad.yaml:4:10: slo: \"100\" is not a percentage between 0 and 100"* ]]
}
