#!/bin/sh
# examples/demo.sh - the main job end to end, run by `make demo`:
# fetch the emoji image-text data (npm), train a tiny one-tower LIMoE
# (8 experts, top-1, MoE in every other block) on the 1911 Google-style
# base emoji (no skin-tone variants) for about 10 minutes, then on the
# Twitter style, which it never saw:
# image<->text retrieval over the 1911 base emoji, a linear probe of the
# 9 emoji categories on its image embeddings (what the model learnt),
# zero-shot category classification (near chance: the training captions
# never name a category), and how the experts split the work. Each
# result is preceded by a line saying what its numbers mean.
# Training prints a plain line every 50 steps (vlm-train -v), also when
# the output goes to a file or pipe.
#
# The recipe (measured in the README): batches of 256 for 900 steps,
# peak lr 1.5e-3 after 25 warmup steps, transparent pixels white, seed 1;
# evaluation routes with capacity factor 2 (moe.cf_eval), as the MoE
# papers evaluate with more room per expert than they train with.
#
# Environment: BIN (bin), DEMO_STEPS (900), DEMO_RUN (a new temporary
# directory, removed at the end unless given), VLM_THREADS.
set -eu
BIN=${BIN:-bin}
steps=${DEMO_STEPS:-900}
E=${XDG_CACHE_HOME:-$HOME/.cache}/vlm/emoji
w=$(mktemp -d "${TMPDIR:-/tmp}/vlm-demo.XXXXXX")
trap 'rm -rf "$w"' EXIT
run=${DEMO_RUN:-$w/run}

"$BIN/vlm-convert" --version
echo "== emoji data (npm: emoji-datasource-google, -twitter 16.0.0)"
sh examples/fetch-emoji.sh "$E"

echo "== training tiny-moe on $E/google-base.tsv ($steps steps of 256)"
start=$(date +%s)
"$BIN/vlm-train" --data "$E/google-base.tsv" -m tiny-moe --alpha white \
    --set moe.cf_eval=2 -o "$run" --steps "$steps" -b 256 --lr 1.5e-3 \
    --warmup 25 --seed 1 --log-every 50 -v
echo "trained in $(( $(date +%s) - start )) s; last metrics line:"
tail -n 1 "$run/metrics.jsonl" | cut -c 1-200
M=$run/latest/model.safetensors
"$BIN/vlm-convert" info "$M" | tail -n 5

echo "== retrieval on the Twitter style (1911 emoji; chance R@1 0.05%)"
echo "   image_retrieval_recall@k: share of captions whose emoji is among"
echo "   the k images closest to them; text_retrieval_recall@k: the other way"
"$BIN/vlm-eval" retrieval -m "$M" --pairs "$E/twitter-base.tsv"
echo "== what the embeddings carry: a linear probe of the 9 categories"
echo "   trained on the Google-style emoji's image embeddings, tested on the"
echo "   Twitter style; lp_acc1: share of test emoji put in their category"
echo "   (chance 11%; always answering the largest category, 20%)"
"$BIN/vlm-eval" linear-probe -m "$M" --train "$E/google-category" \
    --test "$E/twitter-category"
echo "== zero-shot category classification (9 categories; chance 11%)"
echo "   the category names as text queries; near chance is expected here:"
echo "   no training caption names a category (\"grinning face\", never"
echo "   \"smileys & emotion\"), so the model never learnt those words"
printf '{}\n' >"$w/templates.txt"
"$BIN/vlm-eval" zeroshot -m "$M" --images "$E/twitter-category" \
    --classnames "$E/twitter-category/classnames.txt" \
    --templates "$w/templates.txt"
echo "== routing: which experts take images, which take text"
echo "   per MoE layer and expert: share, the part of the tokens it takes;"
echo "   img_share, the part of its tokens that are image patches (near 1:"
echo "   an image expert, near 0: a text expert; kind says which)"
tail -n +2 "$E/twitter-base.tsv" | cut -f 2 >"$w/captions.txt"
"$BIN/vlm-route-stats" -m "$M" --images "$E/twitter-category" \
    --text "$w/captions.txt"
