#!/usr/bin/env bash
# `make fuzz` (docs/fuzzing.md): builds the libFuzzer harnesses with clang, ASan and UBSan
# in $FUZZ_BUILD, makes the seed corpora, runs each harness for FUZZ_SECONDS on its working
# corpus ($FUZZ_BUILD/fuzz-work/<harness>/corpus: the seeds are copied in, what libFuzzer
# adds stays there for the next run) and prints executions and coverage per harness; with
# FUZZ_COVERAGE=1 (default when llvm-cov is installed) it also builds $FUZZ_BUILD-cov with
# clang's source-based coverage and reports the line coverage of the parsers over the
# working corpora. Crashes, leaks, timeouts and OOMs land in fuzz-work/<harness>/artifacts/;
# the script exits non-zero when any harness found one.
#   FUZZ_SECONDS=60  FUZZ_HARNESSES="safetensors checkpoint png idx image"  FUZZ_PARALLEL=1 (harnesses at once)
#   FUZZ_JOBS=2 (build)  FUZZ_ARGS="..." (more libFuzzer flags)  FUZZ_COVERAGE=0|1
set -euo pipefail
cd "$(dirname "$0")/../.."

SECS=${FUZZ_SECONDS:-60}
BUILD=${FUZZ_BUILD:-build-fuzz}
JOBS=${FUZZ_JOBS:-2}
PAR=${FUZZ_PARALLEL:-1}
HARNESSES=${FUZZ_HARNESSES:-safetensors checkpoint png idx image}
WORK=$BUILD/fuzz-work
PY=${PYTHON:-python3}
if [ -z "${FUZZ_COVERAGE:-}" ]; then
  if command -v llvm-profdata >/dev/null && command -v llvm-cov >/dev/null; then FUZZ_COVERAGE=1; else FUZZ_COVERAGE=0; fi
fi

for tool in clang "$PY"; do
  command -v "$tool" >/dev/null || { echo "make fuzz: $tool not found (KILN_SETUP_FUZZ=1 bash scripts/setup.sh installs what fuzzing needs)" >&2; exit 1; }
done
common=(-DKILN_CUDA=OFF -DKILN_CUDA_EMULATION=OFF -DKILN_BUILD_BENCHMARKS=OFF -DKILN_BUILD_EXAMPLES=OFF
        -DKILN_BUILD_EXAMPLES_SHARED=OFF -DCMAKE_BUILD_TYPE=Debug)
targets=(kiln_fuzz_gen_corpus)
for h in $HARNESSES; do targets+=("fuzz_$h"); done
echo "make fuzz: building ${targets[*]} in $BUILD (clang, libFuzzer, ASan + UBSan)"
CC=clang CXX=clang++ cmake -S . -B "$BUILD" "${common[@]}" -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DKILN_SANITIZE=ON \
  -DKILN_FUZZ=ON -DKILN_FUZZ_COVERAGE=OFF >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" -- --no-print-directory >/dev/null
"$PY" tests/fuzz/make_corpus.py --gen "$BUILD/tests/fuzz/kiln_fuzz_gen_corpus" --out "$BUILD/tests/fuzz/corpus"

# One harness: its log in fuzz-work/<h>/log, a one-line summary in fuzz-work/<h>/summary.
fuzz_one() {
  local h=$1 dir=$WORK/$1
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -n "$BUILD/tests/fuzz/corpus/$h/"* "$dir/corpus/" 2>/dev/null || true
  local dict=()
  [ -f "tests/fuzz/dict/$h.dict" ] && dict=(-dict="tests/fuzz/dict/$h.dict")
  local rc=0
  # -malloc_limit_mb defaults to -rss_limit_mb: an allocation above 2 GiB is a finding
  OMP_NUM_THREADS=1 KILN_DEVICE=cpu ASAN_OPTIONS=detect_leaks=1:handle_abort=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$BUILD/tests/fuzz/fuzz_$h" "$dir/corpus" "${dict[@]}" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=5 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/" ${FUZZ_ARGS:-} >"$dir/log" 2>&1 || rc=$?
  local execs cov ft
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  cov=$(grep -oE '(DONE|pulse|NEW|REDUCE|INITED) +cov: [0-9]+' "$dir/log" | tail -1 | grep -oE '[0-9]+$' || true)
  ft=$(grep -oE 'ft: [0-9]+' "$dir/log" | tail -1 | grep -oE '[0-9]+' || true)
  printf '%-12s %12s %8s %8s %8s %s\n' "$h" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$(ls "$dir/corpus" | wc -l)" \
    "$([ $rc -eq 0 ] && echo ok || echo "FOUND (rc $rc): $(ls "$dir/artifacts" | tr '\n' ' ')")" >"$dir/summary"
  if [ $rc -ne 0 ]; then
    grep -E 'ERROR: |INVARIANT|SUMMARY|runtime error|^ +#[0-9] ' "$dir/log" | head -20 >&2 || true
  fi
  return $rc
}

echo "make fuzz: ${SECS}s per harness, $PAR at a time; logs in $WORK/<harness>/log"
status=0
pids=()
for h in $HARNESSES; do
  fuzz_one "$h" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$PAR" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
printf '%-12s %12s %8s %8s %8s %s\n' harness executions cov ft corpus result
for h in $HARNESSES; do cat "$WORK/$h/summary"; done
echo "(cov: libFuzzer's covered edges in kiln's own code, ft: its features; libpng, libjpeg, zlib and jansson are Debian's, uninstrumented)"

if [ "$FUZZ_COVERAGE" = 1 ]; then
  CB=$BUILD-cov
  echo "make fuzz: line coverage over the working corpora (clang source-based coverage, $CB)"
  CC=clang CXX=clang++ cmake -S . -B "$CB" "${common[@]}" -DKILN_SANITIZE=OFF -DKILN_FUZZ=OFF -DKILN_FUZZ_COVERAGE=ON >/dev/null
  rtargets=()
  for h in $HARNESSES; do rtargets+=("fuzz_${h}_replay"); done
  cmake --build "$CB" -j "$JOBS" --target "${rtargets[@]}" -- --no-print-directory >/dev/null
  declare -A srcs=([safetensors]="core/safetensors.c" [checkpoint]="optim/checkpoint.c core/safetensors.c"
                   [png]="examples/support/png_io.c" [idx]="examples/support/idx.c"
                   [image]="core/image.c core/image_png.c core/image_jpeg.c")
  printf '%-12s %-28s %s\n' harness file "lines covered"
  for h in $HARNESSES; do
    rm -rf "$CB/prof/$h" && mkdir -p "$CB/prof/$h"
    # failing inputs are in the artifacts, not the corpus; a replay that stops early still leaves its profile
    LLVM_PROFILE_FILE="$CB/prof/$h/%p.profraw" OMP_NUM_THREADS=1 KILN_DEVICE=cpu \
      "$CB/tests/fuzz/fuzz_${h}_replay" "$WORK/$h/corpus" >/dev/null 2>&1 || echo "make fuzz: the $h replay failed on its corpus" >&2
    llvm-profdata merge -sparse "$CB/prof/$h/"*.profraw -o "$CB/prof/$h.profdata"
    for s in ${srcs[$h]}; do
      llvm-cov report "$CB/tests/fuzz/fuzz_${h}_replay" -instr-profile="$CB/prof/$h.profdata" "$PWD/$s" 2>/dev/null |
        awk -v h="$h" -v s="$s" '$1 ~ /\.c$/ { printf "%-12s %-28s %s of %s (%s)\n", h, s, $8 - $9, $8, $10 }'
    done
  done
fi
exit $status
