#!/bin/sh
# cli-examples.sh - every example in examples/ that runs offline, so the
# examples cannot rot. An example that lacks what it needs (NumPy, PIL)
# exits 77 and counts as skipped. demo.sh and fetch-emoji.sh need the
# npm registry: skipped here, `make demo` runs them (cli-fetch-emoji.sh
# runs fetch-emoji.sh offline on a hand-made cache).
. tests/lib.sh

for e in examples/*.sh; do
	case $e in
	examples/demo.sh|examples/fetch-emoji.sh)
		skip "example $e" "needs the npm registry (make demo)"
		continue ;;
	esac
	env BIN="$BIN" sh "$e" >"$T/out" 2>"$T/err"
	rc=$?
	case $rc in
	0) pass "example $e" ;;
	77) skip "example $e" "$(tail -n 1 "$T/err")" ;;
	*) fail "example $e (exit $rc)"; sed 's/^/#   /' "$T/err" | head -5 ;;
	esac
done
finish
