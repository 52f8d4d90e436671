#!/bin/sh
# cli-train.sh - vlm-train end to end on a synthetic set: metrics and
# checkpoints, bit-identical resume, signals, SIGKILL during checkpoint
# writes, a NaN loss, bad rows and bad configs.
. tests/lib.sh

TR=$BIN/vlm-train
. tests/tiny-run.sh

ok "train 6 steps" "$TR" --data "$P" $SMALL -o "$T/a" --steps 6 --log-every 2
check "metrics: one line per logged step" "[ \$(wc -l <$T/a/metrics.jsonl) = 3 ]"
check "metrics carry losses, lr, temperature, routing" \
    "/usr/bin/python3 -c 'import json,sys
for l in open(\"$T/a/metrics.jsonl\"):
    o = json.loads(l)
    for k in (\"step\",\"epoch\",\"samples\",\"lr\",\"loss\",\"contrastive\",
              \"aux\",\"logit_scale\",\"images_per_s\",\"moe\",
              \"peak_rss_mb\",\"peak_ratio\"):
        assert k in o, k
    assert \"eff_experts_text\" in o[\"moe\"][0]
'"
check "latest points at the final checkpoint" \
    "[ \$(readlink $T/a/latest) = ckpt-00000006 ]"
ok "the checkpoint's model is a model" "$BIN/vlm-convert" info \
    "$T/a/latest/model.safetensors"
check "it carries the tokenizer learnt from the captions" \
    "grep -q tokenizer.merges $T/out"

ok "validation during training" "$TR" --data "$P" $SMALL -o "$T/v" \
    --steps 4 --val-data "$P" --val-every 2 --log-every 100
check "val recall logged at steps 2 and 4, values in [0, 1]" \
    "/usr/bin/python3 -c 'import json
L = [json.loads(l) for l in open(\"$T/v/metrics.jsonl\")]
assert [l[\"step\"] for l in L] == [2, 4], L
for l in L:
    for d in (\"image\", \"text\"):
        r = [l[\"val_%s_retrieval_recall@%d\" % (d, k)] for k in (1, 5, 10)]
        assert 0 <= r[0] <= r[1] <= r[2] <= 1, r
'"
ok "interrupted run: stop at step 3" "$TR" --data "$P" $SMALL -o "$T/b" \
    --steps 6 --stop-at 3
ok "resume to step 6" "$TR" --data "$P" --resume "$T/b" --steps 6 -b 8 \
    --warmup 2
check "resumed parameters are bit-identical" \
    "cmp -s $T/a/latest/model.safetensors $T/b/latest/model.safetensors"
check "and so are the optimizer moments" \
    "cmp -s $T/a/latest/optim.safetensors $T/b/latest/optim.safetensors"

for sig in INT TERM; do
	"$TR" --data "$P" $SMALL -o "$T/s$sig" --steps 100000 \
	    --log-every 1 >/dev/null 2>&1 &
	pid=$!
	i=0
	while [ ! -s "$T/s$sig/metrics.jsonl" ] && [ $i -lt 200 ]; do
		sleep 0.1; i=$((i + 1)); done
	kill -$sig $pid
	wait $pid
	got=$?
	want=130; [ $sig = TERM ] && want=143
	check "SIG$sig: exit $want (got $got)" "[ $got = $want ]"
	check "SIG$sig: a checkpoint of the step reached" \
	    "[ -f $T/s$sig/latest/state.json ]"
done

# SIGKILL at random moments of a run that checkpoints every step: the
# newest complete checkpoint always loads.
for k in 1 2 3; do
	"$TR" --data "$P" $SMALL -o "$T/k$k" --steps 100000 --save-every 1 \
	    --keep 2 >/dev/null 2>&1 &
	pid=$!
	i=0
	while [ ! -e "$T/k$k/latest" ] && [ $i -lt 300 ]; do
		sleep 0.05; i=$((i + 1)); done
	sleep 0.$((k * 3))
	kill -KILL $pid; wait $pid 2>/dev/null
	check "SIGKILL $k: latest is complete" \
	    "'$BIN/vlm-convert' info $T/k$k/latest/model.safetensors >/dev/null 2>&1 &&
	     '$BIN/vlm-convert' info $T/k$k/latest/optim.safetensors >/dev/null 2>&1 &&
	     /usr/bin/python3 -c 'import json; json.load(open(\"$T/k$k/latest/state.json\"))'"
done
ok "a killed run resumes" "$TR" --data "$P" --resume "$T/k3" -b 8 --steps 1
fails "a new run refuses a run directory with checkpoints" 1 "$TR" \
    --data "$P" $SMALL -o "$T/k3" --steps 1
check "and says to resume" "grep -q -- --resume $T/err"

fails "NaN loss stops the run" 1 "$TR" --data "$P" $SMALL -o "$T/nan" \
    --steps 50 --lr 1e30 --warmup 0
check "message names the step" "grep -q 'non-finite loss at step' $T/err"
check "nothing saved" "[ ! -e $T/nan/latest ]"

cp "$P" "$T/d/bad.tsv"
printf 'img/none.png\ta missing image\nimg/000.png\t\nonly-one-column\n' \
    >>"$T/d/bad.tsv"
ok "bad rows are skipped" "$TR" --data "$T/d/bad.tsv" $SMALL -o "$T/bad" \
    --steps 1
check "each bad row reported once with its line" \
    "[ \$(grep -c 'bad.tsv:' $T/err) = 3 ] && grep -q 'bad.tsv:50' $T/err"
fails "too many bad rows" 1 "$TR" --data "$T/d/bad.tsv" $SMALL \
    -o "$T/bad2" --steps 1 --max-bad 0.01
check "stopped before training" "[ ! -e $T/bad2/metrics.jsonl ]"
fails "config error up front" 1 "$TR" --data "$P" $SMALL --set moe.top_k=9 \
    -o "$T/cfg" --steps 1
check "no run directory" "[ ! -e $T/cfg ]"
ok "fine-tune a model file with a routing override" "$TR" --data "$P" \
    -m "$T/a/latest/model.safetensors" --set moe.cf_train=2 -b 8 \
    --steps 2 -o "$T/ft"
fails "fine-tuning refuses shape-changing overrides" 1 "$TR" --data "$P" \
    -m "$T/a/latest/model.safetensors" --set moe.experts=16 -b 8 \
    --steps 2 -o "$T/ft2"
check "and says why" "grep -q 'change the model' $T/err"
fails "missing --out" 2 "$TR" --data "$P" -m tiny
finish
