#!/bin/sh
# cli-examples.sh - every example in examples/ that runs offline, so the
# examples cannot rot. (demo.sh and fetch-emoji.sh need the npm registry:
# `make demo` runs them.)
. tests/lib.sh

for e in examples/*.sh; do
	case $e in
	examples/demo.sh|examples/fetch-emoji.sh) continue ;;
	esac
	ok "example $e" env BIN="$BIN" sh "$e"
done
finish
