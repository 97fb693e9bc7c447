#!/usr/bin/env bash
# The GPU benchmarks, run by scripts/gpu-check.sh with its build directory: kiln_bench
# --device cuda against PyTorch eager (cuDNN, TF32 off on both sides) on the same card,
# one process per side. Prints the table (TFLOP/s for GEMM and convolution, GB/s for
# the memory-bound losses against a measured device-to-device copy) and writes
# <build>/bench-gpu.json. Cases kiln cannot run on CUDA yet are listed as unavailable.
#   usage: benchmarks/gpu.sh [build-dir]     (default build-gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
bdir=${1:-build-gpu}
if [ ! -x "$bdir/kiln_bench" ]; then
  echo "benchmarks/gpu.sh: no $bdir/kiln_bench (build with -DKILN_BUILD_BENCHMARKS=ON)" >&2
  exit 1
fi
# the first interpreter whose torch sees a GPU (the machine's python3, else Debian's)
py=""
for c in "$(command -v python3 2>/dev/null)" /usr/bin/python3; do
  [ -n "$c" ] && "$c" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && { py=$c; break; }
done
if [ -z "$py" ]; then
  echo "benchmarks/gpu.sh: no python3 with a CUDA-enabled torch: the PyTorch column stays empty" >&2
  py=/usr/bin/python3
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
exec python3 benchmarks/run.py --build "$bdir" --device cuda --batch --python "$py" --timeout 240 \
  --out "$bdir/bench-gpu.json"
