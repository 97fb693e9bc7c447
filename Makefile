# Thin wrapper over CMake for the README's commands.
#   make demo   installs what is missing, builds, trains the demo
#   make test   installs what is missing, builds, runs every test (plain and ASan+UBSan)
#   make bench  builds (Release) and runs the CPU benchmarks against PyTorch: table + benchmarks/results/cpu.json
SHELL := /bin/bash
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
BUILD ?= build

.PHONY: all setup build demo test test-plain test-asan bench clean

all: build

setup:
	@bash scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

demo: build
	@$(BUILD)/xor_mlp

test-plain: build
	@cd $(BUILD) && ctest --output-on-failure -V 2>&1 | grep -E '^[0-9]+: (\[====\]|\[----\]|\[FAIL\]|\[SKIP\])|Test +#|tests passed|tests failed|Errors|\*\*\*' ; exit $${PIPESTATUS[0]}

# The whole suite again under AddressSanitizer and UBSan; CUDA is off there
# (sanitizers and nvcc objects do not mix), the CUDA build is checked in `build`.
test-asan: setup
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_CUDA=OFF -DKILN_BUILD_EXAMPLES=ON >/dev/null
	@cmake --build build-asan -j $(JOBS) -- --no-print-directory
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -V 2>&1 | grep -E '^[0-9]+: (\[====\]|\[----\]|\[FAIL\]|\[SKIP\])|Test +#|tests passed|tests failed|Errors|\*\*\*|ERROR: AddressSanitizer|runtime error' ; exit $${PIPESTATUS[0]}

test: test-plain test-asan

# kiln and PyTorch (Debian's /usr/bin/python3) case by case, interleaved, at equal
# threads (OMP_NUM_THREADS, default: every core); see docs/benchmarks.md.
bench: build
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$(JOBS)} python3 benchmarks/run.py --build $(BUILD) --device cpu $(BENCH_ARGS)

clean:
	rm -rf build build-asan
