#!/bin/sh
# cli-resume.sh - RUN/params.json: --resume RUN alone continues the run
# it names bit-identically, an option that would change the computation
# is refused, one that would not is applied, said and stored; a run
# without params.json resumes from the command line as before; a second
# vlm-train on a run that one is training is refused.
. tests/lib.sh

TR=$BIN/vlm-train
. tests/tiny-run.sh
# options away from their defaults, so that forgetting one shows
ODD="--lr 1e-3 --wd 0.05 --beta2 0.95 --constant-lr --grad-clip 1
--hflip --color-jitter 0.2 --crop-scale 0.8 --accum-freq 2"

ok "uninterrupted run" "$TR" --data "$P" $SMALL $ODD -o "$T/a" --steps 6
ok "interrupted run" "$TR" --data "$P" $SMALL $ODD -o "$T/b" --steps 6 \
    --stop-at 2
check "params.json: the options, data as an absolute path" \
    "/usr/bin/python3 -c 'import json, os
p = json.load(open(\"$T/b/params.json\"))
assert p[\"batch-size\"] == 8 and p[\"accum-freq\"] == 2, p
assert p[\"constant-lr\"] is True and p[\"hflip\"] is True, p
assert p[\"steps\"] == 6 and \"stop-at\" not in p, p
assert p[\"data\"] == [os.path.realpath(\"$P\")], p[\"data\"]
assert \"vision.layers=2\" in p[\"set\"], p[\"set\"]
'"
cp "$T/b/params.json" "$T/params.before"
cp "$P" "$T/d/other.tsv"
for c in "batch-size:-b 16" "lr:--lr 2e-3" "seed:--seed 6" \
    "accum-freq:--accum-freq 1" "set:--set vision.layers=3" "model:-m tiny" \
    "data:--data $T/d/other.tsv" "color-jitter:--color-jitter 0.3" \
    "crop-scale:--crop-scale 0.9" "warmup:--warmup 3"; do
	fails "--resume refuses ${c#*:}" 1 "$TR" --resume "$T/b" ${c#*:}
	check "and names --${c%%:*} and the run's value" \
	    "grep -q \"params.json': --${c%%:*} .* differs from the run's\" \
	    $T/err"
done
check "nothing written by the refused resumes" \
    "cmp -s $T/params.before $T/b/params.json &&
     [ \$(readlink $T/b/latest) = ckpt-00000002 ]"
ok "the same options again are accepted" "$TR" --resume "$T/b" \
    --data "$P" $SMALL $ODD --stop-at 3
check "silently" "[ ! -s $T/err ]"
ok "log and checkpoint options may change" "$TR" --resume "$T/b" \
    --log-every 1 --save-every 1 --keep 1 --stop-at 4
check "each change is said" \
    "grep -q -- '--log-every 1 (the run had 10)' $T/err &&
     grep -q -- '--keep 1 (the run had 0)' $T/err"
check "and stored for the next resume" \
    "grep -q '\"log-every\": 1,' $T/b/params.json"
ok "--resume RUN alone finishes the run" "$TR" --resume "$T/b"
check "bit-identical model to the uninterrupted run's" \
    "cmp -s $T/a/latest/model.safetensors $T/b/latest/model.safetensors"
check "and optimizer moments" \
    "cmp -s $T/a/latest/optim.safetensors $T/b/latest/optim.safetensors"
check "--keep 1 honoured" "[ \$(ls -d $T/b/ckpt-* | wc -l) = 1 ]"
ok "more steps" "$TR" --resume "$T/b" --steps 8
check "are applied and said" \
    "[ \$(readlink $T/b/latest) = ckpt-00000008 ] &&
     grep -q -- '--steps 8 (the run had 6)' $T/err"

fails "--resume of no run" 1 "$TR" --resume "$T/none"
check "says so" "grep -q \"none': no run to resume\" $T/err"
ok "a run from before params.json" "$TR" --data "$P" $SMALL -o "$T/old" \
    --steps 2 --stop-at 1
rm "$T/old/params.json"
fails "resumes only with its options given" 2 "$TR" --resume "$T/old"
ok "as before" "$TR" --resume "$T/old" --data "$P" -b 8 --warmup 2 \
    --steps 2
check "saying it has no params.json" "grep -q 'no params.json' $T/err"
echo '{"batch-size": "eight"}' >"$T/old/params.json"
fails "a bad params.json" 1 "$TR" --resume "$T/old"
check "is named" "grep -q 'params.json.: bad \"batch-size\"' $T/err"

VLM_CRASH_AT=ckpt-latest:1:stop "$TR" --resume "$T/b" --steps 10 \
    >/dev/null 2>&1 &
pid=$!
i=0
while ! grep -q '^State:.*T' /proc/$pid/status 2>/dev/null &&
    [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
fails "a second vlm-train on a run being trained" 1 "$TR" --resume "$T/b"
check "is refused" "grep -q 'another vlm-train' $T/err"
kill -KILL $pid; wait $pid 2>/dev/null
finish
