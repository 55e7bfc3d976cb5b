# llmguide — the two commands: `make demo` and `make test`.
# Both create .venv (Python 3.11) if missing and (re)install the project when
# pyproject.toml changes. The first install builds llama-cpp-python from
# source (~5 minutes on 2 cores); pip's cache makes later ones fast.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A portable llama.cpp CPU build: the native one (AVX-512/AMX kernels) segfaults
# on multi-token prompts on our Xeon machines (llama-cpp-python 0.3.36).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
LLAMA_CPP_VERSION := $(shell sed -n 's/.*"llama-cpp-python\[server\]==\([^"]*\)".*/\1/p' pyproject.toml)

.PHONY: install demo test test-fast gpu bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --progress-bar off -e '.[dev]'
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

## Rebuild llama-cpp-python with CUDA offload (nvcc must be on PATH).
gpu: install
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CUDA=on" FORCE_CMAKE=1 $(BIN)/python -m pip install --force-reinstall --no-deps --no-cache-dir \
		"llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"
	$(BIN)/llmguide models

clean:
	rm -rf $(VENV) runs .pytest_cache
