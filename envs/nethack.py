"""Language view of NetHack (NLE): exports `NetHackText`, `make_nethack`.

Text: the message line, a bottom-line summary from `blstats` (HP, power,
AC, level, depth, gold, hunger, conditions), the inventory strings, what is
next to the agent and the nearest notable things on the map (monsters,
objects, doors, stairs) with compass offsets. Names come from NLE's own
`screen_descriptions` when the observation holds them, else from the map
characters. Inventory and surroundings are memoised on the raw arrays, so a
step costs a few microseconds unless the screen changed.

Info keys added: `text`, `message`, `action_names` (NLE's action enum names;
the long-move directions are `FAR_N` ...), `events` (the message's sentences
plus "lost 3 HP", "gained 12 gold", "descended to depth 2", "reached
experience level 2", "died"), `stats` (dict from blstats).

Seeding: `reset(seed=s)` also seeds NetHack's own generators (core and
display, no reseeding), so seeded resets give identical text; `make_nethack`
fixes the moon phase so the game does not depend on the date.
"""

from __future__ import annotations

import re
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from llmguide.envs._base import TextView

__all__ = ["HUNGER", "NetHackText", "make_nethack"]

#: NetHack's hunger states, indexed by blstats' hunger field.
HUNGER = ("satiated", "not hungry", "hungry", "weak", "fainting", "fainted", "starved")
_CONDITIONS = (
    (0x1, "stoned"),
    (0x2, "slimed"),
    (0x4, "strangled"),
    (0x8, "food poisoned"),
    (0x10, "terminally ill"),
    (0x20, "blind"),
    (0x40, "deaf"),
    (0x80, "stunned"),
    (0x100, "confused"),
    (0x200, "hallucinating"),
    (0x400, "levitating"),
    (0x800, "flying"),
    (0x1000, "riding"),
)
# Map characters that are not worth naming (unknown, floor, corridor, walls):
# a bytes.translate table turning them into 0 and everything else into 1.
_NOTABLE = bytes(0 if chr(i) in " .#-|" else 1 for i in range(256))
_CHAR_NAMES = {
    "+": "door or spellbook",
    ">": "staircase down",
    "<": "staircase up",
    "{": "fountain",
    "_": "altar",
    "$": "gold",
    "^": "trap",
    "`": "boulder",
    ")": "weapon",
    "[": "armour",
    "!": "potion",
    "?": "scroll",
    "/": "wand",
    "=": "ring",
    "%": "food",
    "(": "tool",
    '"': "amulet",
    "*": "gem or rock",
}
_COMPASS = {
    (0, -1): "N",
    (1, -1): "NE",
    (1, 0): "E",
    (1, 1): "SE",
    (0, 1): "S",
    (-1, 1): "SW",
    (-1, 0): "W",
    (-1, -1): "NW",
}
_MAX_SEEN = 8
_CACHE_SIZE = 4096


def _cstr(arr: np.ndarray) -> str:
    """Decode a NUL-terminated uint8 array."""
    return arr.tobytes().split(b"\0", 1)[0].decode("latin-1").strip()


def _offset(dx: int, dy: int) -> str:
    parts = []
    if dy:
        parts.append(f"{abs(dy)} {'S' if dy > 0 else 'N'}")
    if dx:
        parts.append(f"{abs(dx)} {'E' if dx > 0 else 'W'}")
    return " ".join(parts)


def action_names(actions: Any) -> list[str]:
    """Readable unique names for NLE's action enum members."""
    names = []
    for a in actions:
        cls = type(a).__name__
        names.append(f"FAR_{a.name}" if cls.endswith("Longer") else a.name)
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return [f"{type(a).__name__}.{n}" if seen[n] > 1 else n for a, n in zip(actions, names)]


class NetHackText(TextView):
    """NLE env with a language view in `info`.

    Example:
        >>> import gymnasium as gym, nle  # doctest: +SKIP
        >>> env = NetHackText(gym.make("NetHackScore-v0"))  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> "HP" in info["text"]  # doctest: +SKIP
        True
    """

    info_keys = ("text", "message", "action_names", "events", "stats")

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        from nle import nethack

        self._nh = nethack
        self._base = env.unwrapped
        self.action_names: list[str] = action_names(self._base.actions)
        self._inv_cache: dict[bytes, str] = {}
        self._map_cache: dict[tuple, str] = {}
        self._desc_cache: dict[bytes, str] = {}
        self._inv_last: tuple[bytes | None, str] = (None, "")
        self._map_last: tuple[tuple | None, str] = (None, "")
        self._bl_last: tuple[bytes | None, dict[str, Any], str] = (None, {}, "")
        self._prev: list[int] | None = None
        self._death = getattr(getattr(self._base, "StepStatus", None), "DEATH", None)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None and hasattr(self._base, "seed"):
            try:
                self._base.seed(core=seed, disp=seed, reseed=False)
            except RuntimeError:  # NetHackChallenge forbids seeding, by design
                pass
        return super().reset(seed=seed, options=options)

    # -- pieces ------------------------------------------------------------
    def _stats(self, bl: list[int]) -> dict[str, Any]:
        nh = self._nh
        return {
            "hp": bl[nh.NLE_BL_HP],
            "hp_max": bl[nh.NLE_BL_HPMAX],
            "power": bl[nh.NLE_BL_ENE],
            "power_max": bl[nh.NLE_BL_ENEMAX],
            "ac": bl[nh.NLE_BL_AC],
            "level": bl[nh.NLE_BL_XP],
            "depth": bl[nh.NLE_BL_DEPTH],
            "gold": bl[nh.NLE_BL_GOLD],
            "hunger": bl[nh.NLE_BL_HUNGER],
            "time": bl[nh.NLE_BL_TIME],
            "score": bl[nh.NLE_BL_SCORE],
            "strength": bl[nh.NLE_BL_STR25],
            "condition": bl[nh.NLE_BL_CONDITION],
            "x": bl[nh.NLE_BL_X],
            "y": bl[nh.NLE_BL_Y],
        }

    def _status_line(self, s: dict[str, Any]) -> str:
        hunger = HUNGER[s["hunger"]] if 0 <= s["hunger"] < len(HUNGER) else "unknown"
        conds = [n for bit, n in _CONDITIONS if s["condition"] & bit] if s["condition"] else ()
        line = (
            f"HP {s['hp']}/{s['hp_max']}, Pw {s['power']}/{s['power_max']}, AC {s['ac']}, "
            f"XL {s['level']}, depth {s['depth']}, gold {s['gold']}, {hunger}, "
            f"turn {s['time']}"
        )
        return line + (f", {', '.join(conds)}" if conds else "")

    def _inventory(self, obs: dict[str, Any]) -> str:
        strs = obs.get("inv_strs")
        if strs is None:
            return ""
        key = strs.tobytes()
        if key == self._inv_last[0]:  # memcmp: cheaper than hashing a new key
            return self._inv_last[1]
        letters = obs.get("inv_letters")
        hit = self._inv_cache.get(key)
        if hit is None:
            items = []
            for i, row in enumerate(strs):
                if not row[0]:
                    break
                letter = chr(letters[i]) + ": " if letters is not None else ""
                items.append(letter + _cstr(row))
            hit = "Inventory: " + ("; ".join(items) if items else "empty") + "."
            if len(self._inv_cache) >= _CACHE_SIZE:
                self._inv_cache.clear()
            self._inv_cache[key] = hit
        self._inv_last = (key, hit)
        return hit

    def _name(self, obs: dict[str, Any], cx: int, cy: int) -> str:
        """What is at a map cell, in NLE's words when the observation has them."""
        descs = obs.get("screen_descriptions")
        if descs is not None:
            raw = descs[cy, cx].tobytes()
            hit = self._desc_cache.get(raw)
            if hit is None:
                hit = raw.split(b"\0", 1)[0].decode("latin-1").strip()
                self._desc_cache[raw] = hit
            if hit:
                return hit
        c = chr(obs["chars"][cy, cx])
        return _CHAR_NAMES.get(c, "monster" if c.isalpha() or c in "@&';:" else c)

    def _surroundings(self, obs: dict[str, Any], x: int, y: int) -> str:
        chars = obs.get("chars")
        if chars is None:
            return ""
        raw = chars.tobytes()
        key = (raw, x, y)
        if key == self._map_last[0]:
            return self._map_last[1]
        hit = self._map_cache.get(key)
        if hit is not None:
            self._map_last = (key, hit)
            return hit
        h, w = chars.shape
        near = []
        for (dx, dy), where in _COMPASS.items():
            cx, cy = x + dx, y + dy
            if 0 <= cx < w and 0 <= cy < h and raw[cy * w + cx] not in (32, 46):
                near.append(f"{self._name(obs, cx, cy)} {where}")
        # Few cells are notable: scanning the translated bytes beats numpy here.
        flags = raw.translate(_NOTABLE)
        cells = []
        i = flags.find(1)
        while i != -1:
            cy, cx = divmod(i, w)
            d = max(abs(cx - x), abs(cy - y))
            if d > 1:
                cells.append((d, cx, cy))
            i = flags.find(1, i + 1)
        cells.sort()
        far = [f"{self._name(obs, cx, cy)} {_offset(cx - x, cy - y)}" for _, cx, cy in cells[:_MAX_SEEN]]
        hit = (
            f"Next to you: {', '.join(near) if near else 'open floor'}. "
            f"You see: {'; '.join(far) if far else 'nothing else of note'}."
        )
        if len(self._map_cache) >= _CACHE_SIZE:
            self._map_cache.clear()
        if len(self._desc_cache) >= _CACHE_SIZE:
            self._desc_cache.clear()
        self._map_cache[key] = hit
        self._map_last = (key, hit)
        return hit

    def _view(self, obs: dict[str, Any], message: str, bl: list[int] | None, events: list[str]) -> dict[str, Any]:
        parts = [f"Message: {message}" if message else "No message."]
        stats: dict[str, Any] = {}
        if bl is not None:
            # Many steps change nothing in the bottom line: reuse it then.
            raw = obs["blstats"].tobytes()
            if raw == self._bl_last[0]:
                stats, line = self._bl_last[1], self._bl_last[2]
            else:
                stats = self._stats(bl)
                line = self._status_line(stats) + "."
                self._bl_last = (raw, stats, line)
            parts.append(line)
            parts.append(self._surroundings(obs, stats["x"], stats["y"]))
        parts.append(self._inventory(obs))
        self._prev = bl
        return {
            "text": " ".join(p for p in parts if p),
            "message": message,
            "action_names": self.action_names,
            "events": events,
            "stats": dict(stats),
        }

    # -- hooks -------------------------------------------------------------
    def _on_reset(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
        self._prev = None
        bl = obs["blstats"].tolist() if "blstats" in obs else None
        return self._view(obs, _cstr(obs["message"]) if "message" in obs else "", bl, [])

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
        message = _cstr(obs["message"]) if "message" in obs else ""
        if message:
            events.extend(s for s in re.split(r"(?<=[.!?])\s+", message) if s)
        prev = self._prev
        bl = obs["blstats"].tolist() if "blstats" in obs else None
        if prev is not None and bl is not None:
            nh = self._nh
            hp = bl[nh.NLE_BL_HP] - prev[nh.NLE_BL_HP]
            if hp < 0:
                events.append(f"lost {-hp} HP")
            gold = bl[nh.NLE_BL_GOLD] - prev[nh.NLE_BL_GOLD]
            if gold > 0:
                events.append(f"gained {gold} gold")
            depth = bl[nh.NLE_BL_DEPTH]
            if depth > prev[nh.NLE_BL_DEPTH]:
                events.append(f"descended to depth {depth}")
            elif depth < prev[nh.NLE_BL_DEPTH]:
                events.append(f"climbed to depth {depth}")
            xl = bl[nh.NLE_BL_XP]
            if xl > prev[nh.NLE_BL_XP]:
                events.append(f"reached experience level {xl}")
        if terminated and self._death is not None and info.get("end_status") == self._death:
            events.append("died")
        return self._view(obs, message, bl, events)


def make_nethack(env_id: str, text: bool = True, **kwargs: Any) -> gym.Env:
    """Make an NLE id (NetHackScore-v0, NetHackChallenge-v0, ...) with the language view."""
    import inspect

    import nle  # noqa: F401  (registers the NetHack ids)
    from nle.env.base import NLE

    if "fix_moon_phase" in inspect.signature(NLE.__init__).parameters:
        kwargs.setdefault("fix_moon_phase", True)
    env = gym.make(env_id, **kwargs)
    return NetHackText(env) if text else env
