#!/bin/sh
# examples/embed-search.sh - search a folder of images by text and by
# example: vlm-embed the folder once into the packed form (an array
# NumPy can memory-map), embed a query, rank by cosine similarity.
#
# It runs offline, in a second, on data it makes: coloured shapes drawn
# with PIL, and an untrained tiny CLIP with a hand-written tokenizer.
# An untrained model ranks the images arbitrarily (only an image's own
# vector is sure to come first); give the same commands a trained model
# (vlm-train, or an OpenCLIP checkpoint through vlm-convert import) and
# they search for real.
#
# Environment: BIN (the programs, default bin), TMPDIR.
set -e
BIN=${BIN:-bin}
PY=/usr/bin/python3
if ! $PY -c 'import numpy, PIL' 2>/dev/null; then
	echo "embed-search: skipped, $PY lacks numpy or PIL" >&2
	exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-search.XXXXXX")
trap 'rm -rf "$d"' EXIT

# A model: a random tiny CLIP carrying a tokenizer (CLIP's merges format:
# each line joins two tokens; </w> ends a word).
"$BIN/vlm-convert" init --seed 1 tiny "$d/tiny.safetensors"
printf '%s\n' '#version: 0.2' 'r e' 're d</w>' 'b l' 'bl u' 'blu e</w>' \
    'c i' 'ci r' 'cir c' 'circ l' 'circl e</w>' 's q' 'sq u' 'squ a' \
    'squa r' 'squar e</w>' >"$d/merges.txt"
"$BIN/vlm-convert" import -t "$d/merges.txt" "$d/tiny.safetensors" \
    "$d/m.safetensors"

# Twelve images: red, green or blue circles and squares, two of each.
$PY - "$d/photos" <<'EOF'
import os, sys
from PIL import Image, ImageDraw
os.makedirs(sys.argv[1])
colours = {'red': (220, 30, 30), 'green': (30, 180, 60), 'blue': (40, 60, 220)}
for name, rgb in colours.items():
    for shape in ('circle', 'square'):
        for k in range(2):
            im = Image.new('RGB', (48 + 16 * k, 48), 'white')
            box = (8 + 4 * k, 8, 40 + 4 * k, 40)
            draw = ImageDraw.Draw(im)
            (draw.ellipse if shape == 'circle' else draw.rectangle)(box, rgb)
            im.save(f'{sys.argv[1]}/{name}-{shape}-{k}.png')
EOF

# Embed the folder once: photos.npy (12, dim), photos.ids.npy, photos.json.
"$BIN/vlm-embed" -q -m "$d/m.safetensors" -o "$d/photos.npy" "$d/photos"
cat "$d/photos.json"

# rank QUERY.npy: the three images nearest to the query's first vector
rank() {
	$PY - "$d/photos" "$1" <<'EOF'
import sys, numpy as np
ids = np.load(sys.argv[1] + '.ids.npy')
v = np.load(sys.argv[1] + '.npy', mmap_mode='r')   # unit rows
q = np.load(sys.argv[2])[0]
s = v @ q                                          # cosine similarity
for i in np.argsort(-s, kind='stable')[:3]:
    print(f'{s[i]:6.3f}  {ids[i].rsplit("/", 1)[-1]}')
EOF
}

echo "== text query: a red circle"
echo 'a red circle' | "$BIN/vlm-embed" -q -m "$d/m.safetensors" -t \
    -o "$d/text.npy"
rank "$d/text.npy"

echo "== image query: blue-square-0.png"
"$BIN/vlm-embed" -q -m "$d/m.safetensors" -o "$d/img.npy" \
    "$d/photos/blue-square-0.png"
rank "$d/img.npy" | tee "$d/ranked"
# an image is its own nearest neighbour, at similarity 1
head -n 1 "$d/ranked" | grep -q ' 1.000  blue-square-0.png$'

echo "== a stream from find(1), read batch by batch"
find "$d/photos" -name 'red-*' | LC_ALL=C sort |
    "$BIN/vlm-embed" -q -m "$d/m.safetensors" -b 2 >"$d/red.npys"
$PY - "$d/red.npys" <<'EOF'
import json, sys, numpy as np
with open(sys.argv[1], 'rb') as f:
    meta = json.loads(np.load(f).tobytes())
    while True:
        r = np.load(f)
        if r.dtype == np.uint8:        # the end record
            print('end:', json.loads(r.tobytes()))
            break
        v = np.load(f)
        print(f'batch of {len(r)}, vectors {v.shape}, space {meta["space"]}')
EOF
