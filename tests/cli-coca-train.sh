#!/bin/sh
# cli-coca-train.sh - vlm-train on a CoCa model file (the OpenCLIP CoCa
# fixture imported): metrics.jsonl logs the contrastive and caption
# losses apart and the loss falls; an interrupted run resumed is
# bit-identical to an uninterrupted one; --stage connector trains only
# the pooler and cross-attention; Uni-MoE's stages, merge-lora of the
# LoRA stage's model; the top-1 routers learn with the importance loss;
# --val-data logs the validation CoCaLoss, deterministically; options
# CoCa runs lack are refused.
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
# a new model, upcycled, then Uni-MoE's stages, each from the last's model
TINY="--set vocab=600 --set embed_dim=16 --set vision.width=16
--set image_size=16 --set pooler.queries=5 --set pooler.heads=2
--set context=8"
ok "init coca-tiny" "$BIN/vlm-convert" init -s 3 $TINY coca-tiny "$T/new.safetensors"
ok "upcycle its decoder" "$BIN/vlm-convert" upcycle --experts 4 --top-k 2 \
    --every 1 "$T/new.safetensors" "$T/moe.safetensors"
ok "info" "$BIN/vlm-convert" info "$T/moe.safetensors"
check "shows the experts and FLOPs" \
    "grep -q '^decoder experts: 4, top-2' $T/out &&
     grep -q '^forward GFLOPs per caption' $T/out"
ok "an MoE init has the same caption FLOPs as its upcycled twin" \
    "$BIN/vlm-convert" init $TINY --set moe.experts=4 --set moe.every=1 \
    coca-tiny "$T/moe2.safetensors"
check "(same shapes, router included)" \
    "[ \"\$($BIN/vlm-convert info $T/moe.safetensors | grep GFLOPs)\" = \
    \"\$($BIN/vlm-convert info $T/moe2.safetensors | grep GFLOPs)\" ]"
fails "upcycle twice" 1 "$BIN/vlm-convert" upcycle --experts 2 "$T/moe.safetensors" \
    "$T/x.safetensors"
S="--data $P -b 4 --steps 2 --warmup 1 --lr 1e-3"
ok "stage connector" "$TR" $S -m "$T/moe.safetensors" -o "$T/s1" --stage connector
ok "stage experts from it" "$TR" $S -m "$T/s1/latest/model.safetensors" \
    -o "$T/s2" --stage experts
ok "stage lora from that" "$TR" $S -m "$T/s2/latest/model.safetensors" \
    -o "$T/s3" --stage lora --lora-rank 4 --lora-alpha 8
# moved: the tensors a stage trains; every other byte as it was
moved() { # A B: names of the tensors that differ, sorted, one a line
	/usr/bin/python3 -c '
import struct, json, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n +
            v["data_offsets"][1]] for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in sorted(b):
    if k not in a or a[k] != b[k]:
        print(k)' "$1" "$2" 2>/dev/null
}
check "connector: only the pooler and cross-attention moved" \
    "! moved $T/moe.safetensors $T/s1/latest/model.safetensors |
     grep -v -e '^visual.attn_pool.' -e '^text_decoder.cross_attn.' &&
     moved $T/moe.safetensors $T/s1/latest/model.safetensors | grep -q cross_attn"
check "experts: only the experts and routers moved" \
    "! moved $T/s1/latest/model.safetensors $T/s2/latest/model.safetensors |
     grep -v -e '.mlp.experts.' -e '.mlp.router.' &&
     moved $T/s1/latest/model.safetensors $T/s2/latest/model.safetensors |
     grep -q router"
check "lora: only the adapters moved (and were added)" \
    "! moved $T/s2/latest/model.safetensors $T/s3/latest/model.safetensors |
     grep -v -e '.lora_[ab]\$' &&
     moved $T/s2/latest/model.safetensors $T/s3/latest/model.safetensors |
     grep -q experts.c_fc.weight.lora_b"
ok "the staged model captions" "$BIN/vlm-caption" -l 8 \
    -m "$T/s3/latest/model.safetensors" "$T/d/img/000.png"
check "one line, its path" "[ \$(wc -l <$T/out) = 1 ] && grep -q 000.png $T/out"
ok "merge-lora the staged model" "$BIN/vlm-convert" merge-lora \
    "$T/s3/latest/model.safetensors" "$T/merged.safetensors"
check "the merged model has no adapters and the MoE experts" \
    "! grep -a -q lora_ $T/merged.safetensors &&
     $BIN/vlm-convert info $T/merged.safetensors | grep -q '^decoder experts: 4, top-2'"
ok "the merged model captions" "$BIN/vlm-caption" -l 8 -k 3 \
    -m "$T/merged.safetensors" "$T/d/img/000.png" "$T/d/img/001.png"
cp "$T/out" "$T/cap-merged"
ok "as the adapted one" "$BIN/vlm-caption" -l 8 -k 3 \
    -m "$T/s3/latest/model.safetensors" "$T/d/img/000.png" "$T/d/img/001.png"
check "(the same captions)" "cmp -s $T/out $T/cap-merged"
fails "merge-lora of a CoCa model without adapters" 1 "$BIN/vlm-convert" \
    merge-lora "$T/moe.safetensors" "$T/m2.safetensors"
check "says so, writes nothing" "grep -q 'no LoRA adapters' $T/err &&
    [ ! -e $T/m2.safetensors ]"
ok "upcycle top-1" "$BIN/vlm-convert" upcycle --experts 4 --top-k 1 \
    --every 1 "$T/new.safetensors" "$T/moe1.safetensors"
ok "top-1 experts with the routers' aux loss" "$TR" $S --log-every 1 \
    -m "$T/moe1.safetensors" -o "$T/s4" --stage experts --wd 0 \
    --set aux.importance=0.01
check "metrics: aux logged and in the loss" \
    "/usr/bin/python3 -c 'import json
L = [json.loads(l) for l in open(\"$T/s4/metrics.jsonl\")]
assert len(L) == 2, L
for o in L:
    assert o[\"aux\"] > 0, o
    assert abs(o[\"contrastive\"] + o[\"caption\"] + o[\"aux\"] -
               o[\"loss\"]) < 1e-4, o
'"
check "the top-1 routers learnt (no weight decay)" \
    "moved $T/moe1.safetensors $T/s4/latest/model.safetensors | grep -q router"
fails "aux.importance on a dense decoder" 2 "$TR" $S -m "$T/new.safetensors" \
    -o "$T/s5" --set aux.importance=0.01
head -7 "$P" >"$T/d/val.tsv"
V="--val-data $T/d/val.tsv --val-every 2 --log-every 4"
ok "--val-data on a CoCa run" "$TR" $S --steps 4 -m "$T/new.safetensors" \
    -o "$T/v1" $V
ok "the same run again" "$TR" $S --steps 4 -m "$T/new.safetensors" \
    -o "$T/v2" $V
check "validation CoCaLoss logged every 2 steps, parts sum to it" \
    "/usr/bin/python3 -c 'import json
L = [json.loads(l) for l in open(\"$T/v1/metrics.jsonl\")]
assert [o[\"step\"] for o in L] == [2, 4], L
for o in L:
    assert o[\"val_contrastive\"] > 0 and o[\"val_caption\"] > 0, o
    assert abs(o[\"val_contrastive\"] + o[\"val_caption\"] -
               o[\"val_loss\"]) < 1e-4, o
'"
check "deterministic: both runs log the same validation losses" \
    "[ \"\$(grep -o '\"val_[a-z]*\": [-0-9.e]*' $T/v1/metrics.jsonl)\" = \
    \"\$(grep -o '\"val_[a-z]*\": [-0-9.e]*' $T/v2/metrics.jsonl)\" ] &&
    grep -q val_caption $T/v1/metrics.jsonl"
fails "--val-data of a missing file" 1 "$TR" $S -m "$T/new.safetensors" \
    -o "$T/v3" --val-data "$T/nosuch.tsv"
check "names it" "grep -q nosuch.tsv $T/err"
fails "--set other than LoRA's is not for CoCa" 2 "$TR" $S -m "$T/moe.safetensors" \
    -o "$T/s9" --set vision.layers=3
fails "--accum-freq is not for CoCa" 2 "$TR" $RUN -o "$T/f" --accum-freq 2
fails "--stage on a CLIP model" 2 "$TR" --data "$P" -m tiny -o "$T/g" \
    --stage lora
finish
