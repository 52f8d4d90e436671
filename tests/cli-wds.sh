#!/bin/sh
# cli-wds.sh - webdataset tar shards: vlm-convert shard writes shards that
# Python's tarfile reads back byte for byte; shards written by Python's
# tarfile (PNG, JPEG and WebP images) are read; training from shards and
# from the pairs file they came from gives identical checkpoints, and a
# run stopped in the middle of a shard resumes bit-identically; bad
# shards (truncated, a sample without an image, an undecodable image)
# are warned about by shard and key, skipped and counted against
# --max-bad, indexed and streamed (--shuffle-buffer); vlm-eval zeroshot
# and retrieval give the same metrics on an ImageFolder tree / pairs
# file and on its CLIP_benchmark webdataset form (--wds), written by vlm
# or by Python. The evaluations skip without the OpenCLIP fixtures.
. tests/lib.sh

TR=$BIN/vlm-train
CV=$BIN/vlm-convert
V=$BIN/vlm-eval
PY=/usr/bin/python3

fails "shard: one argument" 2 "$CV" shard x
fails "shard: -c 0" 2 "$CV" shard -c 0 x y
fails "shard: --split with a slash" 2 "$CV" shard --split a/b x y
fails "shard: a missing input" 1 "$CV" shard "$T/none.tsv" "$T/o"
check "names it" "grep -q 'none.tsv' $T/err"
fails "retrieval: --pairs and --wds" 2 "$V" retrieval -m x --pairs p \
    --wds d
fails "zeroshot: --images and --wds" 2 "$V" zeroshot -m x --images i \
    --wds d

. tests/tiny-run.sh

ok "shard the pairs file, 10 a shard" "$CV" shard -c 10 "$P" "$T/sh"
check "prints the shards' pattern" "[ \"\$(cat $T/out)\" = '$T/sh/{0..4}.tar' ]"
check "5 shards and nshards.txt" \
    "[ -f $T/sh/4.tar ] && [ ! -e $T/sh/5.tar ] && [ \$(cat $T/sh/nshards.txt) = 5 ]"
check "Python's tarfile reads them: every row's image and caption" \
    "$PY - '$T/sh' '$P' <<'EOF'
import os, sys, tarfile
d, pairs = sys.argv[1:]
rows = [l.rstrip('\n').split('\t') for l in open(pairs)][1:]
got = []
for k in range(5):
    with tarfile.open(f'{d}/{k}.tar') as t:
        m = t.getmembers()
        assert len(m) == 2 * (10 if k < 4 else 8), (k, len(m))
        for a, b in zip(m[::2], m[1::2]):
            got.append((a.name, t.extractfile(a).read(), b.name,
                        t.extractfile(b).read().decode()))
assert len(got) == len(rows)
for i, ((img, cap), g) in enumerate(zip(rows, got)):
    assert g[0] == 's%07d.png' % i and g[2] == 's%07d.txt' % i, g[:3:2]
    assert g[1] == open(os.path.join(os.path.dirname(pairs), img),
                        'rb').read(), i
    assert g[3] == cap, (g[3], cap)
EOF"

# the same items in the same order: the same permutation, augmentation
# and batches, hence the same parameters and optimizer state
ok "train from the pairs file" "$TR" --data "$P" $SMALL -o "$T/tsv" \
    --steps 4
ok "train from the shards" "$TR" --data "$T/sh/{0..4}.tar" $SMALL \
    -o "$T/wds" --steps 4
check "identical checkpoints" \
    "cmp $T/tsv/ckpt-00000004/model.safetensors $T/wds/ckpt-00000004/model.safetensors &&
     cmp $T/tsv/ckpt-00000004/optim.safetensors $T/wds/ckpt-00000004/optim.safetensors"

# batches of 8 over shards of 10: step 3 ends inside a shard
losses() { $PY -c 'import json, sys
for l in open(sys.argv[1]): o = json.loads(l); print(o["step"], o["loss"])' \
    "$T/$1/metrics.jsonl"; }
ok "stopped after step 3" "$TR" --data "$T/sh/{0..4}.tar" $SMALL \
    -o "$T/half" --steps 6 --stop-at 3
ok "resumed" "$TR" --resume "$T/half"
ok "uninterrupted" "$TR" --data "$T/sh/{0..4}.tar" $SMALL -o "$T/full" \
    --steps 6
check "the resumed run is bit-identical" \
    "cmp $T/half/ckpt-00000006/model.safetensors $T/full/ckpt-00000006/model.safetensors &&
     cmp $T/half/ckpt-00000006/optim.safetensors $T/full/ckpt-00000006/optim.safetensors &&
     [ \"\$(losses half | tail -1)\" = \"\$(losses full)\" ]"

for buf in 0 5; do  # indexed, then streamed
	ok "two shard sets mixed 1:3, --shuffle-buffer $buf" "$TR" \
	    --data "$T/sh/{0..1}.tar" --data "$T/sh/{2..4}.tar" \
	    --data-weights 1,3 $SMALL -o "$T/mix$buf" --steps 3 \
	    --log-every 1 --shuffle-buffer $buf
	check "each step takes 2 and 6 examples" \
	    "[ \"\$($PY -c 'import json, sys
for l in open(sys.argv[1]): print(json.loads(l)[\"source_examples\"])' \
	    $T/mix$buf/metrics.jsonl | sort -u)\" = '[2, 6]' ]"
done

# Python's shards: PNG, JPEG and WebP images, some with names over 100
# bytes (GNU long-name members; pax headers below), then the bad ones: a
# sample without an image, one whose image cannot be decoded, and a
# shard cut in the middle of a member
$PY - "$T" <<'EOF' || fail "writing shards with Python's tarfile"
import io, os, sys, tarfile
from PIL import Image
d = sys.argv[1]
os.makedirs(f'{d}/py')
rows = [l.rstrip('\n').split('\t') for l in open(f'{d}/d/pairs.tsv')][1:]
def add(t, name, data):
    i = tarfile.TarInfo(name)
    i.size = len(data)
    t.addfile(i, io.BytesIO(data))
def img(path, fmt):
    b = io.BytesIO()
    Image.open(path).convert('RGB').save(b, fmt, **(
        {'lossless': True} if fmt == 'WEBP' else {'quality': 95}))
    return b.getvalue()
for k in range(3):
    with tarfile.open(f'{d}/py/{k}.tar', 'w', format=tarfile.GNU_FORMAT) as t:
        for i in range(8 * k, 8 * k + 8):
            path, cap = rows[i]
            fmt, ext = [('PNG', 'png'), ('JPEG', 'jpg'), ('WEBP', 'webp')][i % 3]
            key = f'dir/{i:04d}' if i % 5 else 'long/' + 'x' * 150 + f'{i}'
            add(t, f'{key}.{ext}', img(f'{d}/d/{path}', fmt))
            add(t, f'{key}.txt', cap.encode())
        if k == 1:
            add(t, 'dir/noimage.txt', b'a caption without an image')
            add(t, 'dir/broken.jpg', b'not a jpeg at all')
            add(t, 'dir/broken.txt', b'a broken image')
        if k == 2:
            add(t, 'dir/cut.png', img(f'{d}/d/{rows[0][0]}', 'PNG'))
            add(t, 'dir/cut.txt', b'cut off')
with tarfile.open(f'{d}/py/2.tar') as t:
    cut = t.getmember('dir/cut.png').offset_data + 100
data = open(f'{d}/py/2.tar', 'rb').read()
open(f'{d}/py/2.tar', 'wb').write(data[:cut])
EOF
S="$T/py/{0..2}.tar"
ok "train from Python's shards" "$TR" --data "$S" $SMALL -o "$T/py1" \
    --steps 6 --max-bad 0.2
check "warned: the sample without an image, by shard and key" \
    "grep -q \"py/1.tar': dir/noimage: no image\" $T/err"
check "warned: the truncated shard, by shard and key" \
    "grep -q \"py/2.tar': dir/cut: truncated\" $T/err"
check "warned once: the undecodable image, by shard and key (skipped)" \
    "[ \$(grep -c \"py/1.tar:dir/broken': .*skipped\" $T/err) = 1 ]"
fails "two bad of 27 samples are more than --max-bad 0.05" 1 "$TR" \
    --data "$S" $SMALL -o "$T/py2" --steps 1 --max-bad 0.05
check "says so" "grep -q 'more than --max-bad' $T/err && [ ! -e $T/py2/latest ]"
# streamed (vlm-train --shuffle-buffer): the same warnings, once each
# over two epochs, the undecodable image counted too
ok "train from Python's shards, streamed" "$TR" --data "$S" $SMALL \
    -o "$T/py3" --steps 6 --max-bad 0.2 --shuffle-buffer 4
for w in "py/1.tar': dir/noimage: no image" "py/2.tar': dir/cut: truncated" \
    "py/1.tar:dir/broken': "; do
	check "warned once: $w" "[ \$(grep -c \"$w.*(skipped)\" $T/err) = 1 ]"
done
fails "streamed, bad samples are more than --max-bad 0.05" 1 "$TR" \
    --data "$S" $SMALL -o "$T/py4" --steps 6 --max-bad 0.05 \
    --shuffle-buffer 4
check "says so" "grep -q 'bad, more than --max-bad' $T/err && [ ! -e $T/py4/latest ]"

if ! have_fixtures "the evaluations (the rest)"; then finish; exit; fi
M=$T/oc.safetensors
"$CV" import -c "$FIX/openclip-tiny/open_clip_config.json" \
    -t "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
    "$FIX/openclip-tiny/weights.openclip.safetensors" "$M" ||
    fail "importing the OpenCLIP fixture"

# a tree of 5 classes x 3 images, class names, templates, captions; and
# its CLIP_benchmark forms written by Python (lossless WebP: the same
# pixels) for classification and retrieval
$PY - "$T" <<'EOF' || fail "making the evaluation sets with Python"
import io, os, sys, tarfile, numpy as np
from PIL import Image
d = sys.argv[1]
r = np.random.default_rng(7)
names = ['apple', 'boat', 'cloud', 'dog', 'egg']
rows, samples = ['filepath\ttitle'], []
for c, n in enumerate(names):
    os.makedirs(f'{d}/ev/imgs/{n}')
    for i in range(3):
        a = r.integers(0, 256, (30 + 5 * i, 40 - 3 * c, 3), np.uint8)
        a[:, :10] = [50 * c, 255 - 50 * c, 80 * i]
        p = f'imgs/{n}/{i}.png'
        Image.fromarray(a).save(f'{d}/ev/{p}')
        caps = [f'a {n} photo, take {k} of {i}' for k in range(1 + (c + i) % 3)]
        rows += [f'{p}\t{t}' for t in caps]
        samples.append((a, c, caps))
open(f'{d}/ev/pairs.tsv', 'w').write('\n'.join(rows) + '\n')
open(f'{d}/ev/names.txt', 'w').write('\n'.join(n.upper() for n in names) + '\n')
open(f'{d}/ev/templates.txt', 'w').write('a photo of a {}.\nart of the {}\n')
def add(t, name, data):
    i = tarfile.TarInfo(name)
    i.size = len(data)
    t.addfile(i, io.BytesIO(data))
def webp(a):
    b = io.BytesIO()
    Image.fromarray(a).save(b, 'WEBP', lossless=True)
    return b.getvalue()
for kind in ('cls', 'ret'):
    o = f'{d}/cb-{kind}'
    os.makedirs(f'{o}/test')
    open(f'{o}/test/nshards.txt', 'w').write('2')
    for k in range(2):
        with tarfile.open(f'{o}/test/{k}.tar', 'w') as t:
            for j in range(k * 8, min(15, k * 8 + 8)):
                a, c, caps = samples[j]
                key = f's{j:07d}' if j % 4 else f'sé{j:07d}'  # pax headers
                add(t, f'{key}.webp', webp(a))
                if kind == 'cls':
                    add(t, f'{key}.cls', str(c).encode())
                else:
                    add(t, f'{key}.txt', '\n'.join(caps).encode())
    if kind == 'cls':
        open(f'{o}/classnames.txt', 'w').write('\n'.join(n.upper() for n in names) + '\n')
        open(f'{o}/zeroshot_classification_templates.txt', 'w').write(
            'a photo of a {c}.\nart of the {c}\n')
    else:
        open(f'{o}/dataset_type.txt', 'w').write('retrieval\n')
EOF
E=$T/ev
# the metrics of a --json report, without the data set's name
metrics() { $PY -c 'import json, sys
o = json.load(open(sys.argv[1])); o.pop("dataset")
print(json.dumps(o, sort_keys=True))' "$1"; }

ok "zeroshot on the tree" "$V" zeroshot -m "$M" --images "$E/imgs" \
    --classnames "$E/names.txt" --templates "$E/templates.txt" --json
cp "$T/out" "$T/zs-tree.json"
ok "shard the tree (CLIP_benchmark's layout)" "$CV" shard -c 4 \
    --split test --classnames "$E/names.txt" --templates \
    "$E/templates.txt" "$E/imgs" "$T/cb-vlm"
check "with its class names, {c} templates and type" \
    "[ \"\$(cat $T/cb-vlm/zeroshot_classification_templates.txt)\" = \"\$(printf 'a photo of a {c}.\nart of the {c}')\" ] &&
     cmp -s $E/names.txt $T/cb-vlm/classnames.txt &&
     [ \$(cat $T/cb-vlm/dataset_type.txt) = classification ] &&
     [ \$(cat $T/cb-vlm/test/nshards.txt) = 4 ]"
ok "zeroshot --wds on vlm's shards" "$V" zeroshot -m "$M" \
    --wds "$T/cb-vlm" --json
cp "$T/out" "$T/zs-vlm.json"
ok "zeroshot --wds on Python's shards (WebP)" "$V" zeroshot -m "$M" \
    --wds "$T/cb-cls" --json
cp "$T/out" "$T/zs-py.json"
check "the same metrics from the tree and both shard forms" \
    "[ \"\$(metrics $T/zs-tree.json)\" = \"\$(metrics $T/zs-vlm.json)\" ] &&
     [ \"\$(metrics $T/zs-tree.json)\" = \"\$(metrics $T/zs-py.json)\" ]"
fails "zeroshot --wds on a retrieval set" 1 "$V" zeroshot -m "$M" \
    --wds "$T/cb-ret"
check "says so" "grep -q 'a retrieval set, not classification' $T/err"

ok "retrieval on the pairs file" "$V" retrieval -m "$M" \
    --pairs "$E/pairs.tsv" --json
cp "$T/out" "$T/rt-tsv.json"
ok "shard the pairs, an image a sample" "$CV" shard --group --split test \
    "$E/pairs.tsv" "$T/rt-vlm"
ok "retrieval --wds on vlm's shards" "$V" retrieval -m "$M" \
    --wds "$T/rt-vlm" --json
cp "$T/out" "$T/rt-vlm.json"
ok "retrieval --wds on Python's shards (WebP)" "$V" retrieval -m "$M" \
    --wds "$T/cb-ret" --json
cp "$T/out" "$T/rt-py.json"
check "the same metrics from the pairs file and both shard forms" \
    "[ \"\$(metrics $T/rt-tsv.json)\" = \"\$(metrics $T/rt-vlm.json)\" ] &&
     [ \"\$(metrics $T/rt-tsv.json)\" = \"\$(metrics $T/rt-py.json)\" ]"
rm "$T/cb-cls/test/1.tar"
fails "a missing shard" 1 "$V" zeroshot -m "$M" --wds "$T/cb-cls"
check "is named" "grep -q 'cb-cls/test/1.tar' $T/err"
finish
