#!/bin/sh
# examples/train-mpi.sh - data-parallel training over MPI: the same tiny
# dense CLIP trained for a few steps by one process and by 2 ranks
# (mpirun -np 2), each rank computing half of every batch of 16; the two
# final models agree to rounding (tests/params-diff.py prints by how
# much). Then the 2-rank run is stopped by SIGTERM sent to one rank, and
# resumed: both ranks stop after the same step, rank 0 checkpoints, and
# --resume goes on from there. Last, a sparse model with its 4 experts
# split over the 2 ranks (--expert-parallel 2): each rank holds and saves
# its own, and vlm-convert merge joins the shards into one model file.
#
# Environment: BIN (the programs, default bin), TMPDIR. Exits 77 when
# mpirun is absent or vlm-train was built without MPI.
set -e
BIN=${BIN:-bin}
PY=/usr/bin/python3
if ! command -v mpirun >/dev/null 2>&1; then
	echo "train-mpi: skipped, mpirun not found (apt-get install" \
	    "openmpi-bin libopenmpi-dev, then rebuild)" >&2
	exit 77
fi
if ! nm "$BIN/vlm-train" 2>/dev/null | grep -q MPI_Init; then
	echo "train-mpi: skipped, $BIN/vlm-train was built without MPI" >&2
	exit 77
fi
if ! $PY -c 'import numpy, PIL' 2>/dev/null; then
	echo "train-mpi: skipped, $PY lacks numpy or PIL" >&2
	exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-mpi.XXXXXX")
trap 'rm -rf "$d"' EXIT
# mpirun refuses root unless told; 2 ranks even on 1 core
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# (a sanitizer build: the leaks OpenMPI leaves at exit are not ours)
MPIRUN="env ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
mpirun --oversubscribe -np 2"

$PY "$(dirname "$0")/../tests/mkshapes.py" "$d/data" 64
M="-m tiny --set vision.layers=2 --set text.layers=2 --set vision.width=64
--set text.width=64 --set embed_dim=32 --set image_size=16 --set vocab=600
-b 16 --warmup 2 --seed 1 -j 1 --log-every 5"

echo "== one process, then 2 ranks of 8 examples each" >&2
"$BIN/vlm-train" --data "$d/data/pairs.tsv" $M -n 10 -o "$d/one"
$MPIRUN "$BIN/vlm-train" --data "$d/data/pairs.tsv" $M -n 10 -o "$d/two"
tail -n 1 "$d/one/metrics.jsonl" | cut -c 1-80
tail -n 1 "$d/two/metrics.jsonl" | cut -c 1-80
$PY "$(dirname "$0")/../tests/params-diff.py" \
    "$d/one/latest/model.safetensors" "$d/two/latest/model.safetensors"

echo "== SIGTERM to one rank, then --resume" >&2
$MPIRUN "$BIN/vlm-train" --data "$d/data/pairs.tsv" $M -n 2000 \
    -o "$d/long" 2>/dev/null &
job=$!
while [ ! -s "$d/long/metrics.jsonl" ]; do sleep 0.2; done
rank=$(pgrep -P $job | tail -n 1)
kill -TERM "$rank"
st=0
wait $job || st=$?
echo "mpirun exited $st (143: SIGTERM), latest is $(readlink "$d/long/latest")"
$MPIRUN "$BIN/vlm-train" --resume "$d/long" --stop-at 30
tail -n 1 "$d/long/metrics.jsonl" | cut -c 1-80

echo "== expert parallel: 2 experts on each rank, the shards merged" >&2
$MPIRUN "$BIN/vlm-train" --data "$d/data/pairs.tsv" $M -n 5 -o "$d/ep" \
    -m tiny-moe --set text.width=64 --set moe.experts=4 --expert-parallel 2
ls "$d/ep/latest"
"$BIN/vlm-convert" merge "$d/ep/latest" -o "$d/ep.safetensors"
"$BIN/vlm-convert" info "$d/ep.safetensors" | grep experts.c_fc.weight
