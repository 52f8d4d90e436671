#!/bin/sh
# tests/bench.sh - run every benchmark program given as an argument.
# Speed is reported as ratios measured in the same run, never asserted.
for b in "$@"; do
	echo "== $b"
	"$b" || echo "benchmark $b failed (exit $?)"
done
