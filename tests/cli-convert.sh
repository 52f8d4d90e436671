#!/bin/sh
# cli-convert.sh - vlm-convert info and cast: usage and exit statuses, the
# OpenCLIP fixture, an f32 -> f16 -> f32 round trip checked value by value
# against NumPy, and one crafted bad file per safetensors rule (exit 1,
# one line naming the file, no output left behind).
. tests/lib.sh
export LC_ALL=C
C=$BIN/vlm-convert
W=$FIX/openclip-tiny/weights.openclip.safetensors

ok "--help" $C --help
check "--help shows cast" 'grep -q "vlm-convert cast --dtype" "$T/out"'
ok "info --help" $C info --help
ok "cast -h" $C cast -h
fails "bad option" 2 $C --bogus
fails "info: bad option" 2 $C info --bogus "$W"
fails "info: no file" 2 $C info
fails "info: two files" 2 $C info "$W" "$W"
fails "cast: bad option" 2 $C cast --bogus a b
fails "cast: unknown dtype" 2 $C cast --dtype i32 a b
fails "cast: no dtype" 2 $C cast a b
fails "cast: one operand" 2 $C cast --dtype f16 a

# u64le N: N as 8 little-endian bytes
u64le() {
	n=$1 i=0
	while [ $i -lt 8 ]; do
		printf "\\$(printf %o $((n % 256)))"
		n=$((n / 256)) i=$((i + 1))
	done
}
# mk NAME JSON NDATA [CLAIM]: a crafted file $T/NAME.safetensors
mk() {
	{ u64le "${4:-${#2}}"; printf '%s' "$2"; head -c "$3" /dev/zero; } \
		>"$T/$1.safetensors"
}
t() { printf '"%s":{"dtype":"%s","shape":%s,"data_offsets":[%s,%s]}' "$@"; }

mk truncated "{$(t a F32 '[4]' 0 16)}" 8
mk past-eof '{}' 0 1000
mk huge-header '{}' 0 200000000
mk overlap "{$(t a F32 '[4]' 0 16),$(t b F32 '[4]' 8 24)}" 24
mk gap "{$(t a F32 '[4]' 0 16),$(t b F32 '[4]' 20 36)}" 36
mk trailing "{$(t a F32 '[4]' 0 16)}" 24
mk dtype "{$(t a Q4 '[4]' 0 4)}" 4
mk negative "{$(t a F32 '[-1,4]' 0 16)}" 16
mk overflow "{$(t a F32 '[4294967296,4294967296,4]' 0 0)}" 0
mk size "{$(t a F32 '[4]' 0 8)}" 8
mk utf8 "{$(t "$(printf 'a\377')" U8 '[1]' 0 1)}" 1
mk duplicate "{$(t a U8 '[1]' 0 1),$(t a U8 '[1]' 1 2)}" 2
mk deep "{\"__metadata__\":{\"k\":$(printf '%100s' | tr ' ' '[')$(
	printf '%100s' | tr ' ' ']')}}" 0
mk meta '{"__metadata__":{"k":1}}' 0
mk short '' 0
for f in "$T"/*.safetensors; do
	b=${f##*/}
	fails "info $b" 1 $C info "$f"
	check "info $b: one line naming it" \
		'[ "$(wc -l <"$T/err")" -eq 1 ] && grep -qF "$f" "$T/err"'
	fails "cast $b" 1 $C cast --dtype f16 "$f" "$T/o.st"
	check "cast $b: one line, no output" '[ "$(wc -l <"$T/err")" -eq 1 ] &&
		grep -qF "$f" "$T/err" && [ -z "$(ls "$T" | grep -F o.st)" ]'
done
rm -f "$T"/*.safetensors

# only float tensors change dtype
mk mixed "{$(t a F32 '[2]' 0 8),$(t b I64 '[1]' 8 16),$(t c U8 '[3]' 16 19)}" 19
ok "cast mixed dtypes" $C cast --dtype bf16 "$T/mixed.safetensors" "$T/m.st"
ok "info mixed" $C info "$T/m.st"
check "floats cast, integers kept" 'grep -q "^a  *BF16 *\[2\]$" "$T/out" &&
	grep -q "^b  *I64 *\[1\]$" "$T/out" && grep -q "^c  *U8 *\[3\]$" "$T/out"'
rm -f "$T/mixed.safetensors"

echo junk >"$T/model.pt"
fails "pickle refused" 1 $C info "$T/model.pt"
check "pickle: names the safetensors route" 'grep -q safetensors "$T/err"'
fails "missing file" 1 $C info "$T/nope.safetensors"
fails "cast to a missing directory" 1 $C cast --dtype f16 "$W" "$T/no/o.st"

have_fixtures "the checks on the OpenCLIP fixture" || { finish; exit; }

ok "info fixture" $C info "$W"
n=$(sed -n 's/.*"n_params": *\([0-9]*\).*/\1/p' \
	"$FIX/openclip-tiny/manifest.json")
check "parameters as manifest.json ($n)" 'grep -qx "parameters: $n" "$T/out"'
check "62 tensors" '[ "$(grep -c " F32 " "$T/out")" -eq 62 ] &&
	grep -qx "tensors: 62" "$T/out"'
check "long metadata cut to one line" \
	'grep -q "^  open_clip_config: {.*\.\.\. ([0-9]* bytes)$" "$T/out"'
cp "$T/out" "$T/info.txt"
ok "info from stdin" sh -c "$C info - <'$W'"
check "stdin: same output" 'cmp -s "$T/out" "$T/info.txt"'
ok "info from a pipe" sh -c "cat '$W' | $C info -"
check "pipe: same output" 'cmp -s "$T/out" "$T/info.txt"'
fails "info to /dev/full" 1 sh -c "$C info '$W' >/dev/full"

ok "cast f16" $C cast --dtype f16 "$W" "$T/h.st"
ok "info f16" $C info "$T/h.st"
check "all F16, parameters kept" '[ "$(grep -c " F16 " "$T/out")" -eq 62 ] &&
	grep -qx "parameters: $n" "$T/out"'
check "metadata kept" 'grep -q "^  model: Tiny-RefTest$" "$T/out"'
ok "cast f16 to stdout" sh -c "$C cast --dtype f16 '$W' - >'$T/h2.st'"
check "stdout: same bytes" 'cmp -s "$T/h.st" "$T/h2.st"'
ok "cast back f32" $C cast --dtype f32 "$T/h.st" "$T/f.st"
ok "cast bf16" $C cast --dtype bf16 "$W" "$T/b.st"
check "no temporaries left" '[ -z "$(ls "$T" | grep tmp)" ]'

if /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
	# f16 bits as NumPy rounds them; back to f32 exactly; bf16 within
	# half an ulp (2^-8 relative); metadata equal
	ok "values match NumPy" /usr/bin/python3 - "$W" "$T/h.st" "$T/f.st" \
		"$T/b.st" <<'EOF'
import json, struct, sys
import numpy as np
def load(p):
    raw = open(p, 'rb').read()
    n, = struct.unpack('<Q', raw[:8])
    h = json.loads(raw[8:8 + n])
    m = h.pop('__metadata__', {})
    dt = {'F32': '<f4', 'F16': '<f2', 'BF16': '<u2'}
    return m, {k: np.frombuffer(raw[8 + n + v['data_offsets'][0]:
               8 + n + v['data_offsets'][1]], dt[v['dtype']])
               for k, v in h.items()}
m0, w = load(sys.argv[1])
m1, h = load(sys.argv[2])
m2, f = load(sys.argv[3])
m3, b = load(sys.argv[4])
assert m0 == m1 == m2 == m3 and set(w) == set(h) == set(f) == set(b)
for k in w:
    assert (h[k].view('<u2') == w[k].astype('<f2').view('<u2')).all(), k
    assert (f[k] == w[k].astype('<f2').astype('<f4')).all(), k
    bb = (b[k].astype('<u4') << 16).view('<f4')
    assert (abs(bb - w[k]) <= abs(w[k]) * 2.0**-8).all(), k
EOF
else
	skip "values match NumPy" "/usr/bin/python3 lacks numpy"
fi

finish
