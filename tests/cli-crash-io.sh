#!/bin/sh
# cli-crash-io.sh - outputs on a full disk and streams cut by a kill.
# A full disk two ways: a file size limit (ulimit -f; the programs
# ignore SIGXFSZ so that write() fails with EFBIG) everywhere, and a
# small tmpfs (ENOSPC) where mount(8) is allowed (root). Each program
# exits 1 with one line naming the file, and leaves nothing half-written
# under an output's name: vlm-train keeps its previous checkpoint (which
# resumes bit-identically), vlm-embed -o and the vlm-convert outputs
# leave no file, vlm-convert set leaves the model as it was. vlm-embed
# killed mid-stream leaves a stream its readers call truncated, and with
# -o no file under the output's names.
. tests/lib.sh

FULL=$T/full
trap 'umount "$FULL" 2>/dev/null; rm -rf "$T"' EXIT
TR=$BIN/vlm-train
E=$BIN/vlm-embed
VC=$BIN/vlm-convert
. tests/tiny-run.sh

ok "uninterrupted run" "$TR" --data "$P" $SMALL -o "$T/ref" --steps 4 \
    --save-every 1
M=$T/ref/latest/model.safetensors
"$E" -m "$M" "$T/d/img" >"$T/img.npys" 2>/dev/null
"$VC" init tiny "$T/dense.safetensors" >/dev/null 2>&1

dirs=$(for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
	printf '%s ' "$T/d/img"; done)
"$E" -m "$M" $dirs >"$T/big.npys" 2>/dev/null

label() { case $1 in plain) echo tmpfs;; *) echo "ulimit -f";; esac; }

# Nothing in DIR but what is named after it.
none() { d=$1; shift; [ "$(echo $(ls -A "$d"))" = "$*" ]; }

# full_train MODE DIR ROOM: checkpoint 3 of a run in DIR finds the disk
# full; MODE runs a command on the full disk, ROOM makes room.
full_train() {
	mode=$1 dir=$2 room=$3
	what=$(label $mode)
	ok "$what: a run to step 2" "$TR" --data "$P" $SMALL -o "$dir/run" \
	    --steps 4 --save-every 1 --stop-at 2
	fails "$what: its checkpoint 3 fails" 1 $mode "$TR" --resume "$dir/run"
	check "$what: one line naming the file and the checkpoint kept" \
	    "[ \$(wc -l <$T/err) = 1 ] &&
	     grep -q 'ckpt-00000003/model.safetensors.: .*; .*latest (ckpt-00000002) is kept' \
	     $T/err"
	check "$what: nothing of checkpoint 3 left" "none $dir/run \
	    ckpt-00000001 ckpt-00000002 latest metrics.jsonl params.json"
	$room
	ok "$what: with room again it resumes" "$TR" --resume "$dir/run"
	check "$what: bit-identical to the uninterrupted run" \
	    "cmp -s $T/ref/latest/model.safetensors $dir/run/latest/model.safetensors &&
	     cmp -s $T/ref/latest/optim.safetensors $dir/run/latest/optim.safetensors"
	rm -rf "$dir/run"
}

# full_outputs MODE DIR FILE...: vlm-embed's and vlm-convert's outputs
# on a full DIR holding FILE..., m.safetensors (a model) among them
full_outputs() {
	mode=$1 dir=$2
	what=$(label $mode)
	shift 2
	fails "$what: vlm-embed -o" 1 $mode "$E" -m "$M" -o "$dir/e.npy" $dirs
	check "$what: says which file and why" \
	    "[ \$(wc -l <$T/err) = 1 ] && grep -q \"e.npy': \" $T/err"
	check "$what: and leaves no file" "none $dir $*"
	fails "$what: vlm-embed --format jsonl -o" 1 $mode "$E" -m "$M" \
	    --format jsonl -o "$dir/e.jsonl" $dirs
	check "$what: says which file" "grep -q \"e.jsonl': \" $T/err"
	check "$what: and leaves no file" "none $dir $*"
	fails "$what: vlm-embed to a full stdout" 1 $mode sh -c \
	    "'$E' -m '$M' $dirs >'$dir/s.npys'"
	check "$what: says <stdout>" "grep -q \"<stdout>': \" $T/err"
	rm -f "$dir/s.npys"
	for c in "cast --dtype f16 $M $dir/o.safetensors" \
	    "pack $T/big.npys $dir/o.npy" "init tiny $dir/o.safetensors" \
	    "upcycle --experts 4 $T/dense.safetensors $dir/o.safetensors"; do
		fails "$what: vlm-convert ${c%% *}" 1 $mode "$VC" $c
		check "$what: says which file" \
		    "[ \$(wc -l <$T/err) = 1 ] && grep -q \"$dir/o\" $T/err"
		check "$what: and leaves no file" "none $dir $*"
	done
	cp "$dir/m.safetensors" "$T/m.before"
	fails "$what: vlm-convert set" 1 $mode "$VC" set "$dir/m.safetensors" \
	    moe.cf_eval=2
	check "$what: leaves the model as it was, no temporary file" \
	    "cmp -s $T/m.before $dir/m.safetensors && none $dir $*"
}

# ulimit -f, in 512-byte blocks (dash) or 1024 (bash): 400 is less than
# a checkpoint's model, more than params.json and metrics.jsonl; 8 less
# than any output of full_outputs
big() { (ulimit -f 400 && exec "$@"); }
small() { (ulimit -f 8 && exec "$@"); }
mkdir "$T/lim"
full_train big "$T/lim" :
cp "$M" "$T/lim/m.safetensors"
full_outputs small "$T/lim" m.safetensors

# a tmpfs with room for two checkpoints of the run and not three, made
# larger, then filled to the brim
mkdir "$FULL"
if mount -t tmpfs -o size=3000k tmpfs "$FULL" 2>/dev/null; then
	plain() { "$@"; }
	full_train plain "$FULL" "mount -o remount,size=8m $FULL"
	cp "$M" "$FULL/m.safetensors"
	dd if=/dev/zero of="$FULL/fill" bs=4k 2>/dev/null
	full_outputs plain "$FULL" fill m.safetensors
	umount "$FULL"
else
	skip "the tmpfs cases" "mount -t tmpfs is not permitted"
fi

# ---- vlm-embed killed mid-stream ----------------------------------
"$E" -m "$M" $dirs $dirs >"$T/cut.npys" 2>/dev/null &
pid=$!
i=0
while [ ! -s "$T/cut.npys" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
kill -KILL $pid; wait $pid 2>/dev/null
check "a stream cut by SIGKILL is not empty" "[ -s $T/cut.npys ]"
fails "vlm-convert pack calls it truncated" 1 "$VC" pack "$T/cut.npys" \
    "$T/cut.npy"
check "says so" "grep -q \"cut.npys': truncated\" $T/err"
check "and writes nothing" "[ ! -e $T/cut.npy ]"
cut -f2 "$P" | tail -n +2 | "$E" -m "$M" -t >"$T/cap.npys" 2>/dev/null
fails "vlm-eval calls it truncated" 1 "$BIN/vlm-eval" retrieval --pairs "$P" \
    --image-emb "$T/cut.npys" --text-emb "$T/cap.npys"
check "says so" "grep -q \"cut.npys': truncated\" $T/err"
fails "on a pipe too" 1 sh -c "'$BIN/vlm-eval' retrieval --pairs '$P' \
    --image-emb - --text-emb '$T/cap.npys' <'$T/cut.npys'"
check "says so" "grep -q \"<stdin>': truncated\" $T/err"

mkdir "$T/o"
VLM_CRASH_AT=atomic-commit "$E" -m "$M" -o "$T/o/e.npy" "$T/d/img" \
    >/dev/null 2>&1
check "vlm-embed -o killed as its first output is complete: no output" \
    "! ls $T/o/e.npy $T/o/e.ids.npy $T/o/e.json >/dev/null 2>&1"
VLM_CRASH_AT=atomic-commit "$E" -m "$M" --format jsonl -o "$T/o/e.jsonl" \
    "$T/d/img" >/dev/null 2>&1
check "vlm-embed --format jsonl -o killed as it is complete: no output" \
    "[ ! -e $T/o/e.jsonl ] && [ -s $T/o/e.jsonl.tmp.* ]"
"$E" -m "$M" -o "$T/o/f.npy" $dirs $dirs >/dev/null 2>&1 &
pid=$!
i=0
while [ ! -s "$T/o/f.npy.tmp.$pid" ] && [ $i -lt 500 ]; do
	sleep 0.01; i=$((i + 1)); done
kill -KILL $pid; wait $pid 2>/dev/null
check "it was killed with vectors written" "[ -s $T/o/f.npy.tmp.$pid ]"
check "vlm-embed -o killed mid-stream: no output" \
    "! ls $T/o/f.npy $T/o/f.ids.npy $T/o/f.json >/dev/null 2>&1"
finish
