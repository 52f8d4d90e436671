#!/bin/sh
# gpu-check.sh - the one script a GPU session runs (from the repository
# root, on the machine with the GPU): unpack gpu-deps/ (made here by
# tests/gpu-deps.sh and carried), build with CUDA=1, run the op tests
# of every family on cuda against ref, the whole-step and memory tests,
# the OpenCLIP fixture parity tests with the run on cuda (features,
# logits, step-0 gradients, three AdamW steps), the cuda CLI checks, the
# NCCL communicator (tests/test-nccl.c alone, under mpirun as 1 and as 2
# ranks; tests/cli-nccl.sh) and the benchmark; every log under $OUT, a
# summary at its end.
#   run(command="OUT=$OUT sh tests/gpu-check.sh", carry=["gpu-deps"],
#       timeout_s=600)   (each test at most 120 s, the bench 300 s)
# Environment: OUT (gpu-logs), JOBS (16), BENCH_BATCH (128).
: "${OUT:=gpu-logs}" "${JOBS:=16}"
mkdir -p "$OUT"
S=$OUT/summary.txt
: >"$S"
say() { echo "$*" | tee -a "$S"; }
D=$(pwd)/gpu-deps
if [ -f "$D/deps.tar.xz" ]; then
	[ -d "$D/root" ] || tar -C "$D" -xJf "$D/deps.tar.xz"
	R=$D/root L=$D/root/usr/lib/x86_64-linux-gnu
	export PKG_CONFIG_SYSROOT_DIR="$R"
	export PKG_CONFIG_LIBDIR="$L/pkgconfig:$L/openblas-pthread/pkgconfig"
	export CPATH="$R/usr/include:$R/usr/include/x86_64-linux-gnu"
	export LIBRARY_PATH="$L:$L/openblas-pthread"
	export LD_LIBRARY_PATH="$L:$L/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	# OpenMPI where it is unpacked (OPAL_PREFIX), if its mpicc works
	if OPAL_PREFIX="$R/usr" LD_LIBRARY_PATH="$L/openmpi/lib:$L" \
	    "$R/usr/bin/mpicc.openmpi" --showme:compile >/dev/null 2>&1; then
		ln -sf mpicc.openmpi "$R/usr/bin/mpicc"
		ln -sf mpirun.openmpi "$R/usr/bin/mpirun"
		export OPAL_PREFIX="$R/usr" PMIX_INSTALL_PREFIX="$L/pmix2"
		export PATH="$R/usr/bin:$PATH"
		export LD_LIBRARY_PATH="$L/openmpi/lib:$LD_LIBRARY_PATH"
	fi
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
if [ -d "$D/fixtures" ]; then SHARED=$D; else : "${SHARED:=../shared}"; fi
export SHARED
(nvidia-smi; nvcc --version) >"$OUT/machine.txt" 2>&1
say "== build (make CUDA=1, log build.log)"
if ! make -j"$JOBS" CUDA=1 all tests >"$OUT/build.log" 2>&1; then
	tail -n 30 "$OUT/build.log" | tee -a "$S"
	say "BUILD FAILED"; exit 1
fi
bin/vlm-train --version | tee -a "$S"
if bin/vlm-train --version | grep -q "^backend cuda: 0 devices"; then
	say "NO CUDA DEVICE: nothing to check here"; exit 1
fi
# run NAME CMD...: CMD's output into NAME.log, its status and counts
run() {
	name=$1; shift
	timeout 120 "$@" >"$OUT/$name.log" 2>&1
	rc=$?
	say "$name: exit $rc; $(grep -c ' ok$' "$OUT/$name.log") ok," \
	    "$(grep -c 'FAIL' "$OUT/$name.log") FAIL lines," \
	    "$(grep -c 'SKIPPED \]' "$OUT/$name.log") skip lines"
	grep -E 'FAIL|skipped:' "$OUT/$name.log" | head -n 20 | tee -a "$S"
}
say "== every op on cuda against ref (odd sizes, fwd and bwd)"
for t in test-ops-dense test-ops-moe test-ops-input test-backend-ops; do
	run "$t" "build/tests/$t"
done
say "== OpenCLIP fixture parity with the runs on cuda"
for t in test-model test-train-step test-model-grad test-routes; do
	run "$t-cuda" env VLM_BACKEND=cuda "build/tests/$t"
done
say "== CLI on cuda (cpu against cuda embeddings and losses)"
run cli-cuda env BIN=bin sh tests/cli-cuda.sh
tail -n 1 "$OUT/cli-cuda.log" | tee -a "$S"
say "== NCCL (kernels/cuda/comm-nccl.cu): 1 rank, then 2 (one GPU each)"
if nm -D build/libvlm-cuda.so | grep -q " T vlm_cuda_so_comm"; then
	(mpirun --version; mpicc --showme) >"$OUT/mpi.txt" 2>&1 ||
	    say "mpirun does not run here: see mpi.txt"
	run test-nccl build/tests/test-nccl # bootstrapped in one process
	run test-nccl-mpi1 mpirun -np 1 build/tests/test-nccl
	# with one GPU, NCCL refuses 2 ranks on it: its message is logged
	run test-nccl-mpi2 mpirun --oversubscribe -np 2 build/tests/test-nccl
	grep -h "ranks, .* device" "$OUT/test-nccl-mpi2.log" | head -n 2 |
	    tee -a "$S"
	run cli-nccl env BIN=bin sh tests/cli-nccl.sh
	grep -E '^(ok|skip) ' "$OUT/cli-nccl.log" | tee -a "$S"
else
	say "nccl: libvlm-cuda.so has no NCCL (no nccl.h under CUDA_HOME)"
fi
say "== benchmark"
timeout 300 sh tests/bench-gpu.sh >"$OUT/bench.log" 2>&1
say "bench-gpu.sh: exit $?"
cat "$OUT/bench.log" >>"$S"
