#!/usr/bin/env bash
# Installs the built kiln into a temporary prefix, then builds tests/install/app.c against
# it as a user would, three ways: find_package(kiln) (shared and static targets),
# pkg-config with the shared library, pkg-config --static with libkiln.a. Each program
# must run and print the right numbers; the static ones must not need libkiln.so.
# usage: test_install.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/kiln_install_XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cc=${CC:-cc}

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/kiln.h include/kiln/core.h; do [ -f "$prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }; done
pcdir=$(dirname "$(find "$prefix" -name kiln.pc | head -1)")
libdir=$(dirname "$pcdir")
[ -f "$libdir/libkiln.a" ] || { echo "FAIL: libkiln.a not installed"; exit 1; }
readelf -d "$libdir/libkiln.so" | grep -q 'SONAME.*libkiln.so.0' || { echo "FAIL: libkiln.so has no versioned soname"; exit 1; }

run() { # name program: runs it from an unrelated directory, expects "ok"
  local out; out=$(cd / && "$2") || { echo "FAIL: $1 exited non-zero: $out"; exit 1; }
  case "$out" in ok:*) echo "install: $1 $out";; *) echo "FAIL: $1 printed: $out"; exit 1;; esac
}
no_shared_kiln() { ! ldd "$2" | grep -q 'libkiln\.so' || { echo "FAIL: $1 still needs libkiln.so"; exit 1; }; }

# 1. find_package(kiln)
cmake -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/cmake" >/dev/null
run "find_package kiln::kiln" "$work/cmake/app_shared"
run "find_package kiln::kiln_static" "$work/cmake/app_static"
no_shared_kiln "find_package kiln::kiln_static" "$work/cmake/app_static"

# 2. pkg-config, shared
export PKG_CONFIG_PATH=$pcdir
$cc "$here/app.c" -o "$work/pc_shared" $(pkg-config --cflags --libs kiln)
run "pkg-config shared" "$work/pc_shared"

# 3. pkg-config --static: libkiln.a, then everything Libs.private lists
static_libs=$(pkg-config --static --libs kiln | tr ' ' '\n' | grep -vx -- '-lkiln' | tr '\n' ' ')
$cc "$here/app.c" -o "$work/pc_static" $(pkg-config --cflags kiln) "$libdir/libkiln.a" $static_libs
run "pkg-config --static" "$work/pc_static"
no_shared_kiln "pkg-config --static" "$work/pc_static"
echo "install: 4 programs built and ran against $prefix"
