#!/usr/bin/env bats
# Every program has --help, --version and a man page that agree.

load helpers

PROGRAMS="sm-schedule sm-check sm-kafka-pub sm-kafka-sub sm-pg-write sm-devbroker"

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
