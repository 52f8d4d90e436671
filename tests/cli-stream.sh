#!/bin/sh
# cli-stream.sh - vlm-train --shuffle-buffer: shards read sequentially.
# Streamed with a buffer of one and the shards as named, shards, their
# gzip-compressed form, a pipe: command and the pairs file they came
# from give identical checkpoints; a run stopped in the middle of a
# shard (buffer 7, shards shuffled) resumes bit-identically; a failing
# pipe: command is named; peak memory does not grow with the number of
# samples streamed. (Mixing and bad shards, streamed: cli-wds.sh.)
. tests/lib.sh

TR=$BIN/vlm-train
CV=$BIN/vlm-convert
PY=/usr/bin/python3

fails "--no-shard-shuffle needs --shuffle-buffer" 2 "$TR" --data x.tar \
    -m tiny-moe -o "$T/u" --no-shard-shuffle
fails "--epochs with --shuffle-buffer" 2 "$TR" --data x.tar -m tiny-moe \
    -o "$T/u" --shuffle-buffer 10 --epochs 1

. tests/tiny-run.sh

"$CV" shard -c 10 "$P" "$T/sh" >/dev/null || fail "sharding the pairs"
mkdir "$T/gz"
for k in 0 1 2 3 4; do gzip -c "$T/sh/$k.tar" >"$T/gz/$k.tar.gz"; done
mv "$T/gz/4.tar.gz" "$T/gz/4.tgz"
ckpt() { cmp "$T/$1/ckpt-0000000$3/model.safetensors" \
    "$T/$2/ckpt-0000000$3/model.safetensors" &&
    cmp "$T/$1/ckpt-0000000$3/optim.safetensors" \
    "$T/$2/ckpt-0000000$3/optim.safetensors"; }
IN="--shuffle-buffer 1 --no-shard-shuffle --steps 8"
ok "streamed from the pairs file" "$TR" --data "$P" $SMALL -o "$T/tsv" $IN
ok "streamed from the shards" "$TR" --data "$T/sh/{0..4}.tar" $SMALL \
    -o "$T/tar" $IN
check "identical checkpoints (past an epoch: 64 of 48)" "ckpt tsv tar 8"
ok "streamed from .tar.gz and .tgz" "$TR" \
    --data "$T/gz/{0..3}.tar.gz::$T/gz/4.tgz" $SMALL -o "$T/gzr" $IN
check "identical checkpoints" "ckpt tsv gzr 8"
ok "streamed from pipe:cat" "$TR" --data "pipe:cat $T/sh/{0..4}.tar" \
    $SMALL -o "$T/pipe" $IN
check "identical checkpoints" "ckpt tsv pipe 8"
fails "a compressed shard, indexed" 1 "$TR" --data "$T/gz/{0..3}.tar.gz" \
    $SMALL -o "$T/ix" --steps 1
check "is refused by name" \
    "grep -q \"gz/0.tar.gz': a compressed shard is read streaming only\" $T/err"
fails "a failing pipe: command" 1 "$TR" --data "pipe:cat $T/none/{0..1}.tar" \
    $SMALL -o "$T/pf" --shuffle-buffer 4 --steps 2
check "is named" \
    "grep -q \"'pipe:cat $T/none/0.tar': the command failed (exit 1)\" $T/err"
fails "a missing shard" 1 "$TR" --data "$T/sh/{0..5}.tar" $SMALL \
    -o "$T/ms" --shuffle-buffer 4 --steps 2
check "is named before the run starts" \
    "grep -q \"sh/5.tar': No such file\" $T/err && [ ! -e $T/ms/params.json ]"

ok "shuffled shards, buffer 7" "$TR" --data "$T/sh/{0..4}.tar" $SMALL \
    -o "$T/shuf" --shuffle-buffer 7 --steps 8
check "another order: other parameters" "! ckpt tsv shuf 8 >/dev/null 2>&1"
# batches of 8 over shards of 10: step 3 ends inside a shard
ok "stopped after step 3" "$TR" --data "$T/sh/{0..4}.tar" $SMALL \
    -o "$T/half" --shuffle-buffer 7 --steps 9 --stop-at 3
check "the checkpoint keeps the stream's cursor, inside a shard" \
    "$PY -c 'import json, sys
s = json.load(open(sys.argv[1]))[\"sources\"][0]
sys.exit(not (s[\"epoch\"] == 0 and s[\"pos\"] == 24))' $T/half/latest/state.json"
ok "resumed" "$TR" --resume "$T/half"
ok "uninterrupted" "$TR" --data "$T/sh/{0..4}.tar" $SMALL -o "$T/full" \
    --shuffle-buffer 7 --steps 9
check "the resumed run is bit-identical" "ckpt half full 9"

# memory: 10,000 examples drawn from 1,000 samples (10 epochs) and from
# 10,000 (one pass; the same small PNG, captions differ), streamed: the
# same peak RSS within 1 MB (runs vary by 0.5 MB; 120 bytes kept a
# sample would fail it)
$PY - "$T" <<'EOF' || fail "writing the large shards"
import io, os, sys, tarfile
d = sys.argv[1]
png = open(f'{d}/d/img/000.png', 'rb').read()
for n in (1000, 10000):
    os.makedirs(f'{d}/m{n}')
    for k in range(n // 1000):
        with tarfile.open(f'{d}/m{n}/{k}.tar', 'w') as t:
            for i in range(1000 * k, 1000 * k + 1000):
                for ext, b in (('png', png), ('txt', b'a red circle %d' % i)):
                    m = tarfile.TarInfo(f'{i:05d}.{ext}')
                    m.size = len(b)
                    t.addfile(m, io.BytesIO(b))
EOF
rss() { $PY -c 'import json, sys
print(json.loads(open(sys.argv[1]).readlines()[-1])["peak_rss_mb"])' "$1"; }
ok "10 passes over 1,000 samples" "$TR" --data "$T/m1000/0.tar" \
    -m "$T/tar/latest/model.safetensors" -b 100 --steps 100 \
    --shuffle-buffer 500 -o "$T/r1"
ok "a pass over 10,000 samples" "$TR" --data "$T/m10000/{0..9}.tar" \
    -m "$T/tar/latest/model.safetensors" -b 100 --steps 100 \
    --shuffle-buffer 500 -o "$T/r10"
echo "# peak RSS: $(rss $T/r1/metrics.jsonl) MB for 1,000 samples," \
    "$(rss $T/r10/metrics.jsonl) MB for 10,000"
check "peak memory does not grow with the samples" \
    "$PY -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(b - a > 1)' \
    $(rss $T/r1/metrics.jsonl) $(rss $T/r10/metrics.jsonl)"
finish
