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


class _ChatServer:
    """A real local HTTP server speaking chat completions: records when each request arrived,
    and answers the first ``failures`` requests with 503."""

    def __init__(self, failures: int = 0) -> None:
        import http.server
        import json
        import threading
        import time

        self.arrivals: list[float] = []
        self.failures = failures
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.arrivals.append(time.monotonic())
                if len(server.arrivals) <= server.failures:
                    payload, status = {"error": {"message": "overloaded"}}, 503
                else:
                    message = {"role": "assistant", "content": "ok"}
                    payload, status = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                       "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                       "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}, 200
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_rate_limit_spaces_the_requests_to_a_shared_server() -> None:
    server = _ChatServer()
    try:
        llm = load(f"openai:m@{server.url}", cache=False, requests_per_second=5)
        for i in range(4):
            assert llm.invoke(f"hello {i}").content == "ok"
        gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:])]
        assert len(gaps) == 3 and min(gaps) >= 0.15  # 5 per second: ~0.2 s apart
    finally:
        server.close()


def test_retries_ride_out_a_failing_server_then_fail_readably() -> None:
    server = _ChatServer(failures=1)
    try:
        assert load(f"openai:m@{server.url}", cache=False, max_retries=2).invoke("hi").content == "ok"
        assert len(server.arrivals) == 2  # one 503, then the retry
        server.failures = 10
        with pytest.raises(BackendUnavailableError, match="answered 503 after 0 retries"):
            load(f"openai:m@{server.url}", cache=False, max_retries=0).invoke("hi again")
    finally:
        server.close()
    with pytest.raises(ModelSpecError, match="requests_per_second"):
        load("openai:m@http://127.0.0.1:1/v1", requests_per_second=0)
