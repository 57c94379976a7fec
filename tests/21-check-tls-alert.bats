#!/usr/bin/env bats
# sm-check's tls_error sub-kind when the server refuses the handshake with
# a TLS alert (tests/fixtures/tls-alert.py): the sub-kind comes from the
# alert received, never from the text of OpenSSL's message.

bats_require_minimum_version 1.5.0
load helpers

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

# alert_server DESCRIPTION [FIRST_TO]: a server answering every ClientHello
# with that fatal alert (but the first, passed to port FIRST_TO); sets URL.
alert_server() {
	local port
	port=$(free_port)
	/usr/bin/python3 "$SM_TOP/tests/fixtures/tls-alert.py" "$port" "$@" \
		>"$T/alert.out" 2>"$T/alert.err" 3>&- &
	track_pid $!
	wait_for grep -q ready "$T/alert.out"
	URL="https://127.0.0.1:$port/"
}

@test "check: a protocol_version alert from the server is tls_error protocol_version" {
	alert_server 70
	printf '{"url":"%s"}\n' "$URL" | sm-check >"$T/out"
	jq -e '.ok == false and .error_kind == "tls" and .tls_error == "protocol_version"' "$T/out"
	# Nothing of a certificate was seen, and the result says so.
	jq -e '.tls.cert_sha256 == null and .tls.version == null and .status == null' "$T/out"
}

@test "check: any other alert during the handshake is tls_error handshake" {
	alert_server 40
	printf '{"url":"%s"}\n' "$URL" | sm-check >"$T/out"
	jq -e '.ok == false and .error_kind == "tls" and .tls_error == "handshake"' "$T/out"
}

# https_server: tests/fixtures/httpd.py over TLS with a new self-signed
# certificate for 127.0.0.1; sets HTTPS_PORT.
https_server() {
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$T/srv.key" -out "$T/srv.crt" -days 2 -subj "/CN=sitemon-alert" \
		-addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
	HTTPS_PORT=$(free_port)
	/usr/bin/python3 "$SM_TOP/tests/fixtures/httpd.py" --cert "$T/srv.crt" \
		--key "$T/srv.key" "$HTTPS_PORT" >"$T/srv.out" 2>"$T/srv.err" 3>&- &
	track_pid $!
	wait_for grep -q ready "$T/srv.out"
}

@test "check: the same sub-kinds when sm-check makes the handshake itself (the relay)" {
	local d
	https_server
	for d in 70:protocol_version 40:handshake; do
		# The first probe passes through to a working server over
		# HTTP/1.1, so the origin's next handshake is sm-check's own.
		alert_server "${d%%:*}" "$HTTPS_PORT"
		printf '{"target":"first","url":"%sok","tls_verify":false}\n{"target":"then","url":"%sok"}\n' "$URL" "$URL" |
			sm-check -c 1 --stats-interval 1h >"$T/out" 2>"$T/err"
		grep -q ' tls_relayed=1$' "$T/err"
		jq -se '.[] | select(.target == "first") | .ok and .http_version == "1.1"' "$T/out"
		jq -se --arg k "${d#*:}" '.[] | select(.target == "then") | .ok == false and .error_kind == "tls" and
			.tls_error == $k and .tls.version == null and .tls.cert_sha256 == null and .status == null' "$T/out" ||
			{ cat "$T/out" "$T/err"; false; }
	done
}
