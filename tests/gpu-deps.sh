#!/bin/sh
# gpu-deps.sh - run on this (Debian 12) machine before a GPU session:
# what the GPU machine lacks, into gpu-deps/ (git ignores it) to carry
# there with run(carry=["gpu-deps"]): the Debian libraries vlm builds
# against (apt-get download, dpkg -x, static archives and docs dropped,
# packed as deps.tar.xz) and the OpenCLIP fixtures the parity tests read
# ($SHARED/fixtures/openclip-tiny). tests/gpu-check.sh unpacks them.
# OpenMPI too (about 7 MB of .deb), for the NCCL runs under mpirun: it
# runs from where it is unpacked with OPAL_PREFIX (gpu-check.sh).
set -e
cd "$(dirname "$0")/.."
: "${SHARED:=../shared}"
D=gpu-deps
pkgs="libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread
libopenblas0 libgfortran5 libquadmath0 libpng-dev libpng16-16
libjpeg62-turbo-dev libjpeg62-turbo libjansson-dev libjansson4
libcmocka-dev libcmocka0 zlib1g-dev zlib1g
openmpi-bin openmpi-common libopenmpi3 libopenmpi-dev libpmix2 libhwloc15
libevent-core-2.1-7 libevent-pthreads-2.1-7 libfabric1 libucx0 libibverbs1
librdmacm1 libnl-3-200 libnl-route-3-200 libpsm2-2 libpsm-infinipath1
libnuma1 libmunge2 libltdl7 libpciaccess0 libxnvctrl0"
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
