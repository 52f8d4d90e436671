# tests/lib.sh - sourced by the shell CLI tests.
# ok NAME CMD...       passes when CMD exits 0
# fails NAME STATUS CMD...  passes when CMD exits with STATUS
# check NAME COND...   passes when the test(1) or shell condition holds
# skip NAME REASON     NAME (a check or a group of checks) cannot run here;
#                      counted as one skipped, never as passed
# have NAME PATH...    true when every PATH exists, else skips NAME
# have_fixtures [NAME] true when the shared fixtures exist, else skips NAME
# have_py NAME MODULE...  true when /usr/bin/python3 imports every MODULE,
#                      else skips NAME
# finish               prints "N passed, N failed, N skipped" and exits 0
#                      when none failed (tests/run sums these lines)
: "${SHARED:=../shared}" "${BIN:=bin}"
FIX=$SHARED/fixtures
npass=0
nfail=0
nskip=0
T=$(mktemp -d "${TMPDIR:-/tmp}/vlm-test.XXXXXX")
trap 'rm -rf "$T"' EXIT

pass() { npass=$((npass + 1)); echo "ok - $1"; }
fail() { nfail=$((nfail + 1)); echo "FAIL - $1"; }
skip() { nskip=$((nskip + 1)); echo "skip - $1: $2"; }

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

have() {
	name=$1; shift
	for p in "$@"; do
		[ -e "$p" ] && continue
		skip "$name" "$p not found"
		return 1
	done
}

have_fixtures() {
	have "${1:-the checks on the shared fixtures}" "$FIX"
}

have_py() {
	name=$1; shift
	/usr/bin/python3 -c "import $(echo "$@" | sed 's/ /, /g')" \
	    2>/dev/null && return 0
	skip "$name" "/usr/bin/python3 lacks $*"
	return 1
}

finish() {
	echo "$npass passed, $nfail failed, $nskip skipped"
	[ "$nfail" -eq 0 ]
}
