"""Spec parsing and the clear errors for bad specs, files and servers."""

from __future__ import annotations

import socket

import pytest

from llmguide.errors import BackendUnavailableError, ModelFileError, ModelSpecError
from llmguide.llm import load, parse_spec, smollm2_path


def test_smollm2_resolves_to_shipped_file() -> None:
    path = smollm2_path()
    assert path.is_file() and path.suffix == ".gguf"
    assert parse_spec("smollm2").kind == "gguf"


@pytest.mark.parametrize(
    ("spec", "kind", "model", "base"),
    [
        ("gguf:/models/x.gguf", "gguf", "/models/x.gguf", None),
        ("openai:gpt-4o-mini", "openai", "gpt-4o-mini", None),
        ("openai:local@http://127.0.0.1:8000/v1", "openai", "local", "http://127.0.0.1:8000/v1"),
        ("/models/y.gguf", "gguf", "/models/y.gguf", None),
    ],
)
def test_parse_spec(spec: str, kind: str, model: str, base: str | None) -> None:
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.model, parsed.base_url) == (kind, model, base)


@pytest.mark.parametrize("spec", ["", "llama", "hf:foo", "openai:", "openai:m@"])
def test_bad_spec_names_the_valid_forms(spec: str) -> None:
    with pytest.raises(ModelSpecError) as err:
        parse_spec(spec)
    assert "spec" in str(err.value).lower()


def test_missing_gguf_file(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load(f"gguf:{tmp_path / 'nope.gguf'}")


def test_corrupt_gguf_file(tmp_path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    llm = load(f"gguf:{bad}", cache=False)
    with pytest.raises(ModelFileError, match="could not load"):
        llm.invoke("hi")


def test_openai_without_key(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelSpecError, match="OPENAI_API_KEY"):
        load("openai:gpt-4o-mini")


def test_unreachable_server_fails_fast_with_clear_error() -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = load(f"openai:m@http://127.0.0.1:{port}/v1", cache=False, timeout=5)
    with pytest.raises(BackendUnavailableError, match="unreachable"):
        llm.invoke("hello")
