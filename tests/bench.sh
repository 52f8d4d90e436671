#!/bin/sh
# tests/bench.sh - run every benchmark program given as an argument, then
# the end-to-end embedding benchmark. Speed is reported as ratios
# measured in the same run, never asserted. The programs call
# vlm_blas_setup, so they run AVX-512 kernels wherever the CPU has them
# (bench-gemm shows every kernel choice side by side).
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset: auto-detect)}"
for b in "$@"; do
	echo "== $b"
	SHARED=${SHARED:-../shared} "$b" || echo "benchmark $b failed (exit $?)"
done
echo "== tests/bench-embed.sh"
sh tests/bench-embed.sh
echo "== tests/bench-mpi.sh"
sh tests/bench-mpi.sh
