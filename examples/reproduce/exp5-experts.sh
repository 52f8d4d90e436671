#!/bin/sh
# exp5-experts.sh - experiment 5: the number of experts E in {4, 8, 16,
# 32} of the one-tower MoE (tiny-moe, K = 1, MoE in every other block,
# all LIMoE auxiliary losses): the same FLOPs per example, more
# parameters. Metrics of experiment 1 and the experts used per modality.
. examples/reproduce/lib.sh
rp_start 5
ES=${ES:-4 8 16 32}
seed_runs() {
	for e in $ES; do
		# E = 8 is experiment 1's one-tower MoE when that run is done
		[ "$e" = 8 ] && rp_reuse e8 "$1" 1 one-tower-moe && continue
		rp_train "e$e" "$1" -m tiny-moe --set "moe.experts=$e"
	done
}
rp_seeds seed_runs
rp_collect
rp_table image_retrieval_recall@1 text_retrieval_recall@1 category_acc1 \
    lp_acc1 train_eff_experts_image train_eff_experts_text \
    route_eff_assigned_image route_eff_assigned_text wall_s |
    { read -r h; read -r l; echo "$h"; echo "$l"; sort -t e -k 2n; } \
    >"$R/table.md"
for m in image_retrieval_recall@1 lp_acc1; do
	awk -F '\t' -v m="$m" 'BEGIN { print "experts\tseries\t" m }
	NR > 1 && $3 == m { sub(/^e/, "", $1); print $1 "\tK = 1\t" $4 }' \
	    "$R/results.tsv" >"$R/sweep-$m.tsv"
	"$BIN/vlm-eval" plot --tsv "$R/sweep-$m.tsv" \
	    --title "exp5 $m against E" -o "$R/$m.png"
done
rp_curves loss "exp5 training loss" "$R/loss.png"
cat "$R/table.md"
