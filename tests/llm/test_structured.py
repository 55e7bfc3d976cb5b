"""Validation, bounded retry and counted fallback, with LangChain's fake chat models."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from pydantic import BaseModel

import pytest

from llmguide.errors import LLMOutputError
from llmguide.llm import METER, choose, structured


class Plan(BaseModel):
    subgoal: str
    confidence: float


def test_json_inside_prose_is_accepted() -> None:
    llm = FakeListChatModel(responses=['Sure! {"subgoal": "key", "confidence": 0.8} Hope it helps.'])
    assert structured(llm, Plan, "plan?") == Plan(subgoal="key", confidence=0.8)


def test_retry_then_success() -> None:
    METER.reset()
    llm = FakeListChatModel(responses=["no idea", '{"subgoal": "door", "confidence": 1}'])
    assert structured(llm, Plan, "plan?").subgoal == "door"
    assert METER.snapshot().retries == 1 and METER.snapshot().fallbacks == 0


def test_bounded_retries_then_counted_fallback() -> None:
    METER.reset()
    llm = FakeListChatModel(responses=["blah"] * 10)
    assert structured(llm, Plan, "plan?", retries=2) is None
    snap = METER.snapshot()
    assert snap.calls == 3 and snap.retries == 2
    assert snap.fallback_reasons == {"invalid:Plan": 1}


def test_failure_can_raise_a_clear_error() -> None:
    llm = FakeListChatModel(responses=["blah"] * 3)
    with pytest.raises(LLMOutputError, match="no valid Plan after 2 attempts"):
        structured(llm, Plan, "plan?", retries=1, raise_on_failure=True)


def test_choose_lenient_match_and_fallback() -> None:
    METER.reset()
    options = ["left", "right", "forward"]
    assert choose(FakeListChatModel(responses=["I would go right."]), "?", options) == "right"
    assert choose(FakeListChatModel(responses=['{"choice": "forward"}']), "?", options) == "forward"
    chatty = FakeListChatModel(responses=["left or right, hard to say"] * 3)
    assert choose(chatty, "?", options, default="forward") == "forward"
    assert METER.snapshot().fallback_reasons == {"choose": 1}


def test_choose_rejects_bad_arguments() -> None:
    llm = FakeListChatModel(responses=["x"])
    with pytest.raises(ValueError):
        choose(llm, "?", [])
    with pytest.raises(ValueError):
        choose(llm, "?", ["a", "b"], default="c")
    assert choose(llm, "?", ["only"]) == "only"
