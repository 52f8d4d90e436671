#!/bin/sh
# exp2-aux-ablation.sh - experiment 2: which auxiliary losses keep text
# from collapsing onto one or two experts in the one-tower MoE (tiny-moe:
# E = 8, K = 1). Variants: no auxiliary loss; importance + load; + the
# text global entropy; + the image local entropy; all LIMoE terms (also
# z-loss, text local and image global entropy). Each run logs the
# effective experts exp(H(mean p)) and dropped fraction per MoE layer and
# modality (metrics.jsonl; routes.json for the Twitter-style data).
# "all" is experiment 1's one-tower-moe when that run exists.
# Writes OUT/exp2/: runs/, results.tsv, summary.tsv, table.md, *.png.
. examples/reproduce/lib.sh
rp_start 2
NONE="--set aux.importance=0 --set aux.load=0 --set aux.zloss=0
--set aux.local_img=0 --set aux.local_txt=0 --set aux.global_img=0
--set aux.global_txt=0"
# shellcheck disable=SC2086
seed_runs() {
	rp_train none "$1" -m tiny-moe $NONE --set aux.limoe=false
	rp_train imp-load "$1" -m tiny-moe $NONE --set aux.importance=1 \
	    --set aux.load=1
	rp_train imp-load-gtxt "$1" -m tiny-moe $NONE \
	    --set aux.importance=1 --set aux.load=1 --set aux.global_txt=1
	rp_train imp-load-gtxt-limg "$1" -m tiny-moe $NONE \
	    --set aux.importance=1 --set aux.load=1 --set aux.global_txt=1 \
	    --set aux.local_img=1
	rp_reuse all "$1" 1 one-tower-moe || rp_train all "$1" -m tiny-moe
}
rp_seeds seed_runs
rp_collect
rp_table train_eff_experts_image train_eff_experts_text \
    route_eff_assigned_image route_eff_assigned_text \
    train_dropped_image train_dropped_text image_retrieval_recall@1 \
    text_retrieval_recall@1 category_acc1 lp_acc1 >"$R/table.md"
rp_curves moe.eff_experts_text "exp2 effective experts, text" \
    "$R/eff-text.png"
rp_curves moe.eff_experts_image "exp2 effective experts, image" \
    "$R/eff-image.png"
rp_curves loss "exp2 training loss" "$R/loss.png"
rp_bars train_eff_experts_text "exp2 effective text experts" \
    "$R/eff-text-bars.png"
rp_bars route_eff_assigned_text "exp2 experts text is assigned to" \
    "$R/assigned-text-bars.png"
cat "$R/table.md"
