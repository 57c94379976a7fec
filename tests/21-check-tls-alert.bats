#!/usr/bin/env bats
# sm-check's tls_error sub-kind when the server refuses the handshake with
# a TLS alert (tests/fixtures/tls-alert.py): the sub-kind comes from the
# alert received, never from the text of OpenSSL's message.

bats_require_minimum_version 1.5.0
load helpers

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

# alert_server DESCRIPTION: a server answering every ClientHello with that
# fatal alert; sets URL.
alert_server() {
	local port
	port=$(free_port)
	/usr/bin/python3 "$SM_TOP/tests/fixtures/tls-alert.py" "$port" "$1" \
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
