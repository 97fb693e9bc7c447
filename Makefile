# Thin wrapper over CMake for the README's commands.
#   make demo   installs what the demo is missing, builds the library and car_mask, trains the car-mask U-Net
#   make test   installs what is missing, builds, runs every test (plain and ASan+UBSan, C then Python)
#   make bench  builds (Release) and runs the CPU benchmarks against PyTorch: table + benchmarks/results/cpu.json
SHELL := /bin/bash
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
BUILD ?= build

.PHONY: all setup setup-demo build demo test test-plain test-asan test-valgrind bench clean install

all: build

setup:
	@bash scripts/setup.sh

# only what the library and car_mask need (no test framework, no data sets)
setup-demo:
	@KILN_SETUP_DEMO=1 bash scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

# `make install PREFIX=DIR`: headers, libkiln.so/.a, the CMake package (find_package(kiln))
# and kiln.pc into DIR (default /usr/local), from a Release build of the library alone.
PREFIX ?= /usr/local
install: setup-demo
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target kiln_shared kiln_static -- --no-print-directory
	@cmake --install $(BUILD) --prefix $(PREFIX)

# car_mask's defaults are the demo: U-Net-16 on the default device, 16 epochs over 192
# scenes of 64x64, sized to finish in under 5 minutes on 2 CPU cores with held-out IoU
# >= 0.75 (README: Results). kiln's OpenMP kernels run many short parallel regions; on
# cores shared with other work a second thread made each step about 5x slower (measured),
# so they run on one thread here and OpenBLAS uses the cores: DEMO_THREADS=2 changes it.
DEMO_OUT ?= out/car_mask
DEMO_THREADS ?= 1
demo: setup-demo
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target car_mask -- --no-print-directory
	@OMP_NUM_THREADS=$(DEMO_THREADS) $(BUILD)/car_mask --out $(DEMO_OUT)
	@echo "make demo: pictures in $(DEMO_OUT)/car_mask_grid.png (input | truth | prediction)"
	@echo "           and $(DEMO_OUT)/car_mask_plot.png (loss and held-out metrics per epoch);"
	@echo "           training checkpoint in $(DEMO_OUT)/car_mask.safetensors, weights for PyTorch in $(DEMO_OUT)/model.safetensors"

test-plain: build
	@cd $(BUILD) && ctest --output-on-failure -V 2>&1 | grep -E '^[0-9]+: (\[====\]|\[----\]|\[FAIL\]|\[SKIP\])|Test +#|tests passed|tests failed|Errors|\*\*\*' ; exit $${PIPESTATUS[0]}

# The whole suite again under AddressSanitizer and UBSan; CUDA is off there
# (sanitizers and nvcc objects do not mix), the CUDA build is checked in `build`.
test-asan: setup
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_CUDA=OFF -DKILN_BUILD_EXAMPLES=ON >/dev/null
	@cmake --build build-asan -j $(JOBS) -- --no-print-directory
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -V 2>&1 | grep -E '^[0-9]+: (\[====\]|\[----\]|\[FAIL\]|\[SKIP\])|Test +#|tests passed|tests failed|Errors|\*\*\*|ERROR: AddressSanitizer|runtime error' ; exit $${PIPESTATUS[0]}

# The Python bindings run after the C suites (a sub-make keeps that order under -j).
test: test-plain test-asan
	@$(MAKE) --no-print-directory test-python test-python-asan

# kiln and PyTorch (Debian's /usr/bin/python3) case by case, interleaved, at equal
# threads (OMP_NUM_THREADS, default: every core); see docs/benchmarks.md.
bench: build
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$(JOBS)} $(PYTHON) benchmarks/run.py --build $(BUILD) --device cpu $(BENCH_ARGS)

# The core suites under valgrind memcheck (slower than ASan, so not part of `make test`):
# invalid reads/writes, uses of uninitialised memory and definite leaks fail the run.
# valgrind cannot execute AVX-512, and oneDNN (the f32 CPU convolutions) picks its JIT
# kernels from the CPU's ISA: DNNL_MAX_CPU_ISA=AVX2 caps it at code valgrind runs, so
# oneDNN stays on and memcheck checks the same convolution path the other builds run
# (rather than KILN_ONEDNN=0, which would check im2col instead). Measured: with it,
# `make test-valgrind VALGRIND_SUITES=test_conv2d_onednn` passes (about 6 minutes).
VALGRIND_SUITES ?= test_autograd test_memory_pool test_scope test_tensor test_views test_checkpoint test_checkpoint_load test_module test_limits
test-valgrind: setup
	@cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=Debug -DKILN_CUDA=OFF -DKILN_BUILD_EXAMPLES=OFF -DKILN_BUILD_BENCHMARKS=OFF >/dev/null
	@cmake --build build-vg -j $(JOBS) --target $(VALGRIND_SUITES) -- --no-print-directory
	@for t in $(VALGRIND_SUITES); do \
	  OMP_NUM_THREADS=1 DNNL_MAX_CPU_ISA=AVX2 valgrind --quiet --trace-children=yes --error-exitcode=9 --leak-check=full \
	    --errors-for-leak-kinds=definite build-vg/$$t --jobs=1 || { echo "test-valgrind: $$t failed"; exit 1; }; \
	done; echo "test-valgrind: $(words $(VALGRIND_SUITES)) suites clean"

clean:
	rm -rf build build-asan build-vg build-fuzz

# libFuzzer over every parser of untrusted bytes (docs/fuzzing.md): clang + ASan + UBSan
# in build-fuzz, FUZZ_SECONDS per harness on its working corpus, then executions and
# coverage. `make test` replays the seeds and tests/fuzz/regressions/ without clang.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	@KILN_SETUP_FUZZ=1 bash scripts/setup.sh
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(JOBS) bash tests/fuzz/run_fuzz.sh

# ---- Python bindings (bindings/python) -------------------------------------------------
# pytest with Debian's python3 (numpy, pytest; the PyTorch comparisons run when torch is
# installed) against $(BUILD)'s libkiln.so. pytest's summary line is printed; exit 5
# ("no tests collected") is reported and fails like any other failure.
PYTHON ?= /usr/bin/python3
PYTEST_ARGS ?= -q -p no:cacheprovider -rfEs
define run_pytest
	rc=$$?; if [ $$rc -eq 5 ]; then echo "$@: pytest collected no tests" >&2; exit 1; fi; exit $$rc
endef

.PHONY: test-python test-python-asan
test-python: build
	@KILN_SETUP_PYTHON=1 bash scripts/setup.sh
	@cd bindings/python && KILN_LIBRARY=$(abspath $(BUILD))/libkiln.so OMP_NUM_THREADS=2 KILN_DEVICE=cpu \
	  $(PYTHON) -m pytest tests $(PYTEST_ARGS); $(run_pytest)

# The same tests (less packaging) against the ASan+UBSan library: use-after-free in the
# bindings' lifetimes shows up here. CPython's own exit-time allocations are not leaks.
test-python-asan: setup
	@KILN_SETUP_PYTHON=1 bash scripts/setup.sh
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_CUDA=OFF -DKILN_BUILD_EXAMPLES=ON >/dev/null
	@cmake --build build-asan -j $(JOBS) --target kiln_shared kiln_examples_shared -- --no-print-directory
	@cd bindings/python && LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 KILN_LIBRARY=$(abspath build-asan)/libkiln.so OMP_NUM_THREADS=2 KILN_DEVICE=cpu \
	  $(PYTHON) -m pytest tests $(PYTEST_ARGS) --ignore=tests/test_packaging.py; $(run_pytest)
