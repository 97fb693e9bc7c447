#!/usr/bin/env bash
# Installs the Debian packages kiln needs to build and test, saying what it installs
# and why. Safe to run again: it only installs what is missing.
set -euo pipefail

# package : why
need=(
  "cmake:the build"
  "make:the build"
  "gcc:the C compiler"
  "pkg-config:finding libraries"
  "libopenblas-openmp-dev:CPU matrix products (OpenBLAS's OpenMP build, so BLAS and kiln share one thread pool; it installs beside the pthread build and leaves the system default alone)"
  "liblapacke-dev:CPU eigen-decomposition (LAPACK)"
  "libdnnl-dev:CPU convolutions (oneDNN, the library PyTorch's CPU convolutions run on; without it they run as im2col + OpenBLAS, slower)"
  "libpng-dev:PNG images in and out (kiln_image_read/kiln_image_write)"
  "libjpeg62-turbo-dev:JPEG images in and out (libjpeg-turbo; kiln_image_read/kiln_image_write)"
  "libjansson-dev:safetensors checkpoint headers (JSON)"
)
# KILN_SETUP_DEMO=1 (make demo, make install): the library and car_mask only
if [ "${KILN_SETUP_DEMO:-0}" != 1 ]; then
  need+=("libcriterion-dev:the C test framework"
         "g++:the CUDA emulator the device tests run on (kernels/emu is C++)"
         "dataset-fashion-mnist:Fashion-MNIST for the fashion_mnist and autoencoder examples (IDX .gz files)")
fi
if [ "${KILN_SETUP_FUZZ:-0}" = 1 ]; then
  need+=("clang:the libFuzzer harnesses (make fuzz)" "libclang-rt-14-dev:libFuzzer and clang's sanitizer runtimes"
         "libomp-dev:OpenMP for the clang build" "llvm:llvm-profdata and llvm-cov for the fuzz coverage report"
         "python3:the fuzz seed corpus script")
fi
if [ "${KILN_SETUP_PYTHON:-0}" = 1 ]; then
  need+=("python3-numpy:Python tests and fixtures" "python3-pytest:Python tests"
         "python3-torch:the Python tests' comparisons with PyTorch")
fi

missing=()
for entry in "${need[@]}"; do
  pkg=${entry%%:*}
  why=${entry#*:}
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    echo "kiln setup: installing $pkg ($why)"
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "kiln setup: these Debian packages are missing and I am not root: ${missing[*]}" >&2
    echo "kiln setup: install them with: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "kiln setup: installed ${missing[*]}"
