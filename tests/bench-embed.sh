#!/bin/sh
# bench-embed.sh - vlm-embed end to end (JPEG decode + preprocessing +
# model) against the model alone, same model, same run: a ViT-B/32 CLIP
# with random weights on 224 px JPEGs; one image end to end (start-up);
# the peak RSS of the whole run; then --precision bf16 against fp32.
# Run by tests/bench.sh.
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
mkdir "$T/few"
for f in $(ls "$T/img" | head -n 32); do ln -s "$T/img/$f" "$T/few/$f"; done
# seconds of one embedding run over a folder
run() {
	t0=$(date +%s.%N)
	"$BIN/vlm-embed" -m "$T/b.safetensors" -b 32 -o "$T/e.npy" \
	    --precision "${2:-fp32}" "$1" || exit 1
	t1=$(date +%s.%N)
	/usr/bin/python3 -c "print($t1 - $t0)"
}
few=$(run "$T/few")
all=$(run "$T/img")
# one image end to end, and the peak RSS of the whole folder's run
mkdir "$T/one" && ln -s "$T/img/0000.jpg" "$T/one/"
one=$(run "$T/one")
/usr/bin/time -f %M -o "$T/rss" "$BIN/vlm-embed" -m "$T/b.safetensors" \
    -b 32 -o "$T/e.npy" "$T/img" || exit 1
rss=$(tail -1 "$T/rss")
alone=$("$BUILD/tests/bench-model" vitb-only | sed -n 's/.* \([0-9.]*\) images\/s.*/\1/p')
/usr/bin/python3 -c "
n, few, all, alone = $n, $few, $all, float('$alone')
print('vlm-embed end to end: %d 224 px JPEGs (320x256 decoded): %.1f s, '
      '%.1f images/s with start-up (32 images: %.1f s)' % (n, all, n / all, few))
rate = (n - 32) / (all - few)
print('steady state (the %d images past the first 32): %.1f images/s' % (n - 32, rate))
print('model alone (bench-model, same run): %.1f images/s; '
      'steady end to end / model: %.2f' % (alone, rate / alone))
print('one image end to end (start-up included): %.2f s' % $one)
print('peak RSS of the %d-image run: %.0f MiB (weights %.0f MiB)' % (n,
      $rss / 1024, $(stat -c %s "$T/b.safetensors") / 2**20))"
# --precision bf16 against fp32, turn about, end to end over all images
f1=$(run "$T/img" bf16); f2=$(run "$T/img"); f3=$(run "$T/img" bf16)
/usr/bin/python3 -c "
b, f = min($f1, $f3), min($all, $f2)
print('--precision bf16 end to end, turn about: %.1f images/s, fp32 %.1f; '
      'bf16 / fp32 %.2f' % ($n / b, $n / f, f / b))"
