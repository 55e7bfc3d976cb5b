"""Structured answers that can be trusted: ``structured()`` and ``choose()``.

LLM output is never trusted. Where the backend can constrain decoding
(llama.cpp grammars, OpenAI-compatible ``json_schema``), the answer is forced
into the schema; everything is still validated with pydantic, retried a
bounded number of times, and when it still fails the caller gets an explicit
fallback that the usage meter counts (``fallback_reasons``).

A choice among listed options must also not be won by position: a small
model asked to generate one picks the first listed option whatever the
question (SmolLM2-135M chose Crafter's first action, `noop`, 96 times in 120).
So ``choose`` scores every option by its likelihood as the answer where the
backend allows it, and shuffles the listing where it must generate.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import sys
import time
from typing import Any, Iterator, Literal, Sequence, TypeVar

from langchain_core.caches import BaseCache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.outputs import Generation
from pydantic import BaseModel, ValidationError, create_model

from llmguide.errors import LLMOutputError
from llmguide.llm.llamacpp import ChatLlamaCpp
from llmguide.llm.openai_compat import ChatOpenAICompatible
from llmguide.llm.usage import METER

__all__ = ["ChoiceMode", "Prompt", "can_constrain", "choice_model", "choose", "default_choice_mode", "structured"]

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


#: ``score``: each option's likelihood as the answer; ``generate``: an answer generated
#: (constrained where the backend can) with the options listed in the caller's order;
#: ``shuffle``: the same with the listing shuffled by a seeded RNG.
ChoiceMode = Literal["score", "generate", "shuffle"]
_MODES = ("score", "generate", "shuffle")
#: Appended to the prompt in scoring mode; the same text whatever the options, so it adds no order.
SCORE_HINT = "Answer with one of the options, exactly as written."
#: Version of the scoring rule in cache keys: change it when scores would change.
_SCORE_FORMAT = "score-v2-calibrated"
#: (model identity, option) -> the option's mean log-probability as the answer to SCORE_HINT alone
_PRIORS: dict[tuple[str, str], float] = {}
_PRIORS_MAX = 65536
_RNG = random.Random(0)


def default_choice_mode(llm: BaseChatModel) -> ChoiceMode:
    """``score`` on llama.cpp and OpenAI-compatible backends (it falls back to ``shuffle``
    where a server gives no prompt log-probabilities); ``generate`` on other models
    (LangChain's fake models in logic tests answer what they are told)."""
    return "score" if isinstance(llm, (ChatLlamaCpp, ChatOpenAICompatible)) else "generate"


def _caller_module() -> str:
    frame = sys._getframe(2)  # choose -> its caller
    return str(frame.f_globals.get("__name__", "?"))


def _score_key(llm: BaseChatModel, messages: list[BaseMessage], options: list[str]) -> tuple[str, str]:
    prompt = json.dumps({"messages": [[m.type, m.content] for m in messages], "options": options, "format": _SCORE_FORMAT})
    return prompt, llm._get_llm_string()


def _cached_scores(llm: BaseChatModel, key: tuple[str, str]) -> list[float] | None:
    """Scores from the model's response cache (``load`` gives one at temperature 0);
    a model without one caches nothing."""
    if not isinstance(llm.cache, BaseCache):
        return None
    found = llm.cache.lookup(*key)
    return json.loads(found[0].text) if found else None


def _store_scores(llm: BaseChatModel, key: tuple[str, str], scores: list[float]) -> None:
    if isinstance(llm.cache, BaseCache):
        llm.cache.update(*key, [Generation(text=json.dumps(scores))])


def _backend_scores(
    llm: BaseChatModel, messages: list[BaseMessage], options: list[str]
) -> tuple[list[float], int] | None:
    """Mean log-probability per token of each option as the reply to ``messages``, and the
    tokens evaluated; None where the backend cannot score (no chat template, prompt too
    long, a server without prompt logprobs)."""
    if isinstance(llm, ChatLlamaCpp):
        try:
            return llm.score_options(messages, options)
        except (NotImplementedError, ValueError):
            return None
    if isinstance(llm, ChatOpenAICompatible):
        return llm.score_options(messages, options)
    return None


def _priors(llm: BaseChatModel, options: list[str]) -> tuple[list[float], int] | None:
    """Each option's score with no question at all (computed once per model and option per
    process), and the tokens that took now."""
    ident = llm._get_llm_string()
    missing = [o for o in options if (ident, o) not in _PRIORS]
    tokens = 0
    if missing:
        scored = _backend_scores(llm, [HumanMessage(content=SCORE_HINT)], missing)
        if scored is None:
            return None
        if len(_PRIORS) > _PRIORS_MAX:
            _PRIORS.clear()
        _PRIORS.update(((ident, o), s) for o, s in zip(missing, scored[0]))
        tokens = scored[1]
    return [_PRIORS[(ident, o)] for o in options], tokens


def _option_scores(llm: BaseChatModel, messages: list[BaseMessage], options: list[str]) -> list[float] | None:
    """Calibrated score of each option as the answer, or None when this backend cannot score.

    The mean log-probability per token of the option as the whole reply,
    less the same with no question (its prior: ``SCORE_HINT`` alone), as
    multiple-choice evaluations do with a mutual-information score. Measured
    on benchmarks/choice.py: without it SmolLM2-135M answered
    ``make_wood_pickaxe`` (7 tokens, the last six near-certain) to 50 of 51
    Crafter questions, and the options' order in the prompt swayed its highway
    answers (permutation consistency 0 of 4 probes; 3 of 4 with the prior).
    The priors are scored first, so the prompt's KV state stays for the next
    call. Counted as one call, priors included, like one generation; scores go
    through the response cache (a hit counts as one cached call).
    """
    key = _score_key(llm, messages, options)
    cached = _cached_scores(llm, key)
    if cached is not None:
        METER.count_call(cache_hit=True)
        return cached
    start = time.perf_counter()
    priors = _priors(llm, options)
    scored = _backend_scores(llm, messages, options) if priors is not None else None
    if priors is None or scored is None:
        return None
    scores = [s - p for s, p in zip(scored[0], priors[0])]
    METER.count_call(latency_ms=(time.perf_counter() - start) * 1e3, prompt_tokens=priors[1] + scored[1])
    _store_scores(llm, key, scores)
    return scores


def _pick(llm: BaseChatModel, scores: list[float], options: list[str]) -> str:
    """The best-scoring option (ties go by text, not position); sampled from the softmax
    of the scores over ``temperature`` when the model runs above 0."""
    temperature = float(getattr(llm, "temperature", 0.0) or 0.0)
    if temperature > 0:
        top = max(scores)
        weights = [math.exp((s - top) / temperature) for s in scores]
        return _RNG.choices(options, weights=weights)[0]
    return max(zip(scores, options))[1]


def _shuffled(messages: list[BaseMessage], options: list[str]) -> list[str]:
    """The options in an order drawn from an RNG seeded by the question, so a repeated
    question is asked the same way (and hits the response cache)."""
    seed = hashlib.sha256(json.dumps([[m.type, m.content] for m in messages] + [options]).encode()).digest()
    order = list(options)
    random.Random(seed).shuffle(order)
    return order


def _generated(llm: BaseChatModel, messages: list[BaseMessage], listing: list[str], retries: int) -> str | None:
    """An option generated with ``listing`` shown (constrained where the backend can, else a
    lenient match: a reply naming exactly one option); None after the bounded retries."""
    shown = ", ".join(json.dumps(o) for o in listing)
    asked = [*messages, HumanMessage(content=f'Answer with JSON {{"choice": ...}} where choice is one of: {shown}.')]
    model = choice_model(listing)
    kwargs = _constrained_kwargs(llm, model.model_json_schema())
    for text in _attempts(llm, asked, kwargs, retries):
        try:
            return _parse(text, model).choice  # type: ignore[attr-defined]
        except (ValidationError, ValueError):
            named = [o for o in listing if re.search(rf"(?<!\w){re.escape(o)}(?!\w)", text, re.IGNORECASE)]
            if len(named) == 1:
                return named[0]
    return None


def choose(
    llm: BaseChatModel,
    prompt: Prompt,
    options: Sequence[str],
    *,
    mode: ChoiceMode | None = None,
    site: str | None = None,
    retries: int = 2,
    default: str | None = None,
) -> str:
    """Return exactly one of ``options`` — never anything else, and not because it is listed first.

    ``mode`` (default ``default_choice_mode(llm)``):
      - ``"score"``: each option's mean log-probability per token as the whole
        answer to ``prompt`` (plus ``SCORE_HINT``), the prompt evaluated once,
        less the option's prior (see ``_option_scores``); the best wins
        (sampled by score above temperature 0). Scores go through
        the model's response cache (a hit is counted as one). Where the backend
        cannot score, the call falls back to ``"shuffle"`` (counted).
      - ``"generate"``: constrained decoding with the options listed in the
        given order; on backends without it the reply is validated, retried
        and matched leniently.
      - ``"shuffle"``: ``"generate"`` with the listing shuffled (seeded by the question).
    When no valid answer comes, ``default`` (``options[0]`` if not given) is
    returned and counted as fallback reason ``"choose"``.

    The meter records the call under ``site`` (default: the caller's module):
    the mode that answered and the chosen option's rank in the given order.
    """
    options = list(dict.fromkeys(options))
    if not options:
        raise ValueError("choose() needs at least one option")
    if default is not None and default not in options:
        raise ValueError(f"default {default!r} is not one of the options")
    if mode is not None and mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, not {mode!r}")
    if len(options) == 1:
        return options[0]
    site = site or _caller_module()
    messages = _messages(prompt)
    ran = mode or default_choice_mode(llm)
    answer: str | None = None
    fallback = False
    if ran == "score":
        scores = _option_scores(llm, [*messages, HumanMessage(content=SCORE_HINT)], options)
        if scores is not None:
            answer = _pick(llm, scores, options)
        else:
            METER.count_fallback("choose:score_unavailable")
            ran, fallback = "shuffle", True
    if answer is None:
        listing = _shuffled(messages, options) if ran == "shuffle" else options
        answer = _generated(llm, messages, listing, retries)
    if answer is None:
        METER.count_fallback("choose")
        answer, fallback = (default if default is not None else options[0]), True
    METER.count_choice(site, mode=ran, n_options=len(options), rank=options.index(answer), fallback=fallback)
    return answer
