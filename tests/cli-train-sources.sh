#!/bin/sh
# cli-train-sources.sh - vlm-train on several data sources and with
# gradient accumulation, on two tiny synthetic sets: weights and their
# default, each source's bad rows reported by its file and line, the
# adaptive rule recomputed from the logged losses, bit-identical resume
# (stopped, and from a checkpoint taken with a batch fed ahead), and
# --accum-freq's loss and gradient against two plain steps at lr 0.
. tests/lib.sh

TR=$BIN/vlm-train
PY=/usr/bin/python3
if ! have_py "the training runs (all)" PIL numpy; then
	finish; exit
fi
$PY tests/mkshapes.py "$T/a" 48
$PY tests/mkshapes.py "$T/b" 20
mv "$T/a/pairs.tsv" "$T/a/a.tsv"
mv "$T/b/pairs.tsv" "$T/b/b.tsv"
A=$T/a/a.tsv
B=$T/b/b.tsv
# b.tsv: line 22 names a missing image, line 23 one that cannot be decoded
printf 'not a png' >"$T/b/img/broken.png"
printf 'img/none.png\ta missing image\nimg/broken.png\ta broken image\n' \
    >>"$B"
SMALL="-m tiny-moe --set vision.layers=2 --set text.layers=2
--set vision.width=32 --set text.width=32 --set vision.heads=2
--set text.heads=2 --set embed_dim=16 --set image_size=16
--set vocab=600 -b 8 --warmup 2 --seed 5"

# field f of every metrics line of run r, one JSON value a line
field() { $PY -c 'import json, sys
for l in open(sys.argv[1]): print(json.dumps(json.loads(l)[sys.argv[2]]))' \
    "$T/$1/metrics.jsonl" "$2"; }

ok "two sources, weights 1,3" "$TR" --data "$A" --data "$B" \
    --data-weights 1,3 $SMALL -o "$T/w" --steps 6 --log-every 1
check "the bad rows of b.tsv reported once, by b.tsv and line" \
    "[ \$(grep -c 'b.tsv:' $T/err) = 2 ] && grep -q 'b.tsv:22: cannot' \
     $T/err && grep -q 'b.tsv:23: .*skipped' $T/err && ! grep -q a.tsv $T/err"
check "weights 1,3 of a batch of 8: 2 and 6 examples every step" \
    "[ \"\$(field w source_examples | sort -u)\" = '[2, 6]' ]"
check "and p = (0.25, 0.75) without --adaptive" \
    "[ \"\$(field w source_p | sort -u)\" = '[0.25, 0.75]' ]"
check "samples count every example" \
    "[ \"\$(field w samples | tail -1)\" = 48 ]"

ok "default weights" "$TR" --data "$A" --data "$B" $SMALL -o "$T/d" \
    --steps 1
check "are proportional to the usable pairs (48 and 21)" \
    "$PY -c 'import json
p = json.loads(open(\"$T/d/metrics.jsonl\").readline())[\"source_p\"]
assert abs(p[0] - 48 / 69) < 1e-6 and abs(p[1] - 21 / 69) < 1e-6, p'"

ok "adaptive sampling" "$TR" --data "$A" --data "$B" --data-weights 1,3 \
    --adaptive --adaptive-tau 0.5 --adaptive-floor 0.2 $SMALL -o "$T/ad" \
    --steps 8 --log-every 1
# p = (1 - eps) q + eps / S, q ~ w exp(L / tau): here eps 0.2, S 2, tau 0.5.
# Hence p is within [eps/S, 1 - eps + eps/S] = [0.1, 0.9], p is ordered as
# w exp(L / tau), and (w summing to 1, S = 2) source 0 gets more than its
# share without --adaptive, 0.8 * 0.25 + 0.1 = 0.3, exactly when L0 > L1.
check "p follows the documented rule from the logged loss averages" \
    "$PY -c 'import json, math
for l in open(\"$T/ad/metrics.jsonl\"):
    o = json.loads(l)
    L, p, w = o[\"source_loss\"], o[\"source_p\"], [0.25, 0.75]
    q = [w[s] * math.exp(L[s] / 0.5) for s in (0, 1)]
    want = [0.8 * q[s] / sum(q) + 0.1 for s in (0, 1)]
    assert all(abs(p[s] - want[s]) < 1e-5 for s in (0, 1)), (p, want)
    assert abs(sum(p) - 1) < 1e-6, p
    assert all(0.1 - 1e-9 <= x <= 0.9 + 1e-9 for x in p), p
    if abs(q[0] - q[1]) > 1e-6 * max(q):
        assert (p[0] > p[1]) == (q[0] > q[1]), (p, q)
    if abs(L[0] - L[1]) > 1e-6:
        assert (p[0] > 0.3) == (L[0] > L[1]), (p, L)
'"
check "and the batches follow p" \
    "[ \"\$(field ad source_examples | sort -u | wc -l)\" -gt 1 ]"

R="--data $A --data $B --data-weights 1,3 --adaptive -b 8 --warmup 2"
ok "stopped at step 3" "$TR" $R $SMALL -o "$T/r" --steps 8 --stop-at 3
ok "resumed to 8" "$TR" $R --resume "$T/r" --steps 8
ok "uninterrupted, tau 1, floor 0.1" "$TR" $R $SMALL -o "$T/u" --steps 8 \
    --save-every 3 --keep 0
check "two sources, adaptive: resumed model and moments are bit-identical" \
    "cmp -s $T/u/latest/model.safetensors $T/r/latest/model.safetensors &&
     cmp -s $T/u/latest/optim.safetensors $T/r/latest/optim.safetensors"
mkdir "$T/c" && cp -R "$T/u/ckpt-00000003" "$T/c/" &&
    ln -s ckpt-00000003 "$T/c/latest"
ok "resumed from a checkpoint taken with a batch fed ahead" "$TR" $R \
    --resume "$T/c" --steps 8
check "bit-identical too" \
    "cmp -s $T/u/latest/model.safetensors $T/c/latest/model.safetensors &&
     cmp -s $T/u/latest/optim.safetensors $T/c/latest/optim.safetensors"
fails "resume with one source of two" 1 "$TR" --data "$A" --resume "$T/u" \
    -b 8 --steps 9
check "says so" "grep -q 'trained on 2 data sources' $T/err"

ok "--accum-freq 2, two sources" "$TR" $R --accum-freq 2 $SMALL \
    -o "$T/g" --steps 5 --log-every 1
check "samples and steps: 2 micro-batches of 8 a step" \
    "[ \"\$(field g samples | tr '\n' ' ')\" = '16 32 48 64 80 ' ]"
ok "stopped at 2" "$TR" $R --accum-freq 2 $SMALL -o "$T/g2" --steps 5 \
    --stop-at 2
ok "resumed" "$TR" $R --accum-freq 2 --resume "$T/g2" --steps 5
check "accumulated steps resume bit-identically" \
    "cmp -s $T/g/latest/model.safetensors $T/g2/latest/model.safetensors &&
     cmp -s $T/g/latest/optim.safetensors $T/g2/latest/optim.safetensors"

# One step of 2 x 4 against two plain steps of 4 at lr 0 (the same two
# batches, parameters unchanged): the loss is their mean and the gradient
# too, read from AdamW's first moment (m = 0.1 g, then 0.9 m + 0.1 g).
ok "one source, one step of 2 x 4" "$TR" --data "$A" $SMALL -b 4 \
    --accum-freq 2 -o "$T/x" --steps 1 --lr 0
ok "two plain steps of 4" "$TR" --data "$A" $SMALL -b 4 -o "$T/y" \
    --steps 2 --lr 0 --log-every 1 --save-every 1 --keep 0
check "accumulated loss and gradient are the micro-batches' mean" \
    "$PY -c 'import json, struct, numpy as np
def moment(p):
    f = open(p, \"rb\"); n = struct.unpack(\"<Q\", f.read(8))[0]
    h = json.loads(f.read(n)); d = f.read()
    a, b = h[\"adamw.m\"][\"data_offsets\"]
    return np.frombuffer(d[a:b], \"<f4\").astype(np.float64)
x = [json.loads(l)[\"loss\"] for l in open(\"$T/x/metrics.jsonl\")]
y = [json.loads(l)[\"loss\"] for l in open(\"$T/y/metrics.jsonl\")]
assert abs(x[0] - (y[0] + y[1]) / 2) < 1e-5 * x[0], (x, y)
gx = moment(\"$T/x/latest/optim.safetensors\") / 0.1
m1 = moment(\"$T/y/ckpt-00000001/optim.safetensors\")
m2 = moment(\"$T/y/ckpt-00000002/optim.safetensors\")
g = (m1 / 0.1 + (m2 - 0.9 * m1) / 0.1) / 2
assert np.abs(g).max() > 0
assert np.abs(gx - g).max() < 1e-4 * np.abs(g).max(), np.abs(gx - g).max()
'"

fails "weights, one a source" 2 "$TR" --data "$A" --data "$B" \
    --data-weights 1,2,3 $SMALL -o "$T/e1" --steps 1
fails "weights must be positive" 2 "$TR" --data "$A" --data "$B" \
    --data-weights 1,0 $SMALL -o "$T/e2" --steps 1
fails "--accum-freq 0" 2 "$TR" --data "$A" $SMALL --accum-freq 0 \
    -o "$T/e3" --steps 1
printf 'filepath\ttitle\nimg/000.png\tok\nimg/x.png\tgone\nimg/y.png\tgone\n' \
    >"$T/a/c.tsv"
fails "--max-bad holds per source" 1 "$TR" --data "$A" --data "$T/a/c.tsv" \
    $SMALL -o "$T/e4" --steps 1
check "and names it" "grep -q \"c.tsv': 2 of 3 rows are bad\" $T/err"
finish
