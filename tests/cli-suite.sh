#!/bin/sh
# cli-suite.sh - vlm-eval suite, table and select on synthetic shapes
# (tests/mkshapes.py): a list of three data sets (an ImageFolder with
# train/ and test/ for zero-shot and linear probe, a pairs file, a
# SugarCrepe-style selection file) x two untrained models. Checks the
# result files (CLIP_benchmark's names and keys), that each result
# equals the verb run by hand (the suite's embeddings made once and
# reused give the same metrics), a rerun that skips everything, a
# rerun after removing one result, the table (CSV read back by Python's
# csv, markdown), selection ties counted as misses, bad lists and bad
# selection files. Skips without /usr/bin/python3 and PIL.
. tests/lib.sh

V=$(cd "$BIN" && pwd)/vlm-eval
CV=$(cd "$BIN" && pwd)/vlm-convert
EMB=$(cd "$BIN" && pwd)/vlm-embed
TOP=$(pwd)
PY=/usr/bin/python3

fails "suite without a model" 2 "$V" suite list.txt
fails "suite without a list" 2 "$V" suite -m a.safetensors
fails "two models, one file name" 2 "$V" suite -m a/m.st -m b/m.st l
check "says which" "grep -q 'share a file name' $T/err"
fails "select without -m" 2 "$V" select --file f.tsv
fails "table without a directory" 2 "$V" table

if ! have_py "the suites" PIL; then finish; exit; fi
D=$T/data
$PY tests/mkshapes.py "$D/shapes" 24 || fail "mkshapes"
$PY - "$D" <<'PYEOF' || fail "making the data sets"
import os, shutil, sys
d = sys.argv[1]
rows = [l.rstrip('\n').split('\t') for l in open(f'{d}/shapes/pairs.tsv')][1:]
# an ImageFolder by colour: the first 16 images train, the rest test
for k, (p, cap) in enumerate(rows):
    split = 'train' if k < 16 else 'test'
    colour = cap.split()[1]
    os.makedirs(f'{d}/tree/{split}/{colour}', exist_ok=True)
    shutil.copy(f'{d}/shapes/{p}', f'{d}/tree/{split}/{colour}/{k}.png')
swap = {'red': 'blue', 'blue': 'green', 'green': 'yellow', 'yellow': 'red'}
sh = {'circle': 'square', 'square': 'triangle', 'triangle': 'circle'}
with open(f'{d}/shapes/sugar.tsv', 'w') as f:
    f.write('image\tcaption\tneg_colour\tneg_shape\n')
    for p, cap in rows:
        _, c, s = cap.split()
        f.write(f'{p}\t{cap}\ta {swap[c]} {s}\ta {c} {sh[s]}\n')
with open(f'{d}/shapes/wino.tsv', 'w') as f:
    f.write('image0\timage1\tcaption0\tcaption1\n')
    for (p0, c0), (p1, c1) in zip(rows[0::2], rows[1::2]):
        f.write(f'{p0}\t{p1}\t{c0}\t{c1}\n')
# ties: the negative is the caption; the two captions or images equal
with open(f'{d}/shapes/sugar-tie.tsv', 'w') as f:
    f.write('image\tcaption\tneg\n')
    for p, cap in rows:
        f.write(f'{p}\t{cap}\t{cap}\n')
with open(f'{d}/shapes/wino-tie.tsv', 'w') as f:
    f.write('image0\timage1\tcaption0\tcaption1\n')
    for p, cap in rows:
        f.write(f'{p}\t{p}\t{cap}\ta thing\n')
PYEOF
printf '%s\n' '#version: 0.2' 'r e' 're d</w>' 'b l' 'bl u' 'blu e</w>' \
    'c i' 'ci r' >"$T/merges.txt"
for m in "1 tiny" "2 tiny2"; do
	set -- $m
	"$BIN/vlm-convert" init --seed "$1" tiny "$T/$2.init" >/dev/null &&
	"$BIN/vlm-convert" import -t "$T/merges.txt" "$T/$2.init" \
	    "$T/$2.safetensors" >/dev/null || fail "making model $2"
done
M1=$T/tiny.safetensors M2=$T/tiny2.safetensors

cd "$T" || exit 1
# the tree's two tasks named, the others' the default of their kind;
# a comment and a blank line
printf '%s\n' '# three data sets' \
    "data/tree zeroshot_classification linear_probe" "" \
    "data/shapes/pairs.tsv" "./data/shapes/sugar.tsv" >list.txt
mkdir res
ok "a suite of 3 data sets x 2 models" "$V" suite -m "$M1" \
    -m "$M2" -o res list.txt
cp "$T/err" "$T/err1"
check "8 results" '[ "$(ls res | wc -l)" = 8 ]'
check "CLIP_benchmark's file names" \
    "[ -f res/data_tree_tiny.safetensors_tiny_en_linear_probe.json ] &&
     [ -f res/data_shapes_sugar.tsv_tiny2.safetensors_tiny2_en_image_caption_selection.json ]"
check "the tree embedded once per model" \
    '[ "$(grep -c "embedding the 8 images" err1)" = 2 ]'
check "progress counts" 'grep -q "\[8/8\]" err1'
check "no temporary files left" '[ "$(ls -A res | wc -l)" = 8 ]'
for m in tiny tiny2; do
	"$V" zeroshot -m "$T/$m.safetensors" --images data/tree/test \
	    --json >"zs-$m.json" &&
	"$V" linear-probe -m "$T/$m.safetensors" \
	    --train data/tree/train --test data/tree/test --json >"lp-$m.json" &&
	"$V" retrieval -m "$T/$m.safetensors" \
	    --pairs data/shapes/pairs.tsv --json >"ret-$m.json" &&
	"$V" select -m "$T/$m.safetensors" \
	    --file data/shapes/sugar.tsv --json >"sel-$m.json" ||
	    fail "the verbs by hand ($m)"
done
$PY - <<'PYEOF' >"$T/py.out" 2>&1
import json, os
want = ['dataset', 'model', 'pretrained', 'task', 'metrics', 'language']
n = 0
for m in ('tiny', 'tiny2'):
    for stem, ds, task in (('zs', 'data/tree', 'zeroshot_classification'),
                           ('lp', 'data/tree', 'linear_probe'),
                           ('ret', 'data/shapes/pairs.tsv', 'zeroshot_retrieval'),
                           ('sel', './data/shapes/sugar.tsv', 'image_caption_selection')):
        slug = ds.lstrip('./').replace('/', '_') if ds[0] == '.' else ds.replace('/', '_')
        path = f'res/{slug}_{m}.safetensors_{m}_en_{task}.json'
        r = json.load(open(path))
        h = json.load(open(f'{stem}-{m}.json'))
        assert list(r) == want, (path, list(r))
        assert r['dataset'] == ds and r['model'] == m and r['task'] == task
        assert r['pretrained'].endswith(f'/{m}.safetensors')
        assert r['language'] == 'en'
        assert r['metrics'] == h['metrics'], (path, r['metrics'], h['metrics'])
        n += 1
print(n, 'results as by hand')
PYEOF
check "each result in CLIP_benchmark's shape, equal to the verb's" \
    "grep -q '^8 results as by hand' $T/py.out" || cat "$T/py.out"

md5sum res/* >sums1
ok "the rerun" "$V" suite -m "$M1" -m "$M2" -o res list.txt
check "skips all 8" '[ "$(grep -c "skip .*exists" err)" = 8 ]'
check "embeds nothing" '! grep -q embedding err'
check "changes nothing" 'md5sum res/* | cmp -s - sums1'
rm res/data_shapes_pairs.tsv_tiny2.safetensors_tiny2_en_zeroshot_retrieval.json
ok "a rerun after removing one" "$V" suite -m "$M1" -m "$M2" \
    -o res list.txt
check "runs only that one" '[ "$(grep -c "skip .*exists" err)" = 7 ] &&
    grep -q "zeroshot_retrieval on .data/shapes/pairs.tsv. with .*tiny2" err'
check "the same result again" 'md5sum res/* | cmp -s - sums1'

ok "table" "$V" table -o table.csv res
$PY - <<'PYEOF' >"$T/py.out" 2>&1
import csv, glob, json
rows = list(csv.DictReader(open('table.csv', newline='')))
assert len(rows) == 8, len(rows)
files = sorted(glob.glob('res/*.json'))
for row, f in zip(rows, files):
    r = json.load(open(f))
    assert row['dataset'] == r['dataset'] and row['task'] == r['task']
    assert row['model_fullname'] == r['model'] + ' ' + r['pretrained']
    for k, v in r['metrics'].items():
        assert (row[k] == '' if v is None else float(row[k]) == v), (k, row[k], v)
    for k in row:
        if k not in r['metrics'] and k not in r and k != 'model_fullname':
            assert row[k] == '', (f, k, row[k])
print('table ok')
PYEOF
check "the CSV read back by Python's csv equals the results" \
    "grep -q '^table ok' $T/py.out" || cat "$T/py.out"
ok "markdown table" "$V" table --markdown res
check "markdown: header, rule, 8 rows" \
    '[ "$(grep -c "^| " out)" = 9 ] && grep -q "^|---|" out'
mkdir empty
fails "table of an empty directory" 1 "$V" table empty
echo '{"x": 1}' >res/zz-other.json
fails "table with a file that is no result" 1 "$V" table res
check "names it" "grep -q 'zz-other.json.*not a result' err"
check "still prints the rest" '[ "$(wc -l <out)" = 9 ]'

ok "select: Winoground layout" "$V" select -m "$M1" \
    --file data/shapes/wino.tsv --json
check "text, image and group scores" \
    "grep -q '\"task\": \"image_caption_selection\", \"metrics\": {\"text_score\": .*\"image_score\": .*\"group_score\": ' out"
ok "select: a tie with the caption" "$V" select -m "$M1" \
    --file data/shapes/sugar-tie.tsv --json
check "is a miss" "grep -q '\"acc\": 0.000000}' out"
ok "select: equal images, different captions" "$V" select \
    -m "$M1" --file data/shapes/wino-tie.tsv --json
check "no image or group score" \
    "grep -q '\"image_score\": 0.000000, \"group_score\": 0.000000}' out"

# the scores against NumPy's, from embeddings vlm-embed made
if have_py "selection scores against NumPy's" numpy; then
	"$EMB" -q -m "$M1" -o img.npy data/shapes/img &&
	cut -f2- data/shapes/sugar.tsv data/shapes/wino.tsv | tr '\t' '\n' |
	    sort -u >texts.txt && "$EMB" -q -m "$M1" -t -o txt.npy <texts.txt ||
	    fail "embedding the selection files with vlm-embed"
	"$V" select -m "$M1" --file data/shapes/sugar.tsv --json >sel.json
	"$V" select -m "$M1" --file data/shapes/wino.tsv --json >wino.json
	$PY - >"$T/py.out" 2>&1 <<'PYEOF'
import json, os, numpy as np
# the packed form: vectors and, beside them, ids (vlm-npys(5))
iv, ids = np.load('img.npy').astype(np.float64), np.load('img.ids.npy')
tv = np.load('txt.npy').astype(np.float64)
img = {os.path.basename(str(i)): v for i, v in zip(ids, iv)}
txt = dict(zip(open('texts.txt').read().splitlines(), tv))
def rows(p):
    return [l.rstrip('\n').split('\t') for l in open(p)][1:]
s = lambda i, t: img[os.path.basename(i)] @ txt[t]
acc = np.mean([all(s(r[0], r[1]) > s(r[0], n) for n in r[2:])
               for r in rows('data/shapes/sugar.tsv')])
tx, im, gr = [], [], []
for i0, i1, c0, c1 in rows('data/shapes/wino.tsv'):
    t = s(i0, c0) > s(i0, c1) and s(i1, c1) > s(i1, c0)
    g = s(i0, c0) > s(i1, c0) and s(i1, c1) > s(i0, c1)
    tx.append(t); im.append(g); gr.append(t and g)
want = {'acc': acc}
got = json.load(open('sel.json'))['metrics']
wino = json.load(open('wino.json'))['metrics']
want2 = {'text_score': np.mean(tx), 'image_score': np.mean(im),
         'group_score': np.mean(gr)}
for w, g in ((want, got), (want2, wino)):
    for k in w:
        assert '%.6f' % w[k] == '%.6f' % g[k], (k, w[k], g[k])
print('numpy agrees', want, want2)
PYEOF
	check "selection scores equal NumPy's on vlm-embed's embeddings" \
	    "grep -q '^numpy agrees' $T/py.out" || cat "$T/py.out"
	sed 's/^/# /' "$T/py.out"
fi

printf 'image\tcaption\n' >bad-header.tsv
fails "select: one caption, no negative" 1 "$V" select -m "$M1" \
    --file bad-header.tsv
check "says what header" "grep -q 'bad-header.tsv.*header' err"
{ head -3 data/shapes/sugar.tsv; printf 'x.png\tonly\n'; } >data/shapes/short.tsv
fails "select: a short row" 1 "$V" select -m "$M1" \
    --file data/shapes/short.tsv --json
check "names the line, scores the rest" \
    "grep -q 'short.tsv.:4: want 4' err && grep -q '\"acc\"' out"

# CLIP_benchmark webdataset directories: the task from dataset_type.txt,
# the metrics those of the tree and pairs file they were made from
"$CV" shard --split test data/tree/test data/wds-tree \
    >/dev/null 2>&1 && "$CV" shard --group --split test \
    data/shapes/pairs.tsv data/wds-pairs >/dev/null 2>&1 ||
    fail "making the shards"
printf '%s\n' data/wds-tree data/wds-pairs/ >wds.txt
mkdir res-wds
ok "a suite of webdataset directories" "$V" suite -m "$M1" -o res-wds \
    wds.txt
for t in "tree tree zeroshot_classification" \
    "pairs shapes_pairs.tsv zeroshot_retrieval"; do
	set -- $t
	f=tiny.safetensors_tiny_en_$3.json
	check "wds: $3 as from $2" "[ -f res-wds/data_wds-$1_$f ] &&
	    [ \"\$(sed 's/.*metrics//' res-wds/data_wds-$1_$f)\" = \
	    \"\$(sed 's/.*metrics//' res/data_$2_$f)\" ]"
done

mkdir res2
printf 'data/shapes/pairs.tsv linear_probe\n' >bad1.txt
fails "a task the data set cannot have" 1 "$V" suite -m "$M1" \
    -o res2 bad1.txt
check "names the line" "grep -q \"bad1.txt.:1: .*cannot have task 'linear_probe'\" err"
printf 'data/tree\ndata/tree zeroshot\n' >bad2.txt
fails "an unknown task" 1 "$V" suite -m "$M1" -o res2 bad2.txt
check "names it" "grep -q \"bad2.txt.:2: unknown task 'zeroshot'\" err"
printf 'data/nothere.tsv\n' >bad3.txt
fails "a missing data set" 1 "$V" suite -m "$M1" -o res2 bad3.txt
check "nothing written for bad lists" '[ -z "$(ls -A res2)" ]'
printf 'data/shapes/pairs.tsv\n' >one.txt
fails "a model that does not load" 1 "$V" suite \
    -m nothere.safetensors -o res2 one.txt
check "no result for it" '[ -z "$(ls -A res2)" ]'
cd "$TOP" || exit 1
finish
