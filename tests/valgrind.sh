#!/bin/sh
# tests/valgrind.sh - the unit tests given as arguments under valgrind
# memcheck (`make check-valgrind`): any memory error or definitely lost
# block fails, as does a failing test. One line a program: its memcheck
# errors, definitely lost bytes and seconds; a failing one's log follows.
# The last line: "N passed, N failed, N skipped" (programs).
# Environment: VALGRIND_SKIP, names of programs to leave out (e.g.
# "test-model-grad test-lora"); SHARED (../shared), BIN (bin).
: "${SHARED:=../shared}" "${BIN:=bin}"
export SHARED BIN
# OpenBLAS picks its kernels from what valgrind's CPU reports (no AVX-512)
unset OPENBLAS_CORETYPE
export VLM_BLAS_KEEP=1
command -v valgrind >/dev/null 2>&1 || {
	echo "check-valgrind: valgrind not found" >&2
	exit 1
}
log=$(mktemp -d "${TMPDIR:-/tmp}/vlm-valgrind.XXXXXX")
trap 'rm -rf "$log"' EXIT
np=0 nf=0 ns=0 failed=""
for t in "$@"; do
	name=${t##*/}
	case " $VALGRIND_SKIP " in
	*" $name "*)
		echo "skip - $name: in VALGRIND_SKIP"
		ns=$((ns + 1))
		continue ;;
	esac
	start=$(date +%s)
	valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
	    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	    --log-file="$log/$name.vg" "$t" >"$log/$name.out" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' \
	    "$log/$name.vg" | tr -d , | tail -n 1)
	lost=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' \
	    "$log/$name.vg" | tr -d , | tail -n 1)
	line="$name: exit $rc, ${errs:-?} errors, ${lost:-0} bytes definitely"
	line="$line lost, $secs s"
	if [ "$rc" -eq 0 ]; then
		np=$((np + 1))
		echo "ok - $line"
	else
		nf=$((nf + 1)) failed="$failed $name"
		echo "FAIL - $line"
		grep -v '^==[0-9]*== *$' "$log/$name.vg" | sed -n '/== Command:/,$p' |
		    sed 's/^/#   /' | head -80
		grep -E '^\[  (FAILED|ERROR)' "$log/$name.out" | sed 's/^/#   /'
	fi
done
[ -n "$failed" ] && echo "FAILED:$failed"
echo "$np passed, $nf failed, $ns skipped"
[ -z "$failed" ]
