#!/usr/bin/env bash
# Prepares prebuilt/ (git-ignored): the Debian packages of Criterion, OpenBLAS/LAPACKE, jansson
# and the shared libraries they load, unpacked with dpkg -x, for scripts/gpu-check.sh on a
# GPU machine that has no network and none of them installed. Run it on a Debian 12
# (bookworm, amd64) machine with network, then copy prebuilt/ beside the tree on the GPU
# machine. The libraries need a glibc at least as new as bookworm's (2.36).
set -euo pipefail
cd "$(dirname "$0")/.."
out=prebuilt
pkgs=(
  libcriterion3 libcriterion-dev            # the test framework
  libnanomsg5 libgit2-1.5 libffi8           # what libcriterion loads
  libhttp-parser2.9 libmbedcrypto7 libmbedtls14 libmbedx509-1 libssh2-1 libpcre2-8-0
  libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev   # the CPU BLAS
  liblapacke liblapacke-dev liblapack3 libtmglib3 libgfortran5   # LAPACKE and its runtime
  libjansson4 libjansson-dev                # safetensors checkpoint headers (JSON)
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "prepare-prebuilt: downloading ${#pkgs[@]} packages with apt-get download"
(cd "$work" && apt-get download "${pkgs[@]}")
rm -rf "$out"
mkdir -p "$out"
for deb in "$work"/*.deb; do
  dpkg -x "$deb" "$out"
  echo "  unpacked $(basename "$deb")"
done
# -dev symlinks are relative inside usr/lib/<triplet>; the alternatives links Debian
# makes at install time (libblas.so.3, liblapack.so.3) are not in the packages: add them.
lib="$out/usr/lib/x86_64-linux-gnu"
ln -sf openblas-pthread/libblas.so.3 "$lib/libblas.so.3"
ln -sf openblas-pthread/liblapack.so.3 "$lib/liblapack.so.3"
ln -sf openblas-pthread/libopenblas.so.0 "$lib/libopenblas.so.0"
ln -sf openblas-pthread/libopenblas.so "$lib/libopenblas.so"
echo "prepare-prebuilt: done; copy $out/ next to CMakeLists.txt on the GPU machine"
