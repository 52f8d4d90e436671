#!/bin/sh
# exp3-specialisation.sh - experiment 3: do the experts of the one-tower
# MoE (tiny-moe) specialise by modality? For each run, layer and expert
# the image share of its assignments on the Twitter-style images and
# captions (vlm-route-stats; "kind" image above 0.9, text below 0.1,
# else mixed): img-share.tsv, a histogram of the shares (hist.png) and
# the experts of each kind per layer (table.md). The runs are experiment
# 1's one-tower-moe when they exist.
. examples/reproduce/lib.sh
rp_start 3
seed_runs() {
	rp_reuse one-tower-moe "$1" 1 one-tower-moe ||
	    rp_train one-tower-moe "$1" -m tiny-moe
}
rp_seeds seed_runs
rp_collect
printf 'seed\tlayer\texpert\timg_share\tkind\n' >"$R/img-share.tsv"
for run in "$R"/runs/one-tower-moe/seed*; do
	# the experts of the "all" modality of each layer in routes.json
	awk -v seed="${run##*/seed}" '
	/"label":/ { gsub(/[",]/, "", $2); label = $2 " " $3 }
	/^ *"(image|text|all)": \{/ { mod = $1 }
	/"expert":/ { gsub(/,/, "", $2); e = $2 }
	/"img_share":/ { gsub(/,/, "", $2); s = $2 }
	/"kind":/ && mod == "\"all\":" { gsub(/"/, "", $2)
		printf "%s\t%s\t%s\t%s\t%s\n", seed, label, e, s, $2 }
	' "$run/routes.json" >>"$R/img-share.tsv"
done
awk -F '\t' 'BEGIN { print "share\tlayer\tcount" }
NR > 1 && $4 != "nan" {
	b = int($4 * 10); b = b > 9 ? 9 : b
	print sprintf("%.1f-%.1f", b / 10, (b + 1) / 10) "\t" $2 "\t1"
}' "$R/img-share.tsv" | { read -r h; echo "$h"; sort; } >"$R/hist-rows.tsv"
# per bin and layer: experts over all seeds (sums, not means)
awk -F '\t' 'NR == 1 { print; next } { n[$1 "\t" $2] += $3 }
END { for (k in n) print k "\t" n[k] }' "$R/hist-rows.tsv" |
    { read -r h; echo "$h"; sort; } >"$R/hist.tsv"
"$BIN/vlm-eval" plot --tsv "$R/hist.tsv" --bars \
    --title "exp3 experts by image share (all seeds)" -o "$R/hist.png"
{
	echo "| layer | image experts | text experts | mixed | seeds |"
	echo "|---|---|---|---|---|"
	awk -F '\t' 'NR > 1 { k[$2] = 1; n[$2, $5]++; s[$2, $1] = 1 }
	END { for (l in k) { ns = 0; for (x in s) { split(x, p, SUBSEP)
		ns += p[1] == l }
		printf "| %s | %d | %d | %d | %d |\n", l, n[l, "image"],
		    n[l, "text"], n[l, "mixed"], ns } }' "$R/img-share.tsv" |
	    sort
} >"$R/table.md"
cat "$R/table.md"
