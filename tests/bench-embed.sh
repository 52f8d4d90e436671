#!/bin/sh
# bench-embed.sh - vlm-embed end to end (JPEG decode + preprocessing +
# model) against the model alone, same model, same run: a ViT-B/32 CLIP
# with random weights on 224 px JPEGs. Run by tests/bench.sh.
: "${BIN:=bin}" "${BUILD:=build}"
n=${BENCH_IMAGES:-192}
if ! /usr/bin/python3 -c 'import PIL, numpy' 2>/dev/null; then
	echo "bench-embed: skipped (no PIL or numpy)"; exit 0
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/vlm-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 - "$T/img" "$n" <<'PY'
import os, sys
import numpy as np
from PIL import Image
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
rng = np.random.default_rng(0)
y, x = np.mgrid[0:256, 0:320]
for i in range(n):  # smooth colour fields with some texture, like photos
    a = rng.uniform(0, 6, 3)
    im = np.stack([np.sin(x / 40 * a[c] + y / 50 + c) for c in range(3)], -1)
    im = (127 + 100 * im + rng.normal(0, 12, im.shape)).clip(0, 255)
    Image.fromarray(im.astype(np.uint8)).save("%s/%04d.jpg" % (out, i),
                                              quality=90)
PY
"$BIN/vlm-convert" init --seed 1 b "$T/b.safetensors" || exit 1
t0=$(date +%s.%N)
"$BIN/vlm-embed" -m "$T/b.safetensors" -b 32 -o "$T/e.npy" "$T/img" || exit 1
t1=$(date +%s.%N)
alone=$("$BUILD/tests/bench-model" vitb-only | sed -n 's/.* \([0-9.]*\) images\/s.*/\1/p')
/usr/bin/python3 -c "
e2e = $n / ($t1 - $t0); alone = float('$alone')
print('vlm-embed end to end: %d 224 px JPEGs (320x256 decoded), %.1f images/s' % ($n, e2e))
print('model alone (bench-model, same run): %.1f images/s; end to end / model: %.2f' % (alone, e2e / alone))"
