"""Shared base of the language views: exports `TextView`.

A language view is a Gymnasium wrapper that leaves observations, actions and
rewards untouched (RL learners see the original env) and adds a text
description plus structured extras to `info` at reset and at every step.
Subclasses implement two hooks; the wrapper does the bookkeeping. Costly
entries may be deferred until read (see `TextView` and `LazyInfo`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
from llmguide.envs.lazy_info import LazyInfo

__all__ = ["Deferred", "TextView"]


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
