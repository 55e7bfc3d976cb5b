"""Memories for LLM agents (`llmguide.memory`).

Exports `ExperienceMemory` and `Experience` (a persistent vector memory of
scene -> decision experiences: Chroma + offline all-MiniLM-L6-v2 by default),
`MiniLMEmbeddings` / `default_embeddings` (LangChain `Embeddings` over the
packaged model), `SCHEMA_VERSION`.

Importing this package imports neither chromadb nor torch: each name loads
its module on first access, because other modules import `llmguide.memory`.

Example:
    >>> from llmguide.memory import ExperienceMemory, Experience   # doctest: +SKIP
    >>> mem = ExperienceMemory("runs/dilu-memory")                    # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "SCHEMA_FILE",
    "SCHEMA_VERSION",
    "Experience",
    "ExperienceMemory",
    "MiniLMEmbeddings",
    "default_embeddings",
    "minilm_model_dir",
]

_LAZY = {
    "Experience": "llmguide.memory.vector",
    "ExperienceMemory": "llmguide.memory.vector",
    "SCHEMA_VERSION": "llmguide.memory.vector",
    "SCHEMA_FILE": "llmguide.memory.vector",
    "MiniLMEmbeddings": "llmguide.memory.embeddings",
    "default_embeddings": "llmguide.memory.embeddings",
    "minilm_model_dir": "llmguide.memory.embeddings",
}


def __getattr__(name: str) -> Any:
    """Load the defining module on first access (keeps `import llmguide.memory` light)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmguide.memory' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
