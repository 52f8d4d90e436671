#!/bin/sh
# examples/caption.sh [EMOJI_DIR] - captioning from the shell: train two
# tiny CoCa captioners from scratch, one with a dense decoder and one
# whose decoder FFNs are MoE layers (4 experts, top-2, each half as wide:
# the same FLOPs but for the router, as vlm-convert info shows), caption
# images they never saw with vlm-caption and score the captions with
# vlm-eval captioning (BLEU-4, CIDEr-D).
#
# With EMOJI_DIR (the cache of examples/fetch-emoji.sh, fetched there if
# it is not yet): trained on the Google-style emoji and their names
# (google.tsv), captioning the Twitter-style images of the same emoji
# (twitter-base.tsv): about 10 minutes a model on two busy cores
# (STEPS, default 3000, batch 32). Without it: a smoke test of seconds
# on synthetic shapes (what make check runs).
#
# Measured (sh examples/caption.sh ~/.cache/vlm/emoji, 3000 steps of 32,
# vocabulary 1024 learnt from the names, 1911 Twitter-style images,
# greedy, 16 tokens at most; 118 and 138 img/s on 2 cores under load):
#   decoder                     GFLOPs/caption  BLEU-1  BLEU-4  CIDEr-D
#   dense (MLP ratio 4)         0.00813517      0.0763  0.0217  0.1352
#   MoE 4 experts, top-2 (2x)   0.00815053      0.0682  0.0176  0.1150
#
# Environment: BIN (the programs, default bin), STEPS, TMPDIR.
set -e
BIN=$(cd "${BIN:-bin}" && pwd)
PY=/usr/bin/python3
d=$(mktemp -d "${TMPDIR:-/tmp}/vlm-caption.XXXXXX")
trap 'rm -rf "$d"' EXIT

if [ $# -ge 1 ]; then
	[ -f "$1/twitter-base.tsv" ] || sh examples/fetch-emoji.sh "$1"
	E=$(cd "$1" && pwd)
	TRAIN=$E/google.tsv VAL=$E/twitter-base.tsv
	SHAPE="--set vocab=1024 --set embed_dim=64 --set decoder.heads=4
	    --set text.heads=4"
	RUN="-b 32 --steps ${STEPS:-3000} --warmup 100 --lr 1e-3
	    --vocab-size 1024 --log-every 100"
	LEN=16
else
	if ! $PY -c 'import PIL' 2>/dev/null; then
		echo "caption: skipped, $PY lacks PIL" >&2
		exit 77
	fi
	$PY tests/mkshapes.py "$d/shapes" 24
	TRAIN=$d/shapes/pairs.tsv VAL=$d/shapes/pairs.tsv
	SHAPE="--set vocab=600 --set embed_dim=16 --set vision.width=16
	    --set image_size=16 --set pooler.queries=5 --set pooler.heads=2
	    --set context=8"
	RUN="-b 8 --steps 4 --warmup 1 --lr 1e-3 --vocab-size 600"
	LEN=8
fi
MOE="--set moe.experts=4 --set moe.top_k=2 --set moe.every=1
    --set moe.mlp_ratio=2"

for m in dense moe; do
	x=
	[ $m = moe ] && x=$MOE
	# shellcheck disable=SC2086
	"$BIN/vlm-convert" init -s 1 $SHAPE $x coca-tiny "$d/$m.safetensors"
	echo "== $m decoder"
	"$BIN/vlm-convert" info "$d/$m.safetensors" | grep -E '^decoder experts|GFLOPs'
	# shellcheck disable=SC2086
	nice "$BIN/vlm-train" --data "$TRAIN" -m "$d/$m.safetensors" \
	    -o "$d/run-$m" --seed 1 $RUN
	tail -n 1 "$d/run-$m/metrics.jsonl" | $PY -c 'import json, sys
o = json.loads(sys.stdin.read())
print("step %d: loss %.3f (contrastive %.3f, caption %.3f), %.0f img/s" %
      (o["step"], o["loss"], o["contrastive"], o["caption"],
       o["images_per_s"]))'
	# greedy captions of the held-out images, paths as the pairs file has
	(cd "$(dirname "$VAL")" && tail -n +2 "$(basename "$VAL")" | cut -f1 |
	    "$BIN/vlm-caption" -m "$d/run-$m/latest/model.safetensors" \
	    -l $LEN >"$d/$m.caps")
	(cd "$(dirname "$VAL")" && "$BIN/vlm-eval" captioning \
	    --refs "$(basename "$VAL")" --hyp "$d/$m.caps")
done
echo "== examples: reference | dense | moe"
tail -n +2 "$VAL" | head -n 400 | awk 'NR % 50 == 1' | while IFS='	' read -r p t
do
	printf '%s | %s | %s\n' "$t" "$(grep -aF "$p	" "$d/dense.caps" |
	    cut -f2)" "$(grep -aF "$p	" "$d/moe.caps" | cut -f2)"
done
