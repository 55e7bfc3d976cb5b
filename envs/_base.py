"""Shared base of the language views: exports `TextView`.

A language view is a Gymnasium wrapper that leaves observations, actions and
rewards untouched (RL learners see the original env) and adds a text
description plus structured extras to `info` at reset and at every step.
Subclasses implement two hooks; the wrapper does the bookkeeping.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym

__all__ = ["TextView"]


class TextView(gym.Wrapper):
    """Base wrapper: `info` gains `text`, `action_names` and family extras.

    Subclasses override `_on_reset(obs, info)` and `_on_step(obs, action,
    reward, terminated, truncated, info)`; each returns the dict merged into
    `info`. `_before_step(action)` may capture state the events need.
    The original `info` keys are kept; ours win on a name clash.
    """

    #: Names of the info keys this view adds (documentation and tests).
    info_keys: tuple[str, ...] = ("text", "action_names", "events")

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.last_text: str = ""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        info.update(self._on_reset(obs, info))
        self.last_text = info["text"]
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        self._before_step(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        info.update(self._on_step(obs, action, reward, terminated, truncated, info))
        self.last_text = info["text"]
        return obs, reward, terminated, truncated, info

    # -- hooks -----------------------------------------------------------
    def _before_step(self, action: Any) -> None:
        """Capture whatever the step's events need (default: nothing)."""

    def _on_reset(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _on_step(
        self,
        obs: Any,
        action: Any,
        reward: SupportsFloat,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> dict[str, Any]:
        raise NotImplementedError
