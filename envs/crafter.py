"""Crafter as a Gymnasium env, and its language view: exports `CrafterEnv`, `CrafterText`, `make_crafter`.

`CrafterEnv` adapts `crafter.Env` (old gym API, no seeding per reset) to
Gymnasium: `reset(seed=)` reproduces the world, `step` returns the 5-tuple
(death terminates, the length limit truncates). Its `info` carries
`inventory` (dict), `achievement_counts` (the per-episode dict the Crafter
score is computed from), `achievements` (names unlocked this episode),
`semantic` (world map of material/creature ids), `player_pos` and `discount`.

`CrafterText` adds `text`, `task`, `action_names` (the 17 Crafter actions)
and `events` ("collected wood", "placed table", "ate cow", "lost 2 health").
The text lists the materials and creatures in the agent's 9x7 view with
direction and distance, what is directly in front, inventory, vitals and
achievements; it is read from the semantic map Crafter computes anyway.
"""

from __future__ import annotations

from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from llmguide.envs._base import TextView, time_limited

__all__ = ["TASK", "VITALS", "CrafterEnv", "CrafterText", "make_crafter"]

TASK = (
    "Survive and unlock as many achievements as you can: collect materials, place a "
    "table and furnace, make pickaxes and swords, eat, drink, sleep and defeat monsters."
)
#: Inventory entries that are vital statistics rather than items.
VITALS = ("health", "food", "drink", "energy")


def _phrase(achievement: str) -> str:
    """'collect_wood' -> 'collected wood', 'eat_cow' -> 'ate cow'."""
    verb, _, what = achievement.partition("_")
    what = what.replace("_", " ")
    if achievement == "collect_drink":
        return "drank water"
    if achievement == "wake_up":
        return "woke up"
    past = {"collect": "collected", "place": "placed", "make": "made", "eat": "ate", "defeat": "defeated"}.get(
        verb, verb
    )
    return f"{past} {what}"


class CrafterEnv(gym.Env):
    """Gymnasium adapter over `crafter.Env`; seeded resets reproduce the world.

    Example:
        >>> env = CrafterEnv(area=(32, 32))  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> obs.shape, info["inventory"]["health"]  # doctest: +SKIP
        ((64, 64, 3), 9)
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        area: tuple[int, int] = (64, 64),
        view: tuple[int, int] = (9, 9),
        size: tuple[int, int] = (64, 64),
        reward: bool = True,
        length: int | None = 10000,
        render_mode: str | None = None,
    ) -> None:
        import crafter

        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        #: Steps after which an episode is truncated (None: never).
        self.length = length
        self._env = crafter.Env(
            area=tuple(area),
            view=tuple(view),
            size=tuple(size),
            reward=reward,
            length=length,
            seed=0,
        )
        self.observation_space = spaces.Box(0, 255, (int(size[1]), int(size[0]), 3), np.uint8)
        self.action_space = spaces.Discrete(len(crafter.constants.actions))
        self.action_names: list[str] = list(crafter.constants.actions)
        self.achievement_names: list[str] = list(crafter.constants.achievements)

    @property
    def crafter_env(self) -> Any:
        """The wrapped `crafter.Env` (world, player, views)."""
        return self._env

    def _info(self, semantic: np.ndarray | None = None) -> dict[str, Any]:
        player = self._env._player
        counts = dict(player.achievements)
        return {
            "inventory": dict(player.inventory),
            "achievement_counts": counts,
            "achievements": [n for n, c in counts.items() if c > 0],
            "semantic": self._env._sem_view() if semantic is None else semantic,
            "player_pos": (int(player.pos[0]), int(player.pos[1])),
            "discount": 0.0 if player.health <= 0 else 1.0,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # Crafter seeds each world from (seed, episode); drive both from our RNG.
        self._env._seed = int(self.np_random.integers(2**31 - 1))
        self._env._episode = 0
        obs = self._env.reset()
        return obs, self._info()

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, done, cinfo = self._env.step(int(action))
        dead = cinfo["discount"] == 0
        info = self._info(cinfo["semantic"])
        return obs, float(reward), bool(dead), bool(done and not dead), info

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self._env.render()
        return None


class CrafterText(TextView):
    """Crafter with a language view in `info` (wraps a `CrafterEnv`).

    Example:
        >>> env = CrafterText(CrafterEnv())  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> "Inventory:" in info["text"]  # doctest: +SKIP
        True
    """

    info_keys = (
        "text",
        "task",
        "action_names",
        "achievements",
        "achievement_counts",
        "inventory",
        "events",
    )

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, CrafterEnv):
            raise TypeError(f"CrafterText needs a CrafterEnv, got {type(base).__name__}")
        self._base = base
        cenv = base.crafter_env
        sem = cenv._sem_view
        names = {i: m for m, i in sem._mat_ids.items() if m is not None}
        names.update({i: c.__name__.lower() for c, i in sem._obj_ids.items()})
        self._names = names
        self._player_id = next(i for c, i in sem._obj_ids.items() if c.__name__ == "Player")
        view = np.asarray(cenv._local_view._grid)
        self._half = (int(view[0]) // 2, int(view[1]) // 2)
        self._prev: dict[str, Any] | None = None
        self._sleeping = False

    def _nearby(self, sem: np.ndarray, pos: tuple[int, int]) -> list[tuple[str, int, int]]:
        """Nearest instance of each material/creature in view: (name, dx, dy)."""
        hx, hy = self._half
        x, y = pos
        x0, y0 = max(x - hx, 0), max(y - hy, 0)
        win = sem[x0 : x + hx + 1, y0 : y + hy + 1]
        dx = np.arange(x0, x0 + win.shape[0]) - x
        dy = np.arange(y0, y0 + win.shape[1]) - y
        ids = win.ravel()
        dist = (np.abs(dx)[:, None] + np.abs(dy)[None, :]).ravel()
        order = np.lexsort((dist, ids))  # by id, then nearest first
        uniq, first = np.unique(ids[order], return_index=True)
        out = []
        w = win.shape[1]
        for i, k in zip(uniq.tolist(), order[first].tolist()):
            if i == self._player_id or i not in self._names:
                continue
            out.append((self._names[i], int(dx[k // w]), int(dy[k % w])))
        out.sort(key=lambda o: (abs(o[1]) + abs(o[2]), o[0]))
        return out

    def describe(self, info: dict[str, Any]) -> str:
        """The text view for one step's info (semantic map, inventory, achievements)."""
        cenv = self._base.crafter_env
        player = cenv._player
        pos = info["player_pos"]
        parts = []
        for name, dx, dy in self._nearby(info["semantic"], pos):
            steps = []
            if dx:
                steps.append(f"{abs(dx)} {'right' if dx > 0 else 'left'}")
            if dy:
                steps.append(f"{abs(dy)} {'down' if dy > 0 else 'up'}")
            parts.append(f"{name} {abs(dx) + abs(dy)} away ({', '.join(steps)})")
        fx, fy = pos[0] + player.facing[0], pos[1] + player.facing[1]
        material, obj = cenv._world[(fx, fy)]
        front = type(obj).__name__.lower() if obj is not None else (material or "the world's edge")
        facing = {(0, -1): "up", (0, 1): "down", (-1, 0): "left", (1, 0): "right"}.get(
            tuple(int(f) for f in player.facing), "down"
        )
        inv = info["inventory"]
        items = [f"{k.replace('_', ' ')} {v}" for k, v in inv.items() if k not in VITALS and v > 0]
        vitals = ", ".join(f"{k} {inv[k]}/9" for k in VITALS)
        unlocked = info["achievements"]
        text = (
            f"You see: {'; '.join(parts) if parts else 'nothing'}. "
            f"You face {facing}; in front of you: {front}. "
            f"Inventory: {', '.join(items) if items else 'empty'}. "
            f"Vitals: {vitals}. "
            f"Achievements: {', '.join(unlocked) if unlocked else 'none yet'}."
        )
        if player.sleeping:
            text += " You are asleep."
        if cenv._world.daylight < 0.3:
            text += " It is night."
        return text

    def _view(self, info: dict[str, Any], events: list[str]) -> dict[str, Any]:
        self._prev = {"inventory": info["inventory"], "counts": info["achievement_counts"]}
        return {
            "text": self.describe(info),
            "task": TASK,
            "action_names": self._base.action_names,
            "events": events,
        }

    def _on_reset(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
        self._sleeping = False
        return self._view(info, [])

    def _on_step(
        self,
        obs: Any,
        action: Any,
        reward: SupportsFloat,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> dict[str, Any]:
        events: list[str] = []
        prev = self._prev or {"inventory": info["inventory"], "counts": info["achievement_counts"]}
        counts, before = info["achievement_counts"], prev["counts"]
        for name, count in counts.items():
            if count > before.get(name, 0):
                events.append(_phrase(name))
        inv, was = info["inventory"], prev["inventory"]
        lost = was.get("health", 0) - inv.get("health", 0)
        if lost > 0:
            events.append(f"lost {lost} health")
        for k, v in inv.items():
            if k not in VITALS and v < was.get(k, 0):
                events.append(f"used {was[k] - v} {k.replace('_', ' ')}")
        sleeping = bool(self._base.crafter_env._player.sleeping)
        if sleeping and not self._sleeping:
            events.append("fell asleep")
        self._sleeping = sleeping
        if terminated:
            events.append("died")
        return self._view(info, events)


def make_crafter(env_id: str = "Crafter-v0", text: bool = True, **kwargs: Any) -> gym.Env:
    """Make the Crafter adapter (kwargs: area, view, size, reward, length, render_mode).

    One `TimeLimit` at `length` (where Crafter truncates anyway) makes
    `env.spec.max_episode_steps` the real cap.
    """
    base = CrafterEnv(**kwargs)
    env = time_limited(base, base.length or None)
    return CrafterText(env) if text else env
