#!/bin/sh
# examples/train-tiny.sh - training from the shell, end to end, on data it
# makes: coloured shapes drawn with PIL, captioned "a red circle", in two
# sources (plain and speckled backgrounds).
#  1. train a tiny LIMoE (8 experts, top-1) from both sources, the
#     sampler re-weighting them by their recent loss, two micro-batches a
#     step; interrupted half-way and resumed;
#  2. look at it: retrieval on shapes it never saw, how the experts split
#     the tokens;
#  3. fine-tune it through LoRA adapters on the speckled source only, fold
#     the adapters back into the weights, and evaluate again.
# It runs offline in seconds; on real data the same commands run longer.
#
# Environment: BIN (the programs, default bin), TMPDIR.
set -e
BIN=${BIN:-bin}
PY=/usr/bin/python3
if ! $PY -c 'import numpy, PIL' 2>/dev/null; then
	echo "train-tiny: skipped, $PY lacks numpy or PIL" >&2
	exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-train.XXXXXX")
trap 'rm -rf "$d"' EXIT

$PY - "$d" <<'EOF'
import os, sys
import numpy as np
from PIL import Image, ImageDraw
d = sys.argv[1]
rng = np.random.default_rng(0)
colours = {'red': (220, 30, 30), 'green': (30, 170, 60),
           'blue': (40, 60, 220), 'yellow': (230, 200, 20)}
shapes = ('circle', 'square', 'triangle')
def draw(path, colour, shape, speckled):
    px = np.full((40, 40, 3), 255, np.uint8)
    if speckled:
        px = (rng.random((40, 40, 3)) * 80 + 175).astype(np.uint8)
    im = Image.fromarray(px)
    x, y, s = rng.integers(2, 12), rng.integers(2, 12), rng.integers(18, 27)
    g = ImageDraw.Draw(im)
    if shape == 'triangle':
        g.polygon([(x + s // 2, y), (x, y + s), (x + s, y + s)], colours[colour])
    else:
        (g.ellipse if shape == 'circle' else g.rectangle)(
            (x, y, x + s, y + s), colours[colour])
    im.save(f'{d}/{path}')
os.makedirs(f'{d}/img')
for name, speckled, n in (('plain', 0, 6), ('speckled', 1, 6), ('test', 1, 1)):
    rows = ['filepath\ttitle']
    for c in colours:
        for s in shapes:
            for k in range(n):
                path = f'img/{name}-{c}-{s}-{k}.png'
                draw(path, c, s, speckled)
                rows.append(f'{path}\ta {c} {s}')
    open(f'{d}/{name}.tsv', 'w').write('\n'.join(rows) + '\n')
EOF

echo "== 1. train: two sources, adaptive sampler, interrupted and resumed"
set -- --data "$d/plain.tsv" --data "$d/speckled.tsv" --adaptive \
    -b 16 --accum-freq 2 --steps 60 --lr 2e-3 --warmup 5 --log-every 20
"$BIN/vlm-train" "$@" -m tiny-moe --alpha white -o "$d/run" --stop-at 30
"$BIN/vlm-train" "$@" --resume "$d/run"
tail -n 1 "$d/run/metrics.jsonl" | cut -c 1-160
M=$d/run/latest/model.safetensors

echo "== 2. retrieval on 12 unseen shapes (chance R@1 8%), routing"
"$BIN/vlm-eval" retrieval -m "$M" --pairs "$d/test.tsv"
"$BIN/vlm-route-stats" -m "$M" --images "$d/img" | head -n 8

echo "== 3. LoRA fine-tuning on the speckled source, merged back"
"$BIN/vlm-train" --data "$d/speckled.tsv" -m "$M" --lora-rank 4 \
    --lora-alpha 8 -b 16 --steps 20 --lr 2e-3 --warmup 2 -o "$d/tuned"
"$BIN/vlm-convert" merge-lora "$d/tuned/latest/model.safetensors" \
    "$d/tuned.safetensors"
"$BIN/vlm-convert" info "$d/tuned.safetensors" | tail -n 4
"$BIN/vlm-eval" retrieval -m "$d/tuned.safetensors" --pairs "$d/test.tsv"
