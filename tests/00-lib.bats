#!/usr/bin/env bats
# The C unit tests of lib/ (tests/unit/*.c), one bats test per program.

load helpers

@test "lib unit tests pass" {
	run "$SM_TOP/tests/unit/test_lib"
	echo "$output" | grep -v '^ok' >&2 || true
	[ "$status" -eq 0 ]
	[[ "$output" == *"1.."* ]]
}

@test "sm-pg-write's row scanner agrees with the tree on every variant" {
	run "$SM_TOP/tests/unit/test_pgw_row"
	echo "$output" | grep -v '^ok' >&2 || true
	[ "$status" -eq 0 ]
	[[ "$output" == *"1.."* ]]
}
