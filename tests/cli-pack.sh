#!/bin/sh
# cli-pack.sh - vlm-convert pack: an embedding stream (.npys) in, the
# packed form (OUT.npy, OUT.ids.npy, OUT.json) out. NumPy makes the
# streams and checks the result; those parts skip without it.
. tests/lib.sh
VC=$BIN/vlm-convert
PY=/usr/bin/python3
O=$T/o
mkdir -p "$O"

# bad NAME FILE: exit 1, one line on stderr naming FILE, nothing in $O
bad() {
	f=$2
	fails "$1: exit 1" 1 "$VC" pack "$f" "$O/out.npy"
	check "$1: one line naming the file" \
	    '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -qF -- "$f" "$T/err"'
	check "$1: no output left" '[ -z "$(ls -A "$O")" ]'
}

fails "no operands" 2 "$VC" pack
fails "one operand" 2 "$VC" pack x.npys
fails "three operands" 2 "$VC" pack x.npys y.npy z
fails "output on stdout" 2 "$VC" pack x.npys -
ok "help" "$VC" pack -h
check "help shows pack" 'grep -q "pack in.npys out.npy" "$T/out"'
bad "missing input" "$T/nonexistent.npys"
bad "empty input" /dev/null
printf 'hello, world\n' >"$T/hello.npys"
bad "not a stream" "$T/hello.npys"
fails "garbage on stdin" 1 sh -c "\"$VC\" pack - \"$O/out.npy\" <\"$T/hello.npys\""
check "stdin named" 'grep -q "<stdin>" "$T/err" && [ -z "$(ls -A "$O")" ]'

if ! have_py "the NumPy parts (the rest)" numpy; then
	finish
	exit
fi

# good.npys (7 rows in batches of 3, 0 and 4), big.npys, and bad streams
$PY - "$T" <<'EOF' || fail "making streams with numpy"
import json, sys, numpy as np
d = sys.argv[1]
ids = ['a.png', 'caf\u00e9.jpg', '\u65e5\u672c.png', '\U0001F600', '', 'x', 'y']
def js(f, o):
    np.save(f, np.frombuffer(json.dumps(o).encode(), np.uint8))
def vec(r0, k, dim=4):
    return (np.arange(r0 * dim, (r0 + k) * dim) * 0.25 - 3).astype(
        np.float32).reshape(k, dim)
META = {'format': 'vlm-embeddings', 'version': 1, 'model': 'm', 'dim': 4,
        'space': 'image', 'normalized': True}
def stream(name, end=True, rows=7, ids_of=lambda a: np.array(a),
           vec_of=lambda v: v, extra=None):
    with open(f'{d}/{name}', 'wb') as f:
        js(f, META)
        r0 = 0
        for k in (3, 0, 4):
            if k:
                np.save(f, ids_of(ids[r0:r0 + k]), allow_pickle=True)
                np.save(f, vec_of(vec(r0, k)))
            r0 += k
        if end:
            js(f, dict({'end': True, 'rows': rows}, **(extra or {})))
stream('good.npys', extra={'failed': ['broken.png']})
stream('noend.npys', end=False)
stream('rows.npys', rows=8)
stream('object.npys', ids_of=lambda a: np.array(a, object))
stream('fortran.npys', vec_of=lambda v: np.asfortranarray(v))
stream('dim.npys', vec_of=lambda v: v[:, :3])
stream('f8.npys', vec_of=lambda v: v.astype(np.float64))
g = open(f'{d}/good.npys', 'rb').read()
open(f'{d}/header.npys', 'wb').write(g.replace(b"'shape'", b"'shope'", 2))
open(f'{d}/cut.npys', 'wb').write(g[:len(g) - 200])
with open(f'{d}/big.npys', 'wb') as f:
    js(f, dict(META, dim=64))
    for b in range(20):
        np.save(f, np.array([f'r{i}' for i in range(b * 100, b * 100 + 100)]))
        np.save(f, np.ones((100, 64), np.float32))
    js(f, {'end': True, 'rows': 2000})
EOF

ok "pack" "$VC" pack "$T/good.npys" "$T/emb.npy"
check "nothing on stdout" '[ ! -s "$T/out" ]'
check "ids and json beside it" '[ -f "$T/emb.ids.npy" ] && [ -f "$T/emb.json" ]'
check "no temporaries left" '[ -z "$(ls "$T" | grep tmp)" ]'
ok "numpy reads the packed form" $PY - "$T" <<'EOF'
import json, sys, numpy as np
d = sys.argv[1]
a = np.load(f'{d}/emb.npy')
m = np.load(f'{d}/emb.npy', mmap_mode='r')
want = (np.arange(28) * 0.25 - 3).astype(np.float32).reshape(7, 4)
assert a.dtype.str == '<f4' and a.shape == (7, 4), (a.dtype, a.shape)
assert (a == want).all() and (np.asarray(m) == want).all()
ids = np.load(f'{d}/emb.ids.npy')
assert list(ids) == ['a.png', 'caf\u00e9.jpg', '\u65e5\u672c.png',
                     '\U0001F600', '', 'x', 'y'], list(ids)
meta = json.load(open(f'{d}/emb.json'))
assert meta == {'format': 'vlm-embeddings', 'version': 1, 'model': 'm',
                'dim': 4, 'space': 'image', 'normalized': True,
                'rows': 7, 'failed': ['broken.png']}, meta
EOF
ok "pack from stdin" sh -c "\"$VC\" pack - \"$O/emb.npy\" <\"$T/good.npys\""
check "stdin gives the same files" 'cmp -s "$T/emb.npy" "$O/emb.npy" &&
    cmp -s "$T/emb.ids.npy" "$O/emb.ids.npy" &&
    cmp -s "$T/emb.json" "$O/emb.json"'
ok "pack over an old packed file" "$VC" pack "$T/big.npys" "$O/emb.npy"
check "old one replaced" '$PY -c "import numpy as np, sys
assert np.load(sys.argv[1], mmap_mode=\"r\").shape == (2000, 64)
assert len(np.load(sys.argv[2])) == 2000" "$O/emb.npy" "$O/emb.ids.npy"'
rm -f "$O"/*

bad "no end record" "$T/noend.npys"
check "says truncated" 'grep -q "truncated stream" "$T/err"'
bad "truncated data" "$T/cut.npys"
check "says truncated" 'grep -q "truncated" "$T/err"'
bad "rows mismatch" "$T/rows.npys"
check "says the counts" 'grep -q "says 8 rows, the stream holds 7" "$T/err"'
bad "object dtype" "$T/object.npys"
check "says object" 'grep -q "object arrays" "$T/err"'
bad "fortran order" "$T/fortran.npys"
check "says fortran" 'grep -q "fortran_order" "$T/err"'
bad "bad header" "$T/header.npys"
check "says malformed" 'grep -q "malformed .npy header" "$T/err"'
bad "wrong dim" "$T/dim.npys"
bad "float64 vectors" "$T/f8.npys"
fails "truncated on stdin" 1 sh -c "\"$VC\" pack - \"$O/out.npy\" <\"$T/cut.npys\""
check "stdin truncation leaves nothing" '[ -z "$(ls -A "$O")" ]'

fails "/dev/full as output" 1 "$VC" pack "$T/good.npys" /dev/full
check "/dev/full untouched" '[ -c /dev/full ] && ! ls /dev/full?* 2>/dev/null'
# a write that fails midway (file size limit): exit 1, nothing left
fails "write error" 1 sh -c "trap '' XFSZ; ulimit -f 16;
    exec \"$VC\" pack \"$T/big.npys\" \"$O/out.npy\""
check "write error named" 'grep -q "out.npy" "$T/err"'
check "write error leaves nothing" '[ -z "$(ls -A "$O")" ]'
finish
