#!/bin/sh
# examples/shards.sh - webdataset tar shards end to end, on shapes
# tests/mkshapes.py draws with PIL (no download):
#  1. shard an image-caption pairs file (as OpenCLIP's --train-data reads
#     shards) and a held-out ImageFolder tree (in CLIP_benchmark's
#     webdataset layout), and list a shard with tar;
#  2. train a tiny LIMoE from the shards, by brace pattern, streamed
#     (shards read in turn, samples through a shuffle buffer);
#  3. evaluate it on the sharded tree (zero-shot classification of the
#     colour, class names and templates from the directory) and on sharded captions
#     (retrieval), as CLIP_benchmark evaluates its webdataset sets.
# It runs offline in seconds; on real shards the same commands run longer.
#
# Environment: BIN (the programs, default bin), TMPDIR.
set -e
BIN=${BIN:-bin}
PY=/usr/bin/python3
if ! $PY -c 'import PIL' 2>/dev/null; then
	echo "shards: skipped, $PY lacks PIL" >&2
	exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-shards.XXXXXX")
trap 'rm -rf "$d"' EXIT

# 120 shapes (tests/mkshapes.py: "a red circle" ...): the first 96 to
# train on; the other 24 (different sizes and margins) held out, as
# captions and as a tree of one class a colour
$PY "$(dirname "$0")/../tests/mkshapes.py" "$d" 120
head -n 97 "$d/pairs.tsv" >"$d/train.tsv"
{ head -n 1 "$d/pairs.tsv"; tail -n 24 "$d/pairs.tsv"; } >"$d/test.tsv"
tail -n 24 "$d/pairs.tsv" | while IFS="$(printf '\t')" read -r p cap; do
	c=${cap#a }
	c=${c%% *}
	mkdir -p "$d/tree/$c"
	ln -s "$d/$p" "$d/tree/$c/${p#img/}"
done
printf 'a {} circle\na {} square\na {} triangle\n' >"$d/templates.txt"

echo "== 1. shards: training pairs, a classification tree, captions"
"$BIN/vlm-convert" shard -c 32 "$d/train.tsv" "$d/shards"
"$BIN/vlm-convert" shard -c 8 --split test --templates "$d/templates.txt" \
    "$d/tree" "$d/cls"
"$BIN/vlm-convert" shard --group --split test "$d/test.tsv" "$d/ret"
tar tf "$d/shards/0.tar" | head -n 4
ls "$d/cls" "$d/cls/test"

echo "== 2. train from the shards, streamed"
"$BIN/vlm-train" --data "$d/shards/{0..2}.tar" --shuffle-buffer 32 \
    -m tiny-moe -b 16 --steps 40 --lr 2e-3 --warmup 4 --log-every 20 \
    -o "$d/run"
tail -n 1 "$d/run/metrics.jsonl" | cut -c 1-120
M=$d/run/latest/model.safetensors

echo "== 3. evaluate on the sharded sets (chance: acc1 25%, R@1 4%)"
"$BIN/vlm-eval" zeroshot -m "$M" --wds "$d/cls"
"$BIN/vlm-eval" retrieval -m "$M" --wds "$d/ret"
