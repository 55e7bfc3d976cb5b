"""`llmguide serve`: a real server process, the official openai client, our `openai:` spec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from llmguide.llm import choose, load
from llmguide.net import free_port, wait_for_http
from llmguide.serve import normalize_chat_request


@pytest.fixture(scope="module")
def server_url():
    port = free_port()
    cli = Path(sys.executable).with_name("llmguide")
    proc = subprocess.Popen(
        [str(cli), "serve", "--model", "smollm2", "--port", str(port), "--n-ctx", "2048"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}/v1"
    if not wait_for_http(f"{url}/models", proc, timeout=120, interval=0.5):
        proc.kill()
        pytest.fail(f"server did not start within 120 s:\n{proc.stdout.read()}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    assert proc.returncode is not None


def test_official_client_with_content_parts(server_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=server_url, api_key="none")
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
        ],
        max_tokens=16,
        temperature=0,
    )
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens > 0


def test_openai_spec_choose_is_constrained(server_url: str) -> None:
    llm = load(f"openai:smollm2@{server_url}", cache=False)
    options = ["north", "south", "east", "west"]
    for prompt in ["Where is the sun at noon?", "Say something unrelated.", "Pick a direction."]:
        assert choose(llm, prompt, options) in options


def test_choices_are_scored_through_the_server(server_url: str) -> None:
    """A choice asked through `llmguide serve` is scored on the served model, as in-process
    llama.cpp scores it (same chat template and scorer), not generated: no fallback."""
    from langchain_core.messages import HumanMessage, SystemMessage

    from llmguide.llm.usage import METER

    remote = load(f"openai:smollm2@{server_url}", cache=False)
    local = load("smollm2", cache=False)
    question = [SystemMessage(content="You answer with one word."),
                HumanMessage(content="What colour is the sky on a clear summer day?")]
    options = ["blue", "banana", "Tuesday"]
    scored = remote.score_options(question, options)
    assert scored is not None, "the server did not score the options"
    assert scored[0] == pytest.approx(local.score_options(question, options)[0], abs=0.05)
    assert scored[1] > 0  # tokens the server evaluated
    reordered, _ = remote.score_options(question, options[::-1])
    assert reordered[::-1] == pytest.approx(scored[0], abs=0.05)
    before = METER.snapshot().fallbacks
    assert choose(remote, "Which is a colour?", ["banana", "red", "Tuesday"]) in ("banana", "red", "Tuesday")
    assert METER.snapshot().fallbacks == before


def test_scoring_route_refuses_bad_requests_readably(server_url: str) -> None:
    reply = httpx.post(f"{server_url}/llmguide/score", json={"messages": [], "options": ["a"]}, timeout=30)
    assert reply.status_code == 422  # no messages: pydantic's validation error, not a crash


def test_concurrent_learners_are_all_answered(server_url: str) -> None:
    """The pinned llama-cpp-python server decodes one request at a time per model (no parallel
    slots): concurrent clients queue behind its lock and every one gets its answer."""
    from concurrent.futures import ThreadPoolExecutor

    llm = load(f"openai:smollm2@{server_url}", cache=False, max_tokens=8, timeout=120)
    prompts = [f"Learner {i}: name one colour." for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda p: llm.invoke(p).content, prompts))
    assert len(answers) == 4 and all(isinstance(a, str) and a.strip() for a in answers)


def test_server_stops_cleanly_and_port_is_released(server_url: str) -> None:
    assert httpx.get(f"{server_url}/models", timeout=5).json()["data"][0]["id"] == "smollm2"


def test_normalize_chat_request() -> None:
    body = {
        "messages": [{"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    }
    out = normalize_chat_request(body)
    assert out["messages"][0]["content"] == "ab"
    assert out["response_format"] == {"type": "json_object", "schema": {"type": "object"}}
    assert normalize_chat_request({"max_completion_tokens": 16})["max_tokens"] == 16  # langchain-openai's key
