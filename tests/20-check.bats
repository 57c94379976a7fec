#!/usr/bin/env bats
# sm-check: probes against the suite's nginx ($HTTP_URL), the scripted
# server ($SCRIPTED_URL), a closed port ($CLOSED_URL), and HTTPS servers of
# this file's own (tests/fixtures/httpd.py with openssl-made certificates).

bats_require_minimum_version 1.5.0
load helpers

# libcurl honours the proxy variables; these tests talk to 127.0.0.1 only.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

# ---- helpers --------------------------------------------------------------

# probe [OPTION...] -- LINE...: run sm-check over LINEs; $output holds
# stdout and $stderr stderr, $status the exit status.
probe() {
	local opts=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		opts+=("$1")
		shift
	done
	shift
	printf '%s\n' "$@" >"$T/in"
	run --separate-stderr sm-check "${opts[@]}" <"$T/in"
	printf '%s\n' "$output" >"$T/out"
}

# jqe FILTER: jq -e FILTER over the results (-s: as one array).
jqe() {
	if ! jq -e "$@" <"$T/out" >/dev/null; then
		printf 'jq -e %s failed on:\n%s\nstderr:\n%s\n' "$*" "$output" "${stderr:-}" >&2
		return 1
	fi
}

# nresults N: exactly N result lines.
nresults() {
	local n
	n=$(grep -c . "$T/out" || true)
	[ "$n" -eq "$1" ] || { echo "expected $1 results, got $n: $output" >&2; return 1; }
}

# schema_ok: every result passes the JSON Schema (python3-jsonschema, an
# implementation independent of lib/record.c).
schema_ok() {
	"$SM_TOP/tests/fixtures/schema-check" "$SM_TOP/schema/result.schema.json" <"$T/out"
}

# check_on_fifo [ARG...]: sm-check ARG... reading the FIFO $T/fifo, which
# fd 5 holds open (so only a signal or closing fd 5 ends its input); its
# pid in $pid, stdout in $T/out, stderr in $T/err.
check_on_fifo() {
	mkfifo "$T/fifo"
	sm-check "$@" <"$T/fifo" >"$T/out" 2>"$T/err" 3>&- &
	pid=$!
	track_pid "$pid"
	exec 5>"$T/fifo"
}

alive() {
	kill -0 "$1" 2>/dev/null
}

dead() {
	! kill -0 "$1" 2>/dev/null
}

# ---- HTTPS servers, once for this file --------------------------------------

# mkcert NAME SAN [START END]: key and certificate NAME.{key,crt} in $TLS_DIR,
# self-signed, valid from START to END (openssl ca dates) or for 30 days.
mkcert() {
	local name=$1 san=$2 start=${3:-} end=${4:-}
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$TLS_DIR/$name.key" -out "$TLS_DIR/$name.csr" \
		-subj "/CN=sitemon-$name" -addext "subjectAltName=$san" 2>/dev/null
	mkdir -p "$TLS_DIR/ca-$name"
	: >"$TLS_DIR/ca-$name/index.txt"
	echo 01 >"$TLS_DIR/ca-$name/serial"
	cat >"$TLS_DIR/ca-$name/ca.cnf" <<-EOF
		[ ca ]
		default_ca = d
		[ d ]
		database = $TLS_DIR/ca-$name/index.txt
		new_certs_dir = $TLS_DIR/ca-$name
		serial = $TLS_DIR/ca-$name/serial
		default_md = sha256
		default_days = 30
		policy = p
		copy_extensions = copy
		[ p ]
		commonName = supplied
	EOF
	openssl ca -batch -notext -config "$TLS_DIR/ca-$name/ca.cnf" -selfsign \
		-keyfile "$TLS_DIR/$name.key" -in "$TLS_DIR/$name.csr" \
		-out "$TLS_DIR/$name.crt" ${start:+-startdate "$start"} \
		${end:+-enddate "$end"} 2>/dev/null
}

# mkchain: a root CA (30 days), an intermediate it signs that expires
# first (5 days), and a leaf for 127.0.0.1 the intermediate signs (20
# days); chain.crt is what the server sends: the leaf, then the
# intermediate.
mkchain() {
	local d="$TLS_DIR"
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$d/root.key" -out "$d/root.crt" -days 30 \
		-subj "/CN=sitemon-root" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$d/inter.key" -out "$d/inter.csr" -subj "/CN=sitemon-inter" 2>/dev/null
	printf '%s\n' "basicConstraints=critical,CA:TRUE" \
		"keyUsage=critical,keyCertSign,cRLSign" >"$d/inter.ext"
	openssl x509 -req -in "$d/inter.csr" -CA "$d/root.crt" -CAkey "$d/root.key" \
		-CAcreateserial -days 5 -extfile "$d/inter.ext" -out "$d/inter.crt" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$d/chain.key" -out "$d/leaf.csr" -subj "/CN=sitemon-leaf" 2>/dev/null
	printf '%s\n' "subjectAltName=IP:127.0.0.1" >"$d/leaf.ext"
	openssl x509 -req -in "$d/leaf.csr" -CA "$d/inter.crt" -CAkey "$d/inter.key" \
		-CAcreateserial -days 20 -extfile "$d/leaf.ext" -out "$d/leaf.crt" 2>/dev/null
	cat "$d/leaf.crt" "$d/inter.crt" >"$d/chain.crt"
}

# not_after FILE: a certificate's notAfter as sm-check writes times.
not_after() {
	date -u -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" \
		+%Y-%m-%dT%H:%M:%S.000Z
}

# tls_server NAME [ADDRESS]: serve NAME's certificate (on 127.0.0.1, or
# ADDRESS); prints the port.
tls_server() {
	local port
	port=$(free_port)
	/usr/bin/python3 "$SM_TOP/tests/fixtures/httpd.py" --host "${2:-127.0.0.1}" \
		--cert "$TLS_DIR/$1.crt" --key "$TLS_DIR/$1.key" "$port" \
		</dev/null >"$TLS_DIR/$1.out" 2>"$TLS_DIR/$1.log" 3>&- &
	echo $! >>"$TLS_DIR/pids"
	WAIT_TIMEOUT=20 wait_for grep -q ready "$TLS_DIR/$1.out" || return 1
	echo "$port"
}

# h2_server: nginx serving the good certificate over https with HTTP/2
# offered in ALPN; prints the port.
h2_server() {
	local dir="$TLS_DIR/nginx-h2" port
	port=$(free_port)
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<-EOF
		worker_processes 1;
		daemon off;
		pid $dir/nginx.pid;
		events { worker_connections 64; }
		http {
		    access_log off;
		    client_body_temp_path $dir/body;
		    proxy_temp_path $dir/proxy;
		    fastcgi_temp_path $dir/fastcgi;
		    uwsgi_temp_path $dir/uwsgi;
		    scgi_temp_path $dir/scgi;
		    server {
		        listen 127.0.0.1:$port ssl http2;
		        ssl_certificate $TLS_DIR/good.crt;
		        ssl_certificate_key $TLS_DIR/good.key;
		        location = /ok { return 200 "sitemon h2\n"; }
		    }
		}
	EOF
	nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
		</dev/null >"$dir/out" 2>&1 3>&- &
	echo $! >>"$TLS_DIR/pids"
	WAIT_TIMEOUT=20 wait_for curl -fsS -o /dev/null --cacert "$TLS_DIR/good.crt" \
		"https://127.0.0.1:$port/ok" 2>/dev/null || return 1
	echo "$port"
}

setup_file() {
	export TLS_DIR="$BATS_FILE_TMPDIR/tls"
	mkdir -p "$TLS_DIR"
	mkcert good "IP:127.0.0.1,DNS:localhost"
	mkcert expired "IP:127.0.0.1,DNS:localhost" 20200101000000Z 20200102000000Z
	mkcert wronghost "DNS:wrong.invalid"
	mkcert future "IP:127.0.0.1" 20990101000000Z 20990102000000Z
	mkchain
	# The leaf without its intermediate: an incomplete chain.
	cp "$TLS_DIR/leaf.crt" "$TLS_DIR/leafonly.crt"
	cp "$TLS_DIR/chain.key" "$TLS_DIR/leafonly.key"
	export TLS_GOOD_URL="https://127.0.0.1:$(tls_server good)"
	export TLS_EXPIRED_URL="https://127.0.0.1:$(tls_server expired)"
	export TLS_WRONG_URL="https://127.0.0.1:$(tls_server wronghost)"
	export H2_URL="https://127.0.0.1:$(h2_server)"
	export TLS_CHAIN_URL="https://127.0.0.1:$(tls_server chain)"
	export TLS_FUTURE_URL="https://127.0.0.1:$(tls_server future)"
	export TLS_LEAFONLY_URL="https://127.0.0.1:$(tls_server leafonly)"
}

teardown_file() {
	local pid
	[ -f "$TLS_DIR/pids" ] || return 0
	while read -r pid; do
		kill "$pid" 2>/dev/null || true
	done <"$TLS_DIR/pids"
}

# ---- command line -----------------------------------------------------------

@test "check: --help prints the synopsis, --version the version" {
	run -0 sm-check --help
	[[ "$output" == "usage: sm-check "* ]]
	[[ "$output" == *"--concurrency"* ]]
	run -0 sm-check -h
	run -0 sm-check --version
	[[ "$output" == "sm-check (sitemon) "* ]]
}

@test "check: bad options exit 64" {
	run -64 sm-check --no-such-option </dev/null
	run -64 sm-check -c 0 </dev/null
	[[ "$output" == *"-c"* ]]
	run -64 sm-check -c many </dev/null
	run -64 sm-check extra-argument </dev/null
	SM_CHECK_CONCURRENCY=0 run -64 sm-check </dev/null
}

@test "check: --threads and SM_CHECK_THREADS: a bad count is a usage error" {
	run -64 sm-check -t 0 </dev/null
	[[ "$output" == *"-t"* ]]
	run -64 sm-check --threads many </dev/null
	run -64 sm-check -t 257 </dev/null
	SM_CHECK_THREADS=0 run -64 sm-check </dev/null
	run -0 sm-check --help
	[[ "$output" == *"--threads"* ]]
}

@test "check: sm-check defines no libc function (no interposition)" {
	local bin defined
	bin=$(command -v sm-check)
	# Functions of libc that a library in the process may call: none may
	# be sm-check's own (sockcache.c once defined these three).
	defined=$(nm -D --defined-only "$bin" | awk '{ print $NF }' |
		grep -xE 'getsockname|getpeername|fcntl|fcntl64|socket|connect|close|read|write|poll|epoll_wait|malloc|free' || true)
	[ -z "$defined" ] || { echo "sm-check defines: $defined" >&2; return 1; }
}

@test "check: empty input, no output, exit 0" {
	run -0 sm-check </dev/null
	[ -z "$output" ]
}

# ---- results ----------------------------------------------------------------

@test "check: 200 from nginx is ok, with every field of the result" {
	probe -l test-probe -- "$HTTP_URL/ok"
	[ "$status" -eq 0 ]
	nresults 1
	jqe '.v == 1 and .ok == true and .status == 200 and .error_kind == null and .error == null'
	jqe --arg u "$HTTP_URL/ok" '.target == $u and .url == $u and .final_url == $u'
	jqe '.probe == "test-probe" and .labels == {} and .scheduled_at == null'
	jqe '.id | test("^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")'
	jqe '.started_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$")'
	jqe '.bytes == 11 and .http_version == "1.1" and .remote_ip == "127.0.0.1" and .redirects == 0'
	jqe '.duration_ms >= 0 and (.phases | (.dns_ms >= 0 and .connect_ms >= 0 and .ttfb_ms >= 0 and .transfer_ms >= 0 and .tls_ms == null))'
	jqe '.duration_ms >= .phases.connect_ms'
	jqe 'has("regex") | not'
	jqe 'has("tls") | not'
	schema_ok
}

@test "check: 500 is an http_status error" {
	probe -- "$HTTP_URL/status/500"
	[ "$status" -eq 0 ]
	jqe '.ok == false and .status == 500 and .error_kind == "http_status"'
	jqe '.error | test("500") and test("2xx")'
	schema_ok
}

@test "check: expect_status accepts codes and ranges" {
	probe -- \
		"{\"url\":\"$HTTP_URL/status/500\",\"expect_status\":[\"5xx\"]}" \
		"{\"url\":\"$HTTP_URL/ok\",\"expect_status\":[201,\"300-399\"]}" \
		"{\"url\":\"$SCRIPTED_URL/status/404\",\"expect_status\":[404]}"
	jqe -s 'map(select(.url | endswith("/status/500"))) | .[0].ok == true'
	jqe -s 'map(select(.url | endswith("/ok"))) | .[0] | .ok == false and .error_kind == "http_status" and (.error | test("201,3xx"))'
	jqe -s 'map(select(.url | endswith("/status/404"))) | .[0].ok == true'
}

@test "check: regex that matches, regex that does not, regex_absent" {
	probe -- \
		"{\"target\":\"m\",\"url\":\"$HTTP_URL/ok\",\"regex\":\"sitemon\\\\s+ok\"}" \
		"{\"target\":\"n\",\"url\":\"$HTTP_URL/ok\",\"regex\":\"^welcome\"}" \
		"{\"target\":\"a\",\"url\":\"$HTTP_URL/ok\",\"regex_absent\":\"error\"}" \
		"{\"target\":\"b\",\"url\":\"$HTTP_URL/ok\",\"regex_absent\":\"m.n\"}"
	[ "$status" -eq 0 ]
	nresults 4
	jqe -s '.[] | select(.target == "m") | .ok == true and .regex == {"pattern": "sitemon\\s+ok", "matched": true}'
	jqe -s '.[] | select(.target == "n") | .ok == false and .error_kind == "body_mismatch" and .status == 200 and .regex.matched == false'
	jqe -s '.[] | select(.target == "n") | .error | test("\\^welcome")'
	jqe -s '.[] | select(.target == "a") | .ok == true'
	jqe -s '.[] | select(.target == "b") | .ok == false and .error_kind == "body_mismatch" and (.error | test("regex_absent"))'
	schema_ok
}

@test "check: a regex that does not compile refuses the line" {
	probe -- "{\"url\":\"$HTTP_URL/ok\",\"regex\":\"(unclosed\"}" "$HTTP_URL/ok"
	[ "$status" -eq 0 ]
	nresults 1
	[[ "$stderr" == *"<stdin>:1:"* ]]
	[[ "$stderr" == *"field \"regex\": invalid PCRE2 pattern at offset "*": missing closing parenthesis"* ]]
}

@test "check: the same regex on many targets, and more distinct ones than the cache holds" {
	local i
	for i in $(seq 1 700); do
		echo "{\"target\":\"s$i\",\"url\":\"$HTTP_URL/ok\",\"regex\":\"sitemon\"}"
		echo "{\"target\":\"d$i\",\"url\":\"$HTTP_URL/ok\",\"regex\":\"sitemon|x{$i}\",\"regex_absent\":\"y{$i}\"}"
	done >"$T/in"
	run --separate-stderr -0 sm-check <"$T/in"
	printf '%s\n' "$output" >"$T/out"
	nresults 1400
	jqe -s 'all(.ok and .regex.matched)'
}

@test "check: a regex that backtracks without end is stopped by the match limit" {
	probe -- "{\"url\":\"$SCRIPTED_URL/body?text=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\",\"regex\":\"^(a+)+\$\"}"
	jqe '.ok == false and .error_kind == "other" and (.error | test("match limit")) and (.regex | has("matched") | not)'
	schema_ok
}

@test "check: a costly regex is held to the probe's deadline, its time counted, and no other probe waits for it" {
	# (x*)\1\d backtracks over every split of every run of x: seconds
	# of work on 5000 bytes.  It stops at A's deadline (1 s) with a
	# timeout, its time in duration_ms; B, a 300 ms answer in flight
	# meanwhile, comes out first with its own timings.
	probe -- "{\"target\":\"A\",\"url\":\"$SCRIPTED_URL/big?bytes=5000\",\"regex\":\"(x*)\\\\1\\\\d\",\"timeout_ms\":1000}" \
		"{\"target\":\"B\",\"url\":\"$SCRIPTED_URL/slow?ms=300\",\"regex\":\"slow\"}"
	[ "$status" -eq 0 ]
	nresults 2
	jqe -s '.[0].target == "B" and .[0].ok and .[0].duration_ms < 1000 and .[0].phases.ttfb_ms < 1000 and .[0].regex.matched'
	jqe -s '.[1] | .target == "A" and .ok == false and .error_kind == "timeout" and .status == 200'
	jqe -s '.[1] | (.error | test("undecided at the deadline \\(timeout_ms 1000\\): searched [0-9]+ of 5000 bytes")) and (.regex | has("matched") | not)'
	# The regex ran from the end of the transfer to the deadline: most
	# of the second (less under load, when its thread came late).
	jqe -s '.[1] | .duration_ms < 3000 and .phases.regex_ms >= 500 and .duration_ms >= .phases.regex_ms + .phases.ttfb_ms'
	schema_ok
}

@test "check: connection refused is a connect error" {
	probe -- "$CLOSED_URL"
	[ "$status" -eq 0 ]
	jqe '.ok == false and .status == null and .error_kind == "connect" and (.error | length > 0)'
	schema_ok
}

@test "check: a name that does not resolve is a dns error" {
	probe -- "http://no-such-host.sitemon.invalid/"
	jqe '.ok == false and .status == null and .error_kind == "dns" and .remote_ip == null'
	jqe '.error | test("no-such-host.sitemon.invalid")'
	schema_ok
}

@test "check: a slow answer past timeout_ms is a timeout" {
	probe -- "{\"url\":\"$SCRIPTED_URL/slow?ms=5000\",\"timeout_ms\":300}"
	jqe '.ok == false and .error_kind == "timeout" and .status == null'
	jqe '.duration_ms >= 250 and .duration_ms < 4000'
	schema_ok
}

@test "check: a body that trickles past timeout_ms is a timeout" {
	probe -- "{\"url\":\"$SCRIPTED_URL/trickle?ms=100&n=100\",\"timeout_ms\":500}"
	jqe '.ok == false and .error_kind == "timeout" and .status == 200'
	jqe '.duration_ms < 4000'
}

@test "check: a bare URL line is a target with every default" {
	probe -- "  $HTTP_URL/ok  " "" "# a comment"
	[ "$status" -eq 0 ]
	nresults 1
	jqe --arg u "$HTTP_URL/ok" '.target == $u and .url == $u and .labels == {} and .scheduled_at == null and .ok'
	[ -z "$stderr" ]
}

@test "check: a target record's name, labels and scheduled_at pass through" {
	probe -- "{\"v\":1,\"target\":\"home\",\"url\":\"$HTTP_URL/ok\",\"labels\":{\"team\":\"web\",\"env\":\"prod\"},\"scheduled_at\":\"2026-11-23T10:00:00.250Z\"}"
	jqe '.target == "home" and .labels == {"team": "web", "env": "prod"} and .scheduled_at == "2026-11-23T10:00:00.250Z"'
	schema_ok
}

@test "check: a password in the url never reaches the result" {
	local u="http://bob:s3cret@${HTTP_URL#http://}/ok"
	probe -- "$u" "{\"url\":\"$u\"}" "{\"target\":\"named\",\"url\":\"$u\"}" \
		"$SCRIPTED_URL/redirect?to=http://al:pw2@${SCRIPTED_URL#http://}/ok"
	nresults 4
	jqe -s 'all(.ok)'
	! grep -q 's3cret' "$T/out"
	jqe -s --arg r "http://bob:***@${HTTP_URL#http://}/ok" 'map(select(.url == $r and .final_url == $r)) | length == 3'
	jqe -s --arg r "http://bob:***@${HTTP_URL#http://}/ok" 'map(select(.target == $r)) | length == 2'
	jqe -s 'map(select(.target == "named")) | length == 1'
	jqe -s --arg r "http://al:***@${SCRIPTED_URL#http://}/ok" 'map(select(.final_url == $r)) | length == 1'
}

@test "check: method, headers and body are sent" {
	probe -- "{\"url\":\"$SCRIPTED_URL/echo\",\"method\":\"PUT\",\"headers\":{\"X-Sitemon\":\"yes\"},\"body\":\"payload=42\",\"regex\":\"(?s)^PUT /echo .*X-Sitemon: yes.*payload=42\$\"}"
	jqe '.ok == true and .regex.matched == true'
	probe -- "{\"url\":\"$SCRIPTED_URL/echo\",\"regex\":\"User-Agent: sitemon/\"}"
	jqe '.ok == true'
	probe -A probe-agent/1 -- "{\"url\":\"$SCRIPTED_URL/echo\",\"regex\":\"User-Agent: probe-agent/1\"}"
	jqe '.ok == true'
	probe -- "{\"url\":\"$SCRIPTED_URL/echo\",\"method\":\"HEAD\"}"
	jqe '.ok == true and .bytes == 0'
}

@test "check: every request says Connection: close unless the target sets its own" {
	# A client that never reuses a connection says so (RFC 9112, 9.6),
	# once; a target's own Connection header replaces it.
	probe -- "{\"url\":\"$SCRIPTED_URL/echo\",\"regex\":\"(?m)^Connection: close\\r\$\",\"regex_absent\":\"(?s)Connection:.*Connection:\"}" \
		"{\"url\":\"$SCRIPTED_URL/echo\",\"headers\":{\"connection\":\"keep-alive\"},\"regex\":\"(?m)^connection: keep-alive\\r\$\",\"regex_absent\":\"(?i)connection: close\"}"
	[ "$status" -eq 0 ]
	nresults 2
	jqe -s 'all(.ok)'
}

@test "check: header names and values that would break the request are refused" {
	probe -- "{\"url\":\"$SCRIPTED_URL/echo\",\"headers\":{\"X-A\":\"1\\r\\nX-Injected: 1\"}}" \
		"{\"url\":\"$SCRIPTED_URL/echo\",\"headers\":{\"Bad Name\":\"1\"}}" \
		"{\"url\":\"$SCRIPTED_URL/echo\",\"headers\":{\"X-Empty\":\"\"},\"regex\":\"X-Empty:\"}"
	[ "$status" -eq 0 ]
	nresults 1
	jqe '.ok'
	[[ "$stderr" == *"<stdin>:1:"*"line break"* ]]
	[[ "$stderr" == *"<stdin>:2:"*"not a header name"* ]]
}

@test "check: invalid lines are skipped with their line number, others probed" {
	probe -- "$HTTP_URL/ok" "{not json" '{"url":"http://x/","timeout_ms":"soon"}' "$HTTP_URL/status/500" '[1,2]' "just words"
	[ "$status" -eq 0 ]
	nresults 2
	[[ "$stderr" == *"<stdin>:2:"* ]]
	[[ "$stderr" == *"<stdin>:3:"*timeout_ms* ]]
	[[ "$stderr" == *"<stdin>:5:"* ]]
	[[ "$stderr" == *"<stdin>:6:"* ]]
	[ "$(grep -c . <<<"$stderr")" -eq 4 ]
	jqe -s 'map(.status) | sort == [200, 500]'
}

@test "check: a line past the maximum length is skipped, the next one probed" {
	{
		head -c 1100000 /dev/zero | tr '\0' a
		echo
		echo "$HTTP_URL/ok"
	} >"$T/in"
	run --separate-stderr sm-check <"$T/in"
	[ "$status" -eq 0 ]
	printf '%s\n' "$output" >"$T/out"
	nresults 1
	[[ "$stderr" == *"<stdin>:1:"*"too long"* ]]
	[ "$(grep -c . <<<"$stderr")" -eq 1 ]
}

@test "check: a last line without a newline is probed" {
	printf '%s' "$HTTP_URL/ok" >"$T/in"
	run --separate-stderr -0 sm-check <"$T/in"
	printf '%s\n' "$output" >"$T/out"
	nresults 1
	jqe '.ok'
}

@test "check: ip_version picks the address family" {
	local port=${HTTP_URL##*:}
	probe -- "{\"target\":\"v4\",\"url\":\"http://localhost:$port/ok\",\"ip_version\":4}" \
		"{\"target\":\"v6\",\"url\":\"http://localhost:$port/ok\",\"ip_version\":6}"
	nresults 2
	jqe -s '.[] | select(.target == "v4") | .ok and .remote_ip == "127.0.0.1"'
	# nginx listens on 127.0.0.1 only: over IPv6 it cannot be reached.
	jqe -s '.[] | select(.target == "v6") | (.ok | not) and .remote_ip != "127.0.0.1"'
}

# nodelays LINE: how many TCP_NODELAY setsockopt calls sm-check makes for
# the probe of LINE, which must end ok.
nodelays() {
	printf '%s\n' "$1" >"$T/in"
	strace -f -e trace=setsockopt -o "$T/trace" sm-check <"$T/in" >"$T/out" 2>"$T/err"
	jq -e .ok "$T/out" >/dev/null || { cat "$T/out" "$T/err" >&2; return 1; }
	grep -c TCP_NODELAY "$T/trace" || true
}

@test "check: TCP_NODELAY where Nagle could hold a write back (https, a body), not for a plain http GET" {
	command -v strace >/dev/null || skip "strace is not installed (run: make deps)"
	local n
	n=$(nodelays "$HTTP_URL/ok")
	[ "$n" -eq 0 ]
	n=$(nodelays "{\"url\":\"$SCRIPTED_URL/echo\",\"method\":\"POST\",\"body\":\"x\"}")
	[ "$n" -eq 1 ]
	n=$(nodelays "{\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}")
	[ "$n" -eq 1 ]
	# The https hop of a redirect, not the http one.
	n=$(nodelays "{\"url\":\"$SCRIPTED_URL/redirect?to=$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}")
	[ "$n" -eq 1 ]
	# A proxy in the environment (perhaps an https one): always.
	n=$(no_proxy='*' http_proxy=http://127.0.0.1:9 nodelays "$HTTP_URL/ok")
	[ "$n" -eq 1 ]
}

@test "check: remote_ip is each connection's own, whichever descriptor it reuses" {
	local port pid i
	port=$(free_port)
	# A server on 127.0.0.2, beside nginx on 127.0.0.1: an empty 200.
	/usr/bin/python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.2", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c.close()
' "$port" >"$T/srv.out" 2>&1 3>&- &
	pid=$!
	track_pid "$pid"
	wait_for grep -q ready "$T/srv.out"
	for i in 1 2 3; do
		echo "$HTTP_URL/ok"
		echo "http://127.0.0.2:$port/"
	done >"$T/in"
	# -c 1: each probe's socket gets the descriptor the last one closed.
	run --separate-stderr sm-check -c 1 <"$T/in"
	[ "$status" -eq 0 ]
	printf '%s\n' "$output" >"$T/out"
	nresults 6
	jqe -s 'all(.ok and .remote_ip == (.url | capture("//(?<h>[^:/]+)").h))'
}

@test "check: a write error on stdout exits 74" {
	echo "$HTTP_URL/ok" >"$T/in"
	run -74 bash -c 'sm-check <"$1" >&-' _ "$T/in"
	[[ "$output" == *"write <stdout>"* ]]
}

@test "check: --strict makes an invalid line fatal (65), after the probes in flight" {
	probe --strict -- "$HTTP_URL/ok" "{not json" "$HTTP_URL/ok"
	[ "$status" -eq 65 ]
	[[ "$stderr" == *"<stdin>:2:"* ]]
	nresults 1
}

@test "check: --dead-letter keeps the invalid lines" {
	probe -d "$T/dead" -- "$HTTP_URL/ok" "{not json" "gopher://x/"
	[ "$status" -eq 0 ]
	nresults 1
	[ "$(cat "$T/dead")" = "$(printf '%s\n' "{not json" "gopher://x/")" ]
}

@test "check: only http and https are fetched" {
	probe -- "ftp://127.0.0.1/" "file:///etc/passwd" '{"url":"file:///etc/passwd"}' "gopher://127.0.0.1/" "$HTTP_URL/ok"
	[ "$status" -eq 0 ]
	nresults 1
	[ "$(grep -c "scheme" <<<"$stderr")" -eq 4 ]
	[[ "$stderr" != *"root:"* ]]
}

@test "check: redirects are followed and counted" {
	probe -- "$SCRIPTED_URL/chain?n=3"
	jqe --arg u "$SCRIPTED_URL/ok" '.ok == true and .status == 200 and .redirects == 3 and .final_url == $u'
	probe -- "{\"url\":\"$SCRIPTED_URL/chain?n=3\",\"follow_redirects\":false}"
	jqe '.ok == false and .status == 302 and .error_kind == "http_status" and .redirects == 0'
	probe -- "{\"url\":\"$SCRIPTED_URL/chain?n=3\",\"follow_redirects\":false,\"expect_status\":[\"3xx\"]}"
	jqe '.ok == true and .status == 302'
	schema_ok
}

@test "check: each redirect hop is kept (status, location, time), and the final hop's phases beside the sum" {
	# The first answer (the redirect) takes 300 ms, the final one none:
	# the hop's time holds the wait, the final hop's ttfb does not, the
	# sum of the phases does.
	probe -- "$SCRIPTED_URL/redirect?ms=300&to=%2Fchain%3Fn%3D2"
	nresults 1
	jqe --arg b "$SCRIPTED_URL" '.ok and .redirects == 3 and (.hops | length) == 3 and
		[.hops[].status] == [302, 302, 302] and
		.hops[0].url == "\($b)/redirect?ms=300&to=%2Fchain%3Fn%3D2" and
		[.hops[].location] == ["\($b)/chain?n=2", "\($b)/chain?n=1", "\($b)/ok"]'
	jqe '.hops[0].time_ms >= 300 and .hops[1].time_ms < 300 and .hops[2].time_ms < 300'
	jqe '.final_phases.ttfb_ms < 300 and .phases.ttfb_ms >= 300 and .final_phases.dns_ms != null'
	jqe '([.hops[].time_ms] | add) <= .duration_ms'
	# No redirect: neither hops nor final_phases.
	probe -- "$SCRIPTED_URL/ok"
	jqe 'has("hops") or has("final_phases") | not'
	schema_ok
}

@test "check: too many redirects and redirect loops are redirects errors" {
	probe -- "{\"url\":\"$SCRIPTED_URL/chain?n=3\",\"max_redirects\":2}" "$SCRIPTED_URL/loop"
	nresults 2
	jqe -s 'all(.ok == false and .error_kind == "redirects")'
	jqe -s 'map(select(.url | endswith("/loop"))) | .[0].redirects == 5'
	schema_ok
}

@test "check: a redirect to file:// is refused" {
	probe -- "$SCRIPTED_URL/redirect?to=file:///etc/passwd" "$SCRIPTED_URL/redirect?to=ftp://127.0.0.1/x"
	nresults 2
	jqe -s 'all(.ok == false and .error_kind == "redirects" and .bytes == 0)'
	! grep -q "root:" "$T/out"
}

@test "check: a reply that is not HTTP is a protocol error" {
	probe -- "$SCRIPTED_URL/garbage" "$SCRIPTED_URL/short?bytes=1000"
	nresults 2
	jqe -s 'all(.ok == false and .error_kind == "protocol")'
	schema_ok
}

@test "check: a receive error after the connection is made is protocol, not connect" {
	# Bad chunked framing, and a TCP reset in the middle of a 200 body;
	# a closed port stays connect.
	probe -- "$SCRIPTED_URL/badchunk" "$SCRIPTED_URL/resetmid?bytes=100000" "$CLOSED_URL"
	nresults 3
	jqe -s '.[] | select(.url | endswith("/badchunk")) | .ok == false and .error_kind == "protocol" and .status == 200'
	jqe -s '.[] | select(.url | contains("/resetmid")) | .ok == false and .error_kind == "protocol" and .status == 200 and .bytes > 0 and .content_length == 200000'
	jqe -s --arg c "$CLOSED_URL" '.[] | select(.url == $c) | .error_kind == "connect"'
	schema_ok
}

@test "check: a body past max_body_bytes is cut, not failed: bytes read, size announced, truncated" {
	probe -- \
		"{\"target\":\"len\",\"url\":\"$SCRIPTED_URL/big?bytes=5000\",\"max_body_bytes\":1000}" \
		"{\"target\":\"stream\",\"url\":\"$SCRIPTED_URL/stream?bytes=300000\",\"max_body_bytes\":1000}" \
		"{\"target\":\"fits\",\"url\":\"$SCRIPTED_URL/big?bytes=1000\",\"max_body_bytes\":1000}" \
		"{\"target\":\"nginx\",\"url\":\"$HTTP_URL/big\"}"
	nresults 4
	jqe -s '.[] | select(.target == "len") | .ok == true and .error_kind == null and .status == 200 and .bytes == 1000 and .truncated == true and .content_length == 5000'
	# No Content-Length: the size is unknown, the read still stops.
	jqe -s '.[] | select(.target == "stream") | .ok == true and .bytes == 1000 and .truncated == true and .content_length == null'
	jqe -s '.[] | select(.target == "fits") | .ok == true and .bytes == 1000 and .truncated == false and .content_length == 1000'
	jqe -s '.[] | select(.target == "nginx") | .ok == true and .bytes == 1048576 and .truncated == false'
	jqe -s 'all(.wire_bytes == null)'
	schema_ok
}

@test "check: on a cut body a regex fails only when it cannot be decided (too_large)" {
	# "x{10}" matches in the first 1000 bytes: decided.  "y" may be in
	# the part not read, and "x+$" may match only at the real end: not
	# decided, too_large.  regex_absent "x" matches: decided, mismatch.
	probe -- \
		"{\"target\":\"found\",\"url\":\"$SCRIPTED_URL/big?bytes=5000\",\"max_body_bytes\":1000,\"regex\":\"x{10}\"}" \
		"{\"target\":\"absent\",\"url\":\"$SCRIPTED_URL/big?bytes=5000\",\"max_body_bytes\":1000,\"regex\":\"y\"}" \
		"{\"target\":\"end\",\"url\":\"$SCRIPTED_URL/stream?bytes=5000\",\"max_body_bytes\":1000,\"regex\":\"x+\$\"}" \
		"{\"target\":\"not\",\"url\":\"$SCRIPTED_URL/big?bytes=5000\",\"max_body_bytes\":1000,\"regex_absent\":\"x\"}" \
		"{\"target\":\"whole\",\"url\":\"$SCRIPTED_URL/big?bytes=1000\",\"max_body_bytes\":1000,\"regex\":\"x+\$\"}"
	nresults 5
	jqe -s '.[] | select(.target == "found") | .ok == true and .truncated == true and .regex.matched == true'
	jqe -s '.[] | select(.target == "absent") | .ok == false and .error_kind == "too_large" and .status == 200 and .bytes == 1000 and (.regex | has("matched") | not) and (.error | test("cut at max_body_bytes \\(1000\\)"))'
	jqe -s '.[] | select(.target == "end") | .ok == false and .error_kind == "too_large"'
	jqe -s '.[] | select(.target == "not") | .ok == false and .error_kind == "body_mismatch" and .truncated == true'
	jqe -s '.[] | select(.target == "whole") | .ok == true and .truncated == false and .regex.matched == true'
	schema_ok
}

@test "check: a compressed body: bytes decoded, wire_bytes as it came, content_length as announced" {
	probe -- "{\"target\":\"whole\",\"url\":\"$SCRIPTED_URL/gzip?bytes=100000\"}" \
		"{\"target\":\"cut\",\"url\":\"$SCRIPTED_URL/gzip?bytes=100000\",\"max_body_bytes\":50000}" \
		"{\"target\":\"plain\",\"url\":\"$SCRIPTED_URL/big?bytes=1000\"}"
	nresults 3
	local encoded
	encoded=$(/usr/bin/python3 -c 'import gzip; print(len(gzip.compress(b"x" * 100000)))')
	jqe -s --argjson n "$encoded" '.[] | select(.target == "whole") | .ok and .bytes == 100000 and .wire_bytes == $n and .content_length == $n and .truncated == false'
	# Cut after decoding: max_body_bytes bounds what a regex would see.
	jqe -s '.[] | select(.target == "cut") | .ok and .bytes == 50000 and .truncated and .wire_bytes > 0'
	jqe -s '.[] | select(.target == "plain") | .ok and .bytes == 1000 and .wire_bytes == null'
	schema_ok
}

# ---- concurrency, backpressure, draining ------------------------------------

@test "check: many lines, one result each, unique ids" {
	local i
	for i in $(seq 1 300); do
		echo "{\"target\":\"t$i\",\"url\":\"$HTTP_URL/ok\",\"labels\":{\"i\":\"$i\"}}"
	done >"$T/in"
	echo "$CLOSED_URL" >>"$T/in"
	run --separate-stderr sm-check -c 50 <"$T/in"
	[ "$status" -eq 0 ]
	printf '%s\n' "$output" >"$T/out"
	nresults 301
	jqe -s 'map(.id) | unique | length == 301'
	jqe -s 'map(.target) | unique | length == 301'
	jqe -s 'map(select(.ok)) | length == 300'
	jqe -s 'all(.target == "t" + .labels.i or .error_kind == "connect")'
	schema_ok
}

@test "check: probes run concurrently up to -c, and no more" {
	local a b pid
	a=$(hold_id) b=$(hold_id)b
	printf '%s\n' "$SCRIPTED_URL/hold?id=$a" "$SCRIPTED_URL/hold?id=$a" \
		"$SCRIPTED_URL/hold?id=$a" "$SCRIPTED_URL/hold?id=$b" >"$T/in"
	sm-check -c 3 <"$T/in" >"$T/out" 2>"$T/err" 3>&- &
	pid=$!
	track_pid "$pid"
	# Three in flight at once, the fourth line not started.
	wait_for held_is "$a" 3
	held_is "$b" 0
	alive "$pid"
	[ ! -s "$T/out" ]
	release "$a"
	wait_for held_is "$b" 1
	release "$b"
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 4
	jqe -s 'all(.ok)'
}

# results_are N: $T/out holds N results so far.
results_are() {
	[ "$(grep -c . "$T/out" 2>/dev/null)" -eq "$1" ]
}

# blocked_in_write PID: PID waits in write(2) (a full pipe).
blocked_in_write() {
	[ "$(cut -d' ' -f1 "/proc/$1/syscall" 2>/dev/null)" = 1 ]
}

@test "check: with -c probes in flight stdin is not read: the producer blocks, nothing is lost" {
	local id pid ppid wchar line
	id=$(hold_id)
	# Long lines, so that a pipe's worth is a few dozen probes.
	line="$SCRIPTED_URL/hold?id=$id&pad=$(printf '%01000d' 0)"
	mkfifo "$T/pipe"
	sm-check -c 2 <"$T/pipe" >"$T/out" 2>"$T/err" 3>&- &
	pid=$!
	track_pid "$pid"
	# An endless producer; each line is one atomic write.
	/usr/bin/python3 -c 'import os, sys
line = sys.argv[1].encode() + b"\n"
while True:
    os.write(1, line)' "$line" >"$T/pipe" 2>/dev/null 3>&- &
	ppid=$!
	track_pid "$ppid"
	wait_for held_is "$id" 2
	wait_for blocked_in_write "$ppid"
	# What was written is what the pipe and sm-check's line buffer hold,
	# not an endless queue.
	wchar=$(awk '$1 == "wchar:" { print $2 }' "/proc/$ppid/io")
	echo "producer wrote $wchar bytes" >&2
	((wchar < 1048576))
	held_is "$id" 2
	# Every line written gets its result once the probes are let go.
	kill "$ppid"
	wait "$ppid" || true
	release "$id"
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults $((wchar / (${#line} + 1)))
	jqe -s 'all(.ok)'
}

# A server on 127.0.0.2 and 127.0.0.3 (port $1) that keeps connections
# open for more requests and prints "accept IP" for each connection.
keepalive_server() {
	# exec: the background job's PID is python's, so teardown stops it.
	exec /usr/bin/python3 -c '
import socket, sys, threading
port = int(sys.argv[1])
def serve(conn):
    buf = b""
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while b"\r\n\r\n" in buf:
                buf = buf.split(b"\r\n\r\n", 1)[1]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
def accept(s, ip):
    while True:
        c, _ = s.accept()
        print("accept", ip, flush=True)
        threading.Thread(target=serve, args=(c,), daemon=True).start()
socks = []
for ip in ("127.0.0.2", "127.0.0.3"):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(16)
    socks.append((s, ip))
print("ready", flush=True)
threading.Thread(target=accept, args=socks[1], daemon=True).start()
accept(*socks[0])
' "$1" 3>&-
}

@test "check: every probe makes its own DNS lookup and its own connection" {
	local port spid pid url
	port=$(free_port)
	keepalive_server "$port" >"$T/srv.out" 2>&1 &
	spid=$!
	track_pid "$spid"
	wait_for grep -q ready "$T/srv.out"
	# A private /etc/hosts (a mount namespace of sm-check's own), changed
	# between probes.
	echo "127.0.0.2 sitemon-fresh.test" >"$T/hosts"
	mkfifo "$T/fifo"
	unshare -m sh -c 'mount --bind "$1" /etc/hosts && exec sm-check -c 1' _ "$T/hosts" \
		<"$T/fifo" >"$T/out" 2>"$T/err" 3>&- &
	pid=$!
	track_pid "$pid"
	exec 5>"$T/fifo"
	url="http://sitemon-fresh.test:$port/"
	printf '%s\n' "$url" "$url" "$url" >&5
	wait_for results_are 3
	# Rewritten in place: the bind mount sees the new name at once.
	echo "127.0.0.3 sitemon-fresh.test" >"$T/hosts"
	echo "$url" >&5
	exec 5>&-
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 4
	jqe -s 'all(.ok) and map(.remote_ip) == ["127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3"]'
	jqe -s 'all(.phases.dns_ms >= 0 and .phases.connect_ms >= 0)'
	# The server would have kept each connection for the next probe.
	[ "$(grep -c '^accept 127.0.0.2$' "$T/srv.out")" -eq 3 ]
	[ "$(grep -c '^accept 127.0.0.3$' "$T/srv.out")" -eq 1 ]
}

@test "check: results are written as each probe ends" {
	local a pid
	a=$(hold_id)
	check_on_fifo
	printf '%s\n' "$SCRIPTED_URL/hold?id=$a" "$HTTP_URL/ok" >&5
	# The quick probe's result comes out while the other is held.
	wait_for grep -q '"status":200' "$T/out"
	held_is "$a" 1
	release "$a"
	exec 5>&-
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 2
}

@test "check: EOF drains the probes in flight, then exits 0" {
	local a pid
	a=$(hold_id)
	check_on_fifo
	printf '%s\n' "$SCRIPTED_URL/hold?id=$a" "$SCRIPTED_URL/hold?id=$a" >&5
	exec 5>&-
	wait_for held_is "$a" 2
	alive "$pid"
	[ ! -s "$T/out" ]
	release "$a"
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 2
	jqe -s 'all(.ok and .status == 200)'
}

@test "check: SIGTERM drains the probes in flight, then exits 0" {
	local a pid
	a=$(hold_id)
	check_on_fifo
	echo "$SCRIPTED_URL/hold?id=$a" >&5
	wait_for held_is "$a" 1
	kill -TERM "$pid"
	wait_for grep -q "stopping: 1 probe in flight" "$T/err"
	# Input stays open: only the signal ends the run, after the drain;
	# lines after the signal are not read.
	echo "$HTTP_URL/ok" >&5
	alive "$pid"
	release "$a"
	local rc=0
	wait "$pid" || rc=$?
	exec 5>&-
	[ "$rc" -eq 0 ]
	nresults 1
	jqe '.ok and (.url | contains("/hold"))'
}

@test "check: SIGINT drains like SIGTERM" {
	local a pid
	a=$(hold_id)
	check_on_fifo
	echo "$SCRIPTED_URL/hold?id=$a" >&5
	wait_for held_is "$a" 1
	kill -INT "$pid"
	wait_for grep -q "stopping: 1 probe in flight" "$T/err"
	alive "$pid"
	release "$a"
	local rc=0
	wait "$pid" || rc=$?
	exec 5>&-
	[ "$rc" -eq 0 ]
	nresults 1
}

@test "check: with -c 1 the probes run one at a time, in input order" {
	probe -c 1 -- "$SCRIPTED_URL/slow?ms=200" "$HTTP_URL/ok" "$SCRIPTED_URL/status/503" "$HTTP_URL/status/500"
	nresults 4
	jqe -s 'map(.status) == [200, 200, 503, 500]'
	jqe -s '.[1].started_at >= .[0].started_at'
}

@test "check: a second SIGTERM stops at once" {
	local a pid
	a=$(hold_id)
	check_on_fifo
	echo "$SCRIPTED_URL/hold?id=$a" >&5
	wait_for held_is "$a" 1
	kill -TERM "$pid"
	# Signals do not queue: wait until the first one was seen.
	wait_for grep -q "stopping: 1 probe in flight" "$T/err"
	alive "$pid"
	kill -TERM "$pid"
	local rc=0
	wait "$pid" || rc=$?
	exec 5>&-
	release "$a"
	[ "$rc" -eq 143 ]
	[ ! -s "$T/out" ]
}

# ---- probe loops (--threads) --------------------------------------------------

# tasks_are PID N: PID has N threads.
tasks_are() {
	[ "$(ls "/proc/$1/task" | wc -l)" -eq "$2" ]
}

@test "check: -t N runs N probe loops, SM_CHECK_THREADS is the default, at most -c" {
	local a pid
	a=$(hold_id)
	# Two probes held: with -t 2 each loop has one (one thread each; a
	# loop that took both would leave the other idle, still a thread).
	printf '%s\n' "$SCRIPTED_URL/hold?id=$a" "$SCRIPTED_URL/hold?id=$a" >"$T/in"
	SM_CHECK_THREADS=1 sm-check -t 2 -c 2 <"$T/in" >"$T/out" 2>"$T/err" 3>&- &
	pid=$!
	track_pid "$pid"
	wait_for held_is "$a" 2
	tasks_are "$pid" 2
	release "$a"
	wait "$pid"
	nresults 2
	a=$(hold_id)
	printf '%s\n' "$SCRIPTED_URL/hold?id=$a" "$SCRIPTED_URL/hold?id=$a" >"$T/in"
	SM_CHECK_THREADS=1 sm-check -c 2 <"$T/in" >"$T/out" 2>"$T/err" 3>&- &
	pid=$!
	track_pid "$pid"
	wait_for held_is "$a" 2
	tasks_are "$pid" 1
	release "$a"
	wait "$pid"
	# Never more loops than -c.
	a=$(hold_id)
	echo "$SCRIPTED_URL/hold?id=$a" >"$T/in"
	sm-check -t 4 -c 1 <"$T/in" >"$T/out" 2>"$T/err" 3>&- &
	pid=$!
	track_pid "$pid"
	wait_for held_is "$a" 1
	tasks_are "$pid" 1
	release "$a"
	wait "$pid"
	nresults 1
}

@test "check: -t 2: each of many targets yields exactly one valid result" {
	local i
	for i in $(seq 1 600); do
		case $((i % 3)) in
		0) echo "{\"target\":\"t$i\",\"url\":\"$HTTP_URL/ok\",\"regex\":\"sitemon\"}" ;;
		1) echo "{\"target\":\"t$i\",\"url\":\"$HTTP_URL/ok\"}" ;;
		2) echo "{\"target\":\"t$i\",\"url\":\"$CLOSED_URL\"}" ;;
		esac
	done >"$T/in"
	run --separate-stderr sm-check -t 2 -c 20 <"$T/in"
	[ "$status" -eq 0 ]
	printf '%s\n' "$output" >"$T/out"
	# Whole lines only: every line is one JSON object.
	nresults 600
	[ "$(jq -c . <"$T/out" | wc -l)" -eq 600 ]
	jqe -s 'map(.id) | unique | length == 600'
	jqe -s 'map(.target) | unique | length == 600'
	jqe -s 'all(if (.target | ltrimstr("t") | tonumber) % 3 == 2 then .error_kind == "connect" else .ok end)'
	jqe -s 'map(select(.regex != null)) | length == 200 and all(.regex.matched)'
	schema_ok
}

@test "check: -t 2 -c 3: three probes in flight across the loops, the fourth line waits" {
	local a b pid
	a=$(hold_id) b=$(hold_id)b
	printf '%s\n' "$SCRIPTED_URL/hold?id=$a" "$SCRIPTED_URL/hold?id=$a" \
		"$SCRIPTED_URL/hold?id=$a" "$SCRIPTED_URL/hold?id=$b" >"$T/in"
	sm-check -t 2 -c 3 <"$T/in" >"$T/out" 2>"$T/err" 3>&- &
	pid=$!
	track_pid "$pid"
	wait_for held_is "$a" 3
	held_is "$b" 0
	release "$a"
	wait_for held_is "$b" 1
	release "$b"
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 4
}

@test "check: -t 2, SIGTERM mid-run: every line read is probed, every other left in the pipe" {
	local a i pid rc=0 n
	a=$(hold_id)
	check_on_fifo -t 2 -c 4
	# Four probes held, then many quick ones: one write, so that sm-check
	# reads them (into its buffer) with the first ones.
	{
		for i in 1 2 3 4; do
			echo "{\"target\":\"t$i\",\"url\":\"$SCRIPTED_URL/hold?id=$a\"}"
		done
		for i in $(seq 5 400); do
			echo "{\"target\":\"t$i\",\"url\":\"$HTTP_URL/ok\"}"
		done
	} >"$T/in"
	cat "$T/in" >&5
	wait_for held_is "$a" 4
	kill -TERM "$pid"
	wait_for grep -q "stopping: 4 probes in flight" "$T/err"
	release "$a"
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	# What sm-check did not read is still in the pipe.
	exec 6<"$T/fifo"
	exec 5>&-
	timeout 20 cat <&6 >"$T/rest"
	exec 6<&-
	n=$(grep -c . "$T/out")
	echo "results: $n, left in the pipe: $(grep -c . "$T/rest" || true)"
	# Lines were read past the four held (one write brought them).
	[ "$n" -gt 4 ]
	jqe -s 'map(.id) | unique | length == '"$n"
	jqe -s 'all(.ok)'
	# Each target once, in the results or in the pipe.
	{ jq -r .target "$T/out"; jq -r .target "$T/rest"; } | sort >"$T/seen"
	[ "$(sort -u "$T/seen" | wc -l)" -eq 400 ]
	[ "$(wc -l <"$T/seen")" -eq 400 ]
}

@test "check: -t 2, EOF: every line probed, the held ones last" {
	local a i pid rc=0
	a=$(hold_id)
	check_on_fifo -t 2 -c 8
	{
		for i in 1 2; do
			echo "{\"target\":\"h$i\",\"url\":\"$SCRIPTED_URL/hold?id=$a\"}"
		done
		for i in $(seq 1 200); do
			echo "{\"target\":\"t$i\",\"url\":\"$HTTP_URL/ok\"}"
		done
	} >&5
	exec 5>&-
	wait_for held_is "$a" 2
	wait_for results_are 200
	alive "$pid"
	release "$a"
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 202
	jqe -s 'map(.target) | unique | length == 202'
	jqe -s '.[200:] | map(.target) | sort == ["h1", "h2"]'
}

# ---- the stats line (--stats-interval) ----------------------------------------

# stats_of FILE: its stats lines without waited_ms (the loop's waits,
# which depend on the host's load).
stats_of() {
	grep 'stats:' "$1" | sed -E 's/ waited_ms=[0-9]+//'
}

# nstats PATTERN: how many stats lines of $T/err are exactly PATTERN.
nstats() {
	stats_of "$T/err" | grep -Fcx "sm-check: info: stats: $1" || true
}

# has_stats PATTERN: a stats line of $T/err is exactly PATTERN.
has_stats() {
	[ "$(nstats "$1")" -ge 1 ]
}

@test "check: --stats-interval writes cumulative counters on stderr, and the last ones at exit" {
	local a pid
	a=$(hold_id)
	# Input stays open: only the stats clock makes the lines come.
	check_on_fifo --stats-interval 100ms
	printf '%s\n' "$HTTP_URL/ok" "$HTTP_URL/ok" "$CLOSED_URL" "not a url" \
		"$SCRIPTED_URL/hold?id=$a" >&5
	wait_for has_stats "in=4 out=3 in_flight=1 ok=2 failed=1 invalid=1 err_connect=1"
	release "$a"
	# Counters since start, not since the last line.
	wait_for has_stats "in=4 out=4 in_flight=0 ok=3 failed=1 invalid=1 err_connect=1"
	echo "$HTTP_URL/status/500" >&5
	wait_for has_stats "in=5 out=5 in_flight=0 ok=3 failed=2 invalid=1 err_connect=1 err_http_status=1"
	exec 5>&-
	local rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 5
	[ "$(stats_of "$T/err" | tail -n 1)" = \
	  "sm-check: info: stats: in=5 out=5 in_flight=0 ok=3 failed=2 invalid=1 err_connect=1 err_http_status=1" ] ||
		{ cat "$T/err"; false; }
}

@test "check: SM_STATS_INTERVAL is the default of --stats-interval; a bad one is a usage error" {
	printf '%s\n' "$HTTP_URL/ok" >"$T/in"
	# Off by default: no stats line, not even at exit.
	sm-check <"$T/in" >/dev/null 2>"$T/err"
	[ "$(grep -c 'stats:' "$T/err")" -eq 0 ]
	# On (a period longer than the run): just the last line, at exit.
	SM_STATS_INTERVAL=1h sm-check <"$T/in" >/dev/null 2>"$T/err"
	[ "$(grep -c 'stats:' "$T/err")" -eq 1 ]
	[ "$(nstats 'in=1 out=1 in_flight=0 ok=1 failed=0 invalid=0')" -eq 1 ]
	# The option wins over the environment; 0 turns the line off.
	SM_STATS_INTERVAL=1h sm-check --stats-interval 0 <"$T/in" >/dev/null 2>"$T/err"
	[ "$(grep -c 'stats:' "$T/err")" -eq 0 ]
	run -64 sm-check --stats-interval bogus </dev/null
	[[ "$output" == *'--stats-interval: "bogus" is not a duration'* ]]
	run -64 sm-check --stats-interval -1s </dev/null
	SM_STATS_INTERVAL=bogus run -64 sm-check </dev/null
	[[ "$output" == *'SM_STATS_INTERVAL: "bogus"'* ]]
}

@test "check: probe location from SM_PROBE_LOCATION, -l wins" {
	SM_PROBE_LOCATION=from-env probe -- "$HTTP_URL/ok"
	jqe '.probe == "from-env"'
	SM_PROBE_LOCATION=from-env probe -l from-flag -- "$HTTP_URL/ok"
	jqe '.probe == "from-flag"'
	probe -- "$HTTP_URL/ok"
	jqe --arg h "$(hostname)" '.probe == $h'
}

# ---- timings that leave out sm-check's own waits ----------------------------

# answer_waiting PORT: a connection to PORT has bytes nobody read yet.
answer_waiting() {
	ss -Htn "dport = :$1" | awk '$2 > 0 { f = 1 } END { exit !f }'
}

# waited_ms: the waited_ms of the last stats line of $T/err, 0 if none.
waited_ms() {
	grep 'stats:' "$T/err" | tail -n 1 | sed -nE 's/.* waited_ms=([0-9]+).*/\1/p' |
		awk '{ w = $1 } END { print w + 0 }'
}

# stall_check PORT: with the answer to sm-check ($pid) on its way from
# PORT, stop sm-check; run the rest of the arguments (which let the bytes
# come); once they wait in sm-check's socket, leave them there 1.5 s (the
# stimulus, not a synchronisation), then resume it.  $stalled_ms: from
# the stop to the resumption.
stall_check() {
	local port=$1 t0 t1
	shift
	kill -STOP "$pid"
	t0=$(date +%s%N)
	"$@"
	wait_for answer_waiting "$port"
	sleep 1.5
	kill -CONT "$pid"
	t1=$(date +%s%N)
	stalled_ms=$(((t1 - t0) / 1000000))
}

# waited_between LOW HIGH: the stats line's waited_ms is within.
waited_between() {
	local w
	w=$(waited_ms)
	[ "$w" -ge "$1" ] && [ "$w" -le "$2" ] ||
		{ echo "waited_ms=$w, not within $1 and $2"; cat "$T/err"; false; }
}

@test "check: an answer that waits unread while sm-check is stopped is timed by its arrival" {
	local a rc=0
	a=$(hold_id)
	check_on_fifo -t 1 --stats-interval 1h
	echo "{\"target\":\"held\",\"url\":\"$SCRIPTED_URL/hold?id=$a\"}" >&5
	wait_for held_is "$a" 1
	stall_check "${SCRIPTED_URL##*:}" release "$a"
	exec 5>&-
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 1
	# libcurl saw the first byte 1.5 s or more after the request; it came
	# within a second.
	jqe '.ok and .phases.ttfb_ms < 1000 and .duration_ms < 1000'
	# What was taken out is the time the answer lay there: at least the
	# 1.5 s, at most the stop.
	waited_between 1500 "$stalled_ms"
}

@test "check: a relayed https answer that waits unread while sm-check is stopped is timed by its arrival" {
	local a rc=0 ca="\"ca_file\":\"$TLS_DIR/good.crt\""
	a=$(hold_id)
	check_on_fifo -t 1 --stats-interval 1h
	# The first probe of the origin is libcurl's; the relay makes the next.
	echo "{\"target\":\"learn\",\"url\":\"$TLS_GOOD_URL/ok\",$ca}" >&5
	wait_for grep -q learn "$T/out"
	echo "{\"target\":\"held\",\"url\":\"$TLS_GOOD_URL/hold?id=$a\",$ca}" >&5
	wait_for eval "[ \"\$(curl -fsS --cacert $TLS_DIR/good.crt $TLS_GOOD_URL/held?id=$a)\" = 1 ]"
	stall_check "${TLS_GOOD_URL##*:}" curl -fsS -o /dev/null --cacert "$TLS_DIR/good.crt" "$TLS_GOOD_URL/release?id=$a"
	exec 5>&-
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 2
	grep -q ' tls_relayed=1$' "$T/err"
	output=$(cat "$T/out")
	jqe -s '.[1] | .target == "held" and .ok and .phases.ttfb_ms < 1000 and .duration_ms < 1000'
	waited_between 1500 "$stalled_ms"
}

@test "check: a relayed handshake whose server flight waits unread while sm-check is stopped is timed by its arrival" {
	local port ppid rc=0
	port=$(free_port)
	# The proxy holds the server's bytes of its second connection (the
	# relay's handshake) until told.
	/usr/bin/python3 "$SM_TOP/tests/fixtures/holdproxy.py" "$port" "${TLS_GOOD_URL##*:}" 1 >"$T/proxy.out" 2>&1 &
	ppid=$!
	track_pid "$ppid"
	wait_for grep -q ready "$T/proxy.out"
	check_on_fifo -t 1 --stats-interval 1h
	echo "{\"target\":\"learn\",\"url\":\"https://127.0.0.1:$port/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}" >&5
	wait_for grep -q learn "$T/out"
	echo "{\"target\":\"hs\",\"url\":\"https://127.0.0.1:$port/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}" >&5
	wait_for grep -q holding "$T/proxy.out"
	stall_check "$port" kill -USR1 "$ppid"
	exec 5>&-
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 2
	grep -q ' tls_relayed=1$' "$T/err"
	output=$(cat "$T/out" "$T/proxy.out")
	jqe -s '.[1] | .target == "hs" and .ok and .phases.tls_ms < 1000 and .duration_ms < 1000'
	waited_between 1500 "$stalled_ms"
}

@test "check: a connect seen late by a busy loop is timed by the SYN's round trip" {
	local i w
	# The first probe's CA bundle (the system's, 20 times over) is parsed
	# as libcurl starts its handshake, on the loop, while the second
	# probe's connect is done and waits to be seen.
	for ((i = 0; i < 20; i++)); do cat /etc/ssl/certs/ca-certificates.crt; done >"$T/big.pem"
	cat "$TLS_DIR/good.crt" >>"$T/big.pem"
	probe -t 1 -c 2 --stats-interval 1h -- \
		"{\"target\":\"tls\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$T/big.pem\"}" \
		"{\"target\":\"plain\",\"url\":\"$SCRIPTED_URL/ok\"}"
	printf '%s\n' "$stderr" >"$T/err"
	nresults 2
	jqe -s 'map(.ok) == [true, true]'
	# The loop did wait (the parse), and the plain probe's connect and
	# duration leave it out.
	w=$(waited_ms)
	[ "$w" -ge 100 ] || { echo "waited_ms=$w"; echo "$stderr"; false; }
	jqe -s 'map(select(.target == "plain"))[0] | .phases.connect_ms < 20 and .duration_ms < 50'
}

@test "check: a connect whose SYN went twice keeps its whole time" {
	local port w pid rc=0
	# A listener whose accept queue (backlog 0) one connection fills: the
	# kernel drops the probe's SYN until it is accepted, and the SYN
	# goes again a second later.  Its round trip is then not the
	# connect's, which stays libcurl's: a second or more.
	/usr/bin/python3 -c '
import signal, socket, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(0)
filler = socket.create_connection(ls.getsockname())
print(ls.getsockname()[1], flush=True)
signal.sigwait([signal.SIGUSR1])
ls.accept()[0].close()  # the filler
while True:
    c, _ = ls.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    c.close()
' >"$T/listener.out" 2>&1 &
	local lpid=$!
	track_pid "$lpid"
	wait_for grep -q . "$T/listener.out"
	port=$(head -n 1 "$T/listener.out")
	check_on_fifo -t 1 --stats-interval 1h
	echo "{\"target\":\"syn\",\"url\":\"http://127.0.0.1:$port/\",\"timeout_ms\":10000}" >&5
	wait_for eval "ss -Htn state syn-sent 'dport = :$port' | grep -q ."
	kill -USR1 "$lpid"
	exec 5>&-
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	nresults 1
	jqe '.ok and .phases.connect_ms >= 900 and .duration_ms >= 900'
	[ "$(waited_ms)" -lt 900 ]
}

# ---- OpenSSL's and libcurl's allocator ---------------------------------------

@test "check: OpenSSL and libcurl allocate with mimalloc; malloc stays glibc's for every other part" {
	local a rc=0
	a=$(hold_id)
	check_on_fifo -t 1
	echo "$SCRIPTED_URL/hold?id=$a" >&5
	wait_for held_is "$a" 1
	# Under AddressSanitizer they keep malloc, so that ASan sees it.
	if ldd "$(command -v sm-check)" | grep -q libasan; then
		! grep -q libmimalloc "/proc/$pid/maps"
	else
		grep -q libmimalloc "/proc/$pid/maps"
	fi
	release "$a"
	exec 5>&-
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ]
	# Loaded apart (RTLD_LOCAL): no object's malloc or free is
	# mimalloc's (they are libc's, or ASan's under SAN=1), and http and
	# https (libcurl's TLS, then the relay's) work with the libraries'
	# memory on the other heap.
	printf '%s\n' "{\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}" \
		"{\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}" \
		"$SCRIPTED_URL/redirect?to=/ok" >"$T/in"
	LD_DEBUG=bindings sm-check -t 1 -c 1 <"$T/in" >"$T/out" 2>"$T/bindings"
	jqe -s 'length == 3 and all(.ok)'
	grep -E "symbol .(malloc|free)'" "$T/bindings" >"$T/mf"
	[ -s "$T/mf" ]
	! grep ' to [^ ]*libmimalloc' "$T/mf"
}

# ---- TLS --------------------------------------------------------------------

@test "check: https with a trusted certificate reports tls details" {
	probe -- "{\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
	jqe '.ok == true and .status == 200'
	jqe '.tls.version | test("^TLSv1\\.[23]$")'
	jqe '.tls.cert_issuer | test("sitemon-good")'
	jqe '.tls.cert_not_after | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.000Z$")'
	jqe '.tls.cert_days_left >= 28 and .tls.cert_days_left <= 30'
	jqe '(.tls.cert_not_before < .started_at) and (.tls.cert_not_after > .started_at)'
	jqe '.phases.tls_ms >= 0'
	schema_ok
}

@test "check: the earliest expiry in the chain is reported beside the leaf's" {
	# The intermediate expires 15 days before the leaf: chain_not_after
	# is its date, cert_not_after and cert_days_left stay the leaf's.
	probe -- "{\"url\":\"$TLS_CHAIN_URL/ok\",\"ca_file\":\"$TLS_DIR/root.crt\"}" \
		"{\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
	[ "$status" -eq 0 ]
	nresults 2
	jqe -s 'all(.ok)'
	jqe -s --arg leaf "$(not_after "$TLS_DIR/leaf.crt")" --arg inter "$(not_after "$TLS_DIR/inter.crt")" \
		'.[] | select(.url | startswith($ENV.TLS_CHAIN_URL)) | .tls |
		 .cert_not_after == $leaf and .chain_not_after == $inter and
		 .cert_days_left >= 19 and .cert_days_left <= 20 and (.cert_issuer | test("sitemon-inter"))'
	# One certificate: its own date.
	jqe -s '.[] | select(.url | startswith($ENV.TLS_GOOD_URL)) | .tls |
		.chain_not_after == .cert_not_after and .chain_not_after != null'
	schema_ok
}

@test "check: a self-signed certificate is a tls error unless tls_verify is off" {
	probe -- "$TLS_GOOD_URL/ok" "{\"url\":\"$TLS_GOOD_URL/status/200\",\"tls_verify\":false}"
	nresults 2
	jqe -s '.[] | select(.url | endswith("/ok")) | .ok == false and .error_kind == "tls" and .status == null and (.error | test("self.signed"))'
	jqe -s '.[] | select(.url | endswith("/status/200")) | .ok == true and (.tls.cert_issuer | test("sitemon-good"))'
	schema_ok
}

@test "check: an expired certificate is a tls error; unverified, it shows its age" {
	probe -- "{\"url\":\"$TLS_EXPIRED_URL/ok\",\"ca_file\":\"$TLS_DIR/expired.crt\"}" \
		"{\"url\":\"$TLS_EXPIRED_URL/status/200\",\"tls_verify\":false}"
	nresults 2
	jqe -s '.[] | select(.url | endswith("/ok")) | .ok == false and .error_kind == "tls" and (.error | test("expired"))'
	jqe -s '.[] | select(.url | endswith("/status/200")) | .ok == true and .tls.cert_not_after == "2020-01-02T00:00:00.000Z" and .tls.cert_not_before == "2020-01-01T00:00:00.000Z" and .tls.cert_days_left < 0'
	schema_ok
}

@test "check: a certificate for another host is a tls error" {
	probe -- "{\"url\":\"$TLS_WRONG_URL/ok\",\"ca_file\":\"$TLS_DIR/wronghost.crt\"}"
	jqe '.ok == false and .error_kind == "tls"'
	jqe '.error | test("127.0.0.1")'
}

@test "check: a server that speaks HTTP/2 is probed over it, default headers and all" {
	# The default headers (Connection: close among them) and a target's
	# own go over HTTP/2 as well, and the result says which protocol
	# answered.
	probe -- "{\"url\":\"$H2_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\",\"regex\":\"^sitemon h2\"}" \
		"{\"url\":\"$H2_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\",\"headers\":{\"X-Sitemon\":\"yes\"}}"
	[ "$status" -eq 0 ]
	nresults 2
	jqe -s 'all(.ok and .status == 200 and .http_version == "2" and .bytes == 11)'
	jqe -s 'all(.tls.cert_issuer | test("sitemon-good"))'
	schema_ok
	# A body cut short over HTTP/2 (the stream reset) is cut, not failed.
	probe -- "{\"url\":\"$H2_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\",\"max_body_bytes\":5}"
	jqe '.ok and .http_version == "2" and .truncated and .bytes == 5 and .content_length == 11'
}

@test "check: a redirect from http to https is followed, with tls details" {
	probe -- "{\"url\":\"$SCRIPTED_URL/redirect?to=$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
	jqe --arg u "$TLS_GOOD_URL/ok" '.ok == true and .redirects == 1 and .final_url == $u and (.tls.version | startswith("TLS"))'
	# The handshake was the last hop's; the sum over the hops has it
	# too (the http hop has none).
	jqe '.final_phases.tls_ms > 0 and .phases.tls_ms == .final_phases.tls_ms'
}

@test "check: each probe is verified against its own ca_file, however they alternate" {
	local i ins=()
	# -c 1: each probe follows one with another CA file (sm-check keeps
	# the parsed bundles, one per file, shared by every probe).
	for i in 1 2 3; do
		ins+=("{\"target\":\"good$i\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
			"{\"target\":\"chain$i\",\"url\":\"$TLS_CHAIN_URL/ok\",\"ca_file\":\"$TLS_DIR/root.crt\"}"
			"{\"target\":\"chainbad$i\",\"url\":\"$TLS_CHAIN_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
			"{\"target\":\"goodbad$i\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/root.crt\"}"
			"{\"target\":\"default$i\",\"url\":\"$TLS_GOOD_URL/ok\"}")
	done
	probe -c 1 -- "${ins[@]}"
	[ "$status" -eq 0 ]
	nresults 15
	jqe -s 'map(select(.target | test("^(good|chain)[0-9]"))) | length == 6 and all(.ok)'
	jqe -s 'map(select(.target | startswith("chainbad"))) | all(.tls_error == "unknown_issuer")'
	jqe -s 'map(select(.target | test("^(goodbad|default)"))) | length == 6 and all(.tls_error == "self_signed")'
	# The same with every probe at once, over two loops.
	probe -t 2 -c 15 -- "${ins[@]}"
	nresults 15
	jqe -s 'map(select(.ok)) | map(.target) | sort == ["chain1","chain2","chain3","good1","good2","good3"]'
}

@test "check: a ca_file that cannot be read is a tls error (ca_file) that names it; tls_verify off needs none" {
	probe -- "{\"target\":\"missing\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$T/no-such-ca.pem\"}" \
		"{\"target\":\"empty\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"/dev/null\"}" \
		"{\"target\":\"unverified\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$T/no-such-ca.pem\",\"tls_verify\":false}"
	[ "$status" -eq 0 ]
	nresults 3
	jqe -s --arg f "$T/no-such-ca.pem" '.[] | select(.target == "missing") | .ok == false and .error_kind == "tls" and .tls_error == "ca_file" and (.error | contains($f))'
	jqe -s '.[] | select(.target == "empty") | .ok == false and .tls_error == "ca_file"'
	jqe -s '.[] | select(.target == "unverified") | .ok and .tls.version != null'
}

@test "check: a TLS failure keeps the certificate facts and says which check failed (tls_error)" {
	probe -- "{\"target\":\"self\",\"url\":\"$TLS_GOOD_URL/ok\"}" \
		"{\"target\":\"expired\",\"url\":\"$TLS_EXPIRED_URL/ok\",\"ca_file\":\"$TLS_DIR/expired.crt\"}" \
		"{\"target\":\"future\",\"url\":\"$TLS_FUTURE_URL/ok\",\"ca_file\":\"$TLS_DIR/future.crt\"}" \
		"{\"target\":\"issuer\",\"url\":\"$TLS_CHAIN_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}" \
		"{\"target\":\"incomplete\",\"url\":\"$TLS_LEAFONLY_URL/ok\",\"ca_file\":\"$TLS_DIR/root.crt\"}" \
		"{\"target\":\"host\",\"url\":\"$TLS_WRONG_URL/ok\",\"ca_file\":\"$TLS_DIR/wronghost.crt\"}" \
		"{\"target\":\"fine\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
	[ "$status" -eq 0 ]
	nresults 7
	kind() { jqe -s --arg t "$1" --arg k "$2" '.[] | select(.target == $t) | .ok == false and .error_kind == "tls" and .tls_error == $k and .status == null'; }
	kind self self_signed
	kind expired expired
	kind future not_yet_valid
	kind issuer unknown_issuer
	kind incomplete unknown_issuer
	kind host hostname_mismatch
	jqe -s '.[] | select(.target == "fine") | .ok and .tls_error == null'
	# The facts of the certificate, failed or not, as openssl sees them.
	local t crt
	for t in self:good expired:expired future:future issuer:leaf incomplete:leaf host:wronghost fine:good; do
		crt="$TLS_DIR/${t#*:}.crt"
		jqe -s --arg t "${t%%:*}" \
			--arg fp "$(openssl x509 -in "$crt" -noout -fingerprint -sha256 | cut -d= -f2)" \
			--arg na "$(not_after "$crt")" \
			--arg cn "$(openssl x509 -in "$crt" -noout -subject -nameopt oneline | sed 's/^subject=//')" \
			--arg is "$(openssl x509 -in "$crt" -noout -issuer -nameopt oneline | sed 's/^issuer=//')" \
			'.[] | select(.target == $t) | .tls | .cert_sha256 == $fp and .cert_not_after == $na and
			 .cert_subject == $cn and .cert_issuer == $is and .cert_not_before < .cert_not_after and
			 (.version | startswith("TLSv1."))'
	done
	jqe -s '.[] | select(.target == "expired") | .tls.cert_not_after == "2020-01-02T00:00:00.000Z" and .tls.cert_days_left < 0'
	jqe -s '.[] | select(.target == "future") | .tls.cert_not_before == "2099-01-01T00:00:00.000Z"'
	# A host name mismatch says which names the certificate holds.
	jqe -s '.[] | select(.target == "host") | .tls.cert_sans == ["DNS:wrong.invalid"] and (.error | test("DNS:wrong.invalid"))'
	jqe -s '.[] | select(.target == "fine") | .tls.cert_sans == ["IP:127.0.0.1", "DNS:localhost"]'
	schema_ok
}

@test "check: an https origin that answered over HTTP/1.1 gets sm-check's own TLS (the relay), with libcurl's results" {
	local c cases origins=() i=0
	cases=(
		"{\"target\":\"fine\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
		"{\"target\":\"self\",\"url\":\"$TLS_GOOD_URL/ok\"}"
		"{\"target\":\"expired\",\"url\":\"$TLS_EXPIRED_URL/ok\",\"ca_file\":\"$TLS_DIR/expired.crt\"}"
		"{\"target\":\"future\",\"url\":\"$TLS_FUTURE_URL/ok\",\"ca_file\":\"$TLS_DIR/future.crt\"}"
		"{\"target\":\"issuer\",\"url\":\"$TLS_CHAIN_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
		"{\"target\":\"incomplete\",\"url\":\"$TLS_LEAFONLY_URL/ok\",\"ca_file\":\"$TLS_DIR/root.crt\"}"
		"{\"target\":\"host\",\"url\":\"$TLS_WRONG_URL/ok\",\"ca_file\":\"$TLS_DIR/wronghost.crt\"}"
		"{\"target\":\"missing\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$T/no-such-ca.pem\"}"
		"{\"target\":\"chain\",\"url\":\"$TLS_CHAIN_URL/ok\",\"ca_file\":\"$TLS_DIR/root.crt\"}"
		"{\"target\":\"unverified\",\"url\":\"$TLS_EXPIRED_URL/status/200\",\"tls_verify\":false}"
		"{\"target\":\"redirect\",\"url\":\"$TLS_GOOD_URL/chain?n=2\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
		"{\"target\":\"big\",\"url\":\"$TLS_GOOD_URL/big?bytes=300000\",\"ca_file\":\"$TLS_DIR/good.crt\",\"regex\":\"x{1000}\$\"}"
		"{\"target\":\"cut\",\"url\":\"$TLS_GOOD_URL/big?bytes=300000\",\"ca_file\":\"$TLS_DIR/good.crt\",\"max_body_bytes\":1000}"
		"{\"target\":\"stream\",\"url\":\"$TLS_GOOD_URL/stream?bytes=5000\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
		"{\"target\":\"gzip\",\"url\":\"$TLS_GOOD_URL/gzip?bytes=4000\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
		"{\"target\":\"short\",\"url\":\"$TLS_GOOD_URL/short?bytes=4000\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
		"{\"target\":\"resetmid\",\"url\":\"$TLS_GOOD_URL/resetmid?bytes=4000\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
		"{\"target\":\"echo\",\"url\":\"$TLS_GOOD_URL/echo\",\"ca_file\":\"$TLS_DIR/good.crt\",\"method\":\"POST\",\"body\":\"$(printf 'b%.0s' {1..20000})\",\"headers\":{\"X-Sitemon\":\"yes\"},\"regex\":\"X-Sitemon: yes\"}"
		"{\"target\":\"name\",\"url\":\"${TLS_GOOD_URL/127.0.0.1/localhost}/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
		"{\"target\":\"namewrong\",\"url\":\"${TLS_WRONG_URL/127.0.0.1/localhost}/ok\",\"ca_file\":\"$TLS_DIR/wronghost.crt\"}"
		"{\"target\":\"slow\",\"url\":\"$TLS_GOOD_URL/slow?ms=5000\",\"ca_file\":\"$TLS_DIR/good.crt\",\"timeout_ms\":300}"
		"{\"target\":\"h2\",\"url\":\"$H2_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
	)
	# Each alone in a sm-check of its own: libcurl makes the TLS.
	for c in "${cases[@]}"; do
		printf '%s\n' "$c" | SM_STATS_INTERVAL=1h sm-check 2>"$T/err"
		[ "$(grep -c tls_relayed "$T/err")" -eq 0 ]
	done >"$T/curl"
	# One sm-check, each origin probed once first (unverified, over
	# HTTP/1.1 but for the HTTP/2 one): then the relay makes the TLS of
	# every case, but the HTTP/2 origin's.
	for c in "$TLS_GOOD_URL" "$TLS_EXPIRED_URL" "$TLS_FUTURE_URL" "$TLS_CHAIN_URL" \
		"$TLS_LEAFONLY_URL" "$TLS_WRONG_URL" "$H2_URL" "${TLS_GOOD_URL/127.0.0.1/localhost}" \
		"${TLS_WRONG_URL/127.0.0.1/localhost}"; do
		origins+=("{\"target\":\"first$((i++))\",\"url\":\"$c/ok\",\"tls_verify\":false}")
	done
	probe -c 1 --stats-interval 1h -- "${origins[@]}" "${cases[@]}"
	[ "$status" -eq 0 ]
	jqe -s 'map(select(.target | startswith("first"))) | length == 9 and all(.ok)'
	# Every case but "missing" (refused before a handshake) and "h2" is
	# relayed, and "redirect" twice more (its hops are relative).
	[[ "$stderr" == *" tls_relayed=$(( ${#cases[@]} - 2 + 2 ))" ]] || { echo "$stderr"; false; }
	# The same results, field for field, but what only a clock or a
	# fresh id tells (the timeout's message has its milliseconds); a
	# reset mid-answer is a protocol error by both ways, each saying it
	# in its own words.
	local same='{ok, status, error_kind, tls_error, http_version, bytes, truncated,
		content_length, wire_bytes, remote_ip, redirects, final_url, url,
		hops: (.hops // [] | map({url, status, location})), regex: (.regex // null),
		tls, tls_ms: (.phases.tls_ms != null), ttfb_ms: (.phases.ttfb_ms != null),
		error: (if .target == "resetmid" or .target == "slow" then null else .error end)}'
	jq -s "map({key: .target, value: $same}) | from_entries" "$T/curl" >"$T/a"
	jq -s "map(select(.target | startswith(\"first\") | not) | {key: .target, value: $same}) | from_entries" "$T/out" >"$T/b"
	diff -u "$T/a" "$T/b"
	cat "$T/b" >&2
	jq -e 'length == 22' "$T/b"
	# What the relay's cases are: each kind of outcome is there.
	jq -e '.fine.ok and .self.tls_error == "self_signed" and .host.tls_error == "hostname_mismatch" and
		.missing.tls_error == "ca_file" and .redirect.redirects == 2 and .big.regex.matched and
		.cut.truncated and .stream.bytes == 5000 and .gzip.wire_bytes != null and
		.short.error_kind == "protocol" and .resetmid.error_kind == "protocol" and
		.echo.regex.matched and .slow.error_kind == "timeout" and .h2.http_version == "2" and
		.name.ok and .namewrong.tls_error == "hostname_mismatch" and (.namewrong.error | test("localhost")) and
		.fine.http_version == "1.1"' "$T/b"
	# The relay's own clock: the handshake and the first byte apart.
	jqe -s '.[] | select(.target == "fine") | .phases.tls_ms > 0 and .phases.ttfb_ms > 0 and
		.phases.tls_ms + .phases.ttfb_ms <= .duration_ms'
}

@test "check: the relay on an IPv6 address, with a password in the URL: the same request and result as libcurl's" {
	local port url first c
	mkcert v6 "IP:::1"
	port=$(tls_server v6 ::1)
	url="https://user:secret@[::1]:$port"
	first="{\"target\":\"first\",\"url\":\"$url/ok\",\"tls_verify\":false}"
	# The echoed request: the same Host (brackets and port) and
	# credentials both ways.
	c="{\"target\":\"v6\",\"url\":\"$url/echo\",\"ca_file\":\"$TLS_DIR/v6.crt\",\"regex\":\"Host: \\\\[::1\\\\]:$port\\\\r\\\\nAuthorization: Basic dXNlcjpzZWNyZXQ=\"}"
	printf '%s\n' "$c" | sm-check >"$T/curl"
	probe -c 1 --stats-interval 1h -- "$first" "$c"
	[[ "$stderr" == *" tls_relayed=1" ]] || { echo "$stderr"; false; }
	local same='{ok, status, bytes, http_version, remote_ip, final_url, url, regex, tls, tls_error}'
	jq -c "$same" "$T/curl" >"$T/a"
	jq -c "select(.target == \"v6\") | $same" "$T/out" >"$T/b"
	diff -u "$T/a" "$T/b"
	cat "$T/b" >&2
	jq -e --arg u "https://user:***@[::1]:$port/echo" '.ok and .regex.matched and .final_url == $u and
		.remote_ip == "::1" and .tls.cert_sans == ["IP:::1"]' "$T/b"
}

@test "check: the relay on port 443, written in the URL or not, reports the URLs as libcurl does (a network namespace of its own)" {
	local u cases=(
		"https://user:pw@127.0.0.1:443/chain?n=2#f"
		"https://127.0.0.1/chain?n=2"
		"https://127.0.0.1:443/redirect?to=/ok"
		"https://localhost/ok"
		"https://localhost:443/ok?q=1"
	)
	# Port 443 is free in a network namespace of this test's own; the
	# server and every sm-check run inside it.
	{
		echo 'ip link set lo up'
		printf '/usr/bin/python3 %q --cert %q --key %q 443 >%q 2>&1 &\n' \
			"$SM_TOP/tests/fixtures/httpd.py" "$TLS_DIR/good.crt" "$TLS_DIR/good.key" "$T/ns.out"
		echo 'srv=$!'
		printf 'for i in $(seq 200); do grep -q ready %q && break; sleep 0.05; done\n' "$T/ns.out"
		# libcurl's TLS: each case alone.  The relay's: after a probe
		# of each origin that teaches sm-check it answers over HTTP/1.1.
		for u in "${cases[@]}"; do
			printf 'printf %%s\\\\n %q | sm-check >>%q\n' \
				"{\"url\":\"$u\",\"ca_file\":\"$TLS_DIR/good.crt\"}" "$T/curl"
		done
		printf 'printf %%s\\\\n %q %q' '{"target":"first1","url":"https://127.0.0.1/ok","tls_verify":false}' \
			'{"target":"first2","url":"https://localhost/ok","tls_verify":false}'
		for u in "${cases[@]}"; do
			printf ' %q' "{\"url\":\"$u\",\"ca_file\":\"$TLS_DIR/good.crt\"}"
		done
		printf ' | sm-check -c 1 --stats-interval 1h >%q 2>%q\n' "$T/relay" "$T/relay.err"
		echo 'kill $srv'
	} >"$T/ns.sh"
	run -0 unshare -n bash "$T/ns.sh"
	# Every connection of the five cases: three, three, two, one, one.
	grep -q ' tls_relayed=10$' "$T/relay.err" || { cat "$T/relay.err"; false; }
	local same='{ok, status, url, final_url, redirects, hops: [.hops[]? | {url, location}], sha: .tls.cert_sha256}'
	jq -c "$same" "$T/curl" >"$T/a"
	jq -c "select(.target | startswith(\"first\") | not) | $same" "$T/relay" >"$T/b"
	diff -u "$T/a" "$T/b"
	[ "$(jq -s 'length' "$T/a")" -eq 5 ]
	jq -se 'all(.ok) and (.[0].final_url | test("^https://user:[*]+@127[.]0[.]0[.]1:443/ok$")) and
		.[1].final_url == "https://127.0.0.1/ok" and .[2].hops[0].location == "https://127.0.0.1:443/ok"' "$T/b"
}

@test "check: each probe loop relays its own https connections (--threads 2)" {
	local i ins=()
	for i in $(seq 60); do
		ins+=("{\"target\":\"t$i\",\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}")
	done
	# Two loops, one probe in flight each: the first probe to end (by
	# libcurl's TLS) teaches both loops the origin; the other loop's
	# first probe may have started by then.  The rest are relayed.
	probe -t 2 -c 2 --stats-interval 1h -- "${ins[@]}"
	[ "$status" -eq 0 ]
	nresults 60
	jqe -s 'all(.ok and .http_version == "1.1" and .tls.version != null and .phases.tls_ms > 0)'
	[[ "$stderr" =~ \ tls_relayed=(5[89])$ ]] || { echo "$stderr"; false; }
}

@test "check: every field sm-check writes is in the schema, and stored by sm-pg-write or deliberately not" {
	# Results of every shape: plain, failed, cut, compressed, redirected,
	# with regexes, https good and refused.
	probe -- "$HTTP_URL/ok" "$CLOSED_URL" "$SCRIPTED_URL/gzip?bytes=1000" \
		"{\"url\":\"$SCRIPTED_URL/big?bytes=5000\",\"max_body_bytes\":1000,\"regex\":\"x\",\"regex_absent\":\"y\"}" \
		"{\"url\":\"$SCRIPTED_URL/chain?n=2\",\"regex\":\"ok\"}" \
		"{\"url\":\"$TLS_GOOD_URL/ok\",\"ca_file\":\"$TLS_DIR/good.crt\"}" \
		"$TLS_EXPIRED_URL/ok" \
		"{\"url\":\"$SCRIPTED_URL/redirect?to=$TLS_CHAIN_URL/ok\",\"ca_file\":\"$TLS_DIR/root.crt\",\"regex\":\"ok\"}"
	[ "$status" -eq 0 ]
	nresults 8
	jqe -s 'map(select(has("hops") and has("final_phases") and .tls.cert_sans != null and .phases.regex_ms != null)) | length == 1'
	jqe -s 'any(.truncated) and any(.wire_bytes != null) and any(.tls_error != null)'
	schema_ok
	# Each field names its column (x-column) or why it has none
	# (x-not-stored) in the schema ...
	"$SM_TOP/tests/fixtures/schema-fields" "$SM_TOP/schema/result.schema.json" <"$T/out" >"$T/columns"
	# ... and each column named is one of the table's.
	new_db
	sm-pg-write --migrate 2>/dev/null
	psql_q "SELECT column_name FROM information_schema.columns
	    WHERE table_name = 'checks'" | sort >"$T/table"
	comm -23 "$T/columns" "$T/table" >"$T/missing"
	[ ! -s "$T/missing" ] || { echo "not in checks: $(cat "$T/missing")" >&2; false; }
	grep -qx tls_cert_sans "$T/columns"
}
