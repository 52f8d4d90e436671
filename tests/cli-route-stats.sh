#!/bin/sh
# cli-route-stats.sh - vlm-route-stats end to end on a tiny MoE model and
# synthetic images: running the model, every output form, the numbers
# against the NumPy reference (tests/routes-ref.py), truncated and bad
# streams, --diff; and vlm-convert upcycle and set.
. tests/lib.sh

R=$BIN/vlm-route-stats
C=$BIN/vlm-convert
PY=/usr/bin/python3

fails "no input model without --images" 2 "$R" -m x.safetensors
fails "--images without a model" 2 "$R" --images x
fails "--diff wants two streams" 2 "$R" --diff x
fails "-b 0 refused" 2 "$R" -b 0 x
check "and says the range" "grep -q \"want an integer from 1 to 65536\" $T/err"
fails "--layer junk refused" 2 "$R" --layer 2x x
ok "init tiny-moe" "$C" init --seed 3 tiny-moe "$T/moe.safetensors"

if ! have_py "the model runs (the rest)" numpy PIL; then
	finish
	exit $?
fi
# 3 classes x 4 images (ImageFolder), and a plain folder of 3
$PY - "$T" <<'EOF'
import os, sys
import numpy as np
from PIL import Image
r = np.random.default_rng(0)
for c in ("cat", "dog", "owl"):
    os.makedirs(f"{sys.argv[1]}/set/{c}")
    for i in range(4):
        a = (r.random((36, 40, 3)) * 255).astype("uint8")
        a[..., "cdo".index(c[0])] = 255
        Image.fromarray(a).save(f"{sys.argv[1]}/set/{c}/{i}.png")
os.makedirs(f"{sys.argv[1]}/plain")
for i in range(3):
    a = (r.random((32, 32, 3)) * 255).astype("uint8")
    Image.fromarray(a).save(f"{sys.argv[1]}/plain/{i}.png")
EOF

ok "run the model over an ImageFolder" "$R" -m "$T/moe.safetensors" \
    --images "$T/set" -b 5 -o "$T/r.routes"
check "a table per layer" "grep -q '^layer 0: block 1' $T/out && \
    grep -q '^layer 1: block 3' $T/out"
check "12 images of 17 tokens" "grep -q '^image  *204 ' $T/out"
check "top classes by name" "grep -q 'top classes' $T/out && \
    grep -Eq ' (cat|dog|owl) 0\.[0-9]{3}' $T/out"
check "records written atomically" "[ -s $T/r.routes ] && \
    ! ls $T/r.routes.tmp* 2>/dev/null"
ok "table from the records" "$R" --classes --positions "$T/r.routes"
check "class x expert matrix" "grep -q '^owl  ' $T/out"
check "patch map of a 4x4 grid" "grep -q 'per patch (4x4)' $T/out"
ok "stdin" sh -c "'$R' <'$T/r.routes'"

ok "--tsv" "$R" --tsv "$T/r.routes"
check "header and 2 layers x 8 experts" "[ \$(wc -l <$T/out) -eq 17 ] && \
    head -1 $T/out | grep -q '^layer	name	modality	expert'"
ok "--json" "$R" --json "$T/r.routes"
cp "$T/out" "$T/stats.json"
$PY tests/routes-ref.py "$T/r.routes" >"$T/ref.json"
ok "same numbers as the NumPy reference" $PY - "$T/stats.json" \
    "$T/ref.json" <<'EOF'
import json, math, sys
a = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
assert len(a["layers"]) == len(b["layers"]) == 2
for la, lb in zip(a["layers"], b["layers"]):
    s, r = la["modalities"]["image"], lb["0"]
    for k in ("tokens", "drop_tokens", "imp_cv2", "load_cv2",
              "eff_experts", "entropy", "zloss", "z_mean", "z_max"):
        assert math.isclose(s[k], r[k], rel_tol=1e-12, abs_tol=1e-12), k
    for e, x in enumerate(s["experts"]):
        for k in ("load", "kept", "share", "use"):
            assert math.isclose(x[k], r[k][e], rel_tol=1e-12), (k, e)
    assert la["classes"]["counts"] == [[int(v) for v in row]
                                       for row in lb["cls"]]
EOF

ok "--heatmap" "$R" --heatmap "$T/r.routes"
check "drawn with block shading" "grep -q '[░▒▓█]' $T/out"
ok "--png" "$R" --png "$T/h.png" "$T/r.routes"
ok "the PNG opens" $PY -c "
from PIL import Image
im = Image.open('$T/h.png'); assert im.mode == 'RGB', im.mode
assert im.size[0] >= 20 + 96 + 8 * 28 and im.size[1] > 100, im.size"

ok "--diff of a stream with itself" "$R" --diff "$T/r.routes" "$T/r.routes"
check "every first choice agrees" "grep -q ' 1.0000$' $T/out"
ok "a plain folder (no labels)" "$R" -m "$T/moe.safetensors" \
    --images "$T/plain" -o "$T/p.routes"
ok "--diff of other inputs" "$R" --diff "$T/r.routes" "$T/p.routes"
check "not compared token by token" "grep -q 'not comparable' $T/out"

size=$(wc -c <"$T/r.routes")
head -c $((size / 2)) "$T/r.routes" >"$T/cut.routes"
fails "a truncated stream" 1 "$R" "$T/cut.routes"
check "one line saying so" "[ \$(wc -l <$T/err) -eq 1 ] && \
    grep -q 'truncated' $T/err"
check "no statistics without --partial" "[ ! -s $T/out ]"
ok "--partial" "$R" --partial "$T/cut.routes"
check "statistics of the complete part" "grep -q '^layer 0' $T/out && \
    grep -q 'before it follow' $T/err"
head -c 100 /dev/urandom >"$T/junk"
fails "not a record stream" 1 "$R" "$T/junk"
fails "a missing file" 1 "$R" "$T/none.routes"

# texts need a tokenizer: tiny-moe has none, so import one
echo "a cat" >"$T/caps"
fails "texts without a tokenizer" 1 "$R" -m "$T/moe.safetensors" \
    --images "$T/plain" --text "$T/caps"
check "says so" "grep -q 'no tokenizer' $T/err"
printf '%s\n' '#version: 0.2' 'c a' 'ca t</w>' 'd o' 'do g</w>' \
    >"$T/merges.txt"
# one tower: put the merges in the model file's metadata (import takes
# only CLIP checkpoints)
$PY - "$T/moe.safetensors" "$T/merges.txt" "$T/moet.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["__metadata__"]["tokenizer.merges"] = open(sys.argv[2]).read()
s = json.dumps(h).encode()
s += b" " * (-len(s) % 8)
open(sys.argv[3], "wb").write(struct.pack("<Q", len(s)) + s + b[8 + n:])
EOF
printf 'a cat\n\na dog on a cat\n' >"$T/caps"
ok "images and texts, one tower" "$R" -m "$T/moet.safetensors" \
    --images "$T/set" --text "$T/caps"
check "text and both-modality rows" "grep -q '^text ' $T/out && \
    grep -q '^all ' $T/out && grep -q 'img_share' $T/out"
# <start> a cat <end>; <start> a dog o n a cat <end>
check "two texts of 4 and 8 tokens" "grep -q '^text  *12 ' $T/out"
# two towers: a dense CLIP with a tokenizer, upcycled (it keeps it)
ok "init a dense tiny" "$C" init --seed 2 tiny "$T/d0.safetensors"
ok "import a tokenizer" "$C" import -t "$T/merges.txt" \
    "$T/d0.safetensors" "$T/d.safetensors"
ok "upcycle" "$C" upcycle --experts 4 --top-k 2 --last 1 -s 7 \
    "$T/d.safetensors" "$T/u.safetensors"
ok "images and texts, two towers" "$R" -m "$T/u.safetensors" \
    --images "$T/plain" --text "$T/caps"
check "vision and text tower layers" "grep -q 'vision 3' $T/out && \
    grep -q 'text 3' $T/out"

# vlm-embed --routes writes the same records
ok "vlm-embed --routes" sh -c "'$BIN/vlm-embed' -m \
    '$T/moe.safetensors' --routes '$T/e.routes' '$T/set' >/dev/null"
ok "route-stats reads them" "$R" "$T/e.routes"
check "the same 204 image tokens" "grep -q '^image  *204 ' $T/out"

# token reduction: the blocks after the cut route 8 learned tokens/image
ok "init with a TokenLearner after block 1" "$C" init --seed 3 \
    --set token_reduction.after=1 --set vision.pool=gap tiny-moe \
    "$T/tl.safetensors"
ok "route-stats over it" "$R" -m "$T/tl.safetensors" --images \
    "$T/set" -o "$T/tl.routes"
check "block 1: 12 images x 16 patches" \
    "sed -n '/block 1 /,/^\$/p' $T/out | grep -q '^image  *192 '"
check "block 3: 12 images x 8 learned tokens" \
    "sed -n '/block 3 /,/^\$/p' $T/out | grep -q '^image  *96 '"
ok "positions of the record" "$R" --positions "$T/tl.routes"
check "no patch grid for learned tokens" \
    "[ \$(grep -c 'dominant expert per patch' $T/out) -eq 1 ]"

# vlm-convert upcycle and set
ok "info" "$C" info "$T/u.safetensors"
check "MoE in the last odd block only" \
    "grep -q 'resblocks.3.moe.experts.c_fc.weight .*\[4, 512, 128\]' \
    $T/out && ! grep -q 'resblocks.1.moe' $T/out"
fails "upcycle a sparse model" 1 "$C" upcycle --experts 4 \
    "$T/u.safetensors" "$T/x.safetensors"
fails "upcycle without --experts" 2 "$C" upcycle "$T/d.safetensors" \
    "$T/x.safetensors"
ok "set routing-time keys" "$C" set "$T/u.safetensors" moe.cf_eval=2.5 \
    moe.bpr=false moe.top_k=1
ok "info after set" "$C" info "$T/u.safetensors"
$PY - "$T/u.safetensors" >"$T/cfg" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
m = json.loads(json.loads(b[8:8 + n])["__metadata__"]["vlm.config"])["moe"]
print(m["cf_eval"], m["bpr"], m["top_k"], m["experts"])
EOF
check "stored in the file" "grep -qx '2.5 False 1 4' $T/cfg"
fails "set a shape key" 1 "$C" set "$T/u.safetensors" moe.experts=8
check "refused by name" "grep -q \"'moe.experts' is not a routing-time\" \
    $T/err"
fails "set a bad value" 1 "$C" set "$T/u.safetensors" moe.top_k=9
fails "set on a dense model" 1 "$C" set "$T/d.safetensors" moe.cf_eval=2
finish
