"""The persistent response cache: identical answers, hits across processes, corrupt files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmguide.errors import CorruptStoreError
from llmguide.llm import METER, ResponseCache, load

_CHILD = """
import json, sys
from llmguide.llm import METER, load
llm = load("smollm2", n_ctx=2048, cache=sys.argv[1])
text = llm.invoke("Name one fruit.", max_tokens=16).content
print(json.dumps({"text": text, "hits": METER.snapshot().cache_hits}))
"""


def _child(cache_file) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(cache_file)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_hit_across_two_processes(tmp_path) -> None:
    cache_file = tmp_path / "responses.sqlite"
    first, second = _child(cache_file), _child(cache_file)
    assert first["hits"] == 0 and second["hits"] == 1
    assert first["text"] == second["text"] and first["text"].strip()
    assert ResponseCache(cache_file).stats()["entries"] == 1


def test_cache_in_process_hit_is_counted(tmp_path) -> None:
    METER.reset()
    llm = load("smollm2", n_ctx=2048, cache=tmp_path / "c.sqlite")
    a = llm.invoke("Say yes.", max_tokens=8).content
    b = llm.invoke("Say yes.", max_tokens=8).content
    assert a == b
    snap = METER.snapshot()
    assert snap.calls == 2 and snap.cache_hits == 1
    assert llm.cache.stats()["hit_rate"] == 0.5


def test_cache_off_for_sampling_by_default() -> None:
    assert load("smollm2", temperature=0.7).cache is None
    assert load("smollm2").cache is not None


def test_corrupt_cache_file_gives_clear_error(tmp_path) -> None:
    bad = tmp_path / "responses.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptStoreError, match="llmguide cache clear"):
        ResponseCache(bad).lookup("p", "m")
