#!/bin/sh
# tests/bench.sh - run every benchmark program given as an argument.
# Speed is reported as ratios measured in the same run, never asserted.
# When the environment forces an OpenBLAS kernel set (OPENBLAS_CORETYPE),
# the model benchmark runs again without it, so both are on record.
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset: auto-detect)}"
for b in "$@"; do
	echo "== $b"
	SHARED=${SHARED:-../shared} "$b" || echo "benchmark $b failed (exit $?)"
done
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
	for b in "$@"; do
		case $b in */bench-model|*/bench-gemm) ;; *) continue ;; esac
		echo "== $b with OPENBLAS_CORETYPE unset"
		env -u OPENBLAS_CORETYPE "$b" || echo "benchmark $b failed"
	done
fi
