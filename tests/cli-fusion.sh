#!/bin/sh
# cli-fusion.sh - the VL-MoE fusion model end to end on synthetic shapes:
# vlm-train with ITC, ITM and MLM (metrics logged, bit-identical resume,
# loss weights), vlm-eval retrieval --rerank K and vlm-eval match.
. tests/lib.sh

TR=$BIN/vlm-train
. tests/tiny-run.sh
FUS="-m fusion-tiny --set vision.layers=2 --set text.layers=2
--set vision.width=32 --set text.width=32 --set vision.heads=2
--set text.heads=2 --set embed_dim=16 --set image_size=16
--set vocab=600 -b 8 --warmup 2 --seed 5"

ok "train a fusion model 6 steps" "$TR" --data "$P" $FUS -o "$T/a" \
    --steps 6 --log-every 2
check "metrics carry each loss and the ITM accuracy" \
    "/usr/bin/python3 -c 'import json
L = [json.loads(l) for l in open(\"$T/a/metrics.jsonl\")]
assert [l[\"step\"] for l in L] == [2, 4, 6], L
for l in L:
    for k in (\"contrastive\", \"itm\", \"itm_acc\", \"mlm\", \"mlm_acc\"):
        assert k in l, k
    assert 0 < l[\"itm\"] < 5 and 0 <= l[\"itm_acc\"] <= 1, l
    assert l[\"mlm\"] > 0, l
    s = l[\"contrastive\"] + l[\"itm\"] + l[\"mlm\"] + l[\"aux\"]
    assert abs(l[\"loss\"] - s) < 1e-4 * s, (l[\"loss\"], s)
'"
ok "interrupted at step 3" "$TR" --data "$P" $FUS -o "$T/b" --steps 6 \
    --stop-at 3
ok "resumed to step 6" "$TR" --data "$P" --resume "$T/b" --steps 6
check "resumed parameters are bit-identical" \
    "cmp -s $T/a/latest/model.safetensors $T/b/latest/model.safetensors"
check "and so are the optimizer moments" \
    "cmp -s $T/a/latest/optim.safetensors $T/b/latest/optim.safetensors"
ok "ITM only (--itc-weight 0 --mlm-weight 0)" "$TR" --data "$P" $FUS \
    -o "$T/c" --steps 2 --log-every 1 --itc-weight 0 --mlm-weight 0
check "its loss is the ITM loss plus aux" \
    "/usr/bin/python3 -c 'import json
for l in map(json.loads, open(\"$T/c/metrics.jsonl\")):
    assert abs(l[\"loss\"] - l[\"itm\"] - l[\"aux\"]) < 1e-4, l
    assert l[\"mlm\"] == 0, l
'"
fails "LoRA on a fusion model is refused" 1 "$TR" --data "$P" $FUS \
    -o "$T/lo" --lora-rank 4 --steps 1
check "saying why, no run left" \
    "grep -q 'not a fusion model.s fusion blocks' $T/err && [ ! -e $T/lo ]"
fails "every weight 0: usage" 2 "$TR" --data "$P" $FUS -o "$T/z" \
    --steps 1 --itc-weight 0 --itm-weight 0 --mlm-weight 0
fails "a negative weight: usage" 2 "$TR" --data "$P" $FUS -o "$T/z2" \
    --steps 1 --itm-weight -1
fails "fusion on a two-tower config" 1 "$TR" --data "$P" $FUS \
    --set family=two-tower --set moe.modality_experts=false -o "$T/z3" \
    --steps 1
check "says why" "grep -q 'fusion.layers needs a one-tower' $T/err"

M=$T/a/latest/model.safetensors
EV=$BIN/vlm-eval
ok "contrastive retrieval" "$EV" retrieval -m "$M" --pairs "$P" --json
cp "$T/out" "$T/r0"
ok "--rerank 1" "$EV" retrieval -m "$M" --pairs "$P" --json --rerank 1
cp "$T/out" "$T/r1"
ok "--rerank 5" "$EV" retrieval -m "$M" --pairs "$P" --json --rerank 5
cp "$T/out" "$T/r5"
check "same JSON shape; re-ranking the top 1 or top 5 keeps R@1, or R@5 \
and R@10" "/usr/bin/python3 -c 'import json
a, b, c = (json.load(open(\"$T/r%s\" % s))[\"metrics\"] for s in \"015\")
assert sorted(a) == sorted(b) == sorted(c), (a, c)
for d in (\"image\", \"text\"):
    k = d + \"_retrieval_recall@\"
    assert a[k + \"1\"] == b[k + \"1\"], (a, b)
    assert a[k + \"5\"] == c[k + \"5\"] and a[k + \"10\"] == c[k + \"10\"]
'"
fails "--rerank needs a model" 2 "$EV" retrieval --pairs "$P" \
    --image-emb x --text-emb y --rerank 3
ok "match, with every pair's score" "$EV" match -m "$M" --pairs "$P" \
    --scores "$T/sc" --json
check "the metrics are those of the scores; negatives are of another \
image" "/usr/bin/python3 -c 'import json, csv
m = json.load(open(\"$T/out\"))[\"metrics\"]
rows = [l.rstrip(\"\\n\").split(\"\\t\") for l in open(\"$T/sc\")]
assert len(rows) == 3 * 48, len(rows)
cap = {}
for r in csv.reader(open(\"$P\"), delimiter=\"\\t\"):
    cap.setdefault(r[0], []).append(r[1])
n = len(rows) // 3; pos = neg = rank = 0
for i in range(n):
    a, b, c = rows[3 * i:3 * i + 3]
    assert [a[0], b[0], c[0]] == [\"match\", \"other-text\", \"other-image\"]
    assert a[1] == b[1] and a[2] == c[2] and b[2] == rows[(3 * i + 3) %
        len(rows)][2] and c[1] != a[1], (a, b, c)
    p = [float(x[3]) for x in (a, b, c)]
    pos += p[0] > 0.5; neg += (p[1] < 0.5) + (p[2] < 0.5)
    rank += p[0] > p[1] and p[0] > p[2]
for k, v in ((\"itm_accuracy\", (pos + neg) / (3 * n)),
             (\"itm_match_accuracy\", pos / n),
             (\"itm_nonmatch_accuracy\", neg / (2 * n)),
             (\"itm_ranking\", rank / n)):
    assert abs(m[k] - v) < 1e-6, (k, m[k], v)
'"
"$TR" --data "$P" $SMALL -o "$T/plain" --steps 1 >/dev/null 2>&1
fails "match with a model without fusion blocks" 1 "$EV" match \
    -m "$T/plain/latest/model.safetensors" --pairs "$P"
check "says so" "grep -q 'no fusion blocks' $T/err"

RS=$BIN/vlm-route-stats
ok "route-stats of the pairs through the fusion blocks" "$RS" -m "$M" \
    --pairs "$P" -b 8 --json
check "the third pool holds both modalities: 48 images of 5 tokens, and \
the text tokens the text pool saw" "/usr/bin/python3 -c 'import json
L = json.load(open(\"$T/out\"))[\"layers\"]
f = [l for l in L if l[\"name\"] == \"fusion.resblocks.1.moe\"][0]
t = [l for l in L if l[\"name\"].endswith(\"moe.text\")][0]
m = f[\"modalities\"]
assert f[\"label\"] == \"fusion 1\", f[\"label\"]
assert m[\"image\"][\"tokens\"] == 48 * 5, m[\"image\"]
assert m[\"text\"][\"tokens\"] == t[\"modalities\"][\"text\"][\"tokens\"]
assert m[\"all\"][\"tokens\"] == m[\"image\"][\"tokens\"] + \\
    m[\"text\"][\"tokens\"]
'"
fails "--pairs with a model without fusion blocks" 1 "$RS" \
    -m "$T/plain/latest/model.safetensors" --pairs "$P"
check "says so" "grep -q 'no fusion blocks' $T/err"
fails "--pairs and --images: usage" 2 "$RS" -m "$M" --pairs "$P" \
    --images "$T/d"

# question answering on synthetic scenes (tests/mkqa.py)
/usr/bin/python3 tests/mkqa.py "$T/qa" 24 1 16
/usr/bin/python3 tests/mkqa.py "$T/qt" 8 2 16
ok "fine-tune a QA head" "$TR" --data "$T/qa/qa.tsv" -m "$M" \
    --qa "$T/qa/answers.txt" -o "$T/q" --steps 4 --log-every 2 -b 8 \
    --warmup 1 --seed 3
check "metrics carry the QA loss and accuracy" \
    "/usr/bin/python3 -c 'import json
for l in map(json.loads, open(\"$T/q/metrics.jsonl\")):
    assert l[\"qa\"] > 0 and 0 <= l[\"qa_acc\"] <= 1, l
    assert abs(l[\"loss\"] - l[\"qa\"] - l[\"aux\"]) < 1e-4, l
'"
ok "interrupted QA run" "$TR" --data "$T/qa/qa.tsv" -m "$M" \
    --qa "$T/qa/answers.txt" -o "$T/q2" --steps 4 --stop-at 2 -b 8 \
    --warmup 1 --seed 3
ok "resumed" "$TR" --data "$T/qa/qa.tsv" --resume "$T/q2" --steps 4
check "resumed QA parameters are bit-identical" \
    "cmp -s $T/q/latest/model.safetensors $T/q2/latest/model.safetensors"
ok "vlm-eval qa" "$EV" qa -m "$T/q/latest/model.safetensors" \
    --pairs "$T/qt/qa.tsv" --answers "$T/qa/answers.txt" --json
check "accuracy in [0, 1]; chance, majority and blind baselines as the \
file gives them" "/usr/bin/python3 -c 'import json, csv, collections
m = json.load(open(\"$T/out\"))[\"metrics\"]
rows = list(csv.DictReader(open(\"$T/qt/qa.tsv\"), delimiter=\"\\t\"))
C = collections.Counter(r[\"answer\"] for r in rows)
Q = collections.defaultdict(collections.Counter)
for r in rows:
    Q[r[\"title\"]][r[\"answer\"]] += 1
blind = sum(max(c.values()) for c in Q.values()) / len(rows)
assert 0 <= m[\"qa_accuracy\"] <= 1
assert abs(m[\"qa_chance\"] - 1 / 12) < 1e-6, m
assert abs(m[\"qa_majority\"] - max(C.values()) / len(rows)) < 1e-6, m
assert abs(m[\"qa_blind\"] - blind) < 1e-6, (m, blind)
'"
printf 'filepath\ttitle\tanswer\nimg/0000.png\twhat?\tred\n%s\n' \
    'img/0001.png	what?	purple' >"$T/qa/bad.tsv"
fails "an answer not in the classes" 1 "$TR" --data "$T/qa/bad.tsv" \
    -m "$M" --qa "$T/qa/answers.txt" -o "$T/qb" --steps 1 -b 2
check "names the file, line and answer" \
    "grep -q \"bad.tsv:3: answer 'purple' is not in\" $T/err"
# FLOPs per fused pair of fusion-tiny, by hand: N = 17 image tokens + 32
# text tokens, width 128, 2 blocks of 24 N D^2 + 4 N^2 D (attention and
# an MLP of ratio 4, or one of 4 experts), the router 2 N D E of the MoE
# one, the ITM head 4 D: 41,044,480
ok "init fusion-tiny" "$BIN/vlm-convert" init fusion-tiny "$T/f.safetensors"
ok "info" "$BIN/vlm-convert" info "$T/f.safetensors"
check "info counts the fusion blocks per pair" \
    "grep -q 'GFLOPs per fused pair: 0.04104 ' $T/out"
finish
