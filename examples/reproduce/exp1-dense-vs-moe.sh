#!/bin/sh
# exp1-dense-vs-moe.sh - experiment 1 of ALGORITHMS.md section 8: dense
# against sparse MoE at equal FLOPs per example (E = 8, K = 1, MoE in
# every other block; `vlm-convert info` prints each model's FLOPs into
# flops.txt): one-tower dense and MoE (LIMoE), two-tower dense and MoE,
# one-tower with a separate expert pool per modality (VL-MoE). Same
# widths, steps and data; every MoE uses the LIMoE auxiliary losses.
# Writes OUT/exp1/: runs/, results.tsv, summary.tsv, table.md, *.png.
# Environment: see lib.sh (SHORT=1 for the smoke test).
. examples/reproduce/lib.sh
rp_start 1
AUX="--set aux.limoe=true --set aux.importance=1 --set aux.load=1
--set aux.zloss=1 --set aux.local_img=1 --set aux.local_txt=1
--set aux.global_img=1 --set aux.global_txt=1"
seed_runs() {
	rp_train one-tower-dense "$1" -m tiny-moe --set moe.experts=0
	rp_train one-tower-moe "$1" -m tiny-moe
	rp_train two-tower-dense "$1" -m tiny
	# shellcheck disable=SC2086
	rp_train two-tower-moe "$1" -m tiny --set moe.experts=8 $AUX
	rp_train vl-moe-pools "$1" -m tiny-moe \
	    --set moe.modality_experts=true
}
rp_seeds seed_runs
for run in "$R"/runs/*/seed1; do
	[ -f "$run/eval.json" ] || continue
	echo "== $(basename "$(dirname "$run")")"
	"$BIN/vlm-convert" info "$run/latest/model.safetensors" |
	    grep -E '^(model|experts|active|forward|parameters)'
done >"$R/flops.txt"
rp_collect
rp_table image_retrieval_recall@1 text_retrieval_recall@1 \
    image_retrieval_recall@10 text_retrieval_recall@10 category_acc1 \
    subcategory_acc1 lp_acc1 wall_s >"$R/table.md"
rp_curves loss "exp1 training loss" "$R/loss.png"
rp_curves val_image_retrieval_recall@1 "exp1 validation image R@1" \
    "$R/val-r1.png"
rp_bars lp_acc1 "exp1 linear probe category acc" "$R/lp-acc1.png"
rp_bars image_retrieval_recall@1 "exp1 image retrieval R@1" "$R/r1.png"
cat "$R/table.md"
