#!/bin/sh
# exp4-capacity.sh - experiment 4: capacity factor and batch priority
# routing at inference. One trained one-tower MoE per seed (experiment
# 1's one-tower-moe when it exists) is copied with `vlm-convert set`
# to moe.cf_eval in {0.25, 0.5, 1, 2} and moe.bpr on and off; each copy
# is scored (retrieval, zero-shot category) and its dropped fractions
# measured (vlm-route-stats). results.tsv: name cfX-bprB; sweep-*.tsv
# and the charts: the metric and the dropped fraction against cf.
. examples/reproduce/lib.sh
rp_start 4
CFS=${CFS:-0.25 0.5 1 2}
seed_runs() {
	rp_reuse base "$1" 1 one-tower-moe || rp_train base "$1" -m tiny-moe
	for cf in $CFS; do
		for bpr in true false; do
			run=$R/runs/cf$cf-bpr$bpr/seed$1
			[ -f "$run/eval.json" ] && continue
			mkdir -p "$run/latest"
			cp "$R/runs/base/seed$1/latest/model.safetensors" \
			    "$run/latest/"
			"$BIN/vlm-convert" set "$run/latest/model.safetensors" \
			    "moe.cf_eval=$cf" "moe.bpr=$bpr"
			: >"$run/metrics.jsonl"
			echo 0 >"$run/wall_s"
			rp_eval "$run"
		done
	done
}
rp_seeds seed_runs
rp_collect
for run in "$R"/runs/cf*/seed*; do
	n=$(basename "$(dirname "$run")") s=${run##*/seed}
	awk -v n="$n" -v s="$s" '/"(image|text|all)": \{/ { m = $1 }
	/"drop_tokens":/ { gsub(/[",:]/, "", m); gsub(/,/, "", $2)
		d[m] += $2; c[m]++ }
	END { for (k in d) printf "%s\t%s\tdropped_%s\t%.6f\n", n, s, k,
		d[k] / c[k] }' "$run/routes.json"
done >>"$R/results.tsv"
# sweep TSVs: x = cf, series = metric and BPR
for m in image_retrieval_recall@1 category_acc1 dropped_all; do
	awk -F '\t' -v m="$m" 'BEGIN { print "cf_eval\tseries\t" m }
	$1 ~ /^cf/ && $3 == m { split($1, p, "-bpr"); sub(/^cf/, "", p[1])
		print p[1] "\tbpr " p[2] "\t" $4 }' "$R/results.tsv" \
	    >"$R/sweep-$m.tsv"
	"$BIN/vlm-eval" plot --tsv "$R/sweep-$m.tsv" \
	    --title "exp4 $m against cf_eval" -o "$R/$m.png"
done
rp_summary
rp_table image_retrieval_recall@1 text_retrieval_recall@1 category_acc1 \
    dropped_image dropped_text dropped_all >"$R/table.md"
cat "$R/table.md"
