# examples/reproduce/lib.sh - sourced by the experiment scripts exp*.sh:
# train, evaluate, summarise and plot with the vlm-* tools only.
#
# Environment (defaults in brackets):
#   BIN      the programs [bin]
#   DATA     the emoji data of examples/fetch-emoji.sh
#            [${XDG_CACHE_HOME:-$HOME/.cache}/vlm/emoji], fetched when absent
#   OUT      results root [results, ignored by git]; an experiment writes
#            OUT/expN/
#   SEEDS    seeds ["1 2 3"]
#   FROM     results root of the finished runs that an experiment
#            reuses instead of training them again [OUT]: experiments
#            2, 3, 4 and 5 take experiment 1's one-tower-moe runs (the
#            same configuration, seed and scale) from FROM/exp1
#   SHORT=1  smoke-test scale: a few steps of a shrunk model
#   REDUCED=1  the scale of RESULTS.md: the tiny presets at width 64
#            (embeddings 32, context 16), 200 steps of 32
#   PARALLEL=1  train the seeds at the same time (one process each)
#   COLLECT_ONLY=1  train nothing: tables and charts of the runs done
#   KEEP_OPTIM=0  delete each finished run's optimizer state (twice the
#            model's size; the run can then not be resumed), keep the model
#   STEPS, BATCH, LOG_EVERY, VAL_EVERY  override the mode's scale
#
# Full mode: the recipe of examples/demo.sh (tiny presets, 900 steps of
# 256, peak lr 1.5e-3 after 25 warmup steps). A finished run (its
# eval.json exists) is not trained again: rerunning an experiment only
# redraws its summary and plots.
#
# Each run RUN = OUT/expN/runs/NAME/seedS holds what vlm-train writes
# (metrics.jsonl, the final checkpoint with the optimizer state, and
# latest/model.safetensors, the trained model, kept so that others can
# evaluate it; OUT/expN/models.tsv lists them), wall_s (training
# seconds), eval.json (the vlm-eval JSON lines) and, for MoE models,
# routes.json (vlm-route-stats --json on the Twitter-style images and
# captions). OUT/expN/results.tsv has one row per run and metric;
# summary.tsv the mean and sample standard deviation over seeds.
set -eu
BIN=${BIN:-bin}
DATA=${DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/vlm/emoji}
OUT=${OUT:-results}
SEEDS=${SEEDS:-1 2 3}
if [ "${SHORT:-0}" = 1 ]; then
	STEPS=${STEPS:-6} BATCH=${BATCH:-16} LOG_EVERY=${LOG_EVERY:-3}
	# a shrunk model: 2 blocks of width 32 (MoE in block 1)
	SCALE="--set vision.layers=2 --set text.layers=2 --set vision.width=32
	    --set text.width=32 --set vision.heads=2 --set text.heads=2
	    --set embed_dim=16 --set image_size=16"
elif [ "${REDUCED:-0}" = 1 ]; then
	STEPS=${STEPS:-200} BATCH=${BATCH:-32} LOG_EVERY=${LOG_EVERY:-10}
	VAL_EVERY=${VAL_EVERY:-100}
	SCALE="--set vision.width=64 --set text.width=64 --set embed_dim=32
	    --set context=16"
else
	STEPS=${STEPS:-900} BATCH=${BATCH:-256} LOG_EVERY=${LOG_EVERY:-50}
	SCALE=""
fi

rp_die() { echo "reproduce: $*" >&2; exit 1; }

# rp_start N: the results directory R of experiment N, the data present
rp_start() {
	N=$1 R=$OUT/exp$1
	mkdir -p "$R/runs" || rp_die "cannot create '$R'"
	[ -f "$DATA/google-base.tsv" ] || sh examples/fetch-emoji.sh "$DATA"
	for f in google-base.tsv twitter-base.tsv google-category \
	    twitter-category twitter-subcategory; do
		[ -e "$DATA/$f" ] || rp_die "'$DATA/$f' missing"
	done
	printf '{}\n' >"$R/templates.txt"
	tail -n +2 "$DATA/twitter-base.tsv" | cut -f 2 >"$R/captions.txt"
	echo "== experiment $1: $STEPS steps of $BATCH, seeds $SEEDS -> $R" >&2
}

# rp_seeds FN: FN SEED for each seed, one after another or, with
# PARALLEL=1, at the same time; fails when one did
rp_seeds() {
	if [ "${PARALLEL:-0}" != 1 ]; then
		for seed in $SEEDS; do "$1" "$seed"; done
		return
	fi
	pids=""
	for seed in $SEEDS; do
		"$1" "$seed" &
		pids="$pids $!"
	done
	rc=0
	for p in $pids; do wait "$p" || rc=1; done
	[ $rc = 0 ] || rp_die "a run of experiment $N failed"
}

# rp_train NAME SEED VLM-TRAIN-OPTIONS...: one training run into
# R/runs/NAME/seedSEED, then its evaluation; nothing when it is done
rp_train() {
	name=$1 seed=$2
	shift 2
	run=$R/runs/$name/seed$seed
	[ -f "$run/eval.json" ] && return 0
	[ "${COLLECT_ONLY:-0}" = 1 ] && return 0
	rm -rf "$run"
	mkdir -p "$(dirname "$run")"
	echo "-- $name seed $seed" >&2
	start=$(date +%s)
	# shellcheck disable=SC2086
	"$BIN/vlm-train" --data "$DATA/google-base.tsv" --alpha white \
	    -o "$run" --steps "$STEPS" -b "$BATCH" --lr 1.5e-3 --warmup 25 \
	    --seed "$seed" --log-every "$LOG_EVERY" \
	    --val-data "$DATA/twitter-base.tsv" --val-every "${VAL_EVERY:-$LOG_EVERY}" \
	    $SCALE "$@"
	echo $(( $(date +%s) - start )) >"$run/wall_s"
	[ "${KEEP_OPTIM:-1}" = 1 ] || rm -f "$run"/ckpt-*/optim.safetensors
	rp_eval "$run"
}

# rp_reuse NAME SEED N OTHER: run OTHER of experiment N under FROM as
# run NAME, a symbolic link (the same configuration, seed and scale:
# vlm-train is deterministic), when that run is done; else false
rp_reuse() {
	src=${FROM:-$OUT}/exp$3/runs/$4/seed$2
	[ -f "$src/eval.json" ] || return 1
	mkdir -p "$R/runs/$1"
	rm -rf "$R/runs/$1/seed$2"
	ln -s "$(cd "$src" && pwd)" "$R/runs/$1/seed$2"
}

# rp_eval RUN: retrieval on the Twitter-style pairs, zero-shot
# category and subcategory, linear probe of categories (trained on the
# Google-style embeddings, tested on the Twitter style) into RUN/eval.json;
# a MoE model's routing into RUN/routes.json
rp_eval() {
	m=$1/latest/model.safetensors
	tmp=$1/eval.json.tmp
	{
		"$BIN/vlm-eval" retrieval -m "$m" \
		    --pairs "$DATA/twitter-base.tsv" --json
		for t in category subcategory; do
			"$BIN/vlm-eval" zeroshot -m "$m" --json \
			    --images "$DATA/twitter-$t" \
			    --classnames "$DATA/twitter-$t/classnames.txt" \
			    --templates "$R/templates.txt" >"$tmp.$t"
			sed "s/\"acc/\"${t}_acc/g; s/\"mean_per/\"${t}_mean_per/" \
			    "$tmp.$t"
			rm "$tmp.$t"
		done
		"$BIN/vlm-eval" linear-probe -m "$m" --json \
		    --train "$DATA/google-category" \
		    --test "$DATA/twitter-category"
	} >"$tmp"
	if "$BIN/vlm-convert" info "$m" | grep -q '^experts:'; then
		"$BIN/vlm-route-stats" -m "$m" --json \
		    --images "$DATA/twitter-category" \
		    --text "$R/captions.txt" >"$1/routes.json"
	fi
	mv "$tmp" "$1/eval.json"
}

# rp_collect: R/results.tsv (name, seed, metric, value) from every run's
# eval.json, wall_s and last metrics line; then rp_summary: R/summary.tsv
# (name, metric, mean, sd, n) over the seeds
rp_collect() {
	printf 'name\tseed\tmetric\tvalue\n' >"$R/results.tsv"
	for run in "$R"/runs/*/seed*; do
		[ -f "$run/eval.json" ] || continue
		n=$(basename "$(dirname "$run")") s=${run##*/seed}
		{
			sed 's/.*"metrics": {//; s/}.*//; s/, /\n/g' \
			    "$run/eval.json" | tr -d '"' | sed 's/: /\t/'
			printf 'wall_s\t%s\n' "$(cat "$run/wall_s")"
			tail -n 1 "$run/metrics.jsonl" | rp_moe_means
			[ ! -f "$run/routes.json" ] ||
			    rp_route_means "$run/routes.json"
		} | grep -v '^weight_decay' | sed "s/^/$n\t$s\t/" >>"$R/results.tsv"
	done
	rp_summary
	rp_models
}

# rp_models: R/models.tsv, the trained model of each run (its path under
# R, bytes and SHA-256: a rerun on the same thread count gives the same
# bits), the file to evaluate again
rp_models() {
	printf 'name\tseed\tmodel\tbytes\tsha256\n' >"$R/models.tsv"
	for run in "$R"/runs/*/seed*; do
		m=$run/latest/model.safetensors
		[ -f "$run/eval.json" ] && [ -f "$m" ] || continue
		printf '%s\t%s\t%s\t%s\t%s\n' "$(basename "$(dirname "$run")")" \
		    "${run##*/seed}" "${m#"$R"/}" "$(wc -c <"$m")" \
		    "$(sha256sum <"$m" | cut -d ' ' -f 1)"
	done >>"$R/models.tsv"
}

# rp_summary: R/summary.tsv from R/results.tsv
rp_summary() {
	awk -F '\t' 'NR > 1 {
		k = $1 "\t" $3
		if (!(k in n)) order[++nk] = k
		n[k]++; s[k] += $4; ss[k] += $4 * $4
	} END {
		print "name\tmetric\tmean\tsd\tn"
		for (i = 1; i <= nk; i++) {
			k = order[i]; m = s[k] / n[k]
			v = n[k] > 1 ? (ss[k] - n[k] * m * m) / (n[k] - 1) : 0
			printf "%s\t%.4f\t%.4f\t%d\n", k, m, (v > 0 ? sqrt(v) : 0), n[k]
		}
	}' "$R/results.tsv" >"$R/summary.tsv"
}

# a metrics.jsonl line on stdin: the mean over MoE layers of each
# eff_experts_* and dropped_* key, as "key<TAB>value" lines
rp_moe_means() {
	tr '{},' '\n\n\n' | awk -F ':' '
	/^"(eff_experts|dropped)_/ { gsub(/"/, "", $1); s[$1] += $2; n[$1]++ }
	END { for (k in s) printf "train_%s\t%.4f\n", k, s[k] / n[k] }' |
	    sort
}

# rp_route_means ROUTES: from vlm-route-stats --json, per modality the
# mean over MoE layers of exp(H) of the experts' shares of its top-K
# assignments before capacity, as "route_eff_assigned_MOD<TAB>value"
# lines: the experts a modality is actually sent to (eff_experts in
# metrics.jsonl is exp(H) of the mean gate probabilities, which stays
# near E while the top choices crowd onto a few experts)
rp_route_means() {
	awk '/"label":/ { l++ }
	/^ *"(image|text|all)": \{/ { m = $1; gsub(/[":{ ]/, "", m) }
	/"load":/ { v = $2 + 0
		if (v > 0) { k = l SUBSEP m; t[k] += v; x[k, ++n[k]] = v } }
	END { for (k in t) { h = 0
		for (i = 1; i <= n[k]; i++) { p = x[k, i] / t[k]; h -= p * log(p) }
		split(k, a, SUBSEP); s[a[2]] += exp(h); c[a[2]]++ }
	for (q in s) printf "route_eff_assigned_%s\t%.4f\n", q, s[q] / c[q] }' \
	    "$1" | sort
}

# rp_table METRIC...: the summary as a markdown table, one row per name
rp_table() {
	awk -F '\t' -v want="$*" 'BEGIN {
		nm = split(want, ms, " ")
		printf "| model |"; for (i = 1; i <= nm; i++) printf " %s |", ms[i]
		printf "\n|---|"; for (i = 1; i <= nm; i++) printf "---|"
		printf "\n"
	} NR > 1 {
		if (!($1 in seen)) { seen[$1] = 1; names[++nn] = $1 }
		v[$1, $2] = sprintf("%.4f +- %.4f", $3, $4)
	} END {
		for (j = 1; j <= nn; j++) {
			printf "| %s |", names[j]
			for (i = 1; i <= nm; i++) {
				x = v[names[j], ms[i]]
				printf " %s |", x == "" ? "-" : x
			}
			printf "\n"
		}
	}' "$R/summary.tsv"
}

# rp_curves KEY TITLE FILE: KEY of every run's metrics.jsonl against the
# step, one colour per name, as a PNG (vlm-eval plot)
rp_curves() {
	key=$1 title=$2 png=$3
	set --
	for run in "$R"/runs/*/seed*; do
		[ -f "$run/eval.json" ] || continue
		set -- "$@" "$(basename "$(dirname "$run")")=$run/metrics.jsonl"
	done
	"$BIN/vlm-eval" plot -y "$key" --title "$title" -o "$png" "$@"
}

# rp_bars METRIC TITLE FILE: the metric's mean and spread per name
rp_bars() {
	awk -F '\t' -v m="$1" 'BEGIN { print "name\tseries\t" m }
	    NR > 1 && $3 == m { print $1 "\t" m "\t" $4 }' "$R/results.tsv" \
	    >"$R/bars-$1.tsv"
	"$BIN/vlm-eval" plot --bars --tsv "$R/bars-$1.tsv" --title "$2" \
	    -o "$3"
}
