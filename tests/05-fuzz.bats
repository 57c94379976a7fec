#!/usr/bin/env bats
# The libFuzzer targets (fuzz/): each replays its seeds and every input
# that once broke it (fuzz/corpus/NAME/crash-*), then fuzzes for
# FUZZ_SMOKE_SECONDS (default 2).  `make fuzz` runs them for longer.

load helpers

setup_file() {
	make -C "$SM_TOP" -s fuzz-build >&2
}

fuzz_smoke() {
	run "$SM_TOP/fuzz/run" -t "${FUZZ_SMOKE_SECONDS:-2}" "$1"
	echo "$output" >&2
	if [ "$status" -ne 0 ]; then
		tail -n 40 "$SM_TOP/fuzz/build/logs/$1.log" >&2
	fi
	[ "$status" -eq 0 ]
	[[ "$output" == "$1: ok, "*" exec/s, "* ]]
}

@test "fuzz: the JSON scan agrees with jansson" {
	fuzz_smoke jsonscan
}

@test "fuzz: numbers, durations, times and UUIDs read back as they print" {
	fuzz_smoke numtime
}

@test "fuzz: sm-pg-write's scanned, tree and binary rows hold the same values" {
	fuzz_smoke pgrow
}

@test "fuzz: target records round-trip; result records validate" {
	fuzz_smoke record
}

@test "fuzz: sites.yaml and NDJSON target lists load or are refused" {
	fuzz_smoke sites_yaml
}

@test "fuzz: URLs: redaction hides every password and changes nothing else; one clean log line" {
	fuzz_smoke url
}

@test "fuzz: sm-notify's fast event check takes only what event_validate accepts, and its webhook body is the event without kafka" {
	fuzz_smoke event
}

@test "fuzz: sm-alert accepts exactly the results result_validate accepts, and hands on what jansson reads in them" {
	fuzz_smoke alert_input
}

@test "fuzz: sm-alert's checkpoint loader loads or refuses any bytes, a refusal changes nothing, and what loads works and writes back the same" {
	fuzz_smoke alert_checkpoint
}
