#!/bin/sh
# examples/suite.sh - evaluate a whole benchmark suite in one command and
# print its results table, as CLIP_benchmark's `eval` over a benchmark
# list and `build` do: three data sets (an ImageFolder tree with train/
# and test/, a pairs file, a SugarCrepe-style selection file) x two
# models, one JSON file per (data set, model, task); a second run skips
# everything already done.
#
# It runs offline, in seconds, on data it makes: coloured shapes from
# tests/mkshapes.py, and two untrained tiny CLIPs with a hand-written
# tokenizer, so the scores are chance (the linear probe still learns the
# colours). Give it trained models and real sets (CLIP_benchmark's
# webdataset directories can be listed as they are) to measure them.
#
# Environment: BIN (the programs, default bin), TMPDIR.
set -e
BIN=$(cd "${BIN:-bin}" && pwd)
PY=/usr/bin/python3
if ! $PY -c 'import PIL' 2>/dev/null; then
	echo "suite: skipped, $PY lacks PIL" >&2
	exit 77
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-suite.XXXXXX")
trap 'rm -rf "$d"' EXIT

# The data: 24 shapes with captions; a tree of them by colour (16 train,
# 8 test); each caption with a colour-swapped and a shape-swapped
# negative.
$PY tests/mkshapes.py "$d/shapes" 24
$PY - "$d" <<'PYEOF'
import os, shutil, sys
d = sys.argv[1]
rows = [l.rstrip('\n').split('\t') for l in open(f'{d}/shapes/pairs.tsv')][1:]
swap = {'red': 'blue', 'blue': 'green', 'green': 'yellow', 'yellow': 'red'}
sh = {'circle': 'square', 'square': 'triangle', 'triangle': 'circle'}
sel = ['image\tcaption\tneg_colour\tneg_shape']
for k, (p, cap) in enumerate(rows):
    _, c, s = cap.split()
    t = f'{d}/tree/{"train" if k < 16 else "test"}/{c}'
    os.makedirs(t, exist_ok=True)
    shutil.copy(f'{d}/shapes/{p}', f'{t}/{k}.png')
    sel.append(f'{p}\t{cap}\ta {swap[c]} {s}\ta {c} {sh[s]}')
open(f'{d}/shapes/sugar.tsv', 'w').write('\n'.join(sel) + '\n')
PYEOF

# Two models carrying a tokenizer (CLIP's merges format).
printf '%s\n' '#version: 0.2' 'r e' 're d</w>' 'b l' 'bl u' 'blu e</w>' \
    >"$d/merges.txt"
for seed in 1 2; do
	"$BIN/vlm-convert" init --seed $seed tiny "$d/init.safetensors"
	"$BIN/vlm-convert" import -t "$d/merges.txt" "$d/init.safetensors" \
	    "$d/tiny$seed.safetensors"
done

# The list: a data set a line, its tasks after it (none: its kind's);
# paths relative to the current directory, which name the results.
cd "$d"
cat >bench.txt <<LIST
# path              tasks
tree                zeroshot_classification linear_probe
shapes/pairs.tsv
shapes/sugar.tsv
LIST
mkdir results

echo "== the suite: 4 tasks x 2 models"
"$BIN/vlm-eval" suite -m tiny1.safetensors -m tiny2.safetensors \
    -o results bench.txt
ls results

echo "== again: everything is there already"
"$BIN/vlm-eval" suite -m tiny1.safetensors -m tiny2.safetensors \
    -o results bench.txt 2>&1 | tail -n 2

echo "== the results table (markdown; CSV without --markdown)"
"$BIN/vlm-eval" table --markdown results
