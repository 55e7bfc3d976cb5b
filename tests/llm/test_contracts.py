"""LangChain's own contracts on our chat models: ``with_structured_output``, streamed usage,
and a response cache that refuses a damaged file and does not create one by looking."""

from __future__ import annotations

import random
from typing import Literal
from uuid import uuid4

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from pydantic import BaseModel
from typer.testing import CliRunner

from llmguide.cli import app
from llmguide.errors import CorruptStoreError
from llmguide.llm import METER, ResponseCache, load


class Move(BaseModel):
    direction: Literal["left", "right", "forward"]
    steps: int


COLOUR_SCHEMA = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["colour"],
}


# -- with_structured_output ------------------------------------------------------
def test_structured_output_pydantic_through_cache_and_meter(tmp_path) -> None:
    llm = load("smollm2", n_ctx=2048, max_tokens=48, cache=tmp_path / "c.sqlite")
    mover = llm.with_structured_output(Move)
    METER.reset()
    first = mover.invoke("Walk two cells forward.")
    second = mover.invoke("Walk two cells forward.")
    assert isinstance(first, Move) and first == second
    snap = METER.snapshot()
    assert (snap.calls, snap.cache_hits) == (2, 1)
    assert snap.prompt_tokens > 0 and snap.completion_tokens > 0
    # The schema is part of the cache key: the same prompt without it is a new call.
    llm.invoke("Walk two cells forward.")
    assert METER.snapshot().cache_hits == 1
    assert llm.cache.stats()["entries"] == 2


def test_structured_output_json_schema_dict(smollm2) -> None:
    picker = smollm2.with_structured_output(COLOUR_SCHEMA, method="json_schema")
    for prompt in ["What colour is grass?", "Name the colour of the sky.", "Say banana."]:
        answer = picker.invoke(prompt, max_tokens=24)
        assert isinstance(answer, dict) and answer["colour"] in {"red", "green", "blue"}


def test_structured_output_include_raw(smollm2) -> None:
    out = smollm2.with_structured_output(Move, include_raw=True).invoke("Turn right.", max_tokens=48)
    assert set(out) == {"raw", "parsed", "parsing_error"}
    assert isinstance(out["raw"], AIMessage) and out["parsing_error"] is None
    assert out["parsed"] == Move.model_validate_json(out["raw"].content)


def test_structured_output_include_raw_keeps_a_cut_answer() -> None:
    short = load("smollm2", n_ctx=2048, max_tokens=3, cache=False)
    out = short.with_structured_output(Move, include_raw=True).invoke("Turn right.")
    assert out["parsed"] is None and isinstance(out["parsing_error"], OutputParserException)
    assert out["raw"].response_metadata["finish_reason"] == "length"
    with pytest.raises(OutputParserException):
        short.with_structured_output(Move).invoke("Turn right.")


def test_structured_output_rejects_tool_calling(smollm2) -> None:
    with pytest.raises(ValueError, match="no tool calling"):
        smollm2.with_structured_output(Move, method="function_calling")
    with pytest.raises(ValueError, match="unsupported"):
        smollm2.with_structured_output(Move, tools=[])


# -- usage on streamed calls -------------------------------------------------------
@pytest.mark.parametrize(
    ("prompt", "max_tokens", "finish"),
    [("Count to twenty.", 6, "length"), ("What is 2+2? Answer with a number only.", 48, "stop")],
)
def test_stream_counts_the_same_tokens_as_invoke(smollm2, prompt: str, max_tokens: int, finish: str) -> None:
    # Greedy output can shift with what llama.cpp reuses from its prefix cache; a first
    # call puts the prompt there so the streamed and the plain call start alike.
    smollm2.invoke(prompt, max_tokens=max_tokens)
    METER.reset()
    chunks = list(smollm2.stream(prompt, max_tokens=max_tokens))
    snap = METER.snapshot()
    whole = smollm2.invoke(prompt, max_tokens=max_tokens)
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == whole.content
    assert merged.response_metadata["finish_reason"] == whole.response_metadata["finish_reason"] == finish
    assert merged.usage_metadata == whole.usage_metadata
    assert snap.calls == 1 and snap.prompt_tokens == whole.usage_metadata["input_tokens"] > 0
    assert snap.completion_tokens == whole.usage_metadata["output_tokens"] > 0


def test_meter_reads_llm_output_usage_only_when_messages_carry_none() -> None:
    llm_output = {"token_usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    bare = ChatGeneration(message=AIMessage(content="x"))
    counted = ChatGeneration(
        message=AIMessage(content="x", usage_metadata={"input_tokens": 7, "output_tokens": 3, "total_tokens": 10})
    )
    METER.reset()
    METER.on_llm_end(LLMResult(generations=[[bare]], llm_output=llm_output), run_id=uuid4())
    METER.on_llm_end(LLMResult(generations=[[counted]], llm_output=llm_output), run_id=uuid4())
    snap = METER.snapshot()
    assert (snap.calls, snap.prompt_tokens, snap.completion_tokens) == (2, 5 + 7, 2 + 3)


def test_openai_backend_asks_for_streamed_usage() -> None:
    llm = load("openai:m@http://127.0.0.1:9/v1", cache=False)
    assert llm.stream_usage is True


# -- response cache on disk --------------------------------------------------------
def _damaged_cache(path, damage: str = "noise") -> None:
    """A real cache file with its header and first page intact and later pages damaged.

    ``noise``: page 2 is random bytes (SQLite itself reports the file malformed);
    ``cells``: the cell contents of pages 5-9 are overwritten, their page headers
    kept (``PRAGMA quick_check`` lists the problems). A plain ``count(*)`` still
    succeeds on both, which is why they went unnoticed.
    """
    cache = ResponseCache(path)
    for i in range(300):
        gen = ChatGeneration(message=AIMessage(content="answer " * 50))
        cache.update(f"prompt {i} " + "x" * 200, "model", [gen])
    cache.close()  # last connection: WAL checkpointed into the main file
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 10 * page
    if damage == "noise":
        noise = random.Random(0)
        data[page : 2 * page] = bytes(noise.randrange(256) for _ in range(page))
    else:
        for n in range(5, 10):
            data[n * page + page // 2 : (n + 1) * page] = b"\xab" * (page // 2)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["noise", "cells"])
def test_damaged_pages_are_refused_on_open(tmp_path, damage: str) -> None:
    bad = tmp_path / "responses.sqlite"
    _damaged_cache(bad, damage)
    with pytest.raises(CorruptStoreError, match="llmguide cache clear") as err:
        ResponseCache(bad).stats()
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    size = bad.stat().st_size
    with pytest.raises(CorruptStoreError):
        ResponseCache(bad).update("p", "m", [ChatGeneration(message=AIMessage(content="x"))])
    assert bad.stat().st_size == size and not bad.with_name(bad.name + "-wal").exists()


def test_cli_cache_stats_on_damaged_file_is_one_line_exit_2(tmp_path) -> None:
    bad = tmp_path / "responses.sqlite"
    _damaged_cache(bad)
    result = CliRunner().invoke(app, ["cache", "stats", "--path", str(bad)])
    assert result.exit_code == 2
    assert "llmguide cache clear" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_cache_stats_does_not_create_a_missing_file(tmp_path) -> None:
    missing = tmp_path / "nested" / "responses.sqlite"
    result = CliRunner().invoke(app, ["cache", "stats", "--path", str(missing)])
    assert result.exit_code == 0 and "no cache file" in result.output
    assert not missing.exists() and not missing.parent.exists()
    assert ResponseCache(missing).stats()["entries"] == 0 and not missing.exists()


def test_cli_cache_stats_counts_entries(tmp_path) -> None:
    path = tmp_path / "responses.sqlite"
    cache = ResponseCache(path)
    cache.update("p", "m", [ChatGeneration(message=AIMessage(content="x"))])
    cache.close()
    result = CliRunner().invoke(app, ["cache", "stats", "--path", str(path)])
    assert result.exit_code == 0 and "entries: 1" in result.output

