#!/bin/sh
# cli-chaos.sh - a 40-step tiny-moe run checkpointing every step with
# --keep 2, killed (SIGKILL) 27 times and resumed after each: 14 times
# by itself at the checkpoint writer's kill points (VLM_CRASH_AT: inside
# an atomic write, between the files, between the rename and the latest
# link, inside a prune), 13 times from outside at random moments. After
# every kill RUN/latest loads; at the end the model and optimizer files
# are byte-identical to an uninterrupted run's, only the newest two
# checkpoints are left and nothing half-written. CHAOS_SEED=N replays
# the outside kills' timing.
. tests/lib.sh

TR=$BIN/vlm-train
. tests/tiny-run.sh
OPTS="--steps 40 --save-every 1 --keep 2 --log-every 10"
C=$T/chaos
seed=${CHAOS_SEED:-$(date +%s)}
echo "# chaos seed $seed"

ok "uninterrupted run" "$TR" --data "$P" $SMALL -o "$T/ref" $OPTS

# One try: a fresh start while there is no checkpoint, else a resume,
# every third one repeating all the options (they must be accepted).
# It execs vlm-train: call it in a subshell, or in the background.
n=0
try() {
	if [ ! -e "$C/latest" ]; then
		exec "$TR" --data "$P" $SMALL -o "$C" $OPTS
	elif [ $((n % 3)) = 0 ]; then
		exec "$TR" --resume "$C" --data "$P" $SMALL $OPTS
	else
		exec "$TR" --resume "$C"
	fi
}

# RUN/latest is complete: both safetensors files and the state read.
latest_loads() {
	[ ! -e "$C/latest" ] && return 0
	"$BIN/vlm-convert" info "$C/latest/model.safetensors" >/dev/null 2>&1 &&
	    "$BIN/vlm-convert" info "$C/latest/optim.safetensors" \
	    >/dev/null 2>&1 && /usr/bin/python3 -c \
	    "import json; json.load(open('$C/latest/state.json'))"
}

# An outside kill's moment: 0 to 60 ms (steps take about 45 ms here)
# after the run's first checkpoint, where VLM_CRASH_AT=ckpt-latest:1:stop
# stops it, so that each kill lands a step or two further on, in a step
# or in a checkpoint write.
moment() {
	awk -v s="$seed" -v i="$1" 'BEGIN { srand(s + i);
	    printf "%.3f", 0.06 * rand() }'
}
stopped() {
	j=0
	while ! grep -q '^State:.*T' /proc/$1/status 2>/dev/null &&
	    [ -e /proc/$1 ] && [ $j -lt 1000 ]; do
		sleep 0.01; j=$((j + 1)); done
}

killed=0 outside=0 half=0 bad=0 i=0
for point in atomic-commit:2 ckpt-dir:2 ckpt-model:1 ckpt-optim:2 \
    ckpt-state:1 ckpt-rename:2 ckpt-latest:1 ckpt-remove:1 \
    atomic-commit:4 ckpt-rename:1 ckpt-remove:2 ckpt-dir:1 \
    ckpt-state:2 ckpt-latest:2; do
	n=$((n + 1))
	( (VLM_CRASH_AT=$point try) >/dev/null; echo $? >"$T/rc" ) \
	    2>>"$T/log"
	[ "$(cat "$T/rc")" = 137 ] && killed=$((killed + 1))
	latest_loads || { bad=$((bad + 1)); echo "# $point: latest broken"; }
	i=$((i + 1))
	[ $i -gt 13 ] && break
	n=$((n + 1))
	t=$(moment $i)
	(VLM_CRASH_AT=ckpt-latest:1:stop try) >/dev/null 2>>"$T/log" &
	pid=$!
	stopped $pid
	kill -CONT $pid
	sleep "$t"
	kill -KILL $pid 2>/dev/null && outside=$((outside + 1))
	wait $pid 2>/dev/null
	latest_loads || { bad=$((bad + 1)); echo "# kill $i: latest broken"; }
	ls -A "$C" | grep -q '^\.tmp-ckpt-\|^\.del-ckpt-\|\.tmp\.[0-9]*$' &&
	    half=$((half + 1))
done
echo "# $outside of 13 outside kills landed before the run ended, $half" \
    "left a half-written or half-removed checkpoint"
check "14 runs killed themselves at the kill points (got $killed)" \
    "[ $killed = 14 ]"
check "after each of the 27 kills latest loads" "[ $bad = 0 ]"
check "the run is not done yet" \
    "[ \$(readlink $C/latest) != ckpt-00000040 ]"

ok "resume with no options finishes the run" "$TR" --resume "$C"
check "model bit-identical to the uninterrupted run's" \
    "cmp -s $T/ref/latest/model.safetensors $C/latest/model.safetensors"
check "optimizer moments bit-identical" \
    "cmp -s $T/ref/latest/optim.safetensors $C/latest/optim.safetensors"
check "--keep 2 honoured: only ckpt-39 and ckpt-40, nothing half-written" \
    "[ \"\$(ls -A $C | tr '\n' ' ')\" = \
    'ckpt-00000039 ckpt-00000040 latest metrics.jsonl params.json ' ]"
for k in 39 40; do
	check "ckpt-$k holds its three files and nothing else" \
	    "[ \"\$(ls -A $C/ckpt-000000$k | tr '\n' ' ')\" = \
	    'model.safetensors optim.safetensors state.json ' ]"
done
check "metrics: steps 10, 20, 30, 40 once each, none past 40" \
    "[ \"\$(sed 's/^{\"step\":\([0-9]*\).*/\1/' $C/metrics.jsonl |
    tr '\n' ' ')\" = '10 20 30 40 ' ]"
finish
