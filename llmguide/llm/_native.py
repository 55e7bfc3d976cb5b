"""Loads llama.cpp's native libraries first, with the environment they read when they load.

Imported first by ``llmguide.llm``, so any use of the LLM layer gets both:

* ``OMP_WAIT_POLICY=PASSIVE``: llama.cpp's OpenMP threads busy-wait by default; on a
  loaded 2-core machine (SB3 workers, an annotator process) a 9-token call then took
  25 s instead of ~1 s. Passive waiting costs nothing measurable on an idle machine.
  It must be set before the OpenMP runtime is first loaded.
* llama.cpp's libraries loaded before ``ssl``/``aiohttp`` (which ``openai`` and
  ``langchain_openai`` import): with a CUDA build of llama-cpp-python on an H200 box
  (CUDA 13, Python 3.12), loading a model after ``import aiohttp`` crashed the process
  (SIGSEGV) while loading first ran (``benchmarks/RESULTS.md``, "GPU offload").
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import llama_cpp  # noqa: F401  (loads libllama and its ggml backends now)
