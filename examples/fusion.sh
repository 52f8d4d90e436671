#!/bin/sh
# examples/fusion.sh - the VL-MoE fusion model: modality-specific MoE
# blocks, then fusion blocks over [image tokens; text tokens] with a
# third, vision-language expert pool, trained with contrastive (ITC),
# image-text matching (ITM, hard negatives) and masked-token (MLM)
# losses; then fine-tuned to answer questions about synthetic scenes.
#
# By default (make check) it runs in seconds on tiny shapes: pretrain
# on scene captions, ITM re-ranking of retrieval and matching accuracy,
# then question answering against its chance, majority and blind
# (question-only) baselines. FUSION_FULL=1 runs the measured version:
# 1000 scenes of 32x32 (4000 questions), tested on 200 others; and the
# emoji (examples/fetch-emoji.sh; the npm registry once): fusion-tiny
# trained on the Google style, retrieval on the Twitter style by its
# contrastive embeddings and re-ranked by its ITM head (about an hour on
# two loaded cores).
#
# Environment: BIN (bin), FUSION_FULL, FUSION_RUN (a new temporary
# directory, removed at the end unless given), TMPDIR.
set -eu
BIN=${BIN:-bin}
PY=/usr/bin/python3
if ! $PY -c 'import PIL' 2>/dev/null; then
	echo "fusion: skipped, $PY lacks PIL" >&2
	exit 77
fi
w=$(mktemp -d "${TMPDIR:-/tmp}/vlm-fusion.XXXXXX")
trap 'rm -rf "$w"' EXIT
run=${FUSION_RUN:-$w}
mkdir -p "$run"

if [ -n "${FUSION_FULL:-}" ]; then
	N=1000 NT=200 SIZE=32 B=64 PRE=100 QA=150 K=10
	M="-m fusion-tiny"
else
	N=48 NT=16 SIZE=16 B=8 PRE=4 QA=6 K=3
	M="-m fusion-tiny --set vision.layers=2 --set text.layers=2
	--set vision.width=32 --set text.width=32 --set vision.heads=2
	--set text.heads=2 --set embed_dim=16 --set image_size=16
	--set vocab=600"
fi

echo "== scenes: $N to train on, $NT to test ($SIZE x $SIZE)"
$PY tests/mkqa.py "$run/train" $N 1 $SIZE
$PY tests/mkqa.py "$run/test" $NT 2 $SIZE

echo "== pretraining on their captions: ITC + ITM + MLM ($PRE steps)"
"$BIN/vlm-train" --data "$run/train/captions.tsv" $M -b $B --steps $PRE \
    --warmup $((PRE / 10 + 1)) --seed 1 -o "$run/pre" --log-every $PRE
tail -n 1 "$run/pre/metrics.jsonl" | cut -c 1-240
P=$run/pre/latest/model.safetensors

echo "== retrieval on the test captions: contrastive, then ITM re-ranked"
"$BIN/vlm-eval" retrieval -m "$P" --pairs "$run/test/captions.tsv"
"$BIN/vlm-eval" retrieval -m "$P" --pairs "$run/test/captions.tsv" \
    --rerank $K
echo "== image-text matching on the test captions and their negatives"
"$BIN/vlm-eval" match -m "$P" --pairs "$run/test/captions.tsv"

echo "== fine-tuning a QA head on the fused class token ($QA steps)"
"$BIN/vlm-train" --data "$run/train/qa.tsv" -m "$P" \
    --qa "$run/train/answers.txt" -b $B --steps $QA \
    --warmup $((QA / 10 + 1)) --seed 1 -o "$run/qa" --log-every $QA
echo "   qa_blind: each question's most frequent answer (no image)"
"$BIN/vlm-eval" qa -m "$run/qa/latest/model.safetensors" \
    --pairs "$run/test/qa.tsv" --answers "$run/train/answers.txt"

[ -n "${FUSION_FULL:-}" ] || exit 0
E=${XDG_CACHE_HOME:-$HOME/.cache}/vlm/emoji
sh examples/fetch-emoji.sh "$E"
echo "== emoji: fusion-tiny on the Google style (200 steps of 128)"
"$BIN/vlm-train" --data "$E/google-base.tsv" -m fusion-tiny --alpha white \
    --set moe.cf_eval=2 -o "$run/emoji" --steps 200 -b 128 --lr 1.5e-3 \
    --warmup 20 --seed 1 --log-every 20
F=$run/emoji/latest/model.safetensors
echo "== Twitter style: contrastive retrieval, then the top 10 re-ranked"
"$BIN/vlm-eval" retrieval -m "$F" --pairs "$E/twitter-base.tsv"
"$BIN/vlm-eval" retrieval -m "$F" --pairs "$E/twitter-base.tsv" --rerank 10
"$BIN/vlm-eval" match -m "$F" --pairs "$E/twitter-base.tsv"
