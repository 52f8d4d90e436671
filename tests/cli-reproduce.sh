#!/bin/sh
# cli-reproduce.sh - the experiment scripts of examples/reproduce in
# their smoke-test mode (SHORT=1, one seed) on a synthetic stand-in for
# the emoji data (tests/mkshapes.py: coloured shapes; categories are the
# colours, subcategories the shapes), so that they run offline and
# cannot rot: each writes its results directory (per-run eval.json and
# metrics, results.tsv, summary.tsv, table.md, PNG charts), and a rerun
# trains nothing again. The sweeps are cut to two points (E = 4, 8;
# cf_eval 0.5, 2; TokenLearner after block 0) to keep it short.
. tests/lib.sh
have_py "the reproduction scripts (all)" PIL || { finish; exit; }

D=$T/data
# style DIR N: N shapes into D/DIR, pairs D/DIR-base.tsv, trees by colour
# (category) and shape (subcategory)
style() {
	/usr/bin/python3 tests/mkshapes.py "$D/$1" "$2"
	sed "2,\$s|^|$1/|" "$D/$1/pairs.tsv" >"$D/$1-base.tsv"
	tail -n +2 "$D/$1/pairs.tsv" | while IFS='	' read -r p cap; do
		set -- "$1" $cap
		for t in category:$3 subcategory:$4; do
			mkdir -p "$D/$1-${t%%:*}/${t#*:}"
			ln -s "../../$1/$p" "$D/$1-${t%%:*}/${t#*:}/"
		done
		set -- "$1"
	done
	for t in category subcategory; do
		ls "$D/$1-$t" >"$T/classes"
		mv "$T/classes" "$D/$1-$t/classnames.txt"
	done
}
mkdir -p "$D"
style google 36
style twitter 24

for e in examples/reproduce/exp*.sh; do
	n=$(basename "$e" .sh)
	n=${n%%-*}
	env BIN="$BIN" DATA="$D" OUT="$T/res" SHORT=1 SEEDS=1 ES="4 8" \
	    CFS="0.5 2" LS=0 sh "$e" \
	    >"$T/out.log" 2>"$T/err.log"
	rc=$?
	if [ $rc != 0 ]; then
		fail "$e (exit $rc)"; sed 's/^/#   /' "$T/err.log" | tail -5
		continue
	fi
	pass "$e"
	R=$T/res/$n
	check "$n: summary rows" '[ "$(wc -l <"$R/summary.tsv")" -gt 5 ]'
	check "$n: a markdown table" 'grep -q "^|---|" "$R/table.md"'
	for p in "$R"/*.png; do
		check "$n: $(basename "$p") is a PNG" \
		    '[ "$(od -An -c -j1 -N3 "$p" | tr -d " ")" = PNG ]'
	done
done
R=$T/res/exp1
check "exp1: five models" \
    '[ "$(ls "$R/runs" | tr "\n" " ")" = "one-tower-dense one-tower-moe two-tower-dense two-tower-moe vl-moe-pools " ]'
for m in image_retrieval_recall@1 text_retrieval_recall@10 category_acc1 \
    subcategory_acc1 lp_acc1 wall_s train_eff_experts_text \
    train_dropped_image route_eff_assigned_image route_eff_assigned_text; do
	check "exp1: $m of a run" \
	    'grep -q "^one-tower-moe	1	$m	[0-9.e+-]*$" "$R/results.tsv"'
done
check "exp1: routing of the MoE runs only" \
    '[ -s "$R/runs/one-tower-moe/seed1/routes.json" ] && [ ! -e "$R/runs/one-tower-dense/seed1/routes.json" ]'
check "exp1: assigned experts of MoE runs only, between 1 and E" \
    '! grep -q "^one-tower-dense	1	route_eff" "$R/results.tsv" &&
    awk -F "\t" "\$3 ~ /^route_eff/ && !(\$4 >= 1 && \$4 <= 8) { exit 1 }" "$R/results.tsv"'
check "exp1: FLOPs of each model" \
    '[ "$(grep -c "^forward GFLOPs per image" "$R/flops.txt")" = 5 ]'
check "exp2: all is exp1's one-tower-moe" \
    '[ -L "$T/res/exp2/runs/all/seed1" ]'
check "exp1: models.tsv, one trained model per run with its SHA-256" \
    '[ "$(tail -n +2 "$R/models.tsv" | wc -l)" = 5 ] &&
    m=$(awk -F "\t" "\$1 == \"one-tower-moe\" { print \$3 \" \" \$5 }" "$R/models.tsv") &&
    [ "$(sha256sum <"$R/${m% *}" | cut -d " " -f 1)" = "${m#* }" ]'
R3=$T/res/exp3
check "exp3: the trained and the untrained experts" \
    'grep -q "^trained	1	block 1	0	" "$R3/img-share.tsv" &&
    grep -q "^untrained	1	block 1	0	" "$R3/img-share.tsv"'
check "exp3: normalised shares in [0, 1], kinds by the 0.1 and 0.9 bounds" \
    'awk -F "\t" "NR > 1 { n++ } NR > 1 && \$7 >= 0 && \$7 <= 1 &&
    (\$7 > 0.9) == (\$8 == \"image\") && (\$7 < 0.1) == (\$8 == \"text\") { k++ }
    END { exit !(n == 16 && k == n) }" "$R3/img-share.tsv"'
check "exp3: 8 experts per model and layer in the histogram" \
    '[ "$(awk -F "\t" "NR > 1 { s += \$3 } END { print s }" "$R3/hist-norm.tsv")" = 16 ]'
S6=$T/res/exp6/google-shuffled.tsv
check "exp6: the shuffled source keeps every image, captions permuted" \
    '[ "$(wc -l <"$S6")" = "$(wc -l <"$D/google-base.tsv")" ] &&
    [ "$(tail -n +2 "$S6" | cut -f 2 | sort)" = "$(tail -n +2 "$D/google-base.tsv" | cut -f 2 | sort)" ] &&
    ! tail -n +2 "$S6" | cut -f 1 | while read -r f; do [ -f "$f" ] || echo x; done | grep -q x &&
    [ "$(tail -n +2 "$S6" | cut -f 2)" != "$(tail -n +2 "$D/google-base.tsv" | cut -f 2)" ]'
ok "KEEP_OPTIM=0" env BIN="$BIN" DATA="$D" OUT="$T/res2" SHORT=1 SEEDS=1 \
    ES=4 KEEP_OPTIM=0 sh examples/reproduce/exp5-experts.sh
check "KEEP_OPTIM=0 keeps the model and its evaluation, not the optimizer" \
    '[ -s "$T/res2/exp5/runs/e4/seed1/latest/model.safetensors" ] &&
    [ -s "$T/res2/exp5/runs/e4/seed1/eval.json" ] &&
    [ -z "$(find "$T/res2/exp5/runs" -name optim.safetensors)" ] &&
    [ -n "$(find "$T/res/exp5/runs" -name optim.safetensors)" ]'
touch "$T/stamp"
sleep 1
ok "a rerun" env BIN="$BIN" DATA="$D" OUT="$T/res" SHORT=1 SEEDS=1 \
    sh examples/reproduce/exp1-dense-vs-moe.sh
check "trains nothing again" \
    '[ -z "$(find "$T/res/exp1/runs" -newer "$T/stamp" -name metrics.jsonl)" ]'
finish
