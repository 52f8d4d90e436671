#!/bin/sh
# exp3-specialisation.sh - experiment 3: do the experts of the one-tower
# MoE (tiny-moe) specialise by modality? For each run, layer and expert
# the image share of its assignments on the Twitter-style images and
# captions (vlm-route-stats; "kind" image above 0.9, text below 0.1,
# else mixed), and the same share normalised by the tokens of each
# modality (there are about 3 image tokens to 1 text token, so an expert
# blind to modality has a raw share near 0.75 and a normalised one of
# 0.5). The reference: the same models untrained (one step at lr 0,
# which only builds the tokenizer), whose random routers may already
# split the modalities. Writes img-share.tsv (model, seed, layer,
# expert, shares, kinds), hist.tsv and hist.png (raw shares of the
# trained experts per layer), hist-norm.tsv and hist-norm.png
# (normalised shares, trained against untrained, layers pooled) and
# table.md (experts of each kind per layer). The trained runs are
# experiment 1's one-tower-moe when they exist.
. examples/reproduce/lib.sh
rp_start 3
seed_runs() {
	rp_reuse one-tower-moe "$1" 1 one-tower-moe ||
	    rp_train one-tower-moe "$1" -m tiny-moe
	u=$R/untrained/seed$1
	[ -f "$u/routes.json" ] && return 0
	[ "${COLLECT_ONLY:-0}" = 1 ] && return 0
	rm -rf "$u"
	mkdir -p "$R/untrained"
	# shellcheck disable=SC2086
	"$BIN/vlm-train" --data "$DATA/google-base.tsv" --alpha white -o "$u" \
	    --steps 1 --lr 0 -b "$BATCH" --seed "$1" -m tiny-moe $SCALE \
	    >/dev/null
	"$BIN/vlm-route-stats" -m "$u/latest/model.safetensors" --json \
	    --images "$DATA/twitter-category" --text "$R/captions.txt" \
	    >"$u/routes.json.tmp"
	mv "$u/routes.json.tmp" "$u/routes.json"
}
rp_seeds seed_runs
rp_collect
printf 'model\tseed\tlayer\texpert\timg_share\tkind\tnorm_share\tnorm_kind\n' \
    >"$R/img-share.tsv"
for run in "$R"/runs/one-tower-moe/seed* "$R"/untrained/seed*; do
	[ -f "$run/routes.json" ] || continue
	model=trained
	case $run in "$R"/untrained/*) model=untrained ;; esac
	# per layer and expert: the image share of its assignments (the
	# "all" modality of routes.json) and the normalised share
	# (A_img/N_img) / (A_img/N_img + A_txt/N_txt), A the tokens routed
	# to the expert before capacity, N the tokens of the modality
	awk -v model="$model" -v seed="${run##*/seed}" '
	function flush(   e, a, b) {
		for (e = 0; e < ne; e++) {
			a = load["image", e] / tok["image"]
			b = load["text", e] / tok["text"]
			ns = a + b > 0 ? a / (a + b) : "nan"
			nk = ns == "nan" ? "none" : ns > 0.9 ? "image" : \
			    ns < 0.1 ? "text" : "mixed"
			printf "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", model, seed,
			    label, e, sh[e], kind[e], ns, nk
		}
		ne = 0
	}
	/"label":/ { if (ne) flush(); gsub(/[",]/, ""); sub(/^ *label: */, "")
		label = $0 }
	/^ *"(image|text|all)": \{/ { mod = $1; gsub(/[":{ ]/, "", mod) }
	/"tokens":/ { gsub(/,/, "", $2); tok[mod] = $2 }
	/"expert":/ { gsub(/,/, "", $2); e = $2; if (e + 1 > ne) ne = e + 1 }
	/"load":/ { gsub(/,/, "", $2); load[mod, e] = $2 }
	/"img_share":/ { gsub(/,/, "", $2); if (mod == "all") sh[e] = $2 }
	/"kind":/ { gsub(/"/, "", $2); if (mod == "all") kind[e] = $2 }
	END { if (ne) flush() }
	' "$run/routes.json" >>"$R/img-share.tsv"
done
# hist COLUMN SERIES MODEL FILE: experts per bin of width 0.1 of the
# column, one series per value of column SERIES, rows of MODEL (all when
# empty), summed over the seeds
hist() {
	awk -F '\t' -v c="$1" -v sc="$2" -v want="$3" '
	BEGIN { print "share\tseries\tcount" }
	NR > 1 && (want == "" || $1 == want) { l[$sc] = 1 }
	NR > 1 && (want == "" || $1 == want) && $c != "nan" {
		b = int($c * 10); n[(b > 9 ? 9 : b) SUBSEP $sc]++
	} END { for (b = 0; b < 10; b++) for (k in l)
		printf "%.1f-%.1f\t%s\t%d\n", b / 10, (b + 1) / 10, k,
		    n[b, k] }' "$R/img-share.tsv" |
	    { read -r h; echo "$h"; sort; } >"$4"
}
hist 5 3 trained "$R/hist.tsv"
hist 7 1 "" "$R/hist-norm.tsv"
"$BIN/vlm-eval" plot --tsv "$R/hist.tsv" --bars \
    --title "exp3 trained experts by image share (all seeds)" \
    -o "$R/hist.png"
"$BIN/vlm-eval" plot --tsv "$R/hist-norm.tsv" --bars \
    --title "exp3 experts by normalised image share (all seeds, layers)" \
    -o "$R/hist-norm.png"
{
	echo "| model | layer | image experts | text experts | mixed | image (normalised) | text (normalised) | mixed (normalised) | seeds |"
	echo "|---|---|---|---|---|---|---|---|---|"
	awk -F '\t' 'NR > 1 { k = $1 " | " $3; r[k] = 1; n[k, $6]++
		m[k, $8]++; if (!((k, $2) in s)) { s[k, $2] = 1; ns[k]++ } }
	END { for (k in r)
		printf "| %s | %d | %d | %d | %d | %d | %d | %d |\n", k,
		    n[k, "image"], n[k, "text"], n[k, "mixed"], m[k, "image"],
		    m[k, "text"], m[k, "mixed"], ns[k] }' "$R/img-share.tsv" |
	    sort
	echo
	# polarisation: the mean over experts and layers of |normalised
	# share - 0.5| (0: every expert blind to modality, 0.5: each takes
	# one modality only), per seed, then mean and sample sd over seeds
	echo "| model | polarisation | seeds |"
	echo "|---|---|---|"
	awk -F '\t' 'NR > 1 && $7 != "nan" { k = $1 SUBSEP $2
		d = $7 - 0.5; s[k] += (d < 0 ? -d : d); n[k]++ }
	END { for (k in s) { split(k, p, SUBSEP); x = s[k] / n[k]
		m[p[1]] += x; mm[p[1]] += x * x; c[p[1]]++ }
	for (q in m) { a = m[q] / c[q]
		v = c[q] > 1 ? (mm[q] - c[q] * a * a) / (c[q] - 1) : 0
		printf "| %s | %.4f +- %.4f | %d |\n", q, a,
		    (v > 0 ? sqrt(v) : 0), c[q] } }' "$R/img-share.tsv" | sort
} >"$R/table.md"
cat "$R/table.md"
