#!/bin/sh
# cli-embed-wds.sh - vlm-embed on webdataset tar shards: an ImageFolder
# tree and a pairs file sharded by vlm-convert shard give the same
# vectors, in the same order, as the tree and the captions themselves,
# ids SHARD:KEY, also gzip-compressed and through a pipe: command; a
# truncated shard and a missing one are warned about by name, the
# samples before the cut kept, and the exit status is 1.
# Needs /usr/bin/python3 (standard library only: PNGs by zlib).
. tests/lib.sh

E=$BIN/vlm-embed
CV=$BIN/vlm-convert
PY=/usr/bin/python3
M=$T/moe.safetensors

if ! have_py "the shard embedding checks (all)" json zlib; then
	finish
	exit
fi
"$CV" init --seed 1 tiny-moe "$M" >/dev/null || fail "making tiny-moe"

# seven PNGs of odd sizes in two classes, a pairs file over them, and
# the model with a tokenizer (vlm-model(5) "tokenizer.merges")
$PY - "$T" "$M" <<'EOF' || fail "making the images and the model"
import json, os, struct, sys, zlib
d, m = sys.argv[1:]
def png(path, w, h, seed):
    raw = b''.join(b'\0' + bytes((x * 7 + y * seed + c * 50) % 256
                   for x in range(w) for c in range(3)) for y in range(h))
    def chunk(t, b):
        return (struct.pack('>I', len(b)) + t + b +
                struct.pack('>I', zlib.crc32(t + b) & 0xffffffff))
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' +
        chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) +
        chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
rows = ["filepath\ttitle"]
for i in range(7):
    c = 'ab'[i % 2]
    os.makedirs(f'{d}/f/{c}', exist_ok=True)
    png(f'{d}/f/{c}/{i}.png', 9 + 3 * i, 20 - i, i + 1)
    rows.append(f'f/{c}/{i}.png\tred {"re " * i}circle {i}')
open(f'{d}/pairs.tsv', 'w').write('\n'.join(rows) + '\n')
open(f'{d}/caps.txt', 'w').write(
    ''.join(r.split('\t')[1] + '\n' for r in rows[1:]))
b = open(m, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
h['__metadata__']['tokenizer.merges'] = '#version: 0.2\nr e\nre d</w>\n'
s = json.dumps(h).encode()
s += b' ' * (-len(s) % 8)
open(f'{d}/mt.safetensors', 'wb').write(struct.pack('<Q', len(s)) + s +
                                        b[8 + n:])
EOF

# same: the vectors of jsonl files $1 and $2 equal, row by row, and the
# ids of $2 are SHARD:KEY of shards $3/{0..}.tar, keys s0000000 ...
same() {
	$PY - "$@" <<'EOF'
import json, sys
a, b, d = sys.argv[1:]
ra = [json.loads(l) for l in open(a)]
rb = [json.loads(l) for l in open(b)]
va = [r['embedding'] for r in ra if 'embedding' in r]
vb = [r['embedding'] for r in rb if 'embedding' in r]
assert len(va) == 7 and len(vb) == 7, (len(va), len(vb))
assert va == vb, 'vectors differ'
ids = [r['id'] for r in rb if 'embedding' in r]
want = [f'{d}/{i // 3}.tar:s{i:07d}' for i in range(7)]
assert ids == want, (ids, want)
EOF
}

ok "shard the tree, 3 a shard" "$CV" shard -c 3 "$T/f" "$T/sf"
ok "embed the tree" "$E" -m "$M" --format jsonl -o "$T/f.jsonl" "$T/f"
ok "embed its shards" "$E" -m "$M" --format jsonl -o "$T/sf.jsonl" \
    "$T/sf/{0..2}.tar"
check "the same vectors in the same order; ids SHARD:KEY" \
    "same '$T/f.jsonl' '$T/sf.jsonl' '$T/sf'"
ok "shards as separate arguments" "$E" -m "$M" --format jsonl -o \
    "$T/sf2.jsonl" "$T/sf/0.tar" "$T/sf/{1,2}.tar"
check "the same again" "same '$T/f.jsonl' '$T/sf2.jsonl' '$T/sf'"

mkdir "$T/gz"
for k in 0 1 2; do gzip -c "$T/sf/$k.tar" >"$T/gz/$k.tar.gz"; done
ok "embed the shards gzip-compressed" "$E" -m "$M" --format jsonl \
    -o "$T/gz.jsonl" "$T/gz/{0..2}.tar.gz"
check "the same vectors" \
    "sed 's,/gz/\\([0-9]\\).tar.gz:,/sf/\\1.tar:,' '$T/gz.jsonl' >'$T/gz2.jsonl' &&
     same '$T/f.jsonl' '$T/gz2.jsonl' '$T/sf'"
ok "embed the shards through pipe:cat" "$E" -m "$M" --format jsonl \
    -o "$T/pipe.jsonl" "pipe:cat $T/sf/{0..2}.tar"
check "the same vectors" \
    "sed 's,pipe:cat ,,' '$T/pipe.jsonl' >'$T/pipe2.jsonl' &&
     same '$T/f.jsonl' '$T/pipe2.jsonl' '$T/sf'"
ok "shard the pairs file" "$CV" shard -c 3 "$T/pairs.tsv" "$T/sp"
ok "embed the captions" "$E" -m "$T/mt.safetensors" -t --format jsonl \
    -o "$T/c.jsonl" "$T/caps.txt"
ok "embed the shards' txt (-t)" "$E" -m "$T/mt.safetensors" -t \
    --format jsonl -o "$T/sp.jsonl" "$T/sp/{0..2}.tar"
check "the same text vectors; ids SHARD:KEY" \
    "same '$T/c.jsonl' '$T/sp.jsonl' '$T/sp'"

fails "-t on shards without txt (the tree's)" 1 "$E" -m "$T/mt.safetensors" \
    -t --format jsonl "$T/sf/0.tar"
check "each sample warned by shard and key" \
    "[ \$(grep -c \"'$T/sf/0.tar': s000000[012]: no 'txt'\" '$T/err') -eq 3 ]"

fails "shards and a folder mixed" 1 "$E" -m "$M" "$T/sf/0.tar" "$T/f"
check "one line naming it" \
    '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "f.: not a .tar shard" "$T/err"'

# shard 1 cut in its second image: s0000003 kept, s0000004 bad, 5 gone
# (in the cut shard); shard 3 missing
cp "$T/sf/0.tar" "$T/sf/2.tar" "$T/sf/1.tar" "$T"
off=$($PY -c "
import tarfile, sys
t = tarfile.open('$T/1.tar')
m = [x for x in t.getmembers() if x.name == 's0000004.png'][0]
print(m.offset_data + m.size // 2)")
head -c "$off" "$T/sf/1.tar" >"$T/1.tar"
# a batch an item: capacity-limited MoE routing depends on the batch
ok "embed the tree, -b 1" "$E" -m "$M" -b 1 --format jsonl -o "$T/f1.jsonl" \
    "$T/f"
fails "a truncated shard and a missing one" 1 "$E" -m "$M" -b 1 \
    --format jsonl -o "$T/bad.jsonl" "$T/{0..3}.tar"
check "the cut sample warned by shard and key" \
    "grep -q \"'$T/1.tar': s0000004: \" '$T/err'"
check "the missing shard warned by name" "grep -q \"'$T/3.tar'\" '$T/err'"
check "two warnings" '[ "$(wc -l <"$T/err")" -eq 2 ]'
check "the other samples embedded as from the tree" \
    "$PY - '$T' <<'EOF'
import json, sys
d = sys.argv[1]
f = [json.loads(l) for l in open(d + '/f1.jsonl')]
b = [json.loads(l) for l in open(d + '/bad.jsonl')]
ve = [r['embedding'] for r in f if 'embedding' in r]
got = [(r['id'], r['embedding']) for r in b if 'embedding' in r]
keep = [0, 1, 2, 3, 6]
want = [(f'{d}/{i // 3}.tar:s{i:07d}', ve[i]) for i in keep]
assert [g[0] for g in got] == [w[0] for w in want], [g[0] for g in got]
assert [g[1] for g in got] == [w[1] for w in want], 'vectors differ'
EOF"
fails "the same as a .npys stream" 1 sh -c "'$E' -m '$M' -b 1 -f \
    '$T/{0..3}.tar' >'$T/bad.npys'"
check "the end record lists the bad sample and shard" \
    "grep -aqF '\"failed\":[\"$T/1.tar:s0000004\",\"$T/3.tar\"]' '$T/bad.npys'"

finish
