#!/bin/sh
# cli-man.sh - the manual pages lint clean (mandoc -Tlint), have the
# sections every page needs, and each program page's SYNOPSIS is the
# usage its program prints for --help.
. tests/lib.sh

words() { tr -s ' \t\n' '\n' | grep -v '^$' | tr '\n' ' '; }

for m in man/*.[157]; do
	ok "lint $m" mandoc -Tlint -W warning "$m"
	if [ -s "$T/out" ] || [ -s "$T/err" ]; then
		fail "lint $m is not silent"; cat "$T/out" "$T/err"
	fi
done
for m in man/*.1; do
	prog=$(basename "$m" .1)
	for s in NAME SYNOPSIS DESCRIPTION ENVIRONMENT "EXIT STATUS" \
	    EXAMPLES "SEE ALSO"; do
		check "$prog has $s" "grep -q '^\.Sh $s\$' $m"
	done
	mandoc -Tascii "$m" | col -b |
	    awk '/^SYNOPSIS/ { f = 1; next } /^[A-Z]/ { f = 0 } f' |
	    words >"$T/syn"
	"$BIN/$prog" --help | sed 's/^usage: //' | words >"$T/help"
	if cmp -s "$T/syn" "$T/help"; then pass "$prog --help is its SYNOPSIS"
	else
		fail "$prog --help differs from its SYNOPSIS"
		echo "#   man:  $(cat "$T/syn")"; echo "#   help: $(cat "$T/help")"
	fi
done
finish
