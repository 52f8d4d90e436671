#!/bin/sh
# cli-plot.sh - vlm-eval plot: charts of hand-written metrics.jsonl runs
# and sweep TSVs have the asked size (read from the PNG header), bad
# inputs fail with one line naming the file and leave no chart, usage
# errors exit 2. (test-plot checks the pixels.)
. tests/lib.sh
P="$BIN/vlm-eval plot"

# png_size FILE: "W H" from the IHDR chunk
png_size() {
	od -An -tu1 -j16 -N8 "$1" | awk '{
		print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4,
		    $5 * 16777216 + $6 * 65536 + $7 * 256 + $8 }'
}

for s in 1 2; do
	mkdir -p "$T/dense/seed$s" "$T/moe/seed$s"
	for i in 1 2 3 4; do
		printf '{"step":%d,"loss":%d.5,"moe":[{"eff_experts_text":%d},{"eff_experts_text":3}]}\n' \
		    $((i * 10)) $((5 - i)) "$i"
	done | tee "$T/moe/seed$s/metrics.jsonl" |
	    sed 's/,"moe".*/}/' >"$T/dense/seed$s/metrics.jsonl"
done
printf '{"step":40,"val_image_retrieval_recall@1":0.2}\n' \
    >>"$T/dense/seed1/metrics.jsonl"

ok "curves of four runs" $P -y loss --title "loss" -o "$T/a.png" \
    "$T"/dense/seed*/metrics.jsonl "$T"/moe/seed*/metrics.jsonl
check "curves: 720 x 440" '[ "$(png_size "$T/a.png")" = "720 440" ]'
ok "moe.KEY averaged over layers" $P -y moe.eff_experts_text --size 400x300 \
    -o "$T/b.png" "$T"/moe/seed1/metrics.jsonl
check "--size 400x300" '[ "$(png_size "$T/b.png")" = "400 300" ]'
ok "label=file, a key on one line only" $P \
    -y val_image_retrieval_recall@1 -o "$T/c.png" "d=$T/dense/seed1/metrics.jsonl"
fails "a key on no line: nothing to draw" 1 $P -y nosuch -o "$T/d.png" \
    "$T/dense/seed1/metrics.jsonl"
check "no chart when nothing to draw" '[ ! -e "$T/d.png" ]'
check "the message says so" 'grep -q "no finite point" "$T/err"'
fails "a missing run" 1 $P -y loss -o "$T/e.png" "$T/dense/seed1/metrics.jsonl" \
    "$T/nosuch.jsonl"
check "no chart with a missing run" '[ ! -e "$T/e.png" ]'
check "the message names the file" 'grep -q "nosuch.jsonl" "$T/err"'
{ cat "$T/dense/seed2/metrics.jsonl"; echo '{"step":5,'; } >"$T/bad.jsonl"
fails "a line that is not JSON" 1 $P -y loss -o "$T/f.png" "$T/bad.jsonl"
check "its line number" 'grep -q "bad.jsonl: line 5" "$T/err"'

printf 'cf\tseries\tvalue\n0.5\tacc\t0.2\n0.5\tacc\t0.3\n1\tacc\t0.5\n2\tdrop\t0.1\n' \
    >"$T/sweep.tsv"
ok "a sweep as lines" $P --tsv "$T/sweep.tsv" -o "$T/g.png"
check "sweep: 720 x 440" '[ "$(png_size "$T/g.png")" = "720 440" ]'
printf 'model\tmetric\tvalue\ndense\tr1\t0.1\nmoe\tr1\t0.2\n' >"$T/bars.tsv"
ok "bars" $P --tsv "$T/bars.tsv" --bars -o "$T/h.png"
fails "names as x of a line chart" 1 $P --tsv "$T/bars.tsv" -o "$T/i.png"
check "the message suggests --bars" 'grep -q -- "--bars" "$T/err"'
printf 'x\ts\tv\n1\ta\tlots\n' >"$T/nan.tsv"
fails "a value that is not a number" 1 $P --tsv "$T/nan.tsv" -o "$T/j.png"
check "its line" 'grep -q "nan.tsv: line 2" "$T/err"'
fails "no -o" 2 $P -y loss "$T/dense/seed1/metrics.jsonl"
fails "no -y" 2 $P -o "$T/k.png" "$T/dense/seed1/metrics.jsonl"
fails "--tsv and runs" 2 $P --tsv "$T/bars.tsv" -o "$T/k.png" \
    "$T/dense/seed1/metrics.jsonl"
fails "a bad --size" 2 $P -y loss --size 10x10 -o "$T/k.png" \
    "$T/dense/seed1/metrics.jsonl"
fails "an unwritable output" 1 $P -y loss -o "$T/no/dir/k.png" \
    "$T/dense/seed1/metrics.jsonl"
finish
