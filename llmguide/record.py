"""The one record of a run: exports `RunMetrics`, `CurvePoint`, `llm_figures`.

Every method's run ends in the same `metrics.json`: the fixed keys below,
and whatever is particular to the method under `extras`. `llmguide report`
reads only this schema, so a new method shows up in tables and plots without
a line of report code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CurvePoint", "RunMetrics", "add_usage", "llm_figures", "run_usage"]

#: usage counters that add up across the segments of a resumed run
USAGE_COUNTS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "fallbacks", "retries", "errors")


class CurvePoint(BaseModel):
    """One point of a learning curve: the figure after `steps` env steps."""

    model_config = ConfigDict(extra="allow")

    steps: int
    success: float | None = None
    score: float | None = None
    return_mean: float | None = None
    evaluated: bool = True


class RunMetrics(BaseModel):
    """Fixed keys for every method; method-specific figures under `extras`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    method: str
    kind: Literal["trained", "agent"]
    env: str
    seed: int
    label: str = Field(description="Run label in reports: config `name`, else method and variant.")
    status: Literal["finished", "interrupted"] = "finished"
    steps: int = Field(0, description="Env steps taken (training steps for trained methods).")
    episodes: int = Field(0, description="Episodes finished (training episodes for trained methods).")
    wall_s: float = 0.0
    steps_per_s: float = 0.0
    success: float | None = Field(None, description="Success rate of the final evaluation, in [0, 1].")
    score: float | None = Field(None, description="Env score where the env has one (Crafter score %, ScienceWorld 0-100).")
    return_mean: float | None = None
    steps_to_target: int | None = Field(None, description="Trained methods: first step the eval success reached the target.")
    llm_calls: int = 0
    llm_calls_per_1k_steps: float = 0.0
    cache_hit_rate: float = 0.0
    fallbacks: int = 0
    first_option_rate: float | None = Field(
        None, description="Share of LLM choices among listed options that picked the first one (position bias).")
    invalid_actions: int = 0
    resumes: int = Field(0, description="How many times this run was resumed.")
    curve: list[CurvePoint] = Field(default_factory=list)
    extras: dict[str, Any] = Field(default_factory=dict)


def llm_figures(usage: dict[str, Any], steps: int) -> dict[str, Any]:
    """The fixed LLM keys of `RunMetrics` from a usage-meter snapshot (`METER.snapshot().as_dict()`)."""
    calls = int(usage.get("calls", 0))
    hits = int(usage.get("cache_hits", 0))
    return {
        "llm_calls": calls,
        "llm_calls_per_1k_steps": 1000.0 * calls / steps if steps else 0.0,
        "cache_hit_rate": hits / calls if calls else 0.0,
        "fallbacks": int(usage.get("fallbacks", 0)),
        "first_option_rate": usage.get("first_option_rate"),
    }


def add_usage(earlier: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, Any]:
    """A usage snapshot with the counters of earlier segments (a resumed run) added in."""
    if not earlier:
        return dict(now)
    return {**now, **{k: int(now.get(k, 0)) + int(earlier.get(k, 0)) for k in USAGE_COUNTS}}


def run_usage(method: Any, earlier: dict[str, Any] | None) -> dict[str, Any]:
    """LLM usage of the whole run: the method's own count (`method.llm_usage()`), or this process's
    meter plus the counters saved by earlier segments of a resumed run."""
    from llmguide.llm import METER

    own = method.llm_usage()
    return own if own is not None else add_usage(earlier, METER.snapshot().as_dict())
