#!/bin/sh
# tests/fuzz/run.sh DIR NAME... - `make fuzz`: run each harness DIR/fuzz-NAME
# under libFuzzer for $FUZZ_SECONDS seconds (default 60), one at a time,
# over a scratch copy of its seed corpus (DIR/corpus/NAME: what it finds
# stays there, out of git), with tests/fuzz/dict/NAME.dict if there is
# one (format keywords), crashes into DIR/artifacts/NAME/. Prints per
# harness the executions, coverage (cov: edges, ft: features) and crashes;
# fails if any harness crashed. Extra libFuzzer flags: $FUZZ_FLAGS (e.g.
# "-fork=1 -ignore_crashes=1 -ignore_ooms=1" to go on past a crash).
dir=$1
shift
: "${FUZZ_SECONDS:=60}"
failed=""
printf '%-12s %10s %8s %8s %s\n' harness execs cov ft result
for name in "$@"; do
	case $name in
	png|jpeg|model|safetensors) max=65536 ;;
	*) max=8192 ;;
	esac
	work=$dir/corpus/$name
	art=$dir/artifacts/$name
	rm -rf "$work" "$art"
	mkdir -p "$work" "$art"
	cp tests/fuzz/corpus/"$name"/* "$work"/
	log=$dir/fuzz-$name.log
	dict=
	[ -f tests/fuzz/dict/"$name".dict ] &&
		dict=-dict=tests/fuzz/dict/$name.dict
	# shellcheck disable=SC2086
	"$dir/fuzz-$name" -max_total_time="$FUZZ_SECONDS" \
	    -print_final_stats=1 -rss_limit_mb=2048 -max_len=$max \
	    -timeout=20 -artifact_prefix="$art/" $dict $FUZZ_FLAGS \
	    "$work" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
	    tail -1)
	last=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
	cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
	[ -z "$execs" ] && execs=$(echo "$last" | sed 's/^#\([0-9]*\).*/\1/')
	crashes=$(ls "$art" | wc -l)
	result=ok
	if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
		result="FAILED (exit $rc, $crashes files in $art, log $log)"
		failed="$failed $name"
	fi
	printf '%-12s %10s %8s %8s %s\n' "$name" "$execs" "$cov" "$ft" \
	    "$result"
done
if [ -n "$failed" ]; then
	echo "fuzz: crashes in:$failed (minimise: DIR/fuzz-NAME -minimize_crash=1 -runs=10000 FILE; keep it under tests/fuzz/crashes/NAME/)"
	exit 1
fi
