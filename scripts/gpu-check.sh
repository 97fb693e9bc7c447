#!/usr/bin/env bash
# The GPU verification run (DESIGN.md principle 6), for an H200 machine with no
# network: builds kiln for sm_90 with CUDA, runs the whole test suite (CUDA ops
# compared with the CPU in tests/test_cuda_ops.c), runs compute-sanitizer memcheck,
# racecheck and synccheck on the CUDA kernel tests, and prints a table last. Finds
# what the machine has (nvcc, compute-sanitizer, cuDNN inside PyTorch's nvidia pip
# packages) and uses prebuilt/ (scripts/prepare-prebuilt.sh) for Criterion and
# OpenBLAS when the system lacks them; says what it could not run. Issue 5's checks:
# the convolution table (cuDNN plans and the im2col + cuBLAS fallback vs the CPU), a
# U-Net-16 training step CUDA vs CPU and the plan cache building nothing after the
# first step (tests/test_cuda_conv). Budget: 8 minutes.
#   usage: scripts/gpu-check.sh            (from anywhere; builds in build-gpu/)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bdir=${KILN_GPU_BUILD:-build-gpu}
log="$root/$bdir/gpu-check.log"
mkdir -p "$bdir"
: >"$log"
t0=$(date +%s)
rows=()
notrun=()
row() { rows+=("$(printf '%-28s %-9s %5ss  %s' "$1" "$2" "$3" "$4")"); }
say() { echo "gpu-check: $*" | tee -a "$log"; }
left() { echo $((480 - ($(date +%s) - t0))); } # seconds of the 8-minute budget left
jobs=$(nproc 2>/dev/null || echo 8)

# ---- what the machine has ---------------------------------------------------------
nvcc=""
for c in "${CUDA_HOME:-}/bin/nvcc" /usr/local/cuda/bin/nvcc "$(command -v nvcc 2>/dev/null)"; do
  [ -x "$c" ] && { nvcc=$c; break; }
done
cuda_root=${nvcc:+$(dirname "$(dirname "$nvcc")")}
sanitizer=""
for c in "$cuda_root/bin/compute-sanitizer" "$cuda_root/compute-sanitizer/compute-sanitizer" \
         "$(command -v compute-sanitizer 2>/dev/null)"; do
  [ -n "$c" ] && [ -x "$c" ] && { sanitizer=$c; break; }
done
device="none"; driver="none"
if command -v nvidia-smi >/dev/null 2>&1; then
  device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
say "date $(date -u +%Y-%m-%dT%H:%M:%SZ), device ${device:-none}, driver ${driver:-none}"
say "nvcc ${nvcc:-missing} ($([ -n "$nvcc" ] && "$nvcc" --version | tail -1)), compute-sanitizer ${sanitizer:-missing}"

# Any OpenBLAS will do here (the GPU does the heavy work): the prebuilt one is the
# pthread build, so kiln's usual requirement of the OpenMP build is switched off.
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DKILN_BUILD_EXAMPLES=OFF
            -DKILN_OPENBLAS_OPENMP=OFF)
[ -n "$nvcc" ] && cmake_args+=(-DCMAKE_CUDA_COMPILER="$nvcc")
ldpath=""
pre="$root/prebuilt/usr"
prelib="$pre/lib/x86_64-linux-gnu"
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
if ! have_lib libcriterion.so || [ -n "${KILN_FORCE_PREBUILT:-}" ]; then
  if [ -f "$prelib/libcriterion.so" ]; then
    say "Criterion from prebuilt/"
    cmake_args+=(-DKILN_CRITERION="$prelib/libcriterion.so")
    export CFLAGS="${CFLAGS:-} -I$pre/include"
    ldpath="$prelib"
  else
    say "no Criterion on this machine and no prebuilt/ (run scripts/prepare-prebuilt.sh elsewhere): tests off"
    cmake_args+=(-DKILN_BUILD_TESTS=OFF)
    notrun+=("the test suite (no Criterion)")
  fi
fi
if ! have_lib libopenblas.so || [ -n "${KILN_FORCE_PREBUILT:-}" ]; then
  if [ -e "$prelib/libopenblas.so" ]; then
    say "OpenBLAS and LAPACKE from prebuilt/"
    cmake_args+=(-DBLAS_LIBRARIES="$prelib/libopenblas.so" -DBLAS_FOUND=ON
                 -DKILN_CBLAS_INCLUDE="$pre/include/x86_64-linux-gnu/openblas-pthread"
                 -DKILN_LAPACKE="$prelib/liblapacke.so" -DKILN_LAPACK="$prelib/liblapack.so.3")
    ldpath="$prelib:$prelib/openblas-pthread${ldpath:+:$ldpath}"
  else
    say "no OpenBLAS on this machine and no prebuilt/: the build will fail at find_package(BLAS)"
  fi
fi
# cuDNN: the system's, else the one inside PyTorch's nvidia-cudnn pip package
if ! have_lib libcudnn.so; then
  cudnn_dir=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || true)
  if [ -n "$cudnn_dir" ] && ls "$cudnn_dir"/lib/libcudnn.so* >/dev/null 2>&1; then
    so=$(ls "$cudnn_dir"/lib/libcudnn.so* | head -1)
    say "cuDNN from PyTorch's package: $so"
    cmake_args+=(-DKILN_CUDNN="$so")
    export CFLAGS="${CFLAGS:-} -I$cudnn_dir/include"
    ldpath="$cudnn_dir/lib${ldpath:+:$ldpath}"
  else
    say "no cuDNN found (system or PyTorch's nvidia packages)"
  fi
fi
[ -n "$ldpath" ] && export LD_LIBRARY_PATH="$ldpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# ---- build --------------------------------------------------------------------------
s=$(date +%s)
if [ -z "$nvcc" ]; then
  row "build sm_90" "NOT RUN" 0 "no nvcc"
  notrun+=("everything: no CUDA toolkit")
else
  if timeout 300 cmake -S . -B "$bdir" "${cmake_args[@]}" >>"$log" 2>&1 &&
     timeout "$(left)" cmake --build "$bdir" -j "$jobs" >>"$log" 2>&1; then
    row "build sm_90" "ok" $(($(date +%s) - s)) "$(ls kernels/cuda/*.cu | wc -l) kernel files for sm_90"
  else
    row "build sm_90" "FAIL" $(($(date +%s) - s)) "see $log"
    notrun+=("tests and sanitizers: the build failed")
  fi
fi
built() { [ -x "$bdir/$1" ]; }

# ---- the test suite -------------------------------------------------------------------
if built test_smoke; then
  s=$(date +%s)
  t=$(left); [ "$t" -gt 200 ] && t=200
  out=$(cd "$bdir" && timeout "$t" ctest --output-on-failure 2>&1)
  echo "$out" >>"$log"
  summary=$(echo "$out" | grep -E "tests passed" | tail -1)
  st=ok; echo "$out" | grep -q "tests failed out of" && ! echo "$summary" | grep -q "^100%" && st=FAIL
  row "ctest (all suites)" "$st" $(($(date +%s) - s)) "${summary:-timed out}"
  s=$(date +%s)
  ops=$("$bdir/test_cuda_ops" --jobs=1 --verbose 2>&1)
  echo "$ops" >>"$log"
  syn=$(echo "$ops" | grep Synthesis | sed 's/.*Synthesis: //')
  st=ok; echo "$ops" | grep -qE "Failing: [1-9]|Crashing: [1-9]" && st=FAIL
  echo "$ops" | grep -q "\[SKIP\]" && st=SKIPPED && notrun+=("CUDA op comparisons: no usable device")
  row "cuda ops vs cpu" "$st" $(($(date +%s) - s)) "$syn"
fi

# ---- convolutions (issue 5): cuDNN plans vs CPU, fallback, U-Net-16 step, plan cache ------
if built test_cuda_conv; then
  s=$(date +%s)
  t=$(left); [ "$t" -gt 120 ] && t=120
  conv=$(timeout "$t" "$bdir/test_cuda_conv" --jobs=1 --verbose 2>&1)
  echo "$conv" >>"$log"
  st=ok; echo "$conv" | grep -qE "Failing: [1-9]|Crashing: [1-9]" && st=FAIL
  echo "$conv" | grep -q "Synthesis" || st=TIMEOUT
  echo "$conv" | grep -q "table_through_cudnn_and_the_fallback: no CUDA device" && st=SKIPPED &&
    notrun+=("convolution table on CUDA: no usable device")
  row "conv table cudnn+fallback" "$st" $(($(date +%s) - s)) "$(echo "$conv" | grep Synthesis | sed 's/.*Synthesis: //')"
  dnn=$(echo "$conv" | grep -m1 "cuda_conv: .* cuDNN runs" | sed 's/.*cuda_conv: //')
  [ -n "$dnn" ] && say "convolutions: $dnn"
  echo "$conv" | grep -q "cuDNN could not be loaded" && notrun+=("cuDNN plans: cuDNN could not be loaded (fallback only)")
  # the U-Net-16 step: loss and gradients CUDA vs CPU, and no plan rebuilt after step 1
  unet=$(echo "$conv" | grep -E "unet16_training_step_matches_the_cpu" | tail -1)
  cache=$(echo "$conv" | grep -m1 "unet16 plan cache" | sed 's/.*unet16 plan cache: //')
  case $unet in
    *PASS*) ust=ok ;; *SKIP*) ust=SKIPPED; notrun+=("U-Net-16 step on CUDA: ${unet##*: }") ;; *) ust=FAIL ;;
  esac
  row "unet16 step cuda vs cpu" "$ust" 0 "${cache:-no plan-cache line}"
fi

# ---- compute-sanitizer ------------------------------------------------------------------
for tool in memcheck racecheck synccheck; do
  if [ -z "$sanitizer" ] || ! built test_cuda_ops; then
    row "sanitizer $tool" "NOT RUN" 0 "${sanitizer:+no test binary}${sanitizer:-no compute-sanitizer}"
    notrun+=("compute-sanitizer $tool")
    continue
  fi
  t=$(left); [ "$t" -gt 90 ] && t=90
  if [ "$t" -lt 20 ]; then
    row "sanitizer $tool" "NOT RUN" 0 "out of time"; notrun+=("compute-sanitizer $tool (time)"); continue
  fi
  s=$(date +%s)
  timeout "$t" "$sanitizer" --tool "$tool" --target-processes all --error-exitcode 3 \
    "$bdir/test_cuda_ops" --jobs=1 >"$bdir/sanitizer-$tool.log" 2>&1
  rc=$?
  cat "$bdir/sanitizer-$tool.log" >>"$log"
  errs=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$bdir/sanitizer-$tool.log" | tail -1)
  case $rc in
    0) st=ok ;; 124) st=TIMEOUT ;; *) st=FAIL ;;
  esac
  row "sanitizer $tool" "$st" $(($(date +%s) - s)) "${errs:-rc $rc}"
done

# memcheck over the convolution table (cuDNN, the fallback and the layer kernels)
if [ -n "$sanitizer" ] && built test_cuda_conv && [ "$(left)" -ge 60 ]; then
  t=$(left); [ "$t" -gt 90 ] && t=90
  s=$(date +%s)
  timeout "$t" "$sanitizer" --tool memcheck --error-exitcode 3 "$bdir/test_cuda_conv" --jobs=1 \
    --filter='cuda_conv/table_through_cudnn_and_the_fallback' >"$bdir/sanitizer-conv.log" 2>&1
  rc=$?
  cat "$bdir/sanitizer-conv.log" >>"$log"
  case $rc in 0) st=ok ;; 124) st=TIMEOUT ;; *) st=FAIL ;; esac
  row "memcheck conv table" "$st" $(($(date +%s) - s)) "$(grep "ERROR SUMMARY" "$bdir/sanitizer-conv.log" | tail -1)"
else
  notrun+=("compute-sanitizer memcheck of the convolution table")
fi

# ---- benchmarks -------------------------------------------------------------------------
# benchmarks/gpu.sh: kiln vs PyTorch on this card (docs/benchmarks.md); its table is
# printed here and kept in $bdir/bench-gpu.txt, the numbers in $bdir/bench-gpu.json.
if [ -f benchmarks/gpu.sh ] && built kiln_bench; then
  t=$(left); [ "$t" -gt 240 ] && t=240
  if [ "$t" -lt 60 ]; then
    row "bench gpu" "NOT RUN" 0 "out of time"; notrun+=("GPU benchmarks (time)")
  else
    s=$(date +%s)
    if timeout "$t" bash benchmarks/gpu.sh "$bdir" >"$bdir/bench-gpu.txt" 2>>"$log"; then st=ok; else st=FAIL; fi
    cat "$bdir/bench-gpu.txt" | tee -a "$log"
    row "bench gpu" "$st" $(($(date +%s) - s)) "table in $bdir/bench-gpu.txt"
  fi
elif ls benchmarks/*.sh >/dev/null 2>&1; then
  for b in benchmarks/*.sh; do
    t=$(left); [ "$t" -lt 30 ] && { notrun+=("$b (time)"); continue; }
    s=$(date +%s)
    if timeout "$t" bash "$b" "$bdir" >>"$log" 2>&1; then st=ok; else st=FAIL; fi
    row "bench $(basename "$b" .sh)" "$st" $(($(date +%s) - s)) "see $log"
  done
else
  row "benchmarks" "NOT RUN" 0 "none in benchmarks/ yet"
  notrun+=("GPU benchmarks (none exist yet)")
fi

# ---- the table ----------------------------------------------------------------------------
echo
echo "kiln gpu-check  $(date -u +%Y-%m-%d)  device: ${device:-none}  driver: ${driver:-none}  total $(( $(date +%s) - t0 ))s"
printf '%-28s %-9s %6s  %s\n' "step" "result" "time" "detail"
for r in "${rows[@]}"; do echo "$r"; done
if [ ${#notrun[@]} -gt 0 ]; then
  echo "not run:"
  for n in "${notrun[@]}"; do echo "  - $n"; done
fi
echo "full log: $log  (record the table in docs/gpu-verification.md)"
for r in "${rows[@]}"; do case $r in *" FAIL "*|*" TIMEOUT "*) exit 1 ;; esac; done
exit 0
