#!/bin/sh
# cli-bad-inputs.sh - bad inputs end to end. Each must end in the
# expected exit status with one line naming the file and the problem, no
# crash, no hang (every run under timeout), bounded memory (under ulimit
# -v, and the peak RSS where /usr/bin/time measures it), and every good
# input of the same run still done: the files that once crashed vlm
# (tests/bad, see its README.md), then images, folders, texts and models
# made here with NumPy and PIL (those parts skip without /usr/bin/python3
# and both).
. tests/lib.sh

E=$BIN/vlm-embed
C=$BIN/vlm-convert
R=$BIN/vlm-route-stats
PY=/usr/bin/python3
B=tests/bad
VMEM=2000000 # KiB of address space: OpenBLAS alone reserves ~130 MB
RSSMAX=65536 # KiB of peak RSS for the stream readers
limits=1
if ! sh -c 'ulimit -v $1; "$2" --version' sh $VMEM "$C" >/dev/null 2>&1
then
	echo "# no memory limits: $C does not start under ulimit -v (ASan?)"
	VMEM=unlimited limits=0
fi

# run CMD...: under the limits; the exit status ($T/out, $T/err)
run() {
	(ulimit -v $VMEM; exec timeout 60 "$@") >"$T/out" 2>"$T/err"
}

# one NAME STATUS FILE MSG CMD...: exits STATUS with exactly one line on
# stderr that names FILE and says MSG
one() {
	name=$1; want=$2; file=$3; msg=$4; shift 4
	run "$@"
	got=$?
	if [ "$got" = "$want" ] && [ "$(wc -l <"$T/err")" -eq 1 ] &&
	    grep -qF -- "'$file'" "$T/err" && grep -qF -- "$msg" "$T/err"; then
		pass "$name"
	else
		fail "$name (exit $got, want $want and one line with '$msg')"
		sed 's/^/#   /' "$T/err" | head -5
	fi
}

# peak NAME CMD...: the peak RSS of CMD stays under RSSMAX KiB
peak() {
	name=$1; shift
	if [ ! -x /usr/bin/time ] || [ $limits = 0 ]; then
		echo "# skipping '$name': no /usr/bin/time or no limits"
		return
	fi
	(ulimit -v $VMEM; exec /usr/bin/time -f %M -o "$T/rss" \
	    timeout 60 "$@") >/dev/null 2>&1
	check "$name (peak RSS $(tail -1 "$T/rss") KiB)" \
	    '[ "$(tail -1 "$T/rss")" -lt $RSSMAX ]'
}

# ---- the files that crashed vlm --------------------------------------------

one "grid 0: refused, no SIGFPE" 1 "$B/grid0.routes" \
    'missing or bad "grid" in the metadata' \
    "$R" --tsv --positions "$B/grid0.routes"
one "a label of 134217728: refused, no class table of gigabytes" 1 \
    "$B/huge-label.routes" 'example 1 has label 134217728' \
    "$R" "$B/huge-label.routes"
peak "huge-label.routes in bounded memory" "$R" "$B/huge-label.routes"
mkdir "$T/pack"
one "'<U0' ids: refused" 1 "$B/u0-ids-50M.npys" "zero-width string dtype" \
    "$C" pack "$B/u0-ids-50M.npys" "$T/pack/out.npy"
check "nothing written" '[ -z "$(ls "$T/pack")" ]'
peak "u0-ids-50M.npys in bounded memory" \
    "$C" pack "$B/u0-ids-50M.npys" "$T/pack/out.npy"
one "'<U0' ids from a pipe: refused" 1 "<stdin>" "zero-width" \
    sh -c "cat '$B/u0-ids-50M.npys' | '$C' pack - '$T/pack/out.npy'"

# ids claiming 50M rows of '<U1' (200 MB) in a 312-byte stream: refused
# from the file's size before allocating; from a pipe, memory grows only
# with the data that comes
head -c 180 "$B/u0-ids-50M.npys" >"$T/claim.npys"
printf '\223NUMPY\001\000v\000%-117s\n' \
    "{'descr': '<U1', 'fortran_order': False, 'shape': (50000000,), }" \
    >>"$T/claim.npys"
printf 'abcd' >>"$T/claim.npys"
one "a shape bigger than the file: refused" 1 "$T/claim.npys" \
    "truncated data (the header claims 200000000 bytes, 4 remain" \
    "$C" pack "$T/claim.npys" "$T/pack/out.npy"
one "the same from a pipe: truncated" 1 "<stdin>" "truncated data" \
    sh -c "cat '$T/claim.npys' | '$C' pack - '$T/pack/out.npy'"
peak "the pipe in bounded memory" sh -c \
    "cat '$T/claim.npys' | '$C' pack - '$T/pack/out.npy'"
check "still nothing written" '[ -z "$(ls "$T/pack")" ]'

if ! $PY -c 'import numpy, PIL' 2>/dev/null; then
	echo "# skipping the rest: $PY lacks numpy or PIL"
	finish
	exit
fi

# ---- images ----------------------------------------------------------------

M=$T/moe.safetensors
"$C" init --seed 1 tiny-moe "$M" >/dev/null || fail "making the model"

# imgs/: two good images and every kind of bad one (names in bad.txt,
# each with the message it must get); flips/: single bit flips anywhere
# in a PNG and a JPEG; pil/: PNG colour types with PIL's decoding of each
$PY - "$T" <<'EOF' || fail "making the images"
import io, os, struct, sys, warnings, zlib
import numpy as np
from PIL import Image
d = sys.argv[1]
r = np.random.default_rng(5)
warnings.simplefilter('ignore')  # PIL on the palette with tRNS
for sub in ('imgs/dir.png', 'imgs/sub', 'flips', 'pil'):
    os.makedirs(f'{d}/{sub}')
def rgb(h, w):
    return Image.fromarray(r.integers(0, 256, (h, w, 3), np.uint8))
def put(name, b):
    open(f'{d}/imgs/{name}', 'wb').write(b)
rgb(40, 36).save(f'{d}/imgs/good.png')
rgb(30, 50).save(f'{d}/imgs/sub/good.jpg', quality=90)
png = open(f'{d}/imgs/good.png', 'rb').read()
jpg = open(f'{d}/imgs/sub/good.jpg', 'rb').read()
bad = []
put('trunc.png', png[:len(png) // 2])
bad.append(('trunc.png', 'truncated PNG'))
put('trunc.jpg', jpg[:len(jpg) // 2])
bad.append(('trunc.jpg', 'truncated JPEG'))
b = bytearray(png); b[len(b) // 2] ^= 0x10
put('flip.png', bytes(b)); bad.append(('flip.png', 'corrupt PNG'))
b = bytearray(jpg); sof = b.find(b'\xff\xc0'); b[sof + 4] ^= 1 # precision 9
put('flip.jpg', bytes(b)); bad.append(('flip.jpg', 'corrupt JPEG'))
# a progressive JPEG whose last scan comes 5000 times
bio = io.BytesIO()
rgb(32, 32).save(bio, 'JPEG', progressive=True)
p = bio.getvalue()
last = p[p.rfind(b'\xff\xda'):-2]
put('scans.jpg', p[:-2] + last * 5000 + b'\xff\xd9')
bad.append(('scans.jpg', 'too many progressive scans'))
def chunk(t, x):
    return struct.pack('>I', len(x)) + t + x + \
        struct.pack('>I', zlib.crc32(t + x))
put('huge.png', b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB',
    100000, 100000, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(
    b'\0' * 3001)) + chunk(b'IEND', b''))
bad.append(('huge.png', 'image too large (100000x100000'))
os.symlink('loop2.png', f'{d}/imgs/loop1.png')
os.symlink('loop1.png', f'{d}/imgs/loop2.png')
bad += [('loop1.png', 'Too many levels'), ('loop2.png', 'Too many levels')]
os.symlink('..', f'{d}/imgs/sub/back')
bad.append(('sub/back/', 'directory loop'))
put('empty.png', b'')                        # not an image: passed over
os.mkfifo(f'{d}/imgs/fifo.png')              # passed over unopened
rgb(20, 20).save(os.fsdecode(f'{d}/imgs/'.encode() + b'caf\xe9.png'),
    'PNG')
bad.append(('caf\udce9.png', 'name is not valid UTF-8'))
rgb(24, 24).save(f'{d}/imgs/locked.png')
with open(f'{d}/bad.txt', 'w', errors='surrogateescape') as f:
    for n, m in bad:
        f.write(f'{n}\t{m}\n')
# 16 flips in each of a PNG and a JPEG, at seeded positions after the
# signature
for src, ext in ((png, 'png'), (jpg, 'jpg')):
    for i in range(16):
        b = bytearray(src)
        k = int(r.integers(8, len(b)))
        b[k] ^= 1 << int(r.integers(0, 8))
        open(f'{d}/flips/{i:02d}.{ext}', 'wb').write(bytes(b))
# PNG colour types as the model sees them (32x32, no resampling), and
# PIL's convert('RGB') of each as 8-bit RGB (16-bit gray, PIL's mode "I",
# clipped to 0..255 as vlm does too: libcore/data/image-png.c)
def write_png(name, w, h, ct, depth, rows, plte=None, trns=None):
    raw = b''.join(b'\0' + row for row in rows)
    out = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB',
        w, h, depth, ct, 0, 0, 0))
    if plte:
        out += chunk(b'PLTE', plte)
    if trns:
        out += chunk(b'tRNS', trns)
    out += chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
    open(f'{d}/pil/{name}.png', 'wb').write(out)
def bits(v, depth):  # (h, w) values of `depth` bits into packed rows
    n = 8 // depth
    v = np.pad(v, ((0, 0), (0, -v.shape[1] % n)))
    v = v.reshape(v.shape[0], -1, n)
    return [bytes((v[y] << (8 - depth * (1 + np.arange(n)))).sum(1)
        .astype(np.uint8)) for y in range(v.shape[0])]
S = 32
w16 = lambda a: [a[y].astype('>u2').tobytes() for y in range(S)]
write_png('rgb16', S, S, 2, 16, w16(r.integers(0, 65536, (S, S * 3))))
write_png('rgba16', S, S, 6, 16, w16(r.integers(0, 65536, (S, S * 4))))
g16 = r.integers(0, 65536, (S, S))
write_png('gray16', S, S, 0, 16, w16(g16))
for depth in (1, 2, 4):
    write_png(f'gray{depth}', S, S, 0, depth,
        bits(r.integers(0, 1 << depth, (S, S)), depth))
pal = bytes(r.integers(0, 256, 16 * 3, np.uint8))
write_png('pal4-trns', S, S, 3, 4, bits(r.integers(0, 16, (S, S)), 4),
    pal, bytes(r.integers(0, 256, 5, np.uint8)))
Image.fromarray(r.integers(0, 256, (S, S), np.uint8)).convert(
    'P', palette=Image.ADAPTIVE, colors=50).save(f'{d}/pil/pal8.png')
for f in sorted(os.listdir(f'{d}/pil')):
    im = Image.open(f'{d}/pil/{f}')
    ref = im.convert('RGB')
    if f == 'gray16.png':  # mode I, clipped to 0..255 by convert
        assert im.mode in ('I', 'I;16'), im.mode
        assert ref.getextrema()[0] == (min(g16.min(), 255), 255)
    ref.save(f'{d}/pil/{f[:-4]}.ref.png')
EOF

I=$T/imgs
chmod 000 "$I/locked.png"
if cat "$I/locked.png" >/dev/null 2>&1; then
	echo "# skipping the unreadable file: $(id -un) reads mode 000 files"
	good="good.png locked.png sub/good.jpg"
else
	printf 'locked.png\tPermission denied\n' >>"$T/bad.txt"
	good="good.png sub/good.jpg"
fi
run "$E" -m "$M" --format jsonl "$I"
st=$?
check "a folder of bad images: exit 1 (got $st)" '[ $st -eq 1 ]'
check "the good images embedded, nothing else" "$PY -c '
import json, sys
ids = [json.loads(l)[\"id\"] for l in open(\"$T/out\")]
want = [\"$I/\" + n for n in \"$good\".split()]
assert ids == want, ids
'"
# each bad image: one line naming it and the problem
while IFS='	' read -r n msg; do
	check "'$n': $msg" "[ \"\$(LC_ALL=C grep -F \"'$I/$n'\" \"$T/err\" |
	    LC_ALL=C grep -cF \"$msg\")\" -eq 1 ]"
done <"$T/bad.txt"
check "the empty file and the FIFO passed over" \
    "grep -q '^vlm-embed: passed over 2 non-image files$' '$T/err'"
check "no other line" \
    '[ "$(wc -l <"$T/err")" -eq "$(($(wc -l <"$T/bad.txt") + 1))" ]'

one "a zero-byte file named on the command line" 1 "$I/empty.png" \
    "empty file" "$E" -m "$M" "$I/empty.png"
run "$E" -m "$M" --format jsonl "$I/dir.png"
st=$?
check "a directory named like an image: walked, holding nothing" \
    '[ $st -eq 0 ] && [ ! -s "$T/out" ] && [ ! -s "$T/err" ]'
mkfifo "$T/fifo.png"
timeout 60 sh -c 'cat "$1" >"$2"' sh "$I/good.png" "$T/fifo.png" &
run "$E" -m "$M" --format jsonl "$T/fifo.png"
st=$?
wait
check "a FIFO named on the command line: read and embedded" \
    '[ $st -eq 0 ] && [ "$(wc -l <"$T/out")" -eq 1 ]'
run "$R" -m "$M" --images "$I" -o "$T/bad.routes"
st=$?
check "vlm-route-stats over the folder: exit 1 (got $st)" '[ $st -eq 1 ]'
check "each bad image named" \
    '[ "$(grep -c "^vlm-route-stats: '"'$I/"'" "$T/err")" -eq \
    "$(wc -l <"$T/bad.txt")" ]'
ngood=$(echo $good | wc -w)
check "the records of the $ngood good images written" \
    "'$R' '$T/bad.routes' | grep -q ': 1 batches, $ngood images, 0 texts'"

run "$E" -m "$M" --format jsonl "$T/flips"
st=$?
check "32 bit flips: no crash (exit $st)" '[ $st -le 1 ]'
check "each flipped file embedded or named once" "$PY -c '
import json, os
ids = [json.loads(l)[\"id\"] for l in open(\"$T/out\")]
err = open(\"$T/err\").read().splitlines()
d = \"$T/flips\"
for f in sorted(os.listdir(d)):
    p = os.path.join(d, f)
    n = sum(l.startswith(\"vlm-embed: \" + chr(39) + p + chr(39)) for l in err)
    assert (p in ids) + n == 1, (p, p in ids, n)
assert len(err) == 32 - len(ids), err
'"

run "$E" -m "$M" -b 1 --format jsonl "$T/pil"
st=$?
check "PNG colour types: all embedded (exit $st)" '[ $st -eq 0 ]'
check "each as PIL decodes it (16-bit gray clipped)" "$PY -c '
import json
v = {}
for l in open(\"$T/out\"):
    j = json.loads(l)
    v[j[\"id\"].split(\"/\")[-1]] = j[\"embedding\"]
n = [k for k in v if not k.endswith(\".ref.png\")]
assert len(n) == 8, sorted(v)
for k in n:
    assert v[k] == v[k[:-4] + \".ref.png\"], k
'"

# ---- texts and models -----------------------------------------------------

# mt: a small tokenizer in the metadata; big: 9514 tokens for a vocabulary
# of 8192; nan: a NaN weight; huge: weights that overflow the features
$PY - "$M" "$T" <<'EOF' || fail "making the models"
import json, struct, sys
import numpy as np
src, d = sys.argv[1], sys.argv[2]
b = open(src, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
def save(name, merges=None, proj=None):
    hh = json.loads(json.dumps(h))
    if merges:
        hh['__metadata__']['tokenizer.merges'] = merges
    s = json.dumps(hh).encode()
    s += b' ' * (-len(s) % 8)
    data = bytearray(b[8 + n:])
    if proj:
        o0, o1 = h['visual.proj']['data_offsets']
        w = np.frombuffer(data[o0:o1], '<f4').copy()
        data[o0:o1] = proj(w).astype('<f4').tobytes()
    open(f'{d}/{name}.safetensors', 'wb').write(
        struct.pack('<Q', len(s)) + s + bytes(data))
save('mt', '#version: 0.2\nr e\nre d</w>\n')
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
u = [chr(c) for c in bs]
big = '#version: 0.2\n' + ''.join(f'{x} {y}\n' for x in u[:100]
    for y in u[:90])
save('big', big)
open(f'{d}/big-merges.txt', 'w').write(big)
def nan(w):
    w[7] = np.nan
    return w
save('nan', proj=nan)
save('huge', proj=lambda w: np.full_like(w, 3e38))
EOF

{
	printf 'a red circle\n\377\376 red\n\357\277\275\357\277\275 red\n'
	$PY -c "print('red ' * 262144)"
	$PY -c "print('red ' * 40)"
} >"$T/texts.txt"
run "$E" -m "$T/mt.safetensors" -t --format jsonl "$T/texts.txt"
st=$?
check "texts: a 1 MB line and invalid UTF-8 embedded (exit $st)" \
    '[ $st -eq 0 ] && [ ! -s "$T/err" ]'
check "invalid bytes read as U+FFFD; the long line cut at the context" \
    "$PY -c '
import json
v = [json.loads(l)[\"embedding\"] for l in open(\"$T/out\")]
assert len(v) == 5 and v[1] == v[2] and v[3] == v[4] and v[0] != v[1]
'"
RSSMAX=262144 peak "a 1 MB line in bounded memory" \
    "$E" -m "$T/mt.safetensors" -t --format jsonl "$T/texts.txt"

one "a tokenizer bigger than the model's vocabulary" 1 \
    "$T/big.safetensors" \
    "tokenizer has 9514 tokens, the model's vocabulary only 8192" \
    "$E" -m "$T/big.safetensors" -t "$T/texts.txt"
check "no output" '[ ! -s "$T/out" ]'
one "NaN in the weights: refused" 1 "$T/nan.safetensors" \
    "parameter 'visual.proj' holds NaN or infinity (element 7)" \
    "$E" -m "$T/nan.safetensors" "$I/good.png"
check "no output" '[ ! -s "$T/out" ]'
"$C" init --seed 1 tiny "$T/dense.safetensors" >/dev/null ||
    fail "making a dense model"
one "importing a tokenizer bigger than the vocabulary" 1 \
    "$T/big-merges.txt" "9514 tokens, the model's vocabulary only 8192" \
    "$C" import -t "$T/big-merges.txt" "$T/dense.safetensors" \
    "$T/imported.safetensors"
check "nothing written" '[ ! -e "$T/imported.safetensors" ]'
head -c 100000000 /dev/zero | gzip -1 >"$T/bomb.gz"
one "a gzip bomb for a tokenizer" 1 "$T/bomb.gz" "more than 64 MB of text" \
    sh -c "echo hi | '$C' tokenize -m '$T/bomb.gz'"
RSSMAX=262144 peak "the bomb in bounded memory" \
    "$C" tokenize -m "$T/bomb.gz"

# pairs: a good image, a bad caption, a directory, a missing file, a 1 MB
# caption, rows with too few and too many fields
mkdir -p "$T/ev/d.png" && cp "$I/good.png" "$T/ev/a.png" &&
    cp "$I/sub/good.jpg" "$T/ev/b.jpg"
{
	printf 'filepath\ttitle\n%s\ta red thing\n' "$T/ev/a.png"
	printf '%s\t\377 bad caption\n%s\ta dir\n' "$T/ev/b.jpg" "$T/ev/d.png"
	printf '%s\tmissing\n%s\t' "$T/ev/none.png" "$T/ev/a.png"
	$PY -c "print('red ' * 262144)"
	printf '%s\n%s\tx\ty\n' "$T/ev/b.jpg" "$T/ev/b.jpg"
} >"$T/pairs.tsv"
run "$BIN/vlm-eval" retrieval -m "$T/mt.safetensors" --pairs "$T/pairs.tsv"
st=$?
check "vlm-eval retrieval over bad pairs: exit 1 (got $st)" '[ $st -eq 1 ]'
check "each bad row named once" "grep -q 'pairs.tsv:7: 1 fields' '$T/err' &&
    grep -q 'pairs.tsv:8: 3 fields' '$T/err' &&
    grep -q \"'$T/ev/d.png': Is a directory\" '$T/err' &&
    grep -q \"'$T/ev/none.png': No such file\" '$T/err' &&
    [ \$(wc -l <'$T/err') -eq 4 ]"
check "the metrics of the other three" \
    "grep -q '^text_retrieval_recall@10 *1.000000' '$T/out'"

# an ImageFolder with a symlink loop and a FIFO among its images
F=$T/folder
mkdir -p "$F/a" "$F/b" && cp "$I/good.png" "$F/a/" &&
    cp "$I/sub/good.jpg" "$F/b/" && ln -s loop.png "$F/a/loop.png" &&
    mkfifo "$F/b/fifo.png"
one "vlm-eval zeroshot over the ImageFolder" 1 "$F/a/loop.png" \
    "Too many levels of symbolic links" \
    "$BIN/vlm-eval" zeroshot -m "$T/mt.safetensors" --images "$F"
check "the two images scored" "grep -q '^acc1 ' '$T/out'"
one "vlm-route-stats over it" 1 "$F/a/loop.png" \
    "Too many levels of symbolic links" \
    "$R" -m "$M" --images "$F" -o "$T/folder.routes"
check "the records of the two images written" \
    "'$R' '$T/folder.routes' | grep -q ': 1 batches, 2 images, 0 texts'"

mkdir -p "$T/set/a" && cp "$I/good.png" "$T/set/a/"
one "the same for vlm-eval" 1 "$T/nan.safetensors" \
    "parameter 'visual.proj' holds NaN" \
    "$BIN/vlm-eval" zeroshot -m "$T/nan.safetensors" --images "$T/set"
run "$E" -m "$T/huge.safetensors" --format jsonl "$I/good.png" \
    "$I/sub/good.jpg"
st=$?
check "features that overflow: exit 1 (got $st), no vectors" \
    '[ $st -eq 1 ] && [ ! -s "$T/out" ]'
check "each image named: not finite" \
    '[ "$(grep -c "the embedding is not finite" "$T/err")" -eq 2 ]'

finish
