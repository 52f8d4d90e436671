#!/bin/sh
# cli-mpi-sweep.sh - the distributed MoE paths over a table of tiny
# configurations: each trained 2 steps by one process, by 2 MPI ranks
# data parallel and by 2 ranks with --expert-parallel 2 (two rows: 4);
# every step's gradient (VLM_GRAD_DUMP, the expert shards joined by
# vlm-convert merge) equal to one process's to 1e-5 of each tensor's
# norm (tests/params-diff.py; rounding measured at most 5.8e-6; with the
# backward's row counts of the last forward layer, the bug fixed before,
# put back: 1.1 and 1.8) and the same routing logged (metrics.jsonl), with
# tokens dropped or not as the row says. The rows cover K = 2 (with
# and without top-K gate normalization) and K = E, MoE in every block
# and in the last ones only, MoE in the vision tower only, the text
# tower only and both (of unequal widths), two-tower and one-tower,
# modality experts (two pools a block), token reduction (an MoE stack
# each side of the cut), E = 8 over 2 ranks, capacities that drop
# tokens and ones that do not, batch priority routing off and on,
# router noise 0 and 1, the aux losses on and off, frozen towers
# (packed gradients), --accum-freq 2, --grad-clip (expert parallel's
# gradient is written clipped: compared with one process's clipped by
# tests/grad-clip.py) and LoRA on the experts and on everything.
. tests/lib.sh

CV=$BIN/vlm-convert
. tests/mpi-run.sh

# dropped DIR: did run DIR drop tokens (any dropped fraction logged > 0)
dropped() {
	grep -o '"dropped_[a-z]*":[0-9.e-]*' "$1/metrics.jsonl" |
	    awk -F: '$2 > 0 { n++ } END { exit !n }'
}

N=2 NP=2 CLIP=
# step_grads S: step S's gradient of runs 2 and 3 against run 1's; the
# relative differences appended to $d/w2 and $d/w3
step_grads() {
	g=grad-$(printf %08d $1) ref=$d/g1/grad-$(printf %08d $1).safetensors
	# sharded experts: a shard from each rank (LoRA: one file)
	[ ! -d "$d/g3/$g" ] || ok "$cfg: step $1's gradient shards merged" \
	    $CV merge "$d/g3/$g" -o "$d/g3/$g.safetensors"
	for r in 2 3; do
		# expert parallel's is written clipped
		if [ -n "$CLIP" ] && [ $r = 3 ]; then
			ok "$cfg: step $1's gradient clipped to $CLIP" \
			    /usr/bin/python3 tests/grad-clip.py "$ref" \
			    "$ref.clip" $CLIP
			check "$cfg: $(cat $T/out) (< 1: it clips)" \
			    "awk '{ exit !(\$NF < 1) }' $T/out"
			ref=$ref.clip
		fi
		ok "$cfg, run $r: step $1's gradient equal to 1e-5" $DIFF \
		    "$ref" "$d/g$r/$g.safetensors" 1e-5
		sed -n 's/.*relative difference \([^ ]*\).*/\1/p' "$T/out" \
		    >>"$d/w$r"
	done
}
# sweep NAME DROPS MODEL-OPTIONS: one process (1), NP ranks (2), NP
# ranks expert parallel (3), N steps each; every step's gradient and the
# routing logged compared with one process's; DROPS: whether one process
# dropped tokens (yes or no); with CLIP set, --grad-clip $CLIP
sweep() {
	cfg=$1 d=$T/$1 drops=$2
	shift 2
	mkdir -p "$d/g1" "$d/g2" "$d/g3"
	set -- "$@" ${CLIP:+--grad-clip $CLIP}
	ok "$cfg: one process" env VLM_GRAD_DUMP="$d/g1" "$TR" --data "$P" \
	    "$@" -j 1 -n $N --log-every 1 -o "$d/1"
	ok "$cfg: $NP ranks" env VLM_GRAD_DUMP="$d/g2" $MPIRUN -np $NP "$TR" \
	    --data "$P" "$@" -j 1 -n $N --log-every 1 -o "$d/2"
	ok "$cfg: $NP ranks, --expert-parallel $NP" env VLM_GRAD_DUMP="$d/g3" \
	    $MPIRUN -np $NP "$TR" --data "$P" "$@" -j 1 -n $N --log-every 1 \
	    -o "$d/3" --expert-parallel $NP
	for s in $(seq 1 $N); do
		step_grads $s
	done
	echo "# $cfg: worst gradient difference, data parallel" \
	    "$(sort -g "$d/w2" | tail -1), expert parallel" \
	    "$(sort -g "$d/w3" | tail -1)"
	check "$cfg: tokens dropped: $drops" \
	    "[ \$(dropped $d/1 && echo yes || echo no) = $drops ]"
	check "$cfg: the same routing logged, data parallel" \
	    "same_moe $d/1 $d/2"
	check "$cfg: the same routing logged, expert parallel" \
	    "same_moe $d/1 $d/3"
}

# tiny-moe: one-tower, E = 8, K = 1, MoE every other block, capacity
# factor 1 (drops), batch priority routing, noise 1, LIMoE's aux losses;
# E4 four experts, TT two towers, NOAUX every aux loss off, TL token
# reduction (after block 0 of 3: an MoE layer before and 2 after)
E4="--set moe.experts=4"
TT="--set family=two-tower"
NOAUX="--set aux.limoe=0 --set aux.importance=0 --set aux.load=0
--set aux.zloss=0 --set aux.local_img=0 --set aux.local_txt=0
--set aux.global_img=0 --set aux.global_txt=0"
TL="--set vision.layers=3 --set vision.pool=gap --set moe.every=1
--set token_reduction.after=0 --set token_reduction.tokens=6
--set token_reduction.hidden=16"
sweep k2-every yes $SMALL $E4 --set moe.top_k=2 --set moe.every=1 \
    --set moe.gate_norm=topk --set moe.cf_train=0.5
sweep e8-k2-nobpr yes $SMALL --set moe.top_k=2 --set moe.bpr=0 \
    --set moe.cf_train=0.5
sweep k-all-e no $SMALL $E4 --set moe.top_k=4 --set moe.cf_train=0
sweep vision-only yes $SMALL $E4 $TT --set moe.towers=vision \
    --set vision.layers=3 --set moe.every=1 --set moe.last=2 \
    --set moe.noise=0 $NOAUX
sweep text-only no $SMALL $E4 $TT --set moe.towers=text --set moe.every=1 \
    --set moe.cf_train=0 --set aux.switch=0.01
sweep both-e8 no $SMALL $TT --set vision.layers=3 --set text.layers=3 \
    --set vision.width=48 --set text.mlp_ratio=2 --set moe.every=1 \
    --set moe.cf_train=8 --set moe.noise=0
sweep small-cf yes $SMALL $E4 --set moe.every=1 --set moe.cf_train=0.5 \
    --set moe.min_capacity=0
sweep modality yes $SMALL $E4 --set moe.modality_experts=1 \
    --set moe.every=1
sweep lock-image yes $SMALL $E4 $TT --set moe.every=1 --lock-image
sweep lock-text yes $SMALL $E4 --set moe.every=1 --lock-text
sweep accum yes $SMALL $E4 --set moe.every=1 --accum-freq 2
CLIP=0.05
sweep clip-modality yes $SMALL $E4 --set moe.modality_experts=1 \
    --set moe.every=1 --lock-image --accum-freq 2
CLIP=
# 4 ranks (a rank's 2 examples), E = 8: 2 experts each; E = 4: one
NP=4
sweep np4-e8 yes $SMALL --set moe.every=1 --set moe.modality_experts=1 \
    --accum-freq 2
sweep np4-e4-k2 yes $SMALL $E4 $TT --set moe.every=1 --set moe.top_k=2 \
    --set moe.cf_train=0.5
NP=2
sweep tl-two yes $SMALL $E4 $TT $TL
sweep tl-one yes $SMALL $E4 $TL --set text.layers=3
# LoRA (a model file: the experts on every rank, their gradients folded
# into the adapters'): on the experts only; on everything with --eps
# 1e-2, since at 1e-6 AdamW's first step magnifies the rounding of
# lora_B's near-0 gradients and step 2's attention adapters' gradients
# differ by 1.7e-4 of their norm (data and expert parallel alike; step
# 1's equal to 1e-6)
S0=$T/start.safetensors
ok "a model to fine-tune" $CV init --seed 1 --set vision.layers=2 \
    --set text.layers=2 --set vision.width=32 --set text.width=32 \
    --set vision.heads=2 --set text.heads=2 --set embed_dim=16 \
    --set image_size=16 --set vocab=600 $E4 --set moe.every=1 \
    tiny-moe "$S0"
LO="-m $S0 -b 8 --warmup 1 --seed 3 --lr 1e-2 --lora-rank 4"
sweep lora-experts yes $LO --set lora.targets=mlp
sweep lora-all yes $LO --eps 1e-2
finish
