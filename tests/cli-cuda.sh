#!/bin/sh
# cli-cuda.sh - --device and VLM_DEVICE on the four programs that run a
# model. A CUDA=1 build loads its cuda backend (libvlm-cuda.so) only
# when asked: the programs need no CUDA library to start. Where cuda
# cannot be used (no driver, no device), asking for it is one line
# naming the reason, exit 1, nothing written; a malformed device exit 2.
# Where a GPU is present, cuda's embeddings and first training losses
# match the CPU's. Skips what the build or the machine cannot show.
. tests/lib.sh

TR=$BIN/vlm-train
EM=$BIN/vlm-embed
EV=$BIN/vlm-eval
RS=$BIN/vlm-route-stats
PY=/usr/bin/python3
M=$T/moe.safetensors
"$BIN/vlm-convert" init --seed 1 --set vision.layers=2 --set text.layers=2 \
    --set vocab=600 tiny-moe "$M" >/dev/null || fail "making the model"
mkdir "$T/img"

ok "--version names the cuda backend and the device" "$EM" --version
check "a cuda line and a device line" \
    'grep -q "^backend cuda: " "$T/out" && grep -q "^device: " "$T/out"'
check "the programs do not link the CUDA runtime" \
    '! ldd "$TR" "$EM" "$EV" "$RS" | grep -q "libcudart\|libcublas"'

printf 'x.png\ta cat\n' >"$T/pairs.tsv"
fails "embed: --device gpu is a usage error" 2 "$EM" --device gpu -m "$M" \
    -o "$T/x.npy" "$T/img"
check "naming it" 'grep -q "device .gpu." "$T/err"'
fails "train: --device gpu is a usage error" 2 "$TR" --device gpu \
    --data "$T/pairs.tsv" -m "$M" -o "$T/run" -b 2
check "naming it" 'grep -q "device .gpu." "$T/err"'
fails "eval: --device gpu is a usage error" 2 "$EV" retrieval \
    --device gpu -m "$M" --pairs "$T/pairs.tsv"
check "naming it" 'grep -q "device .gpu." "$T/err"'
fails "route-stats: --device gpu is a usage error" 2 "$RS" --device gpu \
    -m "$M" --images "$T/img" -o "$T/r.routes"
check "naming it" 'grep -q "device .gpu." "$T/err"'
fails "VLM_DEVICE=tpu is a usage error" 2 env VLM_DEVICE=tpu "$EM" -m "$M" \
    -o "$T/e.npy" "$T/img"
ok "--device cpu embeds (no images: an empty output)" "$EM" --device cpu \
    -m "$M" -o "$T/cpu0.npy" "$T/img"

ndev=$("$EM" --version | sed -n 's/^backend cuda: \([0-9]*\) device.*/\1/p')
if "$EM" --version | grep -q "this build has no CUDA"; then
	skip "asking for cuda" "this build has no CUDA (make CUDA=1)"
elif [ "${ndev:-0}" -eq 0 ]; then
	# no GPU here: cuda is refused, clearly, by every program
	fails "embed --device cuda exits 1" 1 "$EM" --device cuda -m "$M" \
	    -o "$T/e.npy" "$T/img"
	check "with one line naming cuda" \
	    '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "cuda" "$T/err"'
	check "and writes nothing" '[ ! -e "$T/e.npy" ]'
	fails "VLM_DEVICE=cuda:0 exits 1 too" 1 env VLM_DEVICE=cuda:0 "$EM" \
	    -m "$M" -o "$T/e.npy" "$T/img"
	fails "route-stats --device cuda exits 1" 1 "$RS" --device cuda \
	    -m "$M" --images "$T/img" -o "$T/r.routes"
	check "and writes nothing" '[ ! -e "$T/r.routes" ]'
	if have_py "eval --device cuda" PIL; then
		$PY tests/mkshapes.py "$T/d" 4
		fails "eval --device cuda exits 1" 1 "$EV" retrieval \
		    --device cuda -m "$M" --pairs "$T/d/pairs.tsv"
		check "naming cuda" 'grep -q "backend .cuda." "$T/err"'
	fi
	fails "train --device cuda exits 1" 1 "$TR" --device cuda \
	    --data "$T/pairs.tsv" -m "$M" -o "$T/run" -b 2
	check "naming cuda" 'grep -q "backend .cuda." "$T/err"'
	check "and makes no run" '[ ! -e "$T/run" ]'
	skip "cuda against cpu" "no CUDA device here"
elif have_py "cuda against cpu" numpy PIL; then
	$PY tests/mkshapes.py "$T/d" 24
	ok "embed on cpu" "$EM" --device cpu -m "$M" -o "$T/cpu.npy" "$T/d"
	ok "embed on cuda" "$EM" --device cuda -m "$M" -o "$T/cuda.npy" "$T/d"
	check "the same embeddings within 1e-4" "$PY - $T/cpu.npy $T/cuda.npy \
	    <<'PYEOF'
import sys, numpy as np
a, b = (np.load(f) for f in sys.argv[1:3])
assert a.shape == b.shape, (a.shape, b.shape)
err = np.abs(a - b).max() / np.abs(a).max()
print('# cuda/cpu embeddings: max rel err %.1e' % err)
assert err < 1e-4, err
PYEOF"
	A="--data $T/d/pairs.tsv -m $M -b 8 --warmup 1 --seed 3 --steps 3"
	ok "train 3 steps on cpu" "$TR" $A --log-every 1 --device cpu \
	    -o "$T/cpu"
	ok "train 3 steps on cuda" "$TR" $A --log-every 1 --device cuda \
	    -o "$T/cuda"
	check "the device in metrics.jsonl" \
	    'grep -q "\"device\":\"cuda:0\"" "$T/cuda/metrics.jsonl"'
	check "the same losses within 1e-4" "$PY - $T/cpu $T/cuda <<'PYEOF'
import json, sys
a, b = ([json.loads(l)['loss'] for l in open(d + '/metrics.jsonl')
         if '\"loss\"' in l] for d in sys.argv[1:3])
print('# losses cpu', a, 'cuda', b)
assert len(a) == len(b) == 3, (a, b)
assert all(abs(x - y) <= 1e-4 * abs(y) for x, y in zip(a, b)), (a, b)
PYEOF"
fi
finish
