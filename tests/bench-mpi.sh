#!/bin/sh
# tests/bench-mpi.sh - distributed vlm-train: seconds per optimizer step
# of 1 process x 2 threads against 2 MPI ranks x 1 thread (the same
# global batch), and the bytes rank 0 hands to collectives per step
# (VLM_COMM_STATS) against the formula: the gradient all-reduce, 4 N
# bytes for N parameters, the two feature all-gathers, 2 x 4 (B/2) E
# bytes, 8 bytes of stop flag, and for an MoE model the routing group
# (moe-group.c): per MoE layer an all-gather of the router outputs
# z, p, g of rank 0's token slots, 3 x 4 x S x Ex bytes (S = (B/2) x
# tokens per example, Ex experts), and 16 bytes of counts per forward.
# (A ring all-reduce moves 2 (P-1)/P of its payload over each link: N x
# 4 bytes for P = 2.) With --expert-parallel 2 (tiny-moe, Ex = 8, 2 MoE
# layers of width 128, top-1) the all-reduce covers only the X expert
# floats fewer (4 (N - X) bytes: each rank keeps its experts' gradients)
# and the all-to-alls come in: per MoE layer 2 forward and 2 backward of
# the rows rank 0 routes (at most its tokens x K, fewer when capacity
# drops some) x width x 4 bytes, plus Ex x 4 bytes of counts forward;
# reported against that ceiling with every image token and a full text
# context kept.
# Then peak resident memory per rank (/usr/bin/time %M) of tiny-moe
# with 16 experts: one process, 2 ranks data parallel (every rank holds
# every expert, its gradient and moments: 16 N bytes of state) and 2
# ranks --expert-parallel 2 (each holds half the experts: 16 (N - X) +
# 8 X bytes), fresh and from a one-file model.
# Reported, never asserted; not part of make check.
#
# Environment: BIN (default bin), STEPS (default 40), BATCH (default 64),
# MODELS (default "tiny tiny-moe").
BIN=${BIN:-bin}
STEPS=${STEPS:-40}
BATCH=${BATCH:-64}
PY=/usr/bin/python3
if ! command -v mpirun >/dev/null 2>&1 ||
    ! nm "$BIN/vlm-train" 2>/dev/null | grep -q MPI_Init; then
	echo "bench-mpi: skipped (no mpirun, or vlm-train without MPI)"
	exit 0
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-bench-mpi.XXXXXX")
trap 'rm -rf "$d"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
$PY tests/mkshapes.py "$d/data" 256 || exit 1

# seconds per step over the logged intervals after the first (warm-up)
per_step() {
	$PY -c 'import json, sys
L = [json.loads(l) for l in open(sys.argv[1])][1:]
s = sum(l["seconds"] for l in L)
n = L[-1]["step"] - L[0]["step"] + int(sys.argv[2])
print("%.4f" % (s / n))' "$1" 10
}
# floats FILE [PATTERN]: the model's parameters (whose names hold PATTERN)
floats() {
	$PY -c 'import json, struct, sys
f = open(sys.argv[1], "rb")
h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
n = 0
for k, v in h.items():
    if k != "__metadata__" and sys.argv[2] in k:
        p = 1
        for x in v["shape"]: p *= x
        n += p
print(n)' "$1" "${2:-}"
}
for model in ${MODELS:-tiny tiny-moe}; do
	O="--data $d/data/pairs.tsv -m $model -b $BATCH -n $STEPS --warmup 2
	    --log-every 10 --seed 1"
	VLM_THREADS=2 "$BIN/vlm-train" $O -j 2 -o "$d/one-$model" || exit 1
	VLM_THREADS=1 VLM_COMM_STATS=1 mpirun --oversubscribe -np 2 \
	    "$BIN/vlm-train" $O -j 1 -o "$d/two-$model" 2>"$d/err" || {
		cat "$d/err"; exit 1; }
	a=$(per_step "$d/one-$model/metrics.jsonl")
	b=$(per_step "$d/two-$model/metrics.jsonl")
	n=$(floats "$d/one-$model/latest/model.safetensors")
	E=64 # embed_dim of both presets
	# tiny-moe: 32 px images of 8 px patches + class token, context 32
	S=$(((BATCH / 2) * (17 + 32)))
	grp=0
	[ $model = tiny-moe ] && grp=$((2 * 3 * 4 * S * 8 + 16))
	got=$(sed -n 's/.*moved \([0-9]*\) bytes per step.*/\1/p' "$d/err")
	want=$((4 * n + 8 * (BATCH / 2) * E + 8 + grp))
	echo "$model batch $BATCH: 1 process x 2 threads $a s/step," \
	    "2 ranks x 1 thread $b s/step" \
	    "(ratio $($PY -c "print('%.2f' % ($a / $b))"))"
	echo "$model: rank 0 moved $got bytes/step; formula 4*$n +" \
	    "8*$((BATCH / 2))*$E + 8 + $grp (routing group) = $want"
	[ $model = tiny-moe ] || continue
	VLM_THREADS=1 VLM_COMM_STATS=1 mpirun --oversubscribe -np 2 \
	    "$BIN/vlm-train" $O -j 1 -o "$d/ep" --expert-parallel 2 \
	    2>"$d/err" || { cat "$d/err"; exit 1; }
	c=$(per_step "$d/ep/metrics.jsonl")
	ep=$(sed -n 's/.*moved \([0-9]*\) bytes per step.*/\1/p' "$d/err")
	x=$(floats "$d/one-$model/latest/model.safetensors" .experts.)
	echo "$model --expert-parallel 2: $c s/step; all-reduce 4*($n - $x)," \
	    "all-to-alls $((ep - got + 4 * x)) bytes/step; ceiling 2 layers x" \
	    "(4 x $S x 128 x 4 + 32) = $((2 * (4 * S * 128 * 4 + 32)))"
done

# peak RSS per rank, tiny-moe with 16 experts
rss() {
	sed -n 's/^maxrss \([0-9]*\)$/\1/p' "$1" | tr '\n' ' '
}
O="--data $d/data/pairs.tsv -b 16 -n 3 --warmup 1 --seed 1 -j 1"
M="-m tiny-moe --set moe.experts=16"
T="/usr/bin/time -f maxrss%%%M"
$T "$BIN/vlm-train" $O $M -o "$d/r1" 2>"$d/e1" || exit 1
mpirun --oversubscribe -np 2 $T "$BIN/vlm-train" $O $M -o "$d/r2" \
    2>"$d/e2" || exit 1
mpirun --oversubscribe -np 2 $T "$BIN/vlm-train" $O $M -o "$d/r3" \
    --expert-parallel 2 2>"$d/e3" || exit 1
mpirun --oversubscribe -np 2 $T "$BIN/vlm-train" $O \
    -m "$d/r1/latest/model.safetensors" -o "$d/r4" --expert-parallel 2 \
    2>"$d/e4" || exit 1
sed -i 's/^maxrss%/maxrss /' "$d/e1" "$d/e2" "$d/e3" "$d/e4"
n=$(floats "$d/r1/latest/model.safetensors")
x=$(floats "$d/r1/latest/model.safetensors" .experts.)
echo "tiny-moe E=16, N=$n floats, X=$x of experts: peak RSS KiB:" \
    "one process $(rss "$d/e1"); 2 ranks data parallel $(rss "$d/e2");" \
    "2 ranks --expert-parallel 2 $(rss "$d/e3"), from a model file" \
    "$(rss "$d/e4"); state 16N = $((16 * n / 1024)) KiB replicated," \
    "16(N-X)+8X = $(((16 * (n - x) + 8 * x) / 1024)) KiB sharded"
