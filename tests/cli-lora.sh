#!/bin/sh
# cli-lora.sh - LoRA fine-tuning end to end: vlm-train --lora-rank from a
# model file keeps every base tensor bit for bit and trains the adapters,
# resumes bit-identically; vlm-embed runs the unmerged checkpoint as
# `vlm-convert merge-lora` makes it; merge-lora refuses a plain model.
. tests/lib.sh

TR=$BIN/vlm-train
CV=$BIN/vlm-convert
PY=/usr/bin/python3
if ! have_py "the LoRA runs (all)" PIL; then
	finish; exit
fi
$PY tests/mkshapes.py "$T/d" 32
P=$T/d/pairs.tsv
S0=$T/start.safetensors
ok "a small MoE model to start from" "$CV" init --seed 1 \
    --set vision.layers=2 --set text.layers=2 --set vision.width=32 \
    --set text.width=32 --set vision.heads=2 --set text.heads=2 \
    --set embed_dim=16 --set image_size=16 --set vocab=600 tiny-moe "$S0"
FT="--data $P -b 8 --warmup 1 --seed 3 --lr 1e-2 --lora-rank 4"

ok "fine-tune 4 steps through rank-4 adapters" "$TR" $FT -m "$S0" \
    --lora-alpha 8 -o "$T/a" --steps 4
C=$T/a/latest/model.safetensors
ok "info on the checkpoint" "$CV" info "$C"
check "info lists the adapters" \
    "grep -q 'LoRA adapters: rank 4, scale 2, ' $T/out"

# safetensors by hand: every tensor of the start model S is in the
# checkpoint C byte for byte; C adds adapters, on attention and experts,
# each B moved off zero
trained() {
	$PY - "$1" "$2" <<'EOF'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop('__metadata__', None)
    return {k: b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]]
            for k, v in h.items()}
s, c = load(sys.argv[1]), load(sys.argv[2])
assert all(c[k] == v for k, v in s.items()), 'a base tensor changed'
ad = [k for k in c if k not in s]
assert ad and all(k.endswith(('.lora_A', '.lora_B')) for k in ad), ad
assert any('.experts.' in k for k in ad) and any('.attn.' in k for k in ad)
for k in ad:
    if k.endswith('.lora_B'):
        assert c[k].strip(b'\0'), k + ' is still zero'
EOF
}
check "base tensors bit-identical, adapters trained" "trained $S0 $C"

ok "stop at step 2" "$TR" $FT -m "$S0" --lora-alpha 8 -o "$T/b" --steps 4 \
    --stop-at 2
ok "resume to step 4" "$TR" --data "$P" -b 8 --warmup 1 --lr 1e-2 \
    --resume "$T/b" --steps 4
check "resumed adapters bit-identical" \
    "cmp -s $C $T/b/latest/model.safetensors"

ok "fine-tune the adapted checkpoint further" "$TR" --data "$P" -b 8 \
    --warmup 1 -m "$C" -o "$T/f" --steps 1
check "its base still bit-identical" "trained $S0 $T/f/latest/model.safetensors"
check "its adapters moved on" "! cmp -s $C $T/f/latest/model.safetensors"

ok "merge-lora" "$CV" merge-lora "$C" "$T/m.safetensors"
ok "info on the merged model" "$CV" info "$T/m.safetensors"
check "it has no adapter left" "! grep -q lora_ $T/out"
grep '^tensors:' "$T/out" >"$T/n1"
"$CV" info "$S0" | grep '^tensors:' >"$T/n0"
check "as many tensors as the start model" "cmp -s $T/n0 $T/n1"
# the streams differ in their metadata (the model's name) only
same() {
	$PY - "$1" "$2" 2>/dev/null <<'EOF'
import sys, numpy as np
f, g = open(sys.argv[1], 'rb'), open(sys.argv[2], 'rb')
np.load(f), np.load(g)
n = 0
while True:
    try:
        a = np.load(f)
    except (EOFError, ValueError):
        break
    b = np.load(g)
    assert a.dtype == b.dtype and a.shape == b.shape and (a == b).all()
    n += 1
assert n >= 3, n
EOF
}
if $PY -c 'import numpy' 2>/dev/null; then
	E=$BIN/vlm-embed
	"$E" -m "$C" "$T/d" >"$T/e1.npys" 2>/dev/null
	"$E" -m "$T/m.safetensors" "$T/d" >"$T/e2.npys" 2>/dev/null
	"$E" -m "$S0" "$T/d" >"$T/e0.npys" 2>/dev/null
	check "image embeddings: unmerged checkpoint = merged model" \
	    "same $T/e1.npys $T/e2.npys"
	check "and not the start model's" "! same $T/e0.npys $T/e1.npys"
	cut -f2 "$P" | tail -n +2 >"$T/caps"
	"$E" -t -m "$C" "$T/caps" >"$T/t1.npys" 2>/dev/null
	"$E" -t -m "$T/m.safetensors" "$T/caps" >"$T/t2.npys" 2>/dev/null
	check "text embeddings too" "same $T/t1.npys $T/t2.npys"
else
	skip "the embedding comparisons" "$PY lacks numpy"
fi

fails "merge-lora on a plain model" 1 "$CV" merge-lora "$S0" "$T/x.safetensors"
check "one line naming the file" \
    "[ \$(wc -l <$T/err) = 1 ] && grep -q 'start.safetensors.*no LoRA' $T/err"
check "and no output" "[ ! -e $T/x.safetensors ]"
fails "merge-lora without an output" 2 "$CV" merge-lora "$S0"
fails "adapters on a changed base are refused" 1 "$TR" $FT -m "$S0" \
    --set vision.width=64 -o "$T/c" --steps 1
fails "a negative rank is a usage error" 2 "$TR" $FT -m "$S0" \
    --lora-rank -1 -o "$T/c" --steps 1
finish
