#!/bin/sh
# cli-coca-train.sh - vlm-train on a CoCa model file (the OpenCLIP CoCa
# fixture imported): metrics.jsonl logs the contrastive and caption
# losses apart and the loss falls; an interrupted run resumed is
# bit-identical to an uninterrupted one; --stage connector trains only
# the pooler and cross-attention; options CoCa runs lack are refused.
. tests/lib.sh

TR=$BIN/vlm-train
D=$FIX/openclip-coca-tiny
fails "--stage of no such stage" 2 "$TR" --data x -m x -o x --stage all
have "the CoCa training runs" "$D/weights.openclip.safetensors" \
    "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" || { finish; exit; }
have_py "the CoCa training runs" PIL || { finish; exit; }
/usr/bin/python3 tests/mkshapes.py "$T/d" 16
P=$T/d/pairs.tsv
M=$T/coca.safetensors
ok "import the CoCa checkpoint" "$BIN/vlm-convert" import \
    -c "$D/open_clip_config.json" \
    -t "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
    "$D/weights.openclip.safetensors" "$M"
RUN="--data $P -m $M -b 4 --steps 8 --warmup 2 --lr 1e-3 --log-every 1"

ok "train 8 steps" "$TR" $RUN -o "$T/a"
check "metrics: contrastive and caption apart, they sum to the loss" \
    "/usr/bin/python3 -c 'import json
L = [json.loads(l) for l in open(\"$T/a/metrics.jsonl\")]
assert [o[\"step\"] for o in L] == list(range(1, 9)), L
for o in L:
    assert abs(o[\"contrastive\"] + o[\"caption\"] - o[\"loss\"]) < 1e-4, o
a = sum(o[\"loss\"] for o in L[:2]); b = sum(o[\"loss\"] for o in L[-2:])
assert b < a - 2, (a, b)
'"
check "the checkpoint is a CoCa model file" \
    "$BIN/vlm-caption -m $T/a/latest/model.safetensors -l 8 \
    $D/test_image.png >$T/cap && [ \$(wc -l <$T/cap) = 1 ]"
check "params.json keeps the loss weights" \
    "grep -q '\"caption-weight\": 2' $T/a/params.json"

ok "interrupted run" "$TR" $RUN -o "$T/b" --stop-at 3
ok "resumed" "$TR" --resume "$T/b"
check "bit-identical model to the uninterrupted run's" \
    "cmp -s $T/a/latest/model.safetensors $T/b/latest/model.safetensors"
check "and optimizer moments" \
    "cmp -s $T/a/latest/optim.safetensors $T/b/latest/optim.safetensors"
check "and the same losses" \
    "[ \"\$(cut -d, -f1-8 $T/a/metrics.jsonl)\" = \
    \"\$(cut -d, -f1-8 $T/b/metrics.jsonl)\" ]"

ok "--stage connector" "$TR" $RUN -o "$T/c" --steps 2 --stage connector \
    --caption-weight 1 --clip-weight 0.5
check "only the pooler and cross-attention moved" \
    "/usr/bin/python3 -c '
import struct, json, sys
def load(p):
    b = open(p, \"rb\").read(); n = struct.unpack(\"<Q\", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop(\"__metadata__\", None)
    return {k: b[8 + n + v[\"data_offsets\"][0]:8 + n +
            v[\"data_offsets\"][1]] for k, v in h.items()}
a, b = load(\"$M\"), load(\"$T/c/latest/model.safetensors\")
assert a.keys() == b.keys()
for k in a:
    conn = k.startswith((\"visual.attn_pool.\", \"text_decoder.cross_attn.\"))
    assert (a[k] != b[k]) == conn, k
'"
fails "--stage experts of a model without experts" 1 "$TR" $RUN \
    -o "$T/e" --stage experts
check "says so" "grep -q 'no such tensors' $T/err"
fails "--accum-freq is not for CoCa" 2 "$TR" $RUN -o "$T/f" --accum-freq 2
fails "--stage on a CLIP model" 2 "$TR" --data "$P" -m tiny -o "$T/g" \
    --stage lora
finish
