# llmguide — the two commands: `make demo` and `make test`.
# Both create .venv (Python 3.11) if missing and (re)install the project when
# pyproject.toml or constraints.txt changes. The first install builds
# llama-cpp-python from source (~5 minutes on 2 cores); pip's cache makes later
# ones fast.
#
# pyproject.toml states compatible version ranges; constraints.txt pins the
# exact version of every package in .venv, so `make demo` and `make test`
# install what the tests were run with.
# To move to newer releases: upgrade the venv without the lock
#     .venv/bin/python -m pip install --upgrade --upgrade-strategy eager -e '.[dev]'
# (or after bumping a range in pyproject.toml), run `make test`, then write
# the lock again from the venv (pip, setuptools and wheel included; llmguide
# itself, installed editable, left out):
#     echo '# Exact versions in .venv; make installs with -c constraints.txt (regenerate: see Makefile).' > constraints.txt
#     .venv/bin/python -m pip freeze --all --exclude-editable >> constraints.txt

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A portable llama.cpp CPU build: the native one (AVX-512/AMX kernels) segfaults
# on multi-token prompts on our Xeon machines (llama-cpp-python 0.3.36).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
CONSTRAINTS := constraints.txt
# The locked llama-cpp-python version (pip freeze spells it llama_cpp_python or llama-cpp-python).
LLAMA_CPP_VERSION := $(shell sed -n 's/^llama[-_.]cpp[-_.]python==\([^ ;]*\).*/\1/Ip' $(CONSTRAINTS))

.PHONY: install demo test test-fast gpu bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) --upgrade pip setuptools wheel
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --progress-bar off -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded model: plain vs LLM-guided PPO on MiniGrid DoorKey.
demo: install
	$(BIN)/llmguide run configs/demo.yaml

## The whole test suite (real model, real envs, real training at small budgets),
## two workers (pytest-xdist), one test file per worker at a time.
PYTEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

## Skip the tests marked slow.
test-fast: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

## The smoke mode of each benchmark that has one (MiniGrid with three of its
## teachers, then ONI; about 15 minutes on a busy 2-core machine), written
## under $(BENCH_OUT) so benchmarks/results/ and benchmarks/RESULTS.md are left
## as they are; then a list of the full benchmarks, which take up to hours
## each: their commands and measured results are in benchmarks/RESULTS.md.
BENCH_OUT ?= runs/bench
bench: install
	$(BIN)/python benchmarks/minigrid_teachers.py --quick --no-markdown --teachers plain,oracle,llm-object \
		--work $(BENCH_OUT)/minigrid_teachers --out $(BENCH_OUT)/minigrid_teachers.json
	$(BIN)/python benchmarks/oni_nethack.py --quick --out $(BENCH_OUT)/oni_nethack.json
	@echo "Smoke results: $(BENCH_OUT)/. Full benchmarks (see --help; commands and results in benchmarks/RESULTS.md):"
	@for f in benchmarks/*.py; do printf '  %s\n      %s\n' "$(BIN)/python $$f" "$$(sed -n '1s/^"""//p' $$f)"; done

## Rebuild llama-cpp-python with CUDA offload (nvcc must be on PATH). GPU_ARCHS=90 (an H100/H200's
## compute capability) compiles the CUDA kernels for that GPU only, instead of llama.cpp's default list.
gpu: install
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CUDA=on$(if $(GPU_ARCHS), -DCMAKE_CUDA_ARCHITECTURES=$(GPU_ARCHS))" FORCE_CMAKE=1 $(BIN)/python -m pip install --force-reinstall --no-deps --no-cache-dir \
		"llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"
	$(BIN)/llmguide models

clean:
	rm -rf $(VENV) runs .pytest_cache
