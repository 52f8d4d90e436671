#!/bin/sh
# cli-includes.sh - the commands include the subsystem headers they use
# (libcore/<subsystem>/<subsystem>.h), never the umbrella libcore/vlm.h,
# which stays for users outside the tree and names every subsystem
# header there is.
. tests/lib.sh

check "no command file includes vlm.h" \
    "! grep -l '#include \"vlm.h\"' cmd/*.c cmd/*.h >$T/out"
[ -s "$T/out" ] && sed 's/^/#   /' "$T/out"
missing=
for d in libcore/*/; do
	h=$(basename "$d")/$(basename "$d").h
	grep -q "#include \"$h\"" libcore/vlm.h || missing="$missing $h"
done
check "vlm.h includes every subsystem header${missing:+ (not:$missing)}" \
    "[ -z '$missing' ]"
finish
