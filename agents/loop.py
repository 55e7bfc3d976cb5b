"""The one evaluation loop every agent runs through, learned or LLM.

An agent is anything with ``act(obs, info) -> action`` (and optionally
``reset(info)`` and ``end_episode(record)``). SPRING, DiLu and the
ScienceWorld agent act from ``info["text"]``; a trained SB3 policy acts from
``obs`` through ``PolicyAgent``. Same loop, same metrics, same seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from llmguide.llm.usage import METER

__all__ = ["Agent", "EpisodeRecord", "PolicyAgent", "RandomAgent", "run_episodes", "summarize"]


@runtime_checkable
class Agent(Protocol):
    """What the loop needs: an action from the observation and its text view."""

    def act(self, obs: Any, info: dict[str, Any]) -> Any: ...


@dataclass
class EpisodeRecord:
    """One episode's outcome; ``extra`` holds env-specific figures (achievements, score)."""

    seed: int
    episode_return: float
    length: int
    terminated: bool
    truncated: bool
    success: bool
    seconds: float
    llm_calls: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PolicyAgent:
    """Wraps an SB3 model (``predict``) so it runs in the same loop as LLM agents."""

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        self.model, self.deterministic = model, deterministic

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        return action.item() if isinstance(action, np.ndarray) and action.size == 1 else action


class RandomAgent:
    """Uniform over ``info['available_actions']`` when the env lists them, else the action space."""

    def __init__(self, action_space: gym.Space, seed: int = 0) -> None:
        self.space = action_space
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Any, info: dict[str, Any]) -> Any:
        available = info.get("available_actions")
        if available:
            return int(self.rng.choice(list(available)))
        return self.space.sample(mask=None) if not isinstance(self.space, gym.spaces.Discrete) else int(
            self.rng.integers(self.space.n)
        )


def _default_success(terminated: bool, truncated: bool, ret: float, info: dict[str, Any]) -> bool:
    if "success" in info:
        return bool(info["success"])
    return bool(terminated and ret > 0)


def run_episodes(
    agent: Agent,
    env: gym.Env,
    episodes: int,
    *,
    seed: int = 0,
    max_steps: int | None = None,
    success_fn: Callable[[bool, bool, float, dict[str, Any]], bool] = _default_success,
    extra_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    progress: bool = True,
    desc: str = "episodes",
) -> list[EpisodeRecord]:
    """Run ``episodes`` seeded episodes (seeds ``seed, seed+1, ...``) and record each.

    ``max_steps`` truncates long episodes (CPU-sized LLM evaluations);
    ``extra_fn(last_info)`` adds env-specific figures to each record.
    """
    records = []
    for i in tqdm(range(episodes), desc=desc, disable=not progress, leave=False):
        ep_seed = seed + i
        obs, info = env.reset(seed=ep_seed)
        if hasattr(agent, "reset"):
            agent.reset(info)
        calls0, start = METER.snapshot().calls, time.perf_counter()
        ret, length, terminated, truncated = 0.0, 0, False, False
        while not (terminated or truncated):
            action = agent.act(obs, info)
            obs, reward, terminated, truncated, info = env.step(action)
            ret += float(reward)
            length += 1
            if max_steps is not None and length >= max_steps:
                truncated = True
        record = EpisodeRecord(
            seed=ep_seed,
            episode_return=ret,
            length=length,
            terminated=bool(terminated),
            truncated=bool(truncated),
            success=success_fn(bool(terminated), bool(truncated), ret, info),
            seconds=time.perf_counter() - start,
            llm_calls=METER.snapshot().calls - calls0,
            extra=extra_fn(info) if extra_fn else {},
        )
        if hasattr(agent, "end_episode"):
            agent.end_episode(record)
        records.append(record)
    return records


def summarize(records: list[EpisodeRecord]) -> dict[str, float]:
    """Mean/std return, success rate, mean length, LLM calls per step, seconds per step."""
    if not records:
        return {"episodes": 0}
    returns = np.array([r.episode_return for r in records])
    steps = sum(r.length for r in records)
    return {
        "episodes": len(records),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "success_rate": float(np.mean([r.success for r in records])),
        "length_mean": float(np.mean([r.length for r in records])),
        "llm_calls_per_step": sum(r.llm_calls for r in records) / max(steps, 1),
        "seconds_per_step": sum(r.seconds for r in records) / max(steps, 1),
    }
