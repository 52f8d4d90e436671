#!/bin/sh
# bench-gpu.sh - the GPU benchmark (not part of make check; a machine
# with an NVIDIA GPU and a CUDA=1 build): cuBLAS SGEMM peak, training
# steps of a ViT-B/16-shaped one-tower LIMoE and its dense twin (MFU =
# model FLOP/s over that peak; MoE step / dense), a ViT-B/32 forward at
# batch 256, vlm-embed end to end on JPEGs with decoding overlapped
# against the model alone, and where PyTorch is installed the same
# dense model's training step in PyTorch (fp32 and bf16 autocast). All
# in fp32 on our side: bf16 is not implemented on the GPU yet.
# Environment: BIN (bin), BUILD (build), BENCH_BATCH (128),
# BENCH_IMAGES (1024).
: "${BIN:=bin}" "${BUILD:=build}"
B=${BENCH_BATCH:-128}
n=${BENCH_IMAGES:-1024}
PY=${PYTHON:-python3}
echo "== bench-gpu (batch $B)"
"$BUILD/tests/bench-gpu" "$B" | tee "${TMPDIR:-/tmp}/bench-gpu.$$" ||
    echo "bench-gpu failed (exit $?)"
alone=$(sed -n 's/^vit-b\/32 image forward.*: \([0-9.]*\) images\/s.*/\1/p' \
    "${TMPDIR:-/tmp}/bench-gpu.$$")
rm -f "${TMPDIR:-/tmp}/bench-gpu.$$"
echo "== vlm-embed end to end, batch 256, --device cuda"
if $PY -c 'import PIL, numpy' 2>/dev/null; then
	T=$(mktemp -d "${TMPDIR:-/tmp}/vlm-bench.XXXXXX")
	trap 'rm -rf "$T"' EXIT
	$PY - "$T/img" "$n" <<'PYEOF'
import os, sys
import numpy as np
from PIL import Image
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
rng = np.random.default_rng(0)
y, x = np.mgrid[0:256, 0:320]
for i in range(n):
    a = rng.uniform(0, 6, 3)
    im = np.stack([np.sin(x / 40 * a[c] + y / 50 + c) for c in range(3)], -1)
    im = (127 + 100 * im + rng.normal(0, 12, im.shape)).clip(0, 255)
    Image.fromarray(im.astype(np.uint8)).save("%s/%05d.jpg" % (out, i),
                                              quality=90)
PYEOF
	"$BIN/vlm-convert" init --seed 1 b "$T/b.safetensors" >/dev/null
	t0=$(date +%s.%N)
	"$BIN/vlm-embed" --device cuda -q -m "$T/b.safetensors" -b 256 \
	    -o "$T/e.npy" "$T/img" || echo "vlm-embed failed (exit $?)"
	t1=$(date +%s.%N)
	$PY -c "
n, s, alone = $n, $t1 - $t0, float('${alone:-0}' or 0)
print('vlm-embed: %d JPEGs (320x256) in %.1f s: %.1f images/s end to end' % (n, s, n / s))
if alone: print('model alone: %.1f images/s; end to end / model: %.2f' % (alone, n / s / alone))"
else
	echo "skipped: $PY has no PIL or numpy"
fi
echo "== PyTorch, the dense twin's training step"
if $PY -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
	$PY tests/bench-gpu-torch.py "$B"
else
	echo "skipped: no PyTorch with CUDA"
fi
