"""Shared base of the language views: exports `TextView`, `Deferred`, `construct`, `time_limited`.

A language view is a Gymnasium wrapper that leaves observations, actions and
rewards untouched (RL learners see the original env) and adds a text
description plus structured extras to `info` at reset and at every step.
Subclasses implement two hooks; the wrapper does the bookkeeping. Costly
entries may be deferred until read (see `TextView` and `LazyInfo`).

`construct` and `time_limited` are how every family builds the env under its
view: from the env's entry point, with one `TimeLimit` at the env's own
episode cap, so that `gymnasium.make("llmguide/...")` adds its checker and
order-enforcing wrappers once, on top, and its spec says the real cap.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator
from gymnasium.wrappers import TimeLimit
from llmguide.envs.lazy_info import LazyInfo

__all__ = ["Deferred", "TextView", "construct", "time_limited"]


def construct(env_id: str, **kwargs: Any) -> gym.Env:
    """The env registered as `env_id`, built from its entry point alone (no wrappers).

    Why not `gym.make`: it wraps the env in its checker, order-enforcing and
    time-limit wrappers, and `gym.make("llmguide/...")` adds them again above
    the view. The env's spec is set the way `gym.make` sets it, so `env.spec.id`
    still names it (teacher caches key on it). Raises gymnasium's
    `UnregisteredEnv`/`DeprecatedEnv` for an unknown id.
    """
    spec = gym.spec(env_id)
    creator = spec.entry_point if callable(spec.entry_point) else load_env_creator(spec.entry_point)
    merged = {**copy.deepcopy(spec.kwargs), **kwargs}
    env = creator(**merged)
    env.unwrapped.spec = dataclasses.replace(
        spec, kwargs=merged, max_episode_steps=None, order_enforce=False, disable_env_checker=True, additional_wrappers=()
    )
    return env


def time_limited(env: gym.Env, cap: int | None) -> gym.Env:
    """`env` under one `TimeLimit` of `cap` steps; unchanged when it has no step cap (None).

    The families pass the cap the env enforces itself, so no episode ends
    sooner than it did; the wrapper makes `env.spec.max_episode_steps` true,
    which learners and vector envs read.
    """
    return env if cap is None else TimeLimit(env, int(cap))


#: What a hook returns to defer entries: `(entries, thunks)`. `entries` (or
#: None) are added now; `thunks` maps an info key to a zero-argument callable
#: computing it on first read. The wrapper takes the thunks dict over (build a
#: fresh one each call). A thunk must not hold on to arrays the env reuses
#: between steps: capture copies.
Deferred = tuple[dict[str, Any] | None, dict[str, Callable[[], Any]]]


class TextView(gym.Wrapper):
    """Base wrapper: `info` gains `text`, `action_names` and family extras.

    Subclasses override `_on_reset(obs, info)` and `_on_step(obs, action,
    reward, terminated, truncated, info)`; each returns the dict merged into
    `info`. `_before_step(action)` may capture state the events need.
    The original `info` keys are kept; ours win on a name clash.

    Deferred entries: a hook may instead return a pair `(entries, thunks)`
    (see `Deferred`). The wrapper then returns a `LazyInfo` holding the env's
    info, `entries`, and the `thunks`' keys, each computed on its first read
    (at most once), so RL learners that never read the text never pay for
    it. `last_text` reads `text` from the latest info, so it is deferred too.
    """

    #: Names of the info keys this view adds (documentation and tests).
    info_keys: tuple[str, ...] = ("text", "action_names", "events")

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._last_info: dict[str, Any] = {}

    @property
    def last_text(self) -> str:
        """The `text` of the latest reset or step ("" before the first)."""
        return self._last_info.get("text", "")

    @last_text.setter
    def last_text(self, text: str) -> None:
        self._last_info = {"text": text}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        extra = self._on_reset(obs, info)
        if type(extra) is tuple:
            info = LazyInfo.merged(info, extra[0], extra[1])
        else:
            info.update(extra)
        self._last_info = info
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        self._before_step(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        extra = self._on_step(obs, action, reward, terminated, truncated, info)
        if type(extra) is tuple:  # Deferred
            info = LazyInfo.merged(info, extra[0], extra[1])
        else:
            info.update(extra)
        self._last_info = info
        return obs, reward, terminated, truncated, info

    # -- hooks -----------------------------------------------------------
    def _before_step(self, action: Any) -> None:
        """Capture whatever the step's events need (default: nothing)."""

    def _on_reset(self, obs: Any, info: dict[str, Any]) -> dict[str, Any] | Deferred:
        raise NotImplementedError

    def _on_step(
        self,
        obs: Any,
        action: Any,
        reward: SupportsFloat,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> dict[str, Any] | Deferred:
        raise NotImplementedError
