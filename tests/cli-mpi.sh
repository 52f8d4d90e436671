#!/bin/sh
# cli-mpi.sh - vlm-train data parallel over 2 MPI ranks (mpirun, 2 cores
# oversubscribed): a few steps end with parameters equal to one process
# on the same global batch to 1e-5 relative (tests/params-diff.py), dense
# and MoE (router noise, capacity drops, batch priority routing and the
# aux losses on: the routing group spans the ranks), with the same
# routing choices (logged during training and of the trained models),
# also with the experts split over the ranks (--expert-parallel 2, E = 4:
# each rank holds its experts and writes its shard of the checkpoint,
# --grad-clip by the norm over every rank's experts, --val-data on every
# rank with every expert gathered equal to one process's,
# vlm-convert merge joins them; stopped and resumed it equals an
# uninterrupted run bit for bit; a one-file model starts it; with 16
# experts rank 0 peaks lower than data parallel's),
# also with frozen parameters (packed gradients) and with LoRA on the
# experts (against 2 ranks without --expert-parallel); a two-tower MoE
# (data and expert parallel) with every step's gradient equal to one
# process's (VLM_GRAD_DUMP), its parameters with --eps 1e-2; a run
# stopped and resumed, and one killed by SIGTERM on one rank and
# resumed, equal an uninterrupted 2-rank run bit for bit; a NaN loss
# ends every rank with one message; a rank killed outright ends the
# run, and one stopped makes the other's collective time out (no hang);
# several sources with the
# adaptive sampler and gradient accumulation equal one process too; each
# rank decodes only its share of the batch, also of streamed shards.
. tests/lib.sh

. tests/mpi-run.sh
DENSE=$(echo "$SMALL" | sed 's/tiny-moe/tiny/')
ok "dense: one process, batch 8" "$TR" --data "$P" $DENSE -j 1 -n 4 \
    -o "$T/d1"
ok "dense: 2 ranks of 4" $MR "$TR" --data "$P" $DENSE -j 1 -n 4 -o "$T/d2"
ok "dense: parameters equal to 1e-5" $DIFF "$T/d1/latest/model.safetensors" \
    "$T/d2/latest/model.safetensors" 1e-5
sed 's/^/# /' "$T/out"
# same_loss A B: runs A and B logged the same loss every step, to 1e-5
# relative, as the parameters: the ranks' sums round differently
same_loss() {
	cut -d, -f5 "$1/metrics.jsonl" >"$1-loss"
	cut -d, -f5 "$2/metrics.jsonl" >"$2-loss"
	paste "$1-loss" "$2-loss" | sed 's/"loss"://g' | awk '{ d = $1 - $2
	    bad += d * d > 1e-10 * $1 * $1 } END { exit bad || !NR }'
}
check "the same loss logged" "same_loss $T/d1 $T/d2"
check "rank 0 alone wrote the run" "[ \$(ls $T/d2 | wc -l) = 4 ]"

# tiny-moe routes with noise 1, capacity factor 1 (tokens dropped), batch
# priority and LIMoE's aux losses
ok "moe: one process" "$TR" --data "$P" $SMALL -j 1 -n 4 -o "$T/m1"
ok "moe: 2 ranks" $MR "$TR" --data "$P" $SMALL -j 1 -n 4 -o "$T/m2"
ok "moe: parameters equal to 1e-5" $DIFF "$T/m1/latest/model.safetensors" \
    "$T/m2/latest/model.safetensors" 1e-5
sed 's/^/# /' "$T/out"
check "moe: tokens were dropped" "moe_log $T/m1 | grep -q \
    '\"dropped_[a-z]*\":0\.[0-9]*[1-9]'"
check "moe: the same routing logged" "same_moe $T/m1 $T/m2"
RS=$BIN/vlm-route-stats
for i in 1 2; do
	ok "moe: routing records of model $i" "$RS" -m \
	    "$T/m$i/latest/model.safetensors" --images "$T/d" -o "$T/r$i.npys"
done
ok "routing compared" "$RS" --tsv --diff "$T/r1.npys" "$T/r2.npys"
check "every token's choice agrees" "awk -F'\t' '
    NR == 1 { for (i = 1; i <= NF; i++) if (\$i == \"agree\") c = i; next }
    c && \$c != \"\" { n++; if (\$c + 0 != 1) bad++ }
    END { exit !(n > 0 && !bad) }' $T/out"

# expert parallel: E = 4 experts, 2 on each rank
E4="--set moe.experts=4"
ok "moe E=4: one process" "$TR" --data "$P" $SMALL $E4 -j 1 -n 4 -o "$T/e1"
ok "moe E=4: 2 ranks, --expert-parallel 2" $MR "$TR" --data "$P" $SMALL \
    $E4 -j 1 -n 4 -o "$T/e2" --expert-parallel 2
# each rank holds and saves its own experts: a checkpoint of shards
check "expert parallel: a model and an optim shard from each rank" \
    "[ \"\$(cd $T/e2/latest && ls)\" = \"\$(printf '%s\\n' \
    model-00000-of-00002.safetensors model-00001-of-00002.safetensors \
    optim-00000-of-00002.safetensors optim-00001-of-00002.safetensors \
    state.json)\" ]"
CV=$BIN/vlm-convert
ok "expert parallel: the shards merged into one model" $CV merge \
    "$T/e2/latest" -o "$T/e2/merged.safetensors"
ln -s "$T/e2/merged.safetensors" "$T/e2/latest/model.safetensors"
ok "expert parallel: parameters equal to 1e-5" $DIFF \
    "$T/e1/latest/model.safetensors" "$T/e2/latest/model.safetensors" 1e-5
sed 's/^/# /' "$T/out"
check "expert parallel: tokens were dropped" "moe_log $T/e1 | grep -q \
    '\"dropped_[a-z]*\":0\.[0-9]*[1-9]'"
check "expert parallel: the same routing logged" "same_moe $T/e1 $T/e2"
for i in 1 2; do
	ok "expert parallel: routing records of model $i" "$RS" -m \
	    "$T/e$i/latest/model.safetensors" --images "$T/d" -o "$T/q$i.npys"
done
ok "expert parallel: routing compared" "$RS" --tsv --diff "$T/q1.npys" \
    "$T/q2.npys"
check "every token's choice agrees" "awk -F'\t' '
    NR == 1 { for (i = 1; i <= NF; i++) if (\$i == \"agree\") c = i; next }
    c && \$c != \"\" { n++; if (\$c + 0 != 1) bad++ }
    END { exit !(n > 0 && !bad) }' $T/out"
# two towers, an MoE layer in each (a routing group per tower, each its
# own all-to-alls), seed 2: data parallel and expert parallel (E = 4)
# against one process. Every step's gradient agrees to rounding (at
# most 2.2e-6 of a tensor's norm measured; before the backward
# exchanged its own layer's row counts, expert parallel's was 0.97
# off), but at AdamW's default eps = 1e-6 the parameters end 2.2e-4
# apart after 4 steps: the first step moves an element by
# lr g / (|g| + eps), and one whose gradient is 6.7e-8 in one process
# and 5.3e-8 over 2 ranks (a rounding difference, 2.4e-7 of its
# tensor's gradient) moves 3.3e-6 apart, all of the difference. So the
# gradients each step is given are compared (VLM_GRAD_DUMP) to 1e-5 of
# each tensor's norm, and the parameters to 1e-5 with --eps 1e-2, where
# a gradient difference d moves AdamW's first step by at most
# lr d / eps = 100 lr d (1e6 lr d at eps = 1e-6).
TT="$SMALL $E4 --set family=two-tower --seed 2 -j 1 -n 4"
mkdir "$T/tg1" "$T/tg2" "$T/tg3"
ok "two towers: one process" env VLM_GRAD_DUMP="$T/tg1" "$TR" --data "$P" \
    $TT -o "$T/t1"
ok "two towers: 2 ranks" env VLM_GRAD_DUMP="$T/tg2" $MR "$TR" --data "$P" \
    $TT -o "$T/t2"
ok "two towers: 2 ranks, --expert-parallel 2" env VLM_GRAD_DUMP="$T/tg3" \
    $MR "$TR" --data "$P" $TT -o "$T/t3" --expert-parallel 2
for s in 1 2 3 4; do
	g=grad-0000000$s
	ok "two towers, expert parallel: step $s's gradient shards merged" \
	    $CV merge "$T/tg3/$g" -o "$T/tg3/$g.safetensors"
	for r in 2 3; do
		n="two towers, 2 ranks$([ $r = 3 ] && echo ', expert parallel')"
		ok "$n: step $s's gradient equal to 1e-5" $DIFF \
		    "$T/tg1/$g.safetensors" "$T/tg$r/$g.safetensors" 1e-5
		sed 's/^/# /' "$T/out"
	done
done
check "two towers: the same routing logged" "same_moe $T/t1 $T/t2"
check "two towers, expert parallel: the same routing logged" \
    "same_moe $T/t1 $T/t3"
echo "# two towers, eps 1e-6, after 4 steps:" \
    "$($DIFF "$T/t1/latest/model.safetensors" \
    "$T/t2/latest/model.safetensors")"
ok "two towers, --eps 1e-2: one process" "$TR" --data "$P" $TT --eps 1e-2 \
    -o "$T/t4"
ok "two towers, --eps 1e-2: 2 ranks" $MR "$TR" --data "$P" $TT --eps 1e-2 \
    -o "$T/t5"
ok "two towers, --eps 1e-2: 2 ranks, --expert-parallel 2" $MR "$TR" \
    --data "$P" $TT --eps 1e-2 -o "$T/t6" --expert-parallel 2
ok "two towers, expert parallel: merged" $CV merge "$T/t6/latest" \
    -o "$T/t6/merged.safetensors"
ln -s "$T/t6/merged.safetensors" "$T/t6/latest/model.safetensors"
for r in 4 5 6; do
	ok "two towers, run $r: routing records" "$RS" -m \
	    "$T/t$r/latest/model.safetensors" --images "$T/d" -o "$T/tr$r.npys"
	[ $r = 4 ] && continue
	ok "two towers, --eps 1e-2, run $r: parameters equal to 1e-5" $DIFF \
	    "$T/t4/latest/model.safetensors" \
	    "$T/t$r/latest/model.safetensors" 1e-5
	sed 's/^/# /' "$T/out"
	ok "two towers, run $r: routing compared" "$RS" --tsv --diff \
	    "$T/tr4.npys" "$T/tr$r.npys"
	check "every token's choice agrees" "awk -F'\t' '
	    NR == 1 { for (i = 1; i <= NF; i++) if (\$i == \"agree\") c = i
		next }
	    c && \$c != \"\" { n++; if (\$c + 0 != 1) bad++ }
	    END { exit !(n > 0 && !bad) }' $T/out"
done
# --grad-clip with sharded experts: the norm of the whole parameters'
# gradient (counted once) and every rank's experts', the same clip
# factor on every rank; 0.05 clips (the clipped run differs from the
# unclipped one)
GC="--data $P $SMALL $E4 -j 1 -n 4 --grad-clip 0.05"
ok "--grad-clip: one process" "$TR" $GC -o "$T/g1"
ok "--grad-clip: 2 ranks, --expert-parallel 2" $MR "$TR" $GC -o "$T/g2" \
    --expert-parallel 2
ok "--grad-clip, expert parallel: merged" $CV merge "$T/g2/latest" \
    -o "$T/g2.st"
fails "--grad-clip 0.05 clips (differs from no clip)" 1 $DIFF \
    "$T/e1/latest/model.safetensors" "$T/g1/latest/model.safetensors" 1e-3
sed 's/^/# /' "$T/out"
ok "--grad-clip, expert parallel: parameters equal to 1e-5" $DIFF \
    "$T/g1/latest/model.safetensors" "$T/g2.st" 1e-5
sed 's/^/# /' "$T/out"
# frozen parameters: the gradients packed (here, one tower, all but the
# image-only ones and the logit scale left out: the frozen experts get
# none), the logit scale's at its packed place
ok "moe E=4, --lock-text: one process" "$TR" --data "$P" $SMALL $E4 \
    --lock-text -j 1 -n 4 -o "$T/f1"
ok "moe E=4, --lock-text: 2 ranks, --expert-parallel 2" $MR "$TR" \
    --data "$P" $SMALL $E4 --lock-text -j 1 -n 4 -o "$T/f2" \
    --expert-parallel 2
ok "expert parallel, --lock-text: the shards merged" $CV merge \
    "$T/f2/latest" -o "$T/f2.safetensors"
ok "expert parallel, --lock-text: parameters equal to 1e-5" $DIFF \
    "$T/f1/latest/model.safetensors" "$T/f2.safetensors" 1e-5
sed 's/^/# /' "$T/out"
# the sharded checkpoint: one process cannot resume it, merge needs
# every shard; stopped at step 2 and resumed as 2 ranks it equals an
# uninterrupted run bit for bit; a one-file model starts an expert
# parallel run, each rank taking its experts
fails "one process refuses a sharded checkpoint" 1 "$TR" --resume "$T/e2"
check "saying how to go on" "grep -q 'sharded over 2 ranks.*merge' $T/err"
mkdir "$T/half"
cp "$T/e2/latest/model-00000-of-00002.safetensors" "$T/half"
fails "merge without every shard fails" 1 $CV merge "$T/half" \
    -o "$T/half.safetensors"
check "naming the missing shard, writing nothing" \
    "grep -q 'model-00001-of-00002' $T/err && [ ! -e $T/half.safetensors ]"
ok "expert parallel: uninterrupted" $MR "$TR" --data "$P" $SMALL $E4 -j 1 \
    -n 5 -o "$T/eu" --expert-parallel 2
ok "expert parallel: stopped at step 2" $MR "$TR" --data "$P" $SMALL $E4 \
    -j 1 -n 5 --stop-at 2 -o "$T/es" --expert-parallel 2
ok "expert parallel: resumed" $MR "$TR" --resume "$T/es"
check "every shard equal bit for bit to the uninterrupted run's" \
    "for f in model-00000 model-00001 optim-00000 optim-00001; do
	cmp -s $T/eu/latest/\$f-of-00002.safetensors \
	    $T/es/latest/\$f-of-00002.safetensors || exit 1; done"
FT1="--data $P -m $T/e1/latest/model.safetensors -b 8 --warmup 1 --seed 3"
ok "from a model file: one process" "$TR" $FT1 -j 1 -n 2 -o "$T/o1"
ok "from a model file: 2 ranks, --expert-parallel 2" $MR "$TR" $FT1 \
    -j 1 -n 2 -o "$T/o2" --expert-parallel 2
ok "from a model file: merged" $CV merge "$T/o2/latest" -o "$T/o2.st"
ok "from a model file: parameters equal to 1e-5" $DIFF \
    "$T/o1/latest/model.safetensors" "$T/o2.st" 1e-5
sed 's/^/# /' "$T/out"
# memory: with 16 experts rank 0 of an expert parallel run holds half of
# them, their gradients and moments (peak RSS logged), well under rank 0
# of a data-parallel run holding them all
M16="$SMALL --set moe.experts=16 --set vision.width=128 --set text.width=128
-n 2"
ok "16 experts: 2 ranks data parallel" $MR "$TR" --data "$P" $M16 -j 1 \
    -o "$T/mdp"
ok "16 experts: 2 ranks --expert-parallel 2" $MR "$TR" --data "$P" $M16 \
    -j 1 -o "$T/mep" --expert-parallel 2
rss() {
	sed -n 's/.*"peak_rss_mb":\([0-9.]*\).*/\1/p' "$1/metrics.jsonl" |
	    tail -1
}
echo "# peak RSS of rank 0: data parallel $(rss $T/mdp) MB," \
    "expert parallel $(rss $T/mep) MB"
check "expert parallel holds less" "awk -v a=$(rss $T/mdp) \
    -v b=$(rss $T/mep) 'BEGIN { exit !(b > 0 && b < a) }'"
# LoRA on the experts: their gradients folded into the adapters' on the
# owner rank, the adapters' gradients summed over the ranks
S0=$T/start.safetensors
ok "a model to fine-tune" $BIN/vlm-convert init --seed 1 \
    --set vision.layers=2 --set text.layers=2 --set vision.width=32 \
    --set text.width=32 --set vision.heads=2 --set text.heads=2 \
    --set embed_dim=16 --set image_size=16 --set vocab=600 $E4 \
    tiny-moe "$S0"
FT="--data $P -m $S0 -b 8 --warmup 1 --seed 3 --lr 1e-2 --lora-rank 4 $E4"
# (against 2 ranks without it: one process differs in the first AdamW
# steps of adapters whose gradients are near 0, as on main)
ok "LoRA E=4: 2 ranks" $MR "$TR" $FT -j 1 -n 3 -o "$T/l1"
ok "LoRA E=4: 2 ranks, --expert-parallel 2" $MR "$TR" $FT -j 1 -n 3 \
    -o "$T/l2" --expert-parallel 2
ok "LoRA, expert parallel: parameters equal to 1e-5" $DIFF \
    "$T/l1/latest/model.safetensors" "$T/l2/latest/model.safetensors" 1e-5
sed 's/^/# /' "$T/out"
# --val-data with the experts split: every rank gathers every expert for
# the validation forward (the whole model), rank 0 compares the ranks'
# figures (a warning when they differ); the same as one process's
VD="--data $P --val-data $P --val-every 2 $SMALL $E4 -j 1 -n 4"
ok "--val-data: one process" "$TR" $VD -o "$T/v1"
ok "--val-data: 2 ranks, --expert-parallel 2" env VLM_DIST_STDERR=all \
    $MR "$TR" $VD -o "$T/v2" --expert-parallel 2
check "--val-data: every rank's validation figures the same" \
    "! grep -q 'figures differ' $T/err"
check "--val-data: logged at steps 2 and 4, equal to one process's (1e-5)" \
    "/usr/bin/python3 -c '
import json, sys
a, b = ([{k: v for k, v in json.loads(l).items()
    if k.startswith(\"val_\") or k == \"step\"}
    for l in open(f)] for f in sys.argv[1:])
a, b = ([x for x in r if len(x) > 1] for r in (a, b))
assert [x[\"step\"] for x in a] == [x[\"step\"] for x in b] == [2, 4]
for x, y in zip(a, b):
    assert x.keys() == y.keys() and len(x) == 7
    assert all(abs(x[k] - y[k]) <= 1e-5 * abs(x[k]) for k in x)
' $T/v1/metrics.jsonl $T/v2/metrics.jsonl"
fails "--expert-parallel 2 in one process is refused" 2 "$TR" --data "$P" \
    $SMALL $E4 -n 1 -o "$T/e3" --expert-parallel 2
check "saying why" "grep -q 'run it as 2 ranks' $T/err"

# stopped at step 2 and resumed; killed by SIGTERM on rank 1 and resumed
ok "2 ranks, uninterrupted" $MR "$TR" --data "$P" $SMALL -j 1 -n 6 \
    -o "$T/u"
ok "2 ranks, stopped at step 2" $MR "$TR" --data "$P" $SMALL -j 1 -n 6 \
    --stop-at 2 -o "$T/s"
ok "2 ranks, resumed" $MR "$TR" --resume "$T/s"
check "equal bit for bit to the uninterrupted run" \
    "cmp -s $T/u/latest/model.safetensors $T/s/latest/model.safetensors &&
     cmp -s $T/u/latest/optim.safetensors $T/s/latest/optim.safetensors"

# rank 1: the child of mpirun (itself the child of timeout) whose
# environment says so
rank1() {
	for p in $(pgrep -P "$1"); do
		for c in $(pgrep -P "$p"); do
			tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null |
			    grep -qx OMPI_COMM_WORLD_RANK=1 && echo "$c"
		done
	done
}
# signal_rank DIR SIGNAL STEPS [VAR=value...]: 2 ranks train into $T/DIR
# (stderr $T/DIR.err) in the background; after their first metrics line
# rank 1 gets SIGNAL; $st is the run's exit status
signal_rank() {
	dir=$1 sig=$2 n=$3
	shift 3
	env "$@" $MR "$TR" --data "$P" $SMALL -j 1 -n $n -o "$T/$dir" \
	    >/dev/null 2>"$T/$dir.err" &
	mp=$!
	i=0
	while [ ! -s "$T/$dir/metrics.jsonl" ] && [ $i -lt 300 ]; do
		sleep 0.1; i=$((i + 1))
	done
	r1=$(rank1 $mp)
	[ -n "$r1" ] || echo "# rank 1 of the run in $T/$dir not found"
	kill -$sig $r1
	wait $mp
	st=$?
}
N=100
signal_rank k TERM $N
check "SIGTERM on rank 1: exit 143 (got $st)" "[ $st = 143 ]"
last=$(tail -1 "$T/k/metrics.jsonl" | sed 's/{"step":\([0-9]*\).*/\1/')
check "both ranks stopped at step $last, checkpointed there" \
    "[ \$(readlink $T/k/latest) = ckpt-\$(printf %08d $last) ] &&
     [ $last -lt $N ]"
check "no message from vlm-train" "! grep -q vlm-train $T/k.err"
ok "the killed run resumed" $MR "$TR" --resume "$T/k"
ok "uninterrupted" $MR "$TR" --data "$P" $SMALL -j 1 -n $N -o "$T/k2"
check "equal bit for bit" \
    "cmp -s $T/k/latest/model.safetensors $T/k2/latest/model.safetensors"

# SIGTERM sent to mpirun itself: OpenMPI forwards it to every rank, which
# stop after the same step and checkpoint it, then SIGKILLs ranks still
# running odls_base_sigkill_timeout seconds later (here 30) and exits 1
# itself (its own status: the ranks' 143 is not passed on)
OMPI_MCA_odls_base_sigkill_timeout=30 $MR "$TR" --data "$P" $SMALL -j 1 \
    -n 100000 -o "$T/km" >/dev/null 2>"$T/km.err" &
mp=$!
i=0
while [ ! -s "$T/km/metrics.jsonl" ] && [ $i -lt 300 ]; do
	sleep 0.1; i=$((i + 1))
done
kill -TERM $(pgrep -P $mp mpirun)
wait $mp
st=$?
last=$(tail -1 "$T/km/metrics.jsonl" | sed 's/{"step":\([0-9]*\).*/\1/')
check "SIGTERM to mpirun: it exits 1 (got $st)" "[ $st = 1 ]"
check "the ranks stopped at step $last, checkpointed there" \
    "[ \$(readlink $T/km/latest) = ckpt-\$(printf %08d $last) ]"
ok "that run resumed for 3 steps" $MR "$TR" --resume "$T/km" \
    --stop-at $((last + 3))
ok "uninterrupted, stopped there" $MR "$TR" --data "$P" $SMALL -j 1 \
    -n 100000 --stop-at $((last + 3)) -o "$T/km2"
check "equal bit for bit" \
    "cmp -s $T/km/latest/model.safetensors $T/km2/latest/model.safetensors"

fails "NaN loss: every rank exits 1" 1 $MR "$TR" --data "$P" $SMALL -j 1 \
    -n 4 --lr 1e30 --warmup 0 -o "$T/nan"
check "with one message" "[ \$(grep -c 'non-finite loss' $T/err) = 1 ]"

# gone DIR: no process of the run writing DIR is left within 10 s (mpirun
# may return while the other rank is still being reaped)
gone() {
	i=0
	while pgrep -f -- "-o $1" >/dev/null && [ $i -lt 100 ]; do
		sleep 0.1; i=$((i + 1))
	done
	! pgrep -f -- "-o $1" >/dev/null
}
signal_rank x KILL 100000
check "rank 1 killed outright: the run ends non-zero (got $st)" \
    "[ $st != 0 ] && [ $st != 124 ] && gone $T/x"
signal_rank y STOP 100000 VLM_COMM_TIMEOUT=2
check "rank 1 stopped: the other times out, the run ends (got $st)" \
    "[ $st != 0 ] && [ $st != 124 ] &&
     grep -q 'rank 0: .*waited 2 s for the other ranks' $T/y.err"

# several sources, the adaptive sampler, 2 micro-batches a step
cp "$P" "$T/d/b.tsv"
MS="--data $P --data $T/d/b.tsv --adaptive --accum-freq 2 --log-every 2"
ok "sources: one process" "$TR" $MS $DENSE -j 1 -n 4 -o "$T/a1"
ok "sources: 2 ranks" $MR "$TR" $MS $DENSE -j 1 -n 4 -o "$T/a2"
ok "sources: parameters equal to 1e-5" $DIFF \
    "$T/a1/latest/model.safetensors" "$T/a2/latest/model.safetensors" 1e-5
sed 's/^/# /' "$T/out"
check "the same sampler statistics logged (to 1e-5)" "/usr/bin/python3 -c '
import json, sys
a, b = ([json.loads(l) for l in open(f)] for f in sys.argv[1:])
assert len(a) == len(b) == 2
for x, y in zip(a, b):
    for k in (\"source_p\", \"source_loss\"):
        assert all(abs(u - v) <= 1e-5 * abs(v) for u, v in zip(x[k], y[k]))
    assert x[\"source_examples\"] == y[\"source_examples\"]
' $T/a1/metrics.jsonl $T/a2/metrics.jsonl"

# each rank decodes only its share of the global batch: two unreadable
# images among 48 pairs (6 batches of 8, one epoch) are each read, and
# warned about, by one rank (all ranks' stderr shown), and are replaced
# as in one process: the same losses and routing logged
printf 'not an image' >"$T/d/img/bad1.png"
cp "$T/d/img/bad1.png" "$T/d/img/bad2.png"
{ head -47 "$P"; printf 'img/bad1.png\tbad\nimg/bad2.png\tbad\n'; } \
    >"$T/d/bad.tsv"
ok "bad images: one process" "$TR" --data "$T/d/bad.tsv" $SMALL -j 1 -n 6 \
    -o "$T/b1"
check "bad images: each warned once" "[ \$(grep -c 'bad[12].png.*skipped' \
    $T/err) = 2 ]"
ok "bad images: 2 ranks" env VLM_DIST_STDERR=all $MR "$TR" --data \
    "$T/d/bad.tsv" $SMALL -j 1 -n 6 -o "$T/b2"
check "bad images: each read by one rank" "[ \$(grep -c \
    'bad[12].png.*skipped' $T/err) = 2 ]"
# (the parameters differ by up to 1.1e-5 here, in the first AdamW steps
# of an expert whose gradient is near 0: compare what was trained on)
check "bad images: the same loss logged" "same_loss $T/b1 $T/b2"
check "bad images: the same routing logged" "same_moe $T/b1 $T/b2"
# streamed shards (a shuffle buffer): every rank reads the same stream
# and decodes its share of each batch
CV=$BIN/vlm-convert
mkdir -p "$T/sh"
ok "shards written" "$CV" shard -c 12 "$P" "$T/sh"
ok "streamed: one process" "$TR" --data "$T/sh/{0..3}.tar" \
    --shuffle-buffer 10 $SMALL -j 1 -n 4 -o "$T/w1"
ok "streamed: 2 ranks" $MR "$TR" --data "$T/sh/{0..3}.tar" \
    --shuffle-buffer 10 $SMALL -j 1 -n 4 -o "$T/w2"
ok "streamed: parameters equal to 1e-5" $DIFF \
    "$T/w1/latest/model.safetensors" "$T/w2/latest/model.safetensors" 1e-5
check "streamed: the same routing logged" "same_moe $T/w1 $T/w2"
finish
