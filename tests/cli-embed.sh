#!/bin/sh
# cli-embed.sh - vlm-embed: images from folders and lists, texts, the
# .npys stream, the packed form and JSON lines, bad inputs skipped and
# listed, determinism across runs and thread counts, routing records,
# and the OpenCLIP fixture's features reproduced. NumPy reads what it
# writes; those parts skip without /usr/bin/python3 and numpy.
. tests/lib.sh

E=$BIN/vlm-embed
PY=/usr/bin/python3
M=$T/moe.safetensors
"$BIN/vlm-convert" init --seed 1 tiny-moe "$M" >/dev/null ||
    fail "making the tiny-moe model"

fails "no model" 2 "$E" "$T"
fails "bad format" 2 "$E" -m "$M" --format csv "$T"
fails "batch of 0" 2 "$E" -m "$M" -b 0 "$T"
fails "-o with a stream's name" 2 "$E" -m "$M" -o "$T/x.npys" "$T"
fails "--routes - with the stream on stdout" 2 "$E" -m "$M" --routes - "$T"
printf 'not a model' >"$T/bad.safetensors"
fails "bad model file" 1 "$E" -m "$T/bad.safetensors" "$T"
check "one line naming the model" \
    '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q bad.safetensors "$T/err"'
fails "texts need the model's tokenizer" 1 "$E" -m "$M" -t /dev/null
check "the message says so" 'grep -q "no tokenizer" "$T/err"'

if ! have_py "the embedding checks (the rest)" numpy PIL; then
	finish
	exit
fi

# seven images (PNG, JPEG, odd sizes, a subfolder), a text file, a
# hidden file; bad/ adds a truncated PNG
I=$T/imgs
$PY - "$T" <<'EOF' || fail "making images with PIL"
import os, sys, numpy as np
from PIL import Image
d = sys.argv[1]
for sub in ('imgs/b', 'imgs/a', 'bad'):
    os.makedirs(f'{d}/{sub}', exist_ok=True)
r = np.random.default_rng(7)
def img(path, h, w):
    Image.fromarray(r.integers(0, 256, (h, w, 3), np.uint8)).save(path)
for i, (h, w) in enumerate([(40, 52), (33, 33), (64, 20), (90, 70)]):
    img(f'{d}/imgs/p{i}.png', h, w)
img(f'{d}/imgs/a/x.jpg', 48, 64)
img(f'{d}/imgs/b/y.png', 31, 45)
img(f'{d}/imgs/b/z.jpg', 70, 50)
open(f'{d}/imgs/notes.txt', 'w').write('not an image\n')
open(f'{d}/imgs/.hidden.png', 'wb').write(b'')
img(f'{d}/bad/good.png', 40, 40)
png = open(f'{d}/imgs/p0.png', 'rb').read()
open(f'{d}/bad/broken.png', 'wb').write(png[:len(png) // 2])
EOF
# the walk's order: LC_ALL=C sort of the paths, non-images and hidden out
find "$I" -type f -name '*.[pj][np]g' ! -name '.*' | LC_ALL=C sort \
    >"$T/want.ids"

# read NPYS [IDS]: a stream checked record by record; ids into IDS;
# the vectors into NPYS.vec.npy and the end record into NPYS.end
cat >"$T/read.py" <<'EOF'
import json, sys, numpy as np
f = open(sys.argv[1], 'rb')
meta = json.loads(np.load(f).tobytes())
assert meta['format'] == 'vlm-embeddings' and meta['version'] == 1, meta
ids, vecs = [], []
while True:
    r = np.load(f)
    if r.dtype == np.uint8:
        end = json.loads(r.tobytes())
        break
    v = np.load(f)
    assert r.ndim == 1 and v.dtype == np.float32, (r.dtype, v.dtype)
    assert v.shape == (len(r), meta['dim']), v.shape
    ids += list(r)
    vecs.append(v)
assert f.read() == b'', 'bytes after the end record'
assert end['end'] is True and end['rows'] == len(ids), end
v = np.concatenate(vecs) if vecs else np.zeros((0, meta['dim']), 'f4')
n = np.linalg.norm(v, axis=1)
if meta['normalized']:
    assert np.all(np.abs(n - 1) < 1e-5), n
np.save(sys.argv[1] + '.vec.npy', v)
json.dump({**meta, **end}, open(sys.argv[1] + '.end', 'w'))
if len(sys.argv) > 2:
    open(sys.argv[2], 'w').write(''.join(i + '\n' for i in ids))
EOF
rd() { $PY "$T/read.py" "$@"; }

ok "embed a folder" sh -c "'$E' -m '$M' -b 3 '$I' >'$T/s.npys'"
check "quiet when all went well" '[ ! -s "$T/err" ] ||
    [ "$(cat "$T/err")" = "vlm-embed: passed over 1 non-image file" ]'
ok "the stream reads record by record, unit norms" rd "$T/s.npys" \
    "$T/s.ids"
check "ids: the paths in byte order, non-images passed over" \
    'cmp -s "$T/s.ids" "$T/want.ids"'
check "metadata: model, dim, space, normalized" "$PY -c '
import json; m = json.load(open(\"$T/s.npys.end\"))
assert m[\"model\"] == \"$M\" and m[\"dim\"] == 64, m
assert m[\"space\"] == \"image\" and m[\"normalized\"] and m[\"failed\"] == []
'"
ok "a list of paths on stdin" sh -c \
    "'$E' -m '$M' -b 3 <'$T/want.ids' >'$T/l.npys'"
check "same bytes as the folder" 'cmp -s "$T/s.npys" "$T/l.npys"'
ok "again" sh -c "'$E' -m '$M' -b 3 '$I' >'$T/s2.npys'"
check "two runs write the same bytes" 'cmp -s "$T/s.npys" "$T/s2.npys"'
VLM_THREADS=1 "$E" -m "$M" -b 3 "$I" >"$T/t1.npys" 2>/dev/null
VLM_THREADS=2 "$E" -m "$M" -b 3 "$I" >"$T/t2.npys" 2>/dev/null
"$E" -m "$M" -b 3 -j 3 "$I" >"$T/t3.npys" 2>/dev/null
check "VLM_THREADS=1, 2 and -j 3: the same bytes" \
    'cmp -s "$T/s.npys" "$T/t1.npys" && cmp -s "$T/s.npys" "$T/t2.npys" &&
    cmp -s "$T/s.npys" "$T/t3.npys"'

mkdir "$T/o"
ok "packed output" "$E" -m "$M" -b 3 -o "$T/o/p.npy" "$I"
check "three files and no leftovers" \
    '[ "$(ls -A "$T/o" | tr "\n" " ")" = "p.ids.npy p.json p.npy " ]'
check "packed = the stream" "$PY -c '
import json, numpy as np
v = np.load(\"$T/o/p.npy\"); w = np.load(\"$T/s.npys.vec.npy\")
assert v.dtype == np.float32 and np.array_equal(v, w), v.shape
ids = [l.strip() for l in open(\"$T/want.ids\")]
assert list(np.load(\"$T/o/p.ids.npy\")) == ids
j = json.load(open(\"$T/o/p.json\"))
assert j[\"rows\"] == len(ids) and j[\"failed\"] == [] and j[\"dim\"] == 64, j
'"
fails "packed output into a missing folder" 1 "$E" -m "$M" \
    -o "$T/nonexistent/p.npy" "$I"

ok "JSON lines" sh -c "'$E' -m '$M' -b 3 --format jsonl '$I' >'$T/j.jsonl'"
check "one object a line: ids and vectors of the stream" "$PY -c '
import json, numpy as np
rows = [json.loads(l) for l in open(\"$T/j.jsonl\")]
ids = [l.strip() for l in open(\"$T/want.ids\")]
assert [r[\"id\"] for r in rows] == ids
v = np.array([r[\"embedding\"] for r in rows], np.float32)
assert np.array_equal(v, np.load(\"$T/s.npys.vec.npy\"))
'"

ok "raw features" sh -c "'$E' -m '$M' -b 3 --raw '$I' >'$T/r.npys'"
check "raw: not unit, normalised they are the stream's" "rd '$T/r.npys' &&
    $PY -c '
import json, numpy as np
assert not json.load(open(\"$T/r.npys.end\"))[\"normalized\"]
r = np.load(\"$T/r.npys.vec.npy\"); n = np.linalg.norm(r, axis=1)
assert np.all(np.abs(n - 1) > 1e-3), n
d = r / n[:, None] - np.load(\"$T/s.npys.vec.npy\")
assert np.abs(d).max() < 1e-6, np.abs(d).max()
'"

fails "a corrupt image among good ones" 1 sh -c \
    "'$E' -m '$M' -b 2 '$T/bad' '$I/p1.png' '$T/none.png' >'$T/b.npys'"
check "named once on stderr, one line each" \
    '[ "$(grep -c broken.png "$T/err")" -eq 1 ] &&
    [ "$(grep -c none.png "$T/err")" -eq 1 ] &&
    [ "$(wc -l <"$T/err")" -eq 2 ]'
ok "the rest is embedded" rd "$T/b.npys" "$T/b.ids"
check "good ones in, bad ones listed in the end record" "$PY -c '
import json
e = json.load(open(\"$T/b.npys.end\"))
assert e[\"failed\"] == [\"$T/bad/broken.png\", \"$T/none.png\"], e
assert open(\"$T/b.ids\").read().split() == [\"$T/bad/good.png\",
    \"$I/p1.png\"]
'"

fails "output to a full disk" 1 sh -c "'$E' -m '$M' '$I' >/dev/full"
if script -qec true /dev/null >/dev/null 2>&1; then
	fails "refuses a terminal" 2 script -qec "'$E' -m '$M' '$I'" /dev/null
	check "says why" 'grep -q "refusing to write binary" "$T/out"'
	ok "progress on a terminal" script -qec \
	    "'$E' -m '$M' -o '$T/o/q.npy' '$I'" /dev/null
	check "count and rate" 'grep -q "7/7 images, [0-9.]*/s" "$T/out"'
else
	skip "the terminal checks" "no script(1)"
fi

ok "routing records" sh -c \
    "'$E' -m '$M' -b 3 --routes '$T/r.routes' '$I' >'$T/rr.npys'"
check "the embeddings are the same" 'cmp -s "$T/rr.npys" "$T/s.npys"'
check "a routes stream: metadata, 3 batches, end record" "$PY -c '
import json, numpy as np
f = open(\"$T/r.routes\", \"rb\")
m = json.loads(np.load(f).tobytes())
assert m[\"format\"] == \"vlm-routes\" and len(m[\"layers\"]) == 2, m
recs = []
while True:
    try: recs.append(np.load(f))
    except (EOFError, ValueError): break
end = json.loads(recs[-1].tobytes())
assert end[\"end\"] and end[\"batches\"] == 3, end
assert end[\"examples\"] == [7, 0], end
'"

# texts without the fixtures: tiny-moe given a tokenizer in its metadata
# (vlm-model(5): "tokenizer.merges", CLIP's merges format)
$PY - "$M" "$T/mt.safetensors" <<'EOF' || fail "adding a tokenizer"
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
h['__metadata__']['tokenizer.merges'] = '#version: 0.2\nr e\nre d</w>\n'
s = json.dumps(h).encode()
s += b' ' * (-len(s) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(s)) + s + b[8 + n:])
EOF
printf 'a red circle\r\nred\n' >"$T/t1.txt"
printf '\nthe end' >"$T/t2.txt"
fails "texts from files, one missing" 1 sh -c "'$E' -m '$T/mt.safetensors' \
    -t -b 2 --routes '$T/t.routes' '$T/t1.txt' '$T/none.txt' '$T/t2.txt' \
    >'$T/t.npys'"
check "the missing file named once" \
    '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q none.txt "$T/err"'
ok "a text stream" rd "$T/t.npys" "$T/t.ids"
check "ids: line numbers across the files; missing file listed" "$PY -c '
import json
e = json.load(open(\"$T/t.npys.end\"))
assert e[\"space\"] == \"text\" and e[\"failed\"] == [\"$T/none.txt\"], e
assert open(\"$T/t.ids\").read().split() == [\"1\", \"2\", \"3\", \"4\"]
'"
printf 'a red circle\nred\n\nthe end\n' | "$E" -m "$T/mt.safetensors" -t \
    -b 2 >"$T/t2.npys" 2>"$T/err"
check "the same texts on stdin: the same vectors" "rd '$T/t2.npys' && $PY -c '
import numpy as np
a = np.load(\"$T/t.npys.vec.npy\"); b = np.load(\"$T/t2.npys.vec.npy\")
assert a.shape == (4, 64) and np.array_equal(a, b)
'"
check "routing records of texts" "$PY -c '
import json, numpy as np
f = open(\"$T/t.routes\", \"rb\")
np.load(f)
recs = []
while True:
    try: recs.append(np.load(f))
    except (EOFError, ValueError): break
b = json.loads(recs[0].tobytes()); end = json.loads(recs[-1].tobytes())
assert b[\"modality\"] == \"text\" and b[\"examples\"] == 2, b
assert end[\"batches\"] == 2 and end[\"examples\"] == [0, 4], end
'"

if have "the OpenCLIP fixture checks" "$FIX/openclip-tiny" \
    "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz"; then
	O=$FIX/openclip-tiny
	"$BIN/vlm-convert" import -c "$O/open_clip_config.json" \
	    -t "$FIX/clip-bpe/bpe_simple_vocab_16e6.txt.gz" \
	    "$O/weights.openclip.safetensors" "$T/oc.safetensors" >/dev/null
	ok "embed the fixture's image" "$E" -m "$T/oc.safetensors" \
	    -o "$T/o/img.npy" "$O/test_image.png"
	check "OpenCLIP's features of its preprocessing, normalised" "$PY -c '
import numpy as np
a = np.load(\"$O/image_input.npy\")[0]; b = np.load(\"$O/preprocess_out.npy\")
assert np.abs(a - b.reshape(a.shape)).max() < 1e-6
f = np.load(\"$O/image_features.npy\")[0]; f /= np.linalg.norm(f)
d = np.abs(np.load(\"$T/o/img.npy\")[0] - f).max()
assert d < 1e-5, d
'"
	$PY -c "import json, sys
print('\n'.join(json.load(open(sys.argv[1]))))" "$O/captions.json" \
	    >"$T/caps.txt"
	ok "embed the fixture's captions" sh -c "'$E' -m '$T/oc.safetensors' \
	    -t -b 4 '$T/caps.txt' >'$T/c.npys'"
	check "OpenCLIP's text features, normalised; ids are line numbers" \
	    "rd '$T/c.npys' '$T/c.ids' && $PY -c '
import json, numpy as np
f = np.load(\"$O/text_features.npy\")
f /= np.linalg.norm(f, axis=1, keepdims=True)
d = np.abs(np.load(\"$T/c.npys.vec.npy\") - f).max()
assert d < 1e-5, d
assert json.load(open(\"$T/c.npys.end\"))[\"space\"] == \"text\"
assert open(\"$T/c.ids\").read().split() == [str(i) for i in range(1, 7)]
'"
	ok "texts from stdin" sh -c "'$E' -m '$T/oc.safetensors' -t -b 4 \
	    <'$T/caps.txt' >'$T/c2.npys'"
	check "same bytes as from the file" 'cmp -s "$T/c.npys" "$T/c2.npys"'
	fails "routes of a dense model" 1 "$E" -m "$T/oc.safetensors" \
	    --routes "$T/o/dense.routes" -o "$T/o/dense.npy" "$O/test_image.png"
	check "no file left behind" '[ -z "$(ls "$T/o" | grep dense)" ]'
fi
finish
