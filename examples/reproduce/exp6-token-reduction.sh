#!/bin/sh
# exp6-token-reduction.sh - experiment 6, the compact-fusion paper's two
# ideas on the one-tower MoE (tiny-moe):
#  - TokenLearner after block L (L = 0, 1, 2) cutting the image tokens to
#    8, against no reduction (all with average pooling of the image
#    tokens, as token reduction drops the class token): FLOPs per image (`vlm-convert info`, in
#    flops.tsv) saved against the metrics lost;
#  - two data sources of different quality, the clean Google-style pairs
#    and the same pairs with their captions shuffled among them: fixed
#    weights 1,1 against the adaptive sampler (--adaptive), which draws
#    the sources the model finds hard more often (vlm-train(1)): its
#    final probabilities are in metrics.jsonl, that of the shuffled
#    source in results.tsv (source_p_shuffled).
# flops.tsv: forward GFLOPs per image of each model; sweep-*.tsv and
# flops-*.png: each metric against those FLOPs (no reduction and the Ls).
. examples/reproduce/lib.sh
rp_start 6
# the noisy source: captions permuted by a fixed seed, absolute paths
abs=$(cd "$DATA" && pwd)
awk -F '\t' -v d="$abs" 'NR == 1 { print; n = 0; next }
{ p[n] = $1; c[n] = $2; n++ }
END { srand(6); for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1))
	t = c[i]; c[i] = c[j]; c[j] = t }
	for (i = 0; i < n; i++) print d "/" p[i] "\t" c[i] }' \
    "$DATA/google-base.tsv" >"$R/google-shuffled.tsv"
LS=${LS:-0 1 2}
[ "${SHORT:-0}" = 1 ] && LS=${LS%% 2} # two blocks
seed_runs() {
	rp_train no-reduction "$1" -m tiny-moe --set vision.pool=gap
	# the first L, both samplers, then the other Ls: a run cut short
	# has one point of each comparison
	tl_run "${LS%% *}" "$1"
	rp_train fixed-1-1 "$1" -m tiny-moe --data "$R/google-shuffled.tsv" \
	    --data-weights 1,1
	rp_train adaptive "$1" -m tiny-moe --data "$R/google-shuffled.tsv" \
	    --adaptive
	for l in ${LS#* }; do
		[ "$l" = "${LS%% *}" ] || tl_run "$l" "$1"
	done
}
tl_run() {
	rp_train "tokenlearner-after$1" "$2" -m tiny-moe \
	    --set vision.pool=gap --set "token_reduction.after=$1" \
	    --set token_reduction.tokens=8
}
rp_seeds seed_runs
rp_collect
# the sampling probability of the shuffled source at the end
for run in "$R"/runs/fixed-1-1/seed* "$R"/runs/adaptive/seed*; do
	[ -f "$run/eval.json" ] || continue
	printf '%s\t%s\tsource_p_shuffled\t%s\n' \
	    "$(basename "$(dirname "$run")")" "${run##*/seed}" \
	    "$(tail -n 1 "$run/metrics.jsonl" |
	    sed -n 's/.*"source_p":\[[^],]*,\([^],]*\)\].*/\1/p')"
done >>"$R/results.tsv"
rp_summary
# the shuffled source's probability along training (mean over seeds)
printf 'step\tseries\tsource_p_shuffled\n' >"$R/source-p.tsv"
for run in "$R"/runs/fixed-1-1/seed* "$R"/runs/adaptive/seed*; do
	[ -f "$run/eval.json" ] || continue
	sed -n 's/^{"step":\([0-9]*\),.*"source_p":\[[^],]*,\([^],]*\)\].*/\1\t\2/p' \
	    "$run/metrics.jsonl" |
	    sed "s/\t/\t$(basename "$(dirname "$run")")\t/"
done >>"$R/source-p.tsv"
"$BIN/vlm-eval" plot --tsv "$R/source-p.tsv" \
    --title "exp6 probability of the shuffled source" -o "$R/source-p.png"
printf 'name\tgflops_per_image\n' >"$R/flops.tsv"
for run in "$R"/runs/*/seed1; do
	[ -f "$run/eval.json" ] || continue
	printf '%s\t%s\n' "$(basename "$(dirname "$run")")" \
	    "$("$BIN/vlm-convert" info "$run/latest/model.safetensors" |
	    sed -n 's/^forward GFLOPs per image: \([0-9.e-]*\).*/\1/p')"
done >>"$R/flops.tsv"
# the metric against the FLOPs per image, one point per seed
for m in image_retrieval_recall@1 lp_acc1; do
	awk -F '\t' -v m="$m" 'NR == FNR { if (FNR > 1) g[$1] = $2; next }
	FNR == 1 { print "gflops_per_image\tseries\t" m }
	$3 == m && ($1 == "no-reduction" || $1 ~ /^tokenlearner/) {
		print g[$1] "\t" ($1 ~ /^token/ ? "tokenlearner" : $1) "\t" $4
	}' "$R/flops.tsv" "$R/results.tsv" \
	    >"$R/sweep-$m.tsv"
	"$BIN/vlm-eval" plot --tsv "$R/sweep-$m.tsv" \
	    --title "exp6 $m against GFLOPs per image" -o "$R/flops-$m.png"
done
rp_table image_retrieval_recall@1 text_retrieval_recall@1 category_acc1 \
    lp_acc1 source_p_shuffled wall_s >"$R/table.md"
rp_bars image_retrieval_recall@1 "exp6 image retrieval R@1" "$R/r1.png"
rp_curves loss "exp6 training loss" "$R/loss.png"
cat "$R/table.md" "$R/flops.tsv"
