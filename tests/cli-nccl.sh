#!/bin/sh
# cli-nccl.sh - vlm-train's gradient all-reduce through NCCL on a device
# backend. Everywhere: VLM_DIST=1 (the distributed path in one process)
# ends equal to the plain run bit for bit; a malformed VLM_NCCL is a
# usage error; a cuda library built where nccl.h is exports the NCCL
# communicator and links libnccl. Where a CUDA device is: one rank with
# NCCL equals one rank without (VLM_NCCL=0) exactly, and says it used
# NCCL; with 2 devices and mpirun, 2 ranks with NCCL equal 2 ranks
# without exactly (a + b in either order); with one device the 2-rank
# attempt ends with NCCL's message, no hang. Skips what it cannot show.
. tests/lib.sh

TR=$BIN/vlm-train
. tests/tiny-run.sh
have_py "the parameter comparisons" numpy || { finish; exit; }
DIFF="/usr/bin/python3 tests/params-diff.py"
RUN="$TR --data $P $SMALL -j 1 -n 3"

ok "one process" $RUN -o "$T/a"
ok "VLM_DIST=1: the distributed path, one rank" env VLM_DIST=1 $RUN \
    -o "$T/b"
ok "equal bit for bit" $DIFF "$T/a/latest/model.safetensors" \
    "$T/b/latest/model.safetensors" 0
fails "VLM_NCCL=2 is a usage error" 2 env VLM_DIST=1 VLM_NCCL=2 $RUN \
    -o "$T/c"
check "one line naming it" \
    '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "VLM_NCCL" "$T/err"'
check "nothing written" '[ ! -e "$T/c" ]'

SO=$(strings "$TR" | grep -o '/[[:graph:]]*/libvlm-cuda\.so$' | head -n 1)
CUDA_H=$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")/../include
if [ -z "$SO" ] || [ ! -e "$SO" ]; then
	skip "the cuda library's NCCL" "$TR has no cuda library built"
elif [ ! -e "$CUDA_H/nccl.h" ]; then
	skip "the cuda library's NCCL" "no nccl.h in $CUDA_H"
else
	check "the cuda library exports the NCCL communicator" \
	    'nm -D "$SO" | grep -q " T vlm_cuda_so_comm$"'
	check "and links libnccl" 'ldd "$SO" | grep -q libnccl'
	check "the programs do not" '! ldd "$TR" | grep -q libnccl'
fi

ndev=$("$TR" --version | sed -n 's/^backend cuda: \([0-9]*\) device.*/\1/p')
if [ "${ndev:-0}" -eq 0 ]; then
	skip "the NCCL runs (all)" "no CUDA device: $("$TR" --version |
	    sed -n 's/^backend cuda: //p')"
	finish; exit
fi
CU="$RUN --device cuda"
ok "cuda, one rank, VLM_NCCL=0" env VLM_DIST=1 VLM_NCCL=0 $CU -o "$T/h1"
ok "cuda, one rank, NCCL" env VLM_DIST=1 VLM_COMM_STATS=1 $CU -o "$T/n1"
check "through NCCL" 'grep -q "nccl collectives" "$T/err"'
sed 's/^/# /' "$T/err"
ok "equal exactly" $DIFF "$T/h1/latest/model.safetensors" \
    "$T/n1/latest/model.safetensors" 0
if ! command -v mpirun >/dev/null 2>&1 || ! nm "$TR" | grep -q MPI_Init
then
	skip "2 ranks on NCCL" "no mpirun, or $TR built without MPI"
	finish; exit
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export VLM_COMM_TIMEOUT=60
MR="timeout 300 mpirun --oversubscribe -np 2"
if [ "$ndev" -lt 2 ]; then
	fails "2 ranks on 1 device: NCCL refuses, exit 1" 1 $MR $CU \
	    -o "$T/n2"
	sed 's/^/# /' "$T/err" | head -n 5
	check "naming nccl" 'grep -q "nccl" "$T/err"'
	skip "2 ranks on NCCL" "$ndev device: NCCL wants one device a rank"
	finish; exit
fi
ok "cuda, 2 ranks, VLM_NCCL=0 (MPI)" $MR env VLM_NCCL=0 $CU -o "$T/h2"
ok "cuda, 2 ranks, NCCL" $MR env VLM_COMM_STATS=1 $CU -o "$T/n2"
ok "equal exactly" $DIFF "$T/h2/latest/model.safetensors" \
    "$T/n2/latest/model.safetensors" 0
finish
