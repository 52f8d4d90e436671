#!/bin/sh
# cli-programs.sh - every program answers --help (exit 0, usage on
# stdout), --version (exit 0), and a bad option (exit 2, usage on stderr).
. tests/lib.sh

for p in vlm-convert vlm-embed vlm-eval vlm-train vlm-route-stats; do
	ok "$p --help" "$BIN/$p" --help
	check "$p --help prints usage on stdout" "grep -q '^usage: $p' $T/out"
	ok "$p --version" "$BIN/$p" --version
	check "$p --version names itself" "grep -q '^$p [0-9]' $T/out"
	fails "$p --no-such-option" 2 "$BIN/$p" --no-such-option
	check "$p bad option: usage on stderr" "grep -q 'usage: $p' $T/err"
	ok "$p --help to a closed pipe is no crash" sh -c "'$BIN/$p' --help | true"
done
fails "vlm-convert without a verb" 2 "$BIN/vlm-convert"
fails "vlm-convert unknown verb" 2 "$BIN/vlm-convert" frobnicate
check "unknown verb named" "grep -q frobnicate $T/err"
fails "vlm-convert --help >/dev/full" 1 sh -c "'$BIN/vlm-convert' --help >/dev/full"
finish
