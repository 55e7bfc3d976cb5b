"""Language view of MiniGrid and BabyAI: exports `MiniGridText`, `make_minigrid`, `episode_cap`.

The text is read from the agent's partial view (the `image` observation the
env already computed), so it says only what the agent could perceive, and it
costs a few numpy calls per step. Identical views are memoised.

Info keys added at reset and every step: `text`, `mission`, `action_names`
(MiniGrid's `Actions` enum names), `carrying` ("yellow key" or None),
`events` ("picked up yellow key", "opened yellow door", "reached goal", ...),
`agent_pos` (tuple), `agent_dir` (int, 0=east 1=south 2=west 3=north) and
`visible` (list of (name, steps_ahead, steps_right)).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from llmguide.envs._base import TextView, construct, time_limited

__all__ = ["DIRECTIONS", "MiniGridText", "episode_cap", "make_minigrid"]

#: Facing direction names, indexed by MiniGrid's `agent_dir`.
DIRECTIONS = ("east", "south", "west", "north")

# MiniGrid's encoding (minigrid.core.constants), kept as tuples for speed.
_OBJECTS = (
    "unseen",
    "empty",
    "wall",
    "floor",
    "door",
    "key",
    "ball",
    "box",
    "goal",
    "lava",
    "agent",
)
_COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
_DOOR_STATES = ("open", "closed", "locked")
_EMPTY, _WALL, _FLOOR, _DOOR, _GOAL, _LAVA = 1, 2, 3, 4, 8, 9
_PICKUP, _DROP, _TOGGLE, _FORWARD = 3, 4, 5, 2
_MAX_LISTED = 12
_CACHE_SIZE = 8192


def _obj_name(t: int, c: int, s: int) -> str:
    """Readable name of an encoded cell: 'locked yellow door', 'grey ball'."""
    kind = _OBJECTS[t]
    if t == _DOOR:
        return f"{_DOOR_STATES[s]} {_COLORS[c]} door"
    if t in (_GOAL, _LAVA, _WALL):
        return kind
    return f"{_COLORS[c]} {kind}"


def _world_obj_name(obj: Any) -> str | None:
    """Readable name of a live WorldObj (None for an empty cell)."""
    if obj is None:
        return None
    if obj.type == "door":
        state = "locked" if obj.is_locked else ("open" if obj.is_open else "closed")
        return f"{state} {obj.color} door"
    if obj.type in ("goal", "lava", "wall"):
        return obj.type
    return f"{obj.color} {obj.type}"


def _where(ahead: int, right: int) -> str:
    parts = []
    if ahead:
        parts.append(f"{ahead} step{'s' if ahead != 1 else ''} ahead")
    if right < 0:
        parts.append(f"{-right} to the left")
    elif right > 0:
        parts.append(f"{right} to the right")
    return ", ".join(parts) if parts else "here"


class MiniGridText(TextView):
    """MiniGrid/BabyAI env with a language view in `info`.

    Example:
        >>> import gymnasium as gym, minigrid  # doctest: +SKIP
        >>> env = MiniGridText(gym.make("MiniGrid-DoorKey-5x5-v0"))  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> info["text"].startswith("Mission: use the key")  # doctest: +SKIP
        True
    """

    info_keys = (
        "text",
        "mission",
        "action_names",
        "carrying",
        "events",
        "agent_pos",
        "agent_dir",
        "visible",
    )

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not hasattr(base, "agent_view_size") or not hasattr(base, "grid"):
            raise TypeError(f"MiniGridText needs a MiniGrid env, got {type(base).__name__}")
        self._base = base
        n = int(env.action_space.n)
        self.action_names: list[str] = [a.name for a in list(base.actions)[:n]]
        self._cache: dict[tuple, tuple[str, list]] = {}
        self._carry_before: str | None = None
        self._front_before: tuple[tuple[int, int], str | None] | None = None
        self._pos_before: tuple[int, int] = (0, 0)

    # -- view ------------------------------------------------------------
    def _image(self, obs: Any) -> np.ndarray:
        """The agent's encoded view: from the obs when it holds it, else recomputed."""
        img = obs.get("image") if isinstance(obs, dict) else obs
        v = self._base.agent_view_size
        if not isinstance(img, np.ndarray) or img.shape != (v, v, 3):
            img = self._base.gen_obs()["image"]
        return img

    def describe(self, img: np.ndarray, carrying: str | None, agent_dir: int) -> tuple[str, list]:
        """Text and visible-object list for one encoded view (memoised)."""
        key = (img.tobytes(), carrying, agent_dir, self._base.mission)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        v = img.shape[0]
        c = v // 2
        types = img[:, :, 0]
        mask = types > _FLOOR
        mask[c, v - 1] = False  # the agent's own cell shows what it carries
        xs, ys = np.nonzero(mask)
        visible = []
        for x, y in zip(xs.tolist(), ys.tolist()):
            t, col, s = img[x, y].tolist()
            visible.append((_obj_name(t, col, s), v - 1 - y, x - c))
        visible.sort(key=lambda o: (abs(o[1]) + abs(o[2]), o[1]))
        # Path ahead: free cells until something blocks or the view ends.
        column = types[c, : v - 1][::-1].tolist()
        free = 0
        for t in column:
            if t not in (_EMPTY, _FLOOR):
                break
            free += 1
        if free == 0:
            t, col, s = img[c, v - 2].tolist()
            front = "unseen" if t == 0 else _obj_name(t, col, s)
            ahead = f"Directly in front of you: {front}."
        elif free < len(column):
            t, col, s = img[c, v - 2 - free].tolist()
            what = "unseen space" if t == 0 else _obj_name(t, col, s)
            ahead = f"Ahead: {free} free step{'s' if free != 1 else ''}, then {what}."
        else:
            ahead = f"Ahead: at least {free} free steps."
        carry = f"carry a {carrying}" if carrying else "carry nothing"
        objs = [o for o in visible if o[0] != "wall"][:_MAX_LISTED]
        seen = "; ".join(f"{n} {_where(a, r)}" for n, a, r in objs) if objs else "nothing of note"
        text = f"Mission: {self._base.mission}. You face {DIRECTIONS[agent_dir]} and {carry}. You see: {seen}. {ahead}"
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        out = (text, visible)
        self._cache[key] = out
        return out

    def _view(self, obs: Any, events: list[str]) -> dict[str, Any]:
        base = self._base
        carrying = _world_obj_name(base.carrying)
        agent_dir = int(base.agent_dir)
        text, visible = self.describe(self._image(obs), carrying, agent_dir)
        return {
            "text": text,
            "mission": base.mission,
            "action_names": self.action_names,
            "carrying": carrying,
            "events": events,
            "agent_pos": tuple(int(p) for p in base.agent_pos),
            "agent_dir": agent_dir,
            "visible": visible,
        }

    # -- hooks -----------------------------------------------------------
    def _on_reset(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
        return self._view(obs, [])

    def _before_step(self, action: Any) -> None:
        base = self._base
        self._carry_before = _world_obj_name(base.carrying)
        self._pos_before = tuple(base.agent_pos)
        self._front_before = None
        if action in (_TOGGLE, _FORWARD):
            fx, fy = base.front_pos
            if 0 <= fx < base.grid.width and 0 <= fy < base.grid.height:
                self._front_before = ((int(fx), int(fy)), _world_obj_name(base.grid.get(fx, fy)))

    def _on_step(
        self,
        obs: Any,
        action: Any,
        reward: SupportsFloat,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> dict[str, Any]:
        base = self._base
        events: list[str] = []
        before = self._carry_before
        now = _world_obj_name(base.carrying)
        if now != before:
            if before is not None:
                events.append(f"dropped {before}")
            if now is not None:
                events.append(f"picked up {now}")
        if self._front_before is not None:
            pos, was = self._front_before
            if action == _TOGGLE and was is not None:
                is_now = _world_obj_name(base.grid.get(*pos))
                if is_now != was:
                    events.extend(_toggle_events(was, is_now))
            elif action == _FORWARD and tuple(base.agent_pos) == self._pos_before and was:
                events.append(f"blocked by {was}")
        if terminated:
            cell = base.grid.get(*base.agent_pos)
            kind = getattr(cell, "type", None)
            if kind == "goal":
                events.append("reached goal")
            elif kind == "lava":
                events.append("fell into lava")
            elif float(reward) > 0:
                events.append("completed mission")
        return self._view(obs, events)


def _toggle_events(was: str, now: str | None) -> list[str]:
    """Events of a toggle that changed the front cell ('opened yellow door')."""
    if was.endswith(" door") and now is not None:
        colour = was.split()[1]
        state_was, state_now = was.split()[0], now.split()[0]
        out = []
        if state_was == "locked":
            out.append(f"unlocked {colour} door")
        if state_now == "open":
            out.append(f"opened {colour} door")
        elif state_now == "closed" and state_was == "open":
            out.append(f"closed {colour} door")
        return out
    if was.endswith(" box"):
        return [f"opened {was}"] + ([f"found {now}"] if now else [])
    return [f"toggled {was}"]


def make_minigrid(env_id: str, text: bool = True, **kwargs: Any) -> gym.Env:
    """Make any MiniGrid or BabyAI id, with the language view unless `text=False`.

    The env is capped by one `TimeLimit` at its own `max_steps` (where MiniGrid
    truncates anyway), so `env.spec.max_episode_steps` is the real cap.
    """
    import minigrid  # noqa: F401  (registers the MiniGrid and BabyAI ids)

    env = construct(env_id, **kwargs)
    env = time_limited(env, episode_cap(env.unwrapped))
    return MiniGridText(env) if text else env


def episode_cap(base: Any) -> int | None:
    """Steps after which a MiniGrid env truncates: its `max_steps`, or None when that
    changes per episode (BabyAI levels size it from each new instruction unless given)."""
    if getattr(base, "fixed_max_steps", True) is False:
        return None
    return int(base.max_steps)
