#!/bin/sh
# examples/route-table.sh - where do the tokens go? Record the routing of
# a LIMoE-style model while embedding a labelled folder, then read the
# records back as a table, as TSV for awk, as a terminal heatmap and as
# a PNG; and see what a routing-time setting (a larger capacity factor,
# set in the model file) changes.
#
# It runs offline, in seconds, on data it makes: coloured squares in
# three class folders (an ImageFolder), and an untrained tiny-moe model.
# An untrained router spreads tokens almost evenly; give the same
# commands a trained model and the table shows its specialised experts.
#
# Environment: BIN (the programs, default bin), TMPDIR.
set -e
BIN=${BIN:-bin}
PY=/usr/bin/python3
if ! $PY -c 'import numpy, PIL' 2>/dev/null; then
	echo "route-table: skipped, $PY lacks numpy or PIL" >&2
	exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-routes.XXXXXX")
trap 'rm -rf "$d"' EXIT

# 3 classes of 6 noisy images each, one colour channel saturated per class
$PY - "$d/val" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
r = np.random.default_rng(1)
for k, c in enumerate(("red", "green", "blue")):
    os.makedirs(f"{sys.argv[1]}/{c}")
    for i in range(6):
        a = (r.random((48, 48, 3)) * 160).astype("uint8")
        a[..., k] = 255
        Image.fromarray(a).save(f"{sys.argv[1]}/{c}/{i}.png")
EOF

"$BIN/vlm-convert" init --seed 1 tiny-moe "$d/moe.safetensors"

# 1. routes while embedding: vectors to one file, routing to another
"$BIN/vlm-embed" -q -m "$d/moe.safetensors" --routes "$d/val.routes" \
    -o "$d/val.npy" "$d/val"
"$BIN/vlm-route-stats" "$d/val.routes"

# 2. the experts that drop most, from the TSV (columns: see the header)
echo "# experts by dropped choices, layer 0:"
"$BIN/vlm-route-stats" --tsv "$d/val.routes" |
    awk -F'\t' 'NR > 1 && $1 == 0 {
	printf "expert %s: %d of %d choices dropped\n", $4, $6 - $7, $6 }' |
    sort -t: -k2 -rn | head -3

# 3. pictures: shading in the terminal, and a PNG
"$BIN/vlm-route-stats" --heatmap "$d/val.routes"
"$BIN/vlm-route-stats" --png "$d/routing.png" "$d/val.routes" >/dev/null
echo "# $(wc -c <"$d/routing.png") bytes of PNG"

# 4. four times the capacity at inference (set in the model file): fewer
# tokens are dropped, and layer 3 sees other inputs, so some choose anew
cp "$d/moe.safetensors" "$d/moe2.safetensors"
"$BIN/vlm-convert" set "$d/moe2.safetensors" moe.cf_eval=4
"$BIN/vlm-route-stats" -m "$d/moe2.safetensors" --images "$d/val" \
    -o "$d/cf4.routes" --json >"$d/cf4.json"
$PY -c 'import json, sys
s = json.load(open(sys.argv[1]))
for l in s["layers"]:
    print("# cf_eval=4:", l["label"], "drops",
          l["modalities"]["image"]["drop_tokens"], "of the tokens")' \
    "$d/cf4.json"
"$BIN/vlm-route-stats" --diff "$d/val.routes" "$d/cf4.routes"
