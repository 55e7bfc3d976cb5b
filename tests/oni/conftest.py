"""Fixtures of the ONI tests (threads and processes that make conditions true later)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest


def _wait_until(pred: Callable[[], object], timeout: float = 20.0, interval: float = 0.02) -> bool:
    """Poll `pred` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """`wait_until(pred, timeout=20.0)`: poll a condition another thread or process makes true."""
    return _wait_until


class BagOfWords:
    """A tiny deterministic embedder (hashed words), so logic tests need no MiniLM."""

    dim = 64

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace("!", "").replace(".", "").split():
                out[i, zlib.crc32(word.encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


@pytest.fixture
def bag_of_words() -> type[BagOfWords]:
    """The `BagOfWords` embedder class (a class, so a test can subclass it)."""
    return BagOfWords
