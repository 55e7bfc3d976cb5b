"""Language view of NetHack (NLE): exports `NetHackText`, `make_nethack`.

Text: the message line, a bottom-line summary from `blstats` (HP, power,
AC, level, depth, gold, hunger, conditions), what is next to the agent and
the nearest notable things on the map (monsters, objects, doors, stairs)
with compass offsets, and the inventory strings. Map cells are named from
their glyphs with NLE's tables (monsters, pets as "tame ...", corpses,
statues, map features, traps); objects by their appearance ("pink potion",
"scroll labeled ZELGO MER"), as an unidentified player would see them, so
the text leaks no identities. Cells without a known glyph fall back to the
map characters.

Info keys added: `text`, `message`, `action_names` (NLE's action enum names;
the long-move directions are `FAR_N` ...), `events` (the message's sentences
plus "lost 3 HP", "gained 12 gold", "descended to depth 2", "reached
experience level 2", "died"), `stats` (dict from blstats).

Cost: every added key is deferred (the info is a `LazyInfo`). A step only
copies the few small arrays the text needs (NLE reuses its observation
arrays, so the copies are what later reads see); text, message, events and
stats are built from them when first read, so reading them one or many steps
late gives the same values. Status line, surroundings and inventory are
memoised on those bytes. RL learners that never read the text pay a couple
of microseconds a step.

Seeding: `reset(seed=s)` also seeds NetHack's own generators (core and
display, no reseeding), so seeded resets give identical text; `make_nethack`
fixes the moon phase so the game does not depend on the date.
"""

from __future__ import annotations

import re
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from llmguide.envs._base import Deferred, TextView, construct, time_limited

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


def _article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _object_name(nh: Any, index: int) -> str:
    """An object kind as an unidentified player sees it: its appearance, else its name."""
    obj = nh.objclass(index)
    name, descr = nh.OBJ_NAME(obj), nh.OBJ_DESCR(obj)
    cls = ord(obj.oc_class)
    if cls == nh.COIN_CLASS:
        return "gold pieces"
    if not descr:
        return name or ""
    if cls == nh.SCROLL_CLASS:
        return "unlabeled scroll" if descr.startswith("unlabeled") else f"scroll labeled {descr}"
    if cls == nh.GEM_CLASS:
        return f"{descr} stone" if descr == "gray" else f"{descr} gem"
    noun = {
        nh.POTION_CLASS: "potion",
        nh.WAND_CLASS: "wand",
        nh.RING_CLASS: "ring",
        nh.AMULET_CLASS: "amulet",
        nh.SPBOOK_CLASS: "spellbook",
    }.get(cls)
    return f"{descr} {noun}" if noun and noun not in descr else descr


def _glyph_name(nh: Any, glyph: int) -> str:
    """What a glyph shows, from NLE's tables; "" when it has no name there.

    The glyph of an object kind stands for its appearance in this game (NLE's
    tables list the unshuffled appearances), so appearances are right and
    true names of shuffled kinds would be wrong: appearances come first.
    """
    if nh.glyph_is_monster(glyph):
        name = nh.permonst(nh.glyph_to_mon(glyph)).mname
        return f"tame {name}" if nh.glyph_is_pet(glyph) else name
    if nh.glyph_is_invisible(glyph):
        return "remembered, unseen, creature"
    if nh.glyph_is_body(glyph):
        return f"{nh.permonst(glyph - nh.GLYPH_BODY_OFF).mname} corpse"
    if nh.glyph_is_statue(glyph):
        return f"statue of {_article(nh.permonst(glyph - nh.GLYPH_STATUE_OFF).mname)}"
    if nh.glyph_is_object(glyph):
        return _object_name(nh, nh.glyph_to_obj(glyph))
    if nh.glyph_is_cmap(glyph):
        return nh.symdef.from_idx(nh.glyph_to_cmap(glyph)).explanation
    if nh.glyph_is_warning(glyph):
        return "warning of an unseen monster"
    if nh.glyph_is_swallow(glyph):
        return "interior of a monster"
    return ""


#: glyph -> name, filled on demand (NLE's tables do not change).
_GLYPH_NAMES: dict[int, str] = {}


class _Step(tuple):
    """Bytes copied from one observation, and the thunks that build text from them.

    Fields: (view, chars, glyphs, blstats, previous blstats, message,
    inv_strs, inv_letters, died). Any array may be None when the
    observation lacks it.
    """

    __slots__ = ()

    def message(self) -> str:
        msg = self[5]
        return msg.split(b"\0", 1)[0].decode("latin-1").strip() if msg is not None else ""

    def stats(self) -> dict[str, Any]:
        return dict(self[0]._status(self[3])[0]) if self[3] is not None else {}

    def events(self) -> list[str]:
        view, bl, prev = self[0], self[3], self[4]
        message = self.message()
        events = [s for s in re.split(r"(?<=[.!?])\s+", message) if s] if message else []
        if prev is not None and bl is not None:
            now, before = view._decode_bl(bl), view._decode_bl(prev)
            nh = view._nh
            hp = now[nh.NLE_BL_HP] - before[nh.NLE_BL_HP]
            if hp < 0:
                events.append(f"lost {-hp} HP")
            gold = now[nh.NLE_BL_GOLD] - before[nh.NLE_BL_GOLD]
            if gold > 0:
                events.append(f"gained {gold} gold")
            depth = now[nh.NLE_BL_DEPTH]
            if depth > before[nh.NLE_BL_DEPTH]:
                events.append(f"descended to depth {depth}")
            elif depth < before[nh.NLE_BL_DEPTH]:
                events.append(f"climbed to depth {depth}")
            xl = now[nh.NLE_BL_XP]
            if xl > before[nh.NLE_BL_XP]:
                events.append(f"reached experience level {xl}")
        if self[8]:
            events.append("died")
        return events

    def text(self) -> str:
        view = self[0]
        message = self.message()
        parts = [f"Message: {message}" if message else "No message."]
        if self[3] is not None:
            stats, line = view._status(self[3])
            parts.append(line)
            parts.append(view._surroundings(self[1], self[2], stats["x"], stats["y"]))
        parts.append(view._inventory(self[6], self[7]))
        return " ".join(p for p in parts if p)


class NetHackText(TextView):
    """NLE env with a language view in `info` (its entries computed on first read).

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
        # A fresh copy per read; deferred so that SB3's per-step deepcopy of
        # the infos does not copy the (up to 113) names every step.
        self._names = self.action_names.copy
        space = getattr(env.observation_space, "spaces", {})
        self._has = {k: k in space for k in ("chars", "glyphs", "blstats", "message", "inv_strs", "inv_letters")}
        self._has_all = all(self._has.values())
        self._width = space["chars"].shape[1] if "chars" in space else 79
        self._inv_width = space["inv_strs"].shape[1] if "inv_strs" in space else 80
        self._bl_dtype = space["blstats"].dtype if "blstats" in space else np.int64
        self._glyph_code = space["glyphs"].dtype.char if "glyphs" in space else "h"
        # Memos keyed on snapshot bytes, so a late read gives the same text.
        self._bl_cache: dict[bytes, tuple[dict[str, Any], str]] = {}
        self._inv_cache: dict[tuple[bytes, bytes | None], str] = {}
        self._map_cache: dict[tuple, str] = {}
        self._prev_bl: bytes | None = None
        self._death = getattr(getattr(self._base, "StepStatus", None), "DEATH", None)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None and hasattr(self._base, "seed"):
            try:
                self._base.seed(core=seed, disp=seed, reseed=False)
            except RuntimeError:  # NetHackChallenge forbids seeding, by design
                pass
        return super().reset(seed=seed, options=options)

    # -- pieces (run on first read, from snapshot bytes) -------------------
    def _decode_bl(self, raw: bytes) -> list[int]:
        return np.frombuffer(raw, dtype=self._bl_dtype).tolist()

    def _status(self, raw: bytes) -> tuple[dict[str, Any], str]:
        """Stats dict and status line of a blstats snapshot (memoised)."""
        hit = self._bl_cache.get(raw)
        if hit is None:
            stats = self._stats(self._decode_bl(raw))
            hit = (stats, self._status_line(stats) + ".")
            if len(self._bl_cache) >= _CACHE_SIZE:
                self._bl_cache.clear()
            self._bl_cache[raw] = hit
        return hit

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

    def _inventory(self, strs: bytes | None, letters: bytes | None) -> str:
        if strs is None:
            return ""
        key = (strs, letters)
        hit = self._inv_cache.get(key)
        if hit is None:
            items = []
            width = self._inv_width
            for i in range(0, len(strs), width):
                row = strs[i : i + width]
                if not row[0]:
                    break
                letter = chr(letters[i // width]) + ": " if letters else ""
                items.append(letter + row.split(b"\0", 1)[0].decode("latin-1").strip())
            hit = "Inventory: " + ("; ".join(items) if items else "empty") + "."
            if len(self._inv_cache) >= _CACHE_SIZE:
                self._inv_cache.clear()
            self._inv_cache[key] = hit
        return hit

    def _name(self, chars: bytes, glyphs: memoryview | None, i: int) -> str:
        """What is at flat map index `i`: the glyph's name, else the character's."""
        if glyphs is not None:
            glyph = glyphs[i]
            name = _GLYPH_NAMES.get(glyph)
            if name is None:
                name = _GLYPH_NAMES[glyph] = _glyph_name(self._nh, glyph)
            if name:
                return name
        c = chr(chars[i])
        return _CHAR_NAMES.get(c, "monster" if c.isalpha() or c in "@&';:" else c)

    def _surroundings(self, chars: bytes | None, glyphs: bytes | None, x: int, y: int) -> str:
        if chars is None:
            return ""
        key = (chars, glyphs, x, y)
        hit = self._map_cache.get(key)
        if hit is not None:
            return hit
        w = self._width
        h = len(chars) // w
        names = memoryview(glyphs).cast(self._glyph_code) if glyphs is not None else None
        near = []
        for (dx, dy), where in _COMPASS.items():
            cx, cy = x + dx, y + dy
            if 0 <= cx < w and 0 <= cy < h and chars[cy * w + cx] not in (32, 46):
                near.append(f"{self._name(chars, names, cy * w + cx)} {where}")
        # Few cells are notable: scanning the translated bytes beats numpy here.
        flags = chars.translate(_NOTABLE)
        cells = []
        i = flags.find(1)
        while i != -1:
            cy, cx = divmod(i, w)
            d = max(abs(cx - x), abs(cy - y))
            if d > 1:
                cells.append((d, cx, cy))
            i = flags.find(1, i + 1)
        cells.sort()
        far = [f"{self._name(chars, names, cy * w + cx)} {_offset(cx - x, cy - y)}" for _, cx, cy in cells[:_MAX_SEEN]]
        hit = (
            f"Next to you: {', '.join(near) if near else 'open floor'}. "
            f"You see: {'; '.join(far) if far else 'nothing else of note'}."
        )
        if len(self._map_cache) >= _CACHE_SIZE:
            self._map_cache.clear()
        self._map_cache[key] = hit
        return hit

    # -- hooks: copy bytes now, build text on first read --------------------
    def _on_reset(self, obs: Any, info: dict[str, Any]) -> Deferred:
        self._prev_bl = None
        _, thunks = self._on_step(obs, None, 0.0, False, False, {})
        thunks["events"] = list  # no events at reset: a fresh []
        return None, thunks

    def _on_step(
        self,
        obs: Any,
        action: Any,
        reward: SupportsFloat,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> Deferred:
        died = terminated and self._death is not None and info.get("end_status") == self._death
        if self._has_all:  # the usual case: no per-key checks
            bl = obs["blstats"].tobytes()
            step = _Step(
                (
                    self,
                    obs["chars"].tobytes(),
                    obs["glyphs"].tobytes(),
                    bl,
                    self._prev_bl,
                    obs["message"].tobytes(),
                    obs["inv_strs"].tobytes(),
                    obs["inv_letters"].tobytes(),
                    died,
                )
            )
        else:
            copy = {k: obs[k].tobytes() if present else None for k, present in self._has.items()}
            bl = copy["blstats"]
            step = _Step(
                (
                    self,
                    copy["chars"],
                    copy["glyphs"],
                    bl,
                    self._prev_bl,
                    copy["message"],
                    copy["inv_strs"],
                    copy["inv_letters"],
                    died,
                )
            )
        self._prev_bl = bl
        return None, {
            "text": step.text,
            "message": step.message,
            "action_names": self._names,
            "events": step.events,
            "stats": step.stats,
        }


def make_nethack(env_id: str, text: bool = True, **kwargs: Any) -> gym.Env:
    """Make an NLE id (NetHackScore-v0, NetHackChallenge-v0, ...) with the language view.

    NLE ends an episode itself after `max_episode_steps` steps (it quits the
    game: terminated, status ABORTED); the one `TimeLimit` here marks the same
    step truncated too and makes `env.spec.max_episode_steps` that cap.
    """
    import inspect

    import nle  # noqa: F401  (registers the NetHack ids)
    from nle.env.base import NLE

    if "fix_moon_phase" in inspect.signature(NLE.__init__).parameters:
        kwargs.setdefault("fix_moon_phase", True)
    env = construct(env_id, **kwargs)
    env = time_limited(env, int(env.unwrapped._max_episode_steps))
    return NetHackText(env) if text else env
