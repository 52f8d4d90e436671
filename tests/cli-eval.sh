#!/bin/sh
# cli-eval.sh - vlm-eval zeroshot, retrieval and linear-probe end to end
# on a tiny synthetic ImageFolder and pairs file with the OpenCLIP
# fixture model (it carries the CLIP tokenizer): the --json shape,
# metrics equal to NumPy's CLIP_benchmark definitions on the same
# embeddings, byte-identical output across runs and thread counts, the
# precomputed-embedding path equal to the model path, bad inputs and
# usage errors. Skips without the fixtures, or /usr/bin/python3 with
# numpy and PIL.
. tests/lib.sh

V=$BIN/vlm-eval
PY=/usr/bin/python3

fails "no verb" 2 "$V"
check "usage on stderr" "grep -q '^usage: vlm-eval' $T/err"
fails "unknown verb" 2 "$V" classify
fails "zeroshot without classes" 2 "$V" zeroshot -m x.safetensors
fails "zeroshot without images" 2 "$V" zeroshot --classnames /dev/null
fails "retrieval without pairs" 2 "$V" retrieval -m x.safetensors
fails "retrieval: --per-class is not its option" 2 "$V" retrieval \
    -m x.safetensors --pairs p.tsv --per-class
fails "batch of 0" 2 "$V" zeroshot -m x -b 0 --images .
fails "negative weight decay" 2 "$V" linear-probe --train-emb a \
    --train-labels b --test-emb c --test-labels d --wd -1
fails "linear-probe without a test set" 2 "$V" linear-probe \
    --train-emb a --train-labels b
check "says what is missing" "grep -q 'test-emb' $T/err"
fails "--labels without --image-emb" 2 "$V" zeroshot -m x --images . \
    --labels l.txt

if ! have_fixtures "the evaluations (the rest)"; then finish; exit; fi
if ! have_py "the evaluations (the rest)" numpy PIL; then
	finish
	exit
fi
M=$T/oc.safetensors
"$BIN/vlm-convert" import -c "$FIX/openclip-tiny/open_clip_config.json" \
    -t "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
    "$FIX/openclip-tiny/weights.openclip.safetensors" "$M" ||
    fail "importing the OpenCLIP fixture"

# 6 classes x 3 images of odd sizes; pairs: each image 1-3 captions;
# a copy of the tree with one broken image; synthetic embeddings with
# labels, ids and class names for the file paths
$PY - "$T" <<'EOF' || fail "making the data with PIL and NumPy"
import os, sys, shutil, numpy as np
from PIL import Image
d = sys.argv[1]
r = np.random.default_rng(3)
names = ['apple', 'boat', 'cloud', 'dog', 'egg', 'fern']
rows = ['filepath\ttitle']
for c, n in enumerate(names):
    os.makedirs(f'{d}/imgs/{n}')
    for i in range(3):
        h, w = 30 + 7 * i, 44 - 5 * c
        a = r.integers(0, 256, (h, w, 3), np.uint8)
        a[:, : w // 2] = [40 * c, 255 - 40 * c, 90 * i]
        p = f'imgs/{n}/{i}.png'
        Image.fromarray(a).save(f'{d}/{p}')
        for k in range(1 + (c + i) % 3):
            rows.append(f'{p}\ta {n} photo, take {k} of {i}')
open(f'{d}/pairs.tsv', 'w').write('\n'.join(rows) + '\n')
open(f'{d}/names.txt', 'w').write('\n'.join(names) + '\n\n')
open(f'{d}/templates.txt', 'w').write('a photo of a {}.\nart of the {}\n')
shutil.copytree(f'{d}/imgs', f'{d}/bad')
png = open(f'{d}/imgs/boat/1.png', 'rb').read()
open(f'{d}/bad/boat/1.png', 'wb').write(png[: len(png) // 2])

# synthetic embeddings: 7 classes x 3 templates, 150 images; 40 images
# with 1-4 captions each (ids are paths, matched to syn.tsv)
def unit(x): return x / np.linalg.norm(x, axis=-1, keepdims=True)
D, C, T = 12, 7, 3
proto = r.normal(size=(C, D))
text = (proto[:, None, :] + 0.8 * r.normal(size=(C, T, D))).reshape(-1, D)
y = r.integers(0, C, 150)
img = proto[y] + 2.5 * r.normal(size=(150, D))
np.save(f'{d}/syn_text.npy', text.astype('<f4'))
np.save(f'{d}/syn_img.npy', img.astype('<f4'))
np.savetxt(f'{d}/syn_labels.txt', y, fmt='%d')
np.save(f'{d}/syn_labels.npy', y.astype('<i8'))
open(f'{d}/syn_names.txt', 'w').write(''.join(f'c{i}\n' for i in range(C)))
ni = 40
rimg = r.normal(size=(ni, D))
t2i = np.repeat(np.arange(ni), r.integers(1, 5, ni))
rtxt = rimg[t2i] + 1.0 * r.normal(size=(len(t2i), D))
perm = r.permutation(ni)  # the file's rows in another order
np.save(f'{d}/syn_rimg.npy', rimg[perm].astype('<f4'))
np.save(f'{d}/syn_rimg.ids.npy', np.array([f'./x/{i}.png' for i in perm]))
np.save(f'{d}/syn_rtxt.npy', rtxt.astype('<f4'))
open(f'{d}/syn.tsv', 'w').write('filepath\ttitle\n' + ''.join(
    f'data/x/{i}.png\tcaption {k}\n' for k, i in enumerate(t2i)))
np.save(f'{d}/syn_t2i.npy', t2i)
open(f'{d}/syn.csv', 'w').write('cap,img\n' + ''.join(
    f'"caption, ""{k}""",data/x/{i}.png\n' for k, i in enumerate(t2i)))
EOF

# ref.py: NumPy's CLIP_benchmark metrics of embeddings, as JSON metrics
cat >"$T/ref.py" <<'EOF'
import json, sys, numpy as np
def records(path):
    out = []
    with open(path, 'rb') as f:
        while f.peek(1):
            out.append(np.load(f))
    return out
def load(path):
    if path.endswith('.npys'):
        rec = records(path)
        return (np.concatenate(rec[2:-1:2]).astype(np.float64),
                np.concatenate(rec[1:-1:2]))
    return np.load(path).astype(np.float64), None
def unit(x): return x / np.linalg.norm(x, axis=-1, keepdims=True)
def rank(s, i):  # stable: ties go to the lower index
    return (s > s[i]).sum() + (s[:i] == s[i]).sum()
def zeroshot(img, y, text, C):
    W = unit(unit(text).reshape(C, -1, text.shape[1]).mean(1)).T
    L = 100 * unit(img) @ W
    r = np.array([rank(L[n], y[n]) for n in range(len(y))])
    rec = [(r[y == c] == 0).mean() for c in range(C) if (y == c).any()]
    return {'acc1': (r < 1).mean(), 'acc5': (r < 5).mean() if C >= 5
            else None, 'mean_per_class_recall': np.mean(rec)}
def retrieval(img, txt, t2i):
    S = unit(txt) @ unit(img).T
    m = {}
    for k in (1, 5, 10):
        m[f'image_retrieval_recall@{k}'] = np.mean(
            [rank(S[t], t2i[t]) < k for t in range(len(t2i))])
        m[f'text_retrieval_recall@{k}'] = np.mean(
            [min(rank(S[:, i], t) for t in np.flatnonzero(t2i == i)) < k
             for i in range(len(img))])
    return m
task = sys.argv[1]
if task == 'zeroshot':   # img(.npys|.npy) labels text C [ids-root]
    img, ids = load(sys.argv[2])
    if sys.argv[3] == 'ids':  # ids ROOT/CLASS/..: classes sorted
        cls = [i.split('/')[-2] for i in ids]
        names = sorted(set(cls))
        y = np.array([names.index(c) for c in cls])
    else:
        y = np.loadtxt(sys.argv[3], dtype=int)
    m = zeroshot(img, y, load(sys.argv[4])[0], int(sys.argv[5]))
else:                    # img text t2i
    img, _ = load(sys.argv[2])
    if sys.argv[2].endswith('.npy'):  # rows in the ids' order
        ids = np.load(sys.argv[2][:-4] + '.ids.npy')
        img = img[np.argsort([int(i.split('/')[-1][:-4]) for i in ids])]
    m = retrieval(img, load(sys.argv[3])[0], np.load(sys.argv[4]))
print(json.dumps(m))
EOF
# same JSON-OUT REF-JSON: every metric of REF in OUT's metrics, 1e-6
cat >"$T/same.py" <<'EOF'
import json, sys
out = json.load(open(sys.argv[1]))
ref = json.loads(open(sys.argv[2]).read())
assert set(out) >= {'dataset', 'model', 'task', 'metrics'}, out
for k, v in ref.items():
    got = out['metrics'][k]
    assert (got is None) == (v is None), (k, got, v)
    assert v is None or abs(got - v) < 1e-6, (k, got, v)
EOF
same() { $PY "$T/same.py" "$1" "$2" 2>&1 | tail -1 >&2; }

cd_ok() { ok "$@"; cp "$T/out" "$T/last"; }

# ---- zero-shot with the model -----------------------------------------
I=$T/imgs
cd_ok "zeroshot with the model" "$V" zeroshot -m "$M" --images "$I" --json
cp "$T/out" "$T/zs.json"
check "one JSON object of CLIP_benchmark's shape" "$PY -c '
import json, sys
o = json.load(open(\"$T/zs.json\"))
assert list(o) == [\"dataset\", \"model\", \"task\", \"metrics\"]
assert o[\"task\"] == \"zeroshot_classification\"
assert o[\"dataset\"] == \"$I\" and o[\"model\"] == \"$M\"
m = o[\"metrics\"]
assert list(m) == [\"acc1\", \"acc5\", \"mean_per_class_recall\"]
assert all(0 <= v <= 1 for v in m.values())
' && [ \$(wc -l <$T/zs.json) -eq 1 ]"
VLM_THREADS=1 "$V" zeroshot -m "$M" --images "$I" --json --per-class \
    >"$T/zs1.json" 2>/dev/null
VLM_THREADS=3 "$V" zeroshot -m "$M" --images "$I" --json --per-class \
    >"$T/zs3.json" 2>/dev/null
check "same bytes for 1 and 3 threads" "[ -s $T/zs1.json ] &&
    cmp -s $T/zs1.json $T/zs3.json"
check "--per-class adds recalls, the confusion matrix, the classes" \
    "$PY -c '
import json
o = json.load(open(\"$T/zs1.json\"))
m = o[\"metrics\"]
assert o[\"classes\"] == \"apple boat cloud dog egg fern\".split()
assert len(m[\"per_class_recall\"]) == 6
cm = m[\"confusion_matrix\"]
assert [sum(r) for r in cm] == [3] * 6
assert abs(sum(cm[i][i] for i in range(6)) / 18 - m[\"acc1\"]) < 1e-6
'"
ok "table output" "$V" zeroshot -m "$M" --images "$I"
check "the table names the task and each metric" \
    "grep -q '^task  *zeroshot_classification' $T/out &&
    grep -q '^mean_per_class_recall  *0\.' $T/out"
ok "--classnames and --templates" "$V" zeroshot -m "$M" --images "$I" \
    --classnames "$T/names.txt" --templates "$T/templates.txt" --json
ok "--prompts" "$V" zeroshot --images "$I" --templates "$T/templates.txt" \
    --prompts
check "prompts class by class" "[ \$(wc -l <$T/out) -eq 12 ] &&
    [ \"\$(sed -n 2p $T/out)\" = 'art of the apple' ]"

# ---- the same through precomputed embeddings (vlm-embed) --------------
if "$BIN/vlm-embed" -m "$M" "$I" >"$T/img.npys" 2>/dev/null &&
    "$V" zeroshot --images "$I" --prompts |
    "$BIN/vlm-embed" -m "$M" -t >"$T/txt.npys" 2>/dev/null; then
	ok "zeroshot from embeddings" "$V" zeroshot --images "$I" \
	    --image-emb "$T/img.npys" --text-emb "$T/txt.npys" --json \
	    --per-class
	check "same output as with the model" "cmp -s $T/out $T/zs1.json"
	$PY "$T/ref.py" zeroshot "$T/img.npys" ids "$T/txt.npys" 6 \
	    >"$T/zs.ref" 2>"$T/err"
	check "NumPy's metrics of those embeddings" \
	    "same $T/zs1.json $T/zs.ref"
	ok "image embeddings on a pipe" sh -c "'$V' zeroshot --images '$I' \
	    --image-emb - --text-emb '$T/txt.npys' --json --per-class \
	    <'$T/img.npys'"
	check "same output" "cmp -s $T/out $T/zs1.json"
	ok "retrieval with the model" "$V" retrieval -m "$M" \
	    --pairs "$T/pairs.tsv" --json
	cp "$T/out" "$T/ret.json"
	cut -f2 "$T/pairs.tsv" | tail -n +2 |
	    "$BIN/vlm-embed" -m "$M" -t >"$T/cap.npys" 2>/dev/null
	ok "retrieval from embeddings" "$V" retrieval --pairs "$T/pairs.tsv" \
	    --image-emb "$T/img.npys" --text-emb "$T/cap.npys" --json
	check "same output as with the model" "cmp -s $T/out $T/ret.json"
	ok "linear probe with the model" "$V" linear-probe -m "$M" \
	    --train "$I" --test "$I" --json
	cp "$T/out" "$T/lp.json"
	ok "linear probe from embeddings" "$V" linear-probe --train "$I" \
	    --test "$I" --train-emb "$T/img.npys" --test-emb "$T/img.npys" \
	    --json
	check "same output as with the model" \
	    "[ -s $T/lp.json ] && cmp -s $T/out $T/lp.json"
else
	fail "vlm-embed for the model-versus-embeddings checks"
fi

# ---- NumPy-made embeddings: metrics against NumPy's --------------------
ok "zeroshot from packed files, labels and class names" "$V" zeroshot \
    --image-emb "$T/syn_img.npy" --labels "$T/syn_labels.txt" \
    --classnames "$T/syn_names.txt" --text-emb "$T/syn_text.npy" --json
cp "$T/out" "$T/syn.json"
$PY "$T/ref.py" zeroshot "$T/syn_img.npy" "$T/syn_labels.txt" \
    "$T/syn_text.npy" 7 >"$T/syn.ref" 2>"$T/err"
check "acc1, acc5, mean_per_class_recall as NumPy's" \
    "same $T/syn.json $T/syn.ref"
check "and not trivial" "$PY -c '
import json
m = json.load(open(\"$T/syn.json\"))[\"metrics\"]
assert 0.2 < m[\"acc1\"] < 0.95 and m[\"acc1\"] < m[\"acc5\"] < 1, m
'"
ok "labels as .npy" "$V" zeroshot --image-emb "$T/syn_img.npy" \
    --labels "$T/syn_labels.npy" --classnames "$T/syn_names.txt" \
    --text-emb "$T/syn_text.npy" --json
check "same metrics" "cmp -s $T/out $T/syn.json"
ok "retrieval from files, ids matched to the pairs" "$V" retrieval \
    --pairs "$T/syn.tsv" --image-emb "$T/syn_rimg.npy" \
    --text-emb "$T/syn_rtxt.npy" --json
cp "$T/out" "$T/synr.json"
$PY "$T/ref.py" retrieval "$T/syn_rimg.npy" "$T/syn_rtxt.npy" \
    "$T/syn_t2i.npy" >"$T/synr.ref" 2>"$T/err"
check "recall@1, 5, 10 both ways as NumPy's" "same $T/synr.json $T/synr.ref"
check "task and metric names" "$PY -c '
import json
o = json.load(open(\"$T/synr.json\"))
assert o[\"task\"] == \"zeroshot_retrieval\" and o[\"model\"] is None
m = o[\"metrics\"]
assert len(m) == 6 and 0 < m[\"image_retrieval_recall@1\"] < 1
'"
ok "CSV with its own column names" "$V" retrieval --pairs "$T/syn.csv" \
    --csv-separator , --csv-img-key img --csv-caption-key cap \
    --image-emb "$T/syn_rimg.npy" --text-emb "$T/syn_rtxt.npy" --json
check "the same metrics" "$PY -c '
import json
a, b = (json.load(open(f))[\"metrics\"] for f in (\"$T/out\", \"$T/synr.json\"))
assert a == b
'"
for j in 1 2; do
	VLM_THREADS=$j "$V" linear-probe --train-emb "$T/syn_img.npy" \
	    --train-labels "$T/syn_labels.txt" --test-emb "$T/syn_img.npy" \
	    --test-labels "$T/syn_labels.npy" --json --per-class \
	    >"$T/lp$j.json" 2>"$T/err"
done
check "linear probe: same bytes for 1 and 2 threads" \
    "[ -s $T/lp1.json ] && cmp -s $T/lp1.json $T/lp2.json"
check "linear probe: its metrics, a chosen weight decay" "$PY -c '
import json
o = json.load(open(\"$T/lp1.json\"))
m = o[\"metrics\"]
assert o[\"task\"] == \"linear_probe\"
assert o[\"classes\"] == [str(i) for i in range(7)]
assert m[\"lp_acc1\"] > 0.5 and m[\"lp_acc5\"] >= m[\"lp_acc1\"], m
wd = m[\"weight_decay\"]
assert min(abs(wd / 10 ** (k / 2) - 1) for k in range(-12, 1)) < 1e-5
'"

# ---- bad input: one line naming the file; metrics over the rest -------
fails "missing ImageFolder" 1 "$V" zeroshot -m "$M" --images "$T/nowhere"
check "one line naming it" "[ \$(wc -l <$T/err) -eq 1 ] &&
    grep -q nowhere $T/err"
fails "a broken image" 1 "$V" zeroshot -m "$M" --images "$T/bad" --json
check "warned once, by name" "[ \$(grep -c boat/1.png $T/err) -eq 1 ]"
check "metrics over the other 17 still printed" "$PY -c '
import json
o = json.load(open(\"$T/out\"))
assert o[\"metrics\"][\"acc1\"] is not None
'"
printf 'garbage' >"$T/garbage.npy"
fails "bad embeddings file" 1 "$V" zeroshot --image-emb "$T/garbage.npy" \
    --labels "$T/syn_labels.txt" --classnames "$T/syn_names.txt" \
    --text-emb "$T/syn_text.npy"
check "one line naming it" "[ \$(wc -l <$T/err) -eq 1 ] &&
    grep -q garbage.npy $T/err"
fails "dimensions differ" 1 "$V" zeroshot --image-emb "$T/syn_rimg.npy" \
    --labels "$T/syn_labels.txt" --classnames "$T/syn_names.txt" \
    --text-emb "$T/syn_text.npy"
fails "labels and embeddings differ in count" 1 "$V" zeroshot \
    --image-emb "$T/syn_rimg.npy" --labels "$T/syn_labels.txt" \
    --classnames "$T/syn_names.txt" --text-emb "$T/syn_text.npy"
check "message names the labels file" "grep -q syn_labels.txt $T/err"
fails "text rows not classes x templates" 1 "$V" zeroshot \
    --image-emb "$T/syn_img.npy" --labels "$T/syn_labels.txt" \
    --classnames "$T/syn_names.txt" --text-emb "$T/syn_img.npy"
check "message names the file" "grep -q 'syn_img.npy.*not classes' $T/err"
fails "ids that match no pairs" 1 "$V" retrieval --pairs "$T/pairs.tsv" \
    --image-emb "$T/syn_rimg.npy" --text-emb "$T/syn_rtxt.npy"
"$BIN/vlm-convert" init --seed 1 tiny "$T/tiny.safetensors" >/dev/null
fails "a model without a tokenizer" 1 "$V" zeroshot \
    -m "$T/tiny.safetensors" --images "$I"
check "says so, naming the model" \
    "grep -q 'tiny.safetensors.*no tokenizer' $T/err"
finish
