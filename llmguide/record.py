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
    choices: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per call site of choose(): calls, modes (score/generate/shuffle), first_option_rate, "
        "options_mean (1/options_mean = chance), rank_counts (chosen option's listed position), fallbacks.")
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
        "choices": dict(usage.get("choices") or {}),
    }


def add_usage(earlier: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, Any]:
    """A usage snapshot with the counters of earlier segments (a resumed run) added in."""
    if not earlier:
        return dict(now)
    total = {**now, **{k: int(now.get(k, 0)) + int(earlier.get(k, 0)) for k in USAGE_COUNTS}}
    total["choices"] = merge_choices([earlier.get("choices") or {}, now.get("choices") or {}])
    chosen = sum(site["calls"] for site in total["choices"].values())
    first = sum(site["first_option"] for site in total["choices"].values())
    total["first_option_rate"] = first / chosen if chosen else None
    return total


def merge_choices(parts: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per-site choice counters (``UsageSnapshot.choices``) of several segments or runs, added up."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for site, stats in part.items():
            into = merged.setdefault(site, {"calls": 0, "first_option": 0, "modes": {}, "rank_counts": [],
                                            "fallbacks": 0, "options_total": 0.0})
            into["calls"] += stats["calls"]
            into["first_option"] += stats["first_option"]
            into["fallbacks"] += stats["fallbacks"]
            into["options_total"] += stats["options_mean"] * stats["calls"]
            for mode, n in stats["modes"].items():
                into["modes"][mode] = into["modes"].get(mode, 0) + n
            ranks = into["rank_counts"]
            ranks.extend([0] * (len(stats["rank_counts"]) - len(ranks)))
            for rank, n in enumerate(stats["rank_counts"]):
                ranks[rank] += n
    for stats in merged.values():
        calls = stats["calls"]
        stats["first_option_rate"] = stats["first_option"] / calls if calls else None
        stats["options_mean"] = stats.pop("options_total") / calls if calls else 0.0
    return merged


def run_usage(method: Any, earlier: dict[str, Any] | None) -> dict[str, Any]:
    """LLM usage of the whole run: the method's own count (`method.llm_usage()`), or this process's
    meter plus the counters saved by earlier segments of a resumed run."""
    from llmguide.llm import METER

    own = method.llm_usage()
    return own if own is not None else add_usage(earlier, METER.snapshot().as_dict())
