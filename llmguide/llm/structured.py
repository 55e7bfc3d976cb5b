"""Structured answers that can be trusted: ``structured()`` and ``choose()``.

LLM output is never trusted. Where the backend can constrain decoding
(llama.cpp grammars, OpenAI-compatible ``json_schema``), the answer is forced
into the schema; everything is still validated with pydantic, retried a
bounded number of times, and when it still fails the caller gets an explicit
fallback that the usage meter counts (``fallback_reasons``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, Literal, Sequence, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from pydantic import BaseModel, ValidationError, create_model

from llmguide.errors import LLMOutputError
from llmguide.llm.llamacpp import ChatLlamaCpp
from llmguide.llm.openai_compat import ChatOpenAICompatible
from llmguide.llm.usage import METER

__all__ = ["structured", "choose", "choice_model", "Prompt", "can_constrain"]

Prompt = str | Sequence[BaseMessage]
M = TypeVar("M", bound=BaseModel)


def _messages(prompt: Prompt) -> list[BaseMessage]:
    return [HumanMessage(content=prompt)] if isinstance(prompt, str) else list(prompt)


def can_constrain(llm: BaseChatModel) -> bool:
    """True when the backend enforces a JSON schema while decoding."""
    return isinstance(llm, (ChatLlamaCpp, ChatOpenAICompatible))


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI strict mode wants ``additionalProperties: false`` on every object."""
    schema = json.loads(json.dumps(schema))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                node.setdefault("additionalProperties", False)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def _constrained_kwargs(llm: BaseChatModel, schema: dict[str, Any]) -> dict[str, Any]:
    if isinstance(llm, ChatLlamaCpp):
        return {"response_format": {"type": "json_object", "schema": schema}}
    if isinstance(llm, ChatOpenAICompatible):
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": _strict(schema), "strict": True},
            }
        }
    return {}


def _retry_kwargs(kwargs: dict[str, Any], attempt: int) -> dict[str, Any]:
    """A retry must not repeat (or hit the cache for) the bad answer: sample instead."""
    if not attempt or not kwargs:
        return kwargs
    return dict(kwargs, seed=attempt, temperature=0.7)


def _invoke(llm: BaseChatModel, messages: list[BaseMessage], kwargs: dict[str, Any]) -> BaseMessage:
    # The meter is attached here too, so models not made by ``load`` are counted
    # (LangChain skips a handler that is already attached, so nothing counts twice).
    return llm.invoke(messages, config={"callbacks": [METER]}, **kwargs)


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _parse(text: str, model: type[M]) -> M:
    try:
        return model.model_validate_json(text)
    except ValidationError:
        found = _JSON_OBJECT.search(text)  # unconstrained backends wrap JSON in prose
        if found is None:
            raise
        return model.model_validate_json(found.group(0))


def _attempts(
    llm: BaseChatModel, messages: list[BaseMessage], kwargs: dict[str, Any], retries: int
) -> Iterator[str]:
    """Yield the text of up to ``1 + retries`` answers; the caller stops when one validates."""
    for attempt in range(retries + 1):
        if attempt:
            METER.count_retry()
        answer = _invoke(llm, messages, _retry_kwargs(kwargs, attempt))
        yield answer.content if isinstance(answer.content, str) else str(answer.content)


def structured(
    llm: BaseChatModel,
    model: type[M],
    prompt: Prompt,
    *,
    retries: int = 2,
    raise_on_failure: bool = False,
) -> M | None:
    """Ask for an answer matching the pydantic ``model``.

    Returns the validated object, or None after ``1 + retries`` failed
    attempts (counted as fallback reason ``"invalid:<Model>"``), or raises
    ``LLMOutputError`` when ``raise_on_failure``.
    """
    schema = model.model_json_schema()
    messages = _messages(prompt)
    kwargs = _constrained_kwargs(llm, schema)
    if not kwargs:
        hint = f"Reply with only a JSON object matching this schema: {json.dumps(schema)}"
        messages = [*messages, HumanMessage(content=hint)]
    last_error: Exception | None = None
    for text in _attempts(llm, messages, kwargs, retries):
        try:
            return _parse(text, model)
        except (ValidationError, ValueError) as err:
            last_error = err
    METER.count_fallback(f"invalid:{model.__name__}")
    if raise_on_failure:
        raise LLMOutputError(
            f"The LLM gave no valid {model.__name__} after {retries + 1} attempts ({last_error}). "
            "Use a larger model, or a backend with constrained decoding (smollm2, gguf:, openai:)."
        )
    return None


def choice_model(options: Sequence[str], field: str = "choice") -> type[BaseModel]:
    """A pydantic model whose one field must be one of ``options`` (an enum in the schema)."""
    literal = Literal[tuple(options)]  # type: ignore[valid-type]
    return create_model("Choice", **{field: (literal, ...)})


def choose(
    llm: BaseChatModel,
    prompt: Prompt,
    options: Sequence[str],
    *,
    retries: int = 2,
    default: str | None = None,
) -> str:
    """Return exactly one of ``options`` — never anything else.

    Constrained decoding makes an invalid answer impossible on our backends;
    on others the reply is validated, retried, matched leniently (a reply
    naming exactly one option), and finally replaced by ``default``
    (``options[0]`` if not given), counted as fallback reason ``"choose"``.
    """
    options = list(dict.fromkeys(options))
    if not options:
        raise ValueError("choose() needs at least one option")
    if default is not None and default not in options:
        raise ValueError(f"default {default!r} is not one of the options")
    if len(options) == 1:
        return options[0]
    listing = ", ".join(json.dumps(o) for o in options)
    messages = [*_messages(prompt), HumanMessage(content=f'Answer with JSON {{"choice": ...}} where choice is one of: {listing}.')]
    model = choice_model(options)
    schema = model.model_json_schema()
    kwargs = _constrained_kwargs(llm, schema)
    for text in _attempts(llm, messages, kwargs, retries):
        try:
            return _parse(text, model).choice  # type: ignore[attr-defined]
        except (ValidationError, ValueError):
            named = [o for o in options if re.search(rf"(?<!\w){re.escape(o)}(?!\w)", text, re.IGNORECASE)]
            if len(named) == 1:
                return named[0]
    METER.count_fallback("choose")
    return default if default is not None else options[0]
