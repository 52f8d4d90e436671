#!/bin/sh
# examples/zeroshot-eval.sh - evaluate a model as CLIP_benchmark does:
# zero-shot classification of an ImageFolder tree, the same from
# embeddings made once by vlm-embed, image-text retrieval over a pairs
# file, and a linear probe on a train and a test tree.
#
# It runs offline, in seconds, on data it makes: coloured shapes drawn
# with PIL, and an untrained tiny CLIP with a hand-written tokenizer.
# An untrained model's zero-shot and retrieval scores are chance; the
# linear probe still learns the colours from its random features. Give
# the same commands a trained model (vlm-train, or an OpenCLIP
# checkpoint through vlm-convert import) and they measure it for real.
#
# Environment: BIN (the programs, default bin), TMPDIR.
set -e
BIN=${BIN:-bin}
PY=/usr/bin/python3
if ! $PY -c 'import numpy, PIL' 2>/dev/null; then
	echo "zeroshot-eval: skipped, $PY lacks numpy or PIL" >&2
	exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-eval.XXXXXX")
trap 'rm -rf "$d"' EXIT

# A model: a random tiny CLIP carrying a tokenizer (CLIP's merges
# format: each line joins two tokens; </w> ends a word).
"$BIN/vlm-convert" init --seed 1 tiny "$d/tiny.safetensors"
printf '%s\n' '#version: 0.2' 'r e' 're d</w>' 'g r' 'gr e' 'gre e' \
    'gree n</w>' 'b l' 'bl u' 'blu e</w>' 'p h' 'ph o' 'pho t' 'phot o</w>' \
    >"$d/merges.txt"
"$BIN/vlm-convert" import -t "$d/merges.txt" "$d/tiny.safetensors" \
    "$d/m.safetensors"

# ImageFolder trees train/ and test/: a class per colour, circles and
# squares of several sizes; pairs.tsv: two captions per test image.
$PY - "$d" <<'EOF'
import os, sys
from PIL import Image, ImageDraw
d = sys.argv[1]
colours = {'red': (220, 30, 30), 'green': (30, 180, 60), 'blue': (40, 60, 220)}
rows = ['filepath\ttitle']
for split, n in (('train', 6), ('test', 3)):
    for name, rgb in colours.items():
        os.makedirs(f'{d}/{split}/{name}')
        for k in range(n):
            shape = ('circle', 'square')[k % 2]
            im = Image.new('RGB', (40 + 6 * k, 40), 'white')
            box = (6 + k, 6, 30 + 3 * k, 34)
            draw = ImageDraw.Draw(im)
            (draw.ellipse if shape == 'circle' else draw.rectangle)(box, rgb)
            path = f'{split}/{name}/{shape}-{k}.png'
            im.save(f'{d}/{path}')
            if split == 'test':
                rows += [f'{path}\ta {name} {shape}',
                         f'{path}\ta photo of something {name}']
open(f'{d}/pairs.tsv', 'w').write('\n'.join(rows) + '\n')
open(f'{d}/templates.txt', 'w').write('a photo of a {} thing.\n{} art\n')
EOF
M=$d/m.safetensors

echo "== zero-shot classification of test/ (a table)"
"$BIN/vlm-eval" zeroshot -m "$M" --images "$d/test" \
    --templates "$d/templates.txt"

echo "== the same from embeddings made once (JSON, per class)"
"$BIN/vlm-embed" -q -m "$M" -o "$d/img.npy" "$d/test"
"$BIN/vlm-eval" zeroshot --images "$d/test" --templates "$d/templates.txt" \
    --prompts | "$BIN/vlm-embed" -q -m "$M" -t -o "$d/prompts.npy"
"$BIN/vlm-eval" zeroshot --images "$d/test" --image-emb "$d/img.npy" \
    --text-emb "$d/prompts.npy" --json --per-class

echo "== image-text retrieval over pairs.tsv"
"$BIN/vlm-eval" retrieval -m "$M" --pairs "$d/pairs.tsv"

echo "== a linear probe: trained on train/, scored on test/"
"$BIN/vlm-eval" linear-probe -m "$M" --train "$d/train" --test "$d/test" \
    --json
