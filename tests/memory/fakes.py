"""A tiny deterministic bag-of-words embedding, so memory logic tests need no torch."""

from __future__ import annotations

import hashlib
import math
import re

from langchain_core.embeddings import Embeddings


class BagOfWords(Embeddings):
    """Hashed word counts, unit-normalised: scenes sharing words are close."""

    name = "test-bag-of-words"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def embed_query(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9.]+", text.lower()):
            vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = math.sqrt(sum(x * x for x in vec)) or 1.0
        return [x / norm for x in vec]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]
