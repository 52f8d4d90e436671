#!/bin/sh
# cli-alpha.sh - images with transparency as OpenCLIP sees them: an
# OpenCLIP checkpoint imported with vlm-convert gets image_alpha
# resize-first, an HF one drop; vlm-embed of RGBA, LA, palette+tRNS,
# 16-bit RGBA and LA, bilevel and 16-bit gray PNGs, a CMYK JPEG and an
# RGBA WebP of odd sizes gives the features of OpenCLIP's pipeline: PIL's
# Resize + CenterCrop + convert("RGB") (tests/pil-alpha.py), saved as an
# opaque PNG of the model's size and embedded by the same model (its
# forward matches OpenCLIP's: cli-embed.sh). --alpha overrides the
# model's mode.
. tests/lib.sh
E=$BIN/vlm-embed
O=$FIX/openclip-tiny
PY=/usr/bin/python3

if have "the OpenCLIP alpha checks" "$O/weights.openclip.safetensors" \
    "$O/weights.hf.safetensors" && have_py "the OpenCLIP alpha checks" \
    numpy PIL; then
	ok "import the OpenCLIP checkpoint" "$BIN/vlm-convert" import \
	    -c "$O/open_clip_config.json" "$O/weights.openclip.safetensors" \
	    "$T/oc.safetensors"
	ok "import the HF checkpoint" "$BIN/vlm-convert" import \
	    -c "$O/hf_config.json" "$O/weights.hf.safetensors" \
	    "$T/hf.safetensors"
	cat >"$T/mode.py" <<'EOF'
import json, struct, sys
f = open(sys.argv[1], "rb")
n = struct.unpack("<Q", f.read(8))[0]
meta = json.loads(f.read(n))["__metadata__"]
print(json.loads(meta["vlm.config"])["image_alpha"])
EOF
	check "OpenCLIP import: image_alpha resize-first" \
	    '[ "$($PY "$T/mode.py" "$T/oc.safetensors")" = resize-first ]'
	check "HF import: image_alpha drop" \
	    '[ "$($PY "$T/mode.py" "$T/hf.safetensors")" = drop ]'
	mkdir -p "$T/img" "$T/ref"
	ok "make the images and PIL's transform of them" \
	    $PY tests/pil-alpha.py "$T/img"
	# PIL's 32 x 32 output of each image, as an opaque PNG
	ok "PIL's pixels as PNGs" $PY -c '
import sys, numpy as np
from PIL import Image
d, r = sys.argv[1:]
for line in open(d + "/refs.txt"):
    w = line.split()
    if w[0] == "first" and w[2] == "32":
        a = np.fromfile("%s/%s.first.32.pre" % (d, w[1]), np.uint8)
        Image.fromarray(a.reshape(32, 32, 3)).save("%s/%s" % (r, w[1]),
                                                   "PNG")
' "$T/img" "$T/ref"
	ls "$T/img"/*.png "$T/img"/*.jpg "$T/img"/*.webp >"$T/list"
	sed "s|^$T/img/|$T/ref/|" "$T/list" >"$T/rlist"
	check "17 images" '[ "$(wc -l <"$T/list")" -eq 17 ]'
	ok "embed the images (resize-first, the model's)" sh -c "'$E' -q \
	    --raw -m '$T/oc.safetensors' -o '$T/first.npy' <'$T/list'"
	ok "embed PIL's pixels" sh -c "'$E' -q --raw -m '$T/oc.safetensors' \
	    -o '$T/pil.npy' <'$T/rlist'"
	ok "embed with --alpha drop" sh -c "'$E' -q --raw --alpha drop \
	    -m '$T/oc.safetensors' -o '$T/drop.npy' <'$T/list'"
	ok "the HF import embeds as --alpha drop" sh -c "'$E' -q --raw \
	    -m '$T/hf.safetensors' -o '$T/hf.npy' <'$T/list'"
	ok "--alpha resize-first on the HF import" sh -c "'$E' -q --raw \
	    --alpha resize-first -m '$T/hf.safetensors' -o '$T/hf1.npy' \
	    <'$T/list'"
	cat >"$T/cmp.py" <<'EOF'
import sys, numpy as np
a, b = (np.load(p).astype(np.float64) for p in sys.argv[1:3])
assert a.shape == b.shape == (17, 32), (a.shape, b.shape)
rel = np.abs(a - b).max(axis=1) / np.abs(b).max(axis=1)
print("%.3g" % rel.max())
EOF
	rel=$($PY "$T/cmp.py" "$T/first.npy" "$T/pil.npy")
	echo "# resize-first vs OpenCLIP's pipeline: max relative diff $rel"
	check "resize-first: OpenCLIP's features to 1e-5" \
	    "$PY -c 'import sys; sys.exit(not $rel <= 1e-5)'"
	rel=$($PY "$T/cmp.py" "$T/drop.npy" "$T/pil.npy")
	echo "# drop vs OpenCLIP's pipeline: max relative diff $rel"
	check "drop differs from OpenCLIP's features on these images" \
	    "$PY -c 'import sys; sys.exit(not $rel > 0.01)'"
	check "the HF import: same features as --alpha drop" \
	    "[ \"\$($PY '$T/cmp.py' '$T/hf.npy' '$T/drop.npy')\" = 0 ]"
	check "the HF import with --alpha resize-first: OpenCLIP's" \
	    "[ \"\$($PY '$T/cmp.py' '$T/hf1.npy' '$T/first.npy')\" = 0 ]"
	fails "--alpha with an unknown mode" 2 "$E" --alpha grey \
	    -m "$T/oc.safetensors" "$T/img/la-41x29.png"
	check "the message names the modes" \
	    'grep -q "drop, white, black, resize-first" "$T/err"'
	fails "vlm-eval --alpha with an unknown mode" 2 "$BIN/vlm-eval" \
	    zeroshot --alpha grey -m "$T/oc.safetensors" --images "$T/img"
	check "the message names the key" 'grep -q image_alpha "$T/err"'
	if have "vlm-eval --alpha" "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz"
	then
		"$BIN/vlm-convert" import -c "$O/open_clip_config.json" \
		    -t "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
		    "$O/weights.openclip.safetensors" "$T/oct.safetensors"
		mkdir -p "$T/if/rgba" "$T/if/other"
		cp "$T/img"/rgba-*.png "$T/if/rgba"
		cp "$T/img"/[!r]*.png "$T/if/other"
		for m in drop resize-first; do
			ok "vlm-eval zeroshot --alpha $m" "$BIN/vlm-eval" \
			    zeroshot --alpha $m -m "$T/oct.safetensors" \
			    --images "$T/if" --json
		done
	fi
fi
finish
