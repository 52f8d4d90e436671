#!/bin/sh
# cli-frozen.sh - frozen parameters cost nothing: with --lock-image the
# checkpoint's AdamW moments cover exactly the parameters that train (the
# text tower and logit_scale), named in its metadata; the image tower is
# not changed; an interrupted locked run resumes bit-identically, with
# --accum-freq too; LoRA keeps moments of the adapters only and resumes
# bit-identically with micro-batches.
. tests/lib.sh

TR=$BIN/vlm-train
PY=/usr/bin/python3
. tests/tiny-run.sh

ok "locked image tower, uninterrupted" "$TR" --data "$P" $SMALL \
    --lock-image -o "$T/a" --steps 4
check "moments of the trained parameters only, each named" \
    "$PY -c 'import json, math, struct
def header(p):
    f = open(p, \"rb\"); n = struct.unpack(\"<Q\", f.read(8))[0]
    return json.loads(f.read(n))
m = header(\"$T/a/latest/model.safetensors\")
o = header(\"$T/a/latest/optim.safetensors\")
meta = m.pop(\"__metadata__\")
names = o[\"__metadata__\"][\"adamw.params\"].split(\",\")
trained = [k for k in m if not k.startswith(\"visual.\")]
assert sorted(names) == sorted(trained), (names, trained)
size = sum(math.prod(m[k][\"shape\"]) for k in trained)
assert o[\"adamw.m\"][\"shape\"] == [size] == o[\"adamw.v\"][\"shape\"], \
    (o[\"adamw.m\"][\"shape\"], size)
'"
ok "the start model" "$TR" --data "$P" $SMALL --lock-image -o "$T/z" \
    --steps 4 --lr 0
check "the image tower unchanged by training" \
    "$PY -c 'import json, struct
def load(p):
    b = open(p, \"rb\").read(); n = struct.unpack(\"<Q\", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop(\"__metadata__\")
    return {k: b[8 + n + v[\"data_offsets\"][0]:8 + n +
        v[\"data_offsets\"][1]] for k, v in h.items()}
a = load(\"$T/a/latest/model.safetensors\")
z = load(\"$T/z/latest/model.safetensors\")
assert all(a[k] == z[k] for k in a if k.startswith(\"visual.\"))
assert any(a[k] != z[k] for k in a if not k.startswith(\"visual.\"))
'"
ok "interrupted at 2" "$TR" --data "$P" $SMALL --lock-image -o "$T/b" \
    --steps 4 --stop-at 2
ok "resumed" "$TR" --resume "$T/b"
check "bit-identical model and moments" \
    "cmp -s $T/a/latest/model.safetensors $T/b/latest/model.safetensors &&
     cmp -s $T/a/latest/optim.safetensors $T/b/latest/optim.safetensors"

ok "locked text tower, 2 micro-batches, uninterrupted" "$TR" --data "$P" \
    $SMALL --lock-text --accum-freq 2 -o "$T/c" --steps 3
ok "interrupted at 1" "$TR" --data "$P" $SMALL --lock-text --accum-freq 2 \
    -o "$T/d2" --steps 3 --stop-at 1
ok "resumed" "$TR" --resume "$T/d2"
check "bit-identical model and moments" \
    "cmp -s $T/c/latest/model.safetensors $T/d2/latest/model.safetensors &&
     cmp -s $T/c/latest/optim.safetensors $T/d2/latest/optim.safetensors"

# LoRA: only the adapters have moments; with 2 micro-batches their
# gradients (folded from the adapted weights' block by block) resume
# bit-identically too
S0=$T/start.safetensors
ok "a model to fine-tune" "$BIN/vlm-convert" init --seed 1 \
    --set vision.layers=2 --set text.layers=2 --set vision.width=32 \
    --set text.width=32 --set vision.heads=2 --set text.heads=2 \
    --set embed_dim=16 --set image_size=16 --set vocab=600 tiny-moe "$S0"
FT="--data $P -m $S0 -b 8 --warmup 1 --seed 3 --lr 1e-2 --lora-rank 4
--accum-freq 2"
ok "LoRA, uninterrupted" "$TR" $FT -o "$T/l" --steps 3
check "moments of the adapters only" \
    "$PY -c 'import json, struct
f = open(\"$T/l/latest/optim.safetensors\", \"rb\")
n = struct.unpack(\"<Q\", f.read(8))[0]
names = json.loads(f.read(n))[\"__metadata__\"][\"adamw.params\"]
names = names.split(\",\")
assert names and all(k.endswith((\".lora_A\", \".lora_B\")) for k in names)
'"
ok "LoRA, interrupted at 1" "$TR" $FT -o "$T/l2" --steps 3 --stop-at 1
ok "resumed" "$TR" --resume "$T/l2"
check "bit-identical model and moments" \
    "cmp -s $T/l/latest/model.safetensors $T/l2/latest/model.safetensors &&
     cmp -s $T/l/latest/optim.safetensors $T/l2/latest/optim.safetensors"
finish
