# tests/lib.sh - sourced by the shell CLI tests.
# ok NAME CMD...       passes when CMD exits 0
# fails NAME STATUS CMD...  passes when CMD exits with STATUS
# check NAME COND...   passes when the test(1) or shell condition holds
# finish               prints "N passed, N failed" and exits accordingly
: "${SHARED:=../shared}" "${BIN:=bin}"
FIX=$SHARED/fixtures
npass=0
nfail=0
T=$(mktemp -d "${TMPDIR:-/tmp}/vlm-test.XXXXXX")
trap 'rm -rf "$T"' EXIT

pass() { npass=$((npass + 1)); echo "ok - $1"; }
fail() { nfail=$((nfail + 1)); echo "FAIL - $1"; }

ok() {
	name=$1; shift
	if "$@" >"$T/out" 2>"$T/err"; then pass "$name"
	else fail "$name (exit $?)"; sed 's/^/#   /' "$T/err" | head -5; fi
}

fails() {
	name=$1; want=$2; shift 2
	"$@" >"$T/out" 2>"$T/err"
	got=$?
	if [ "$got" = "$want" ]; then pass "$name"
	else fail "$name (exit $got, want $want)"; sed 's/^/#   /' "$T/err" | head -5; fi
}

check() {
	name=$1; shift
	if eval "$@"; then pass "$name"; else fail "$name"; fi
}

have_fixtures() {
	[ -d "$FIX" ] && return 0
	echo "# skipping: $FIX not found (shared fixtures absent)"
	return 1
}

finish() {
	echo "$npass passed, $nfail failed"
	[ "$nfail" -eq 0 ]
}
