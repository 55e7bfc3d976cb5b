"""Usage accounting for every LLM call in a process: calls, cache hits,
tokens, latency percentiles, explicit fallbacks, and how choices were made.

One ``UsageMeter`` per process (``METER``) is attached as a LangChain
callback to every model that ``llmguide.llm.load`` returns, so the OpenAI and
llama.cpp backends are counted the same way. Calls that are not LangChain
generations (likelihood scoring in ``choose``) are counted with ``count_call``.
``choose`` also records, per call site, which mode answered and the rank of
the chosen option in the listed order, so position bias shows in every run
(``first_option_rate``). Runs call ``METER.reset()`` at the start and write
``METER.snapshot()`` into their metrics.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

import numpy as np
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from llmguide.llm.cache import CACHE_HIT_KEY

__all__ = ["UsageMeter", "UsageSnapshot", "METER"]


@dataclass(frozen=True)
class UsageSnapshot:
    """Counters since the last reset; latency is over non-cached calls only."""

    calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_mean: float
    errors: int
    retries: int
    fallbacks: int
    fallback_reasons: dict[str, int]
    #: per call site of ``choose``: calls, first_option, first_option_rate, modes,
    #: rank_counts (how often the chosen option was listed 1st, 2nd, ...), fallbacks, options_mean
    choices: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: share of all choices that picked the first listed option; None when no choice was made
    first_option_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class UsageMeter(BaseCallbackHandler):
    """LangChain callback that counts calls, tokens and latency (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._starts: dict[UUID, float] = {}
            self.calls = 0
            self.cache_hits = 0
            self.prompt_tokens = 0
            self.completion_tokens = 0
            self.latencies_ms: list[float] = []
            self.errors = 0
            self.retries = 0
            self.fallbacks: Counter[str] = Counter()
            self.choices: dict[str, _SiteChoices] = {}

    # -- LangChain hooks --------------------------------------------------
    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any) -> None:
        with self._lock:
            self._starts[run_id] = time.perf_counter()

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, **kw: Any) -> None:
        with self._lock:
            self._starts[run_id] = time.perf_counter()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kw: Any) -> None:
        elapsed_ms = (time.perf_counter() - self._starts.pop(run_id, time.perf_counter())) * 1e3
        hit, prompt_t, completion_t, reported = False, 0, 0, False
        for gens in response.generations:
            for gen in gens:
                message = getattr(gen, "message", None)
                if message is None:
                    continue
                hit = hit or bool(message.response_metadata.get(CACHE_HIT_KEY))
                usage = getattr(message, "usage_metadata", None)
                if usage:
                    reported = True
                    prompt_t += int(usage.get("input_tokens", 0))
                    completion_t += int(usage.get("output_tokens", 0))
        if not reported:
            prompt_t, completion_t = _llm_output_tokens(response.llm_output)
        self.count_call(latency_ms=elapsed_ms, prompt_tokens=prompt_t, completion_tokens=completion_t, cache_hit=hit)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        with self._lock:
            self._starts.pop(run_id, None)
            self.errors += 1

    # -- explicit bookkeeping from llmguide.llm.structured ----------------
    def count_call(
        self, *, latency_ms: float = 0.0, prompt_tokens: int = 0, completion_tokens: int = 0, cache_hit: bool = False
    ) -> None:
        """Count one model call; a cache hit adds no tokens or latency."""
        with self._lock:
            self.calls += 1
            if cache_hit:
                self.cache_hits += 1
                return
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.latencies_ms.append(latency_ms)

    def count_choice(self, site: str, *, mode: str, n_options: int, rank: int, fallback: bool = False) -> None:
        """Record one choice among ``n_options``: the mode that answered and the chosen option's
        0-based rank in the order the caller listed them."""
        with self._lock:
            stats = self.choices.setdefault(site, _SiteChoices())
            stats.modes[mode] += 1
            stats.ranks[rank] += 1
            stats.options_total += n_options
            stats.fallbacks += int(fallback)

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def count_fallback(self, reason: str) -> None:
        with self._lock:
            self.fallbacks[reason] += 1

    def snapshot(self) -> UsageSnapshot:
        with self._lock:
            lat = np.asarray(self.latencies_ms, dtype=float)
            pct = (lambda q: float(np.percentile(lat, q))) if lat.size else (lambda q: 0.0)
            return UsageSnapshot(
                calls=self.calls,
                cache_hits=self.cache_hits,
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                latency_ms_p50=pct(50),
                latency_ms_p95=pct(95),
                latency_ms_mean=float(lat.mean()) if lat.size else 0.0,
                errors=self.errors,
                retries=self.retries,
                fallbacks=sum(self.fallbacks.values()),
                fallback_reasons=dict(self.fallbacks),
                choices={site: stats.as_dict() for site, stats in sorted(self.choices.items())},
                first_option_rate=_rate(
                    sum(s.ranks[0] for s in self.choices.values()), sum(s.calls for s in self.choices.values())
                ),
            )

    def __deepcopy__(self, memo: dict) -> "UsageMeter":
        # Models are copied by LangChain (``bind``, ``with_config``); the meter is shared.
        return self

    def __reduce__(self) -> tuple:
        # Pickled into a subprocess (SubprocVecEnv), it becomes that process's meter.
        return (_process_meter, ())


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class _SiteChoices:
    """Choice counters of one call site."""

    modes: Counter[str] = field(default_factory=Counter)
    ranks: Counter[int] = field(default_factory=Counter)
    options_total: int = 0
    fallbacks: int = 0

    @property
    def calls(self) -> int:
        return sum(self.ranks.values())

    def as_dict(self) -> dict[str, Any]:
        calls = self.calls
        return {
            "calls": calls,
            "first_option": self.ranks[0],
            "first_option_rate": _rate(self.ranks[0], calls),
            "modes": dict(sorted(self.modes.items())),
            "rank_counts": [self.ranks[r] for r in range(max(self.ranks, default=-1) + 1)],
            "fallbacks": self.fallbacks,
            "options_mean": self.options_total / calls if calls else 0.0,
        }


def _llm_output_tokens(llm_output: dict[str, Any] | None) -> tuple[int, int]:
    """(prompt, completion) tokens from ``llm_output["token_usage"]``: the older place where
    models that put no ``usage_metadata`` on their messages report usage."""
    usage = (llm_output or {}).get("token_usage") or {}
    return int(usage.get("prompt_tokens", 0) or 0), int(usage.get("completion_tokens", 0) or 0)


def _process_meter() -> UsageMeter:
    return METER


METER = UsageMeter()
