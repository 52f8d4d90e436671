#!/bin/sh
# cli-backend.sh - VLM_BACKEND: the ref backend trains to the cpu
# backend's losses (within float rounding), an unknown backend is one
# clear error and exit 1, with no half-written output.
. tests/lib.sh

TR=$BIN/vlm-train
EM=$BIN/vlm-embed
CV=$BIN/vlm-convert
PY=/usr/bin/python3
M=$T/moe.safetensors
"$CV" init --seed 1 --set vision.layers=2 --set text.layers=2 \
    --set vocab=600 tiny-moe "$M" >/dev/null || fail "making the model"

VLM_BACKEND=nosuch "$EM" -m "$M" -o "$T/e.npy" "$T" >"$T/out" 2>"$T/err"
rc=$?
check "embed: an unknown backend exits 1" '[ $rc -eq 1 ]'
check "with one line naming it" \
    '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "backend .nosuch." "$T/err"'
check "and writes nothing" '[ ! -e "$T/e.npy" ]'

if ! $PY -c 'import PIL' 2>/dev/null; then
	echo "# skipping the rest: $PY has no PIL"; finish; exit
fi
$PY tests/mkshapes.py "$T/d" 24
A="--data $T/d/pairs.tsv -m $M -b 8 --warmup 1 --seed 3 --steps 3 --log-every 1"
fails "train: an unknown backend exits 1" 1 env VLM_BACKEND=nosuch \
    "$TR" $A -o "$T/x"
check "naming it" 'grep -q "unknown backend .nosuch." "$T/err"'
ok "train 3 steps on cpu" env VLM_BACKEND=cpu "$TR" $A -o "$T/cpu"
ok "train 3 steps on ref" env VLM_BACKEND=ref "$TR" $A -o "$T/ref"
check "the same losses within 1e-4" "$PY - $T/cpu $T/ref <<'PYEOF'
import json, sys
a, b = ([json.loads(l)['loss'] for l in open(d + '/metrics.jsonl')
         if '\"loss\"' in l] for d in sys.argv[1:3])
assert len(a) == len(b) == 3, (a, b)
assert all(abs(x - y) <= 1e-4 * abs(y) for x, y in zip(a, b)), (a, b)
PYEOF"
finish
