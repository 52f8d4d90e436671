#!/bin/sh
# cli-fuzz-replay.sh - every fuzz harness (tests/fuzz/fuzz-NAME.c, built
# with gcc and tests/fuzz/replay.c into $BUILD/fuzz/) over each file of
# its seed corpus (tests/fuzz/corpus/NAME) and every crash reproducer
# (tests/fuzz/crashes/NAME): each must run without a crash, a sanitizer
# report (make check SANITIZE=1) or a hang. Reproducers of bugs whose fix
# is on another branch are listed in tests/fuzz/crashes/KNOWN-OPEN and
# skipped, said so, until the fix is merged and the line removed.
. tests/lib.sh
: "${BUILD:=build}"
KNOWN=tests/fuzz/crashes/KNOWN-OPEN
# (not $name: lib.sh's ok() sets that)

for src in tests/fuzz/fuzz-*.c; do
	hn=${src#tests/fuzz/fuzz-}
	hn=${hn%.c}
	bin=$BUILD/fuzz/fuzz-$hn
	if [ ! -x "$bin" ]; then
		fail "$hn: $bin not built (make fuzz-replay)"
		continue
	fi
	for f in tests/fuzz/corpus/"$hn"/* tests/fuzz/crashes/"$hn"/*; do
		[ -f "$f" ] || continue
		rel=${f#tests/fuzz/}
		if [ -f "$KNOWN" ] && grep -q "^$rel " "$KNOWN"; then
			skip "$hn $rel" "known open, $(grep "^$rel " \
			    "$KNOWN" | cut -d' ' -f2-)"
			continue
		fi
		ok "$hn $rel" timeout 120 "$bin" "$f"
	done
done
finish
