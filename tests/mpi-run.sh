# tests/mpi-run.sh - sourced after tests/lib.sh by the distributed CLI
# tests: skips the test without mpirun, an MPI build of vlm-train, PIL
# (tests/tiny-run.sh: $P, $SMALL) or numpy; sets TR (vlm-train), MPIRUN
# (mpirun under a timeout; add -np N), MR (it for 2 ranks), DIFF
# (tests/params-diff.py), the environment OpenMPI needs here, and
# moe_log and same_moe (the routing logged in metrics.jsonl).
TR=$BIN/vlm-train
if ! command -v mpirun >/dev/null 2>&1; then
	skip "the distributed runs (all)" "mpirun not found"
	finish; exit
fi
if ! "$TR" --version >/dev/null 2>&1 || ! nm "$TR" 2>/dev/null |
    grep -q MPI_Init; then
	skip "the distributed runs (all)" "$TR built without MPI"
	finish; exit
fi
. tests/tiny-run.sh
have_py "the parameter comparisons" numpy || { finish; exit; }
# CI runs as root; 2 ranks on whatever cores there are; the leaks
# OpenMPI leaves at exit are not ours (sanitizer builds)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export VLM_COMM_TIMEOUT=120
MPIRUN="env ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
timeout 300 mpirun --oversubscribe"
MR="$MPIRUN -np 2"
DIFF="/usr/bin/python3 tests/params-diff.py"

# the routing of every training step, as logged: effective experts and
# dropped tokens of the whole group, the same as one process's
moe_log() {
	grep -o '"moe":[^]]*' "$1/metrics.jsonl"
}
# same_moe A B: the same layers and dropped fractions, and effective
# experts to 1e-5 relative (a float sum the ranks' GEMM shapes round
# differently in the last printed digit)
same_moe() {
	moe_log "$1" | tr ',{' '\n\n' >"$1-moe"
	moe_log "$2" | tr ',{' '\n\n' >"$2-moe"
	[ "$(wc -l <"$1-moe")" = "$(wc -l <"$2-moe")" ] &&
	paste -d'\t' "$1-moe" "$2-moe" | awk -F'\t' '
	    $1 ~ /eff_experts/ { split($1, a, ":"); split($2, b, ":")
		d = a[2] - b[2]; bad += a[1] != b[1] || d * d > 1e-10 * a[2] * a[2]
		next }
	    { bad += $1 != $2 } END { exit bad || !NR }'
}
