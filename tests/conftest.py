"""Shared test fixtures: every test session gets private cache and runs folders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Set before any llmguide import so no test writes into the user's ~/.cache.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="llmguide-tests-"))
os.environ.setdefault("LLMGUIDE_CACHE_DIR", str(_SESSION_TMP / "cache"))
os.environ.setdefault("LLMGUIDE_RUNS_DIR", str(_SESSION_TMP / "runs"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty response-cache folder for one test."""
    monkeypatch.setenv("LLMGUIDE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def smollm2():
    """The embedded model, loaded once for the whole session (uncached)."""
    from llmguide.llm import load

    return load("smollm2", cache=False, n_ctx=2048)
