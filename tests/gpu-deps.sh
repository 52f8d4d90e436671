#!/bin/sh
# gpu-deps.sh - run on this (Debian 12) machine before a GPU session:
# what the GPU machine lacks, into gpu-deps/ (git ignores it) to carry
# there with run(carry=["gpu-deps"]): the Debian libraries vlm builds
# against (apt-get download, dpkg -x, static archives and docs dropped,
# packed as deps.tar.xz) and the OpenCLIP fixtures the parity tests read
# ($SHARED/fixtures/openclip-tiny). tests/gpu-check.sh unpacks them.
set -e
cd "$(dirname "$0")/.."
: "${SHARED:=../shared}"
D=gpu-deps
pkgs="libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread
libopenblas0 libgfortran5 libquadmath0 libpng-dev libpng16-16
libjpeg62-turbo-dev libjpeg62-turbo libjansson-dev libjansson4
libcmocka-dev libcmocka0 zlib1g-dev zlib1g"
rm -rf "$D"
mkdir -p "$D/debs" "$D/fixtures"
(cd "$D/debs" && apt-get download $pkgs >/dev/null 2>&1) ||
    { echo "gpu-deps: apt-get download failed" >&2; exit 1; }
for f in "$D"/debs/*.deb; do dpkg -x "$f" "$D/root"; done
find "$D/root" -name '*.a' -delete
rm -rf "$D/root/usr/share/doc" "$D/root/usr/share/man" \
    "$D/root/usr/share/lintian" "$D"/root/usr/lib/x86_64-linux-gnu/*/liblapack*
# links the packages leave to alternatives or to /lib
L=$D/root/usr/lib/x86_64-linux-gnu
for z in "$D"/root/lib/x86_64-linux-gnu/libz.so.*; do
	[ -e "$z" ] && cp -P "$z" "$L/"
done
ln -sf libz.so.1 "$L/libz.so"
XZ_OPT=-T0 tar -C "$D" -cJf "$D/deps.tar.xz" root
rm -rf "$D/root" "$D/debs"
cp -r "$SHARED/fixtures/openclip-tiny" "$D/fixtures/"
chmod -R u+w "$D"
du -sh "$D"/*
