#!/bin/sh
# examples/shards.sh - webdataset tar shards end to end, on shapes it
# draws with PIL (no download):
#  1. shard an image-caption pairs file (as OpenCLIP's --train-data reads
#     shards) and a held-out ImageFolder tree (in CLIP_benchmark's
#     webdataset layout), and list a shard with tar;
#  2. train a tiny LIMoE from the shards, by brace pattern;
#  3. evaluate it on the sharded tree (zero-shot classification of the
#     colour, class names and templates from the directory) and on sharded captions
#     (retrieval), as CLIP_benchmark evaluates its webdataset sets.
# It runs offline in seconds; on real shards the same commands run longer.
#
# Environment: BIN (the programs, default bin), TMPDIR.
set -e
BIN=${BIN:-bin}
PY=/usr/bin/python3
if ! $PY -c 'import numpy, PIL' 2>/dev/null; then
	echo "shards: skipped, $PY lacks numpy or PIL" >&2
	exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-shards.XXXXXX")
trap 'rm -rf "$d"' EXIT

$PY - "$d" <<'EOF'
import os, sys
import numpy as np
from PIL import Image, ImageDraw
d = sys.argv[1]
rng = np.random.default_rng(0)
colours = {'red': (220, 30, 30), 'green': (30, 170, 60),
           'blue': (40, 60, 220), 'yellow': (230, 200, 20)}
def draw(path, colour, shape):
    im = Image.new('RGB', (40, 40), (255, 255, 255))
    x, y, s = rng.integers(2, 12), rng.integers(2, 12), rng.integers(18, 27)
    g = ImageDraw.Draw(im)
    if shape == 'triangle':
        g.polygon([(x + s // 2, y), (x, y + s), (x + s, y + s)], colours[colour])
    else:
        (g.ellipse if shape == 'circle' else g.rectangle)(
            (x, y, x + s, y + s), colours[colour])
    os.makedirs(os.path.dirname(f'{d}/{path}'), exist_ok=True)
    im.save(f'{d}/{path}')
rows, test = ['filepath\ttitle'], ['filepath\ttitle']
for shape in ('circle', 'square', 'triangle'):
    for c in colours:
        for k in range(8):
            draw(f'train/{shape}-{c}-{k}.png', c, shape)
            rows.append(f'train/{shape}-{c}-{k}.png\ta {c} {shape}')
        for k in range(2):
            draw(f'tree/{c}/{shape}-{k}.png', c, shape)
            test.append(f'tree/{c}/{shape}-{k}.png\ta {c} {shape}')
open(f'{d}/train.tsv', 'w').write('\n'.join(rows) + '\n')
open(f'{d}/test.tsv', 'w').write('\n'.join(test) + '\n')
open(f'{d}/templates.txt', 'w').write(
    'a {} circle\na {} square\na {} triangle\n')
EOF

echo "== 1. shards: training pairs, a classification tree, captions"
"$BIN/vlm-convert" shard -c 32 "$d/train.tsv" "$d/shards"
"$BIN/vlm-convert" shard -c 8 --split test --templates "$d/templates.txt" \
    "$d/tree" "$d/cls"
"$BIN/vlm-convert" shard --group --split test "$d/test.tsv" "$d/ret"
tar tf "$d/shards/0.tar" | head -n 4
ls "$d/cls" "$d/cls/test"

echo "== 2. train from the shards"
"$BIN/vlm-train" --data "$d/shards/{0..2}.tar" -m tiny-moe -b 16 \
    --steps 40 --lr 2e-3 --warmup 4 --log-every 20 -o "$d/run"
tail -n 1 "$d/run/metrics.jsonl" | cut -c 1-120
M=$d/run/latest/model.safetensors

echo "== 3. evaluate on the sharded sets (chance: acc1 25%, R@1 4%)"
"$BIN/vlm-eval" zeroshot -m "$M" --wds "$d/cls"
"$BIN/vlm-eval" retrieval -m "$M" --wds "$d/ret"
