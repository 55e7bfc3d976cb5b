"""The teacher protocol: exports `Subgoal`, `Proposal`, `Teacher`, `TeacherStats`,
`TeacherCache`, `parse_instruction` and the subgoal vocabulary (`KINDS`,
`COLOURS`, `TARGET_TYPES`, `DEFAULT_VERB`).

A teacher looks at an env (and the language view's `info`) and proposes the
next `Subgoal`. A subgoal carries its own achievement test, so the reward
wrapper never needs to know which teacher made it. What a MiniGrid layout
offers as subgoals, and how the oracle plans there, lives in
`llmguide.teachers.minigrid_planning`; `Teacher`'s default `check_env`,
`cache_key` and `candidates` read a MiniGrid grid through it (teachers of
other envs override them).

Subgoal kinds (Words as Beacons):
- ``positional``: a target cell, given relative to the agent and stored as an
  absolute cell; achieved when the agent stands on it.
- ``object``: an (object type, colour) pair present in the layout; achieved
  when the agent interacts with it: picks up a key/ball/box, opens a door,
  reaches the goal (the language view's `events`).
- ``language``: free text. The documented rule is a parse, not embeddings:
  `parse_instruction` finds an object type, an optional colour and a verb
  ("pick up", "open", "go to"); the subgoal is then achieved like the object
  kind with that verb ("go to X" = standing in front of X, facing it, or on
  the goal).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from llmguide.sqlite import connect_shared, store_error

__all__ = [
    "COLOURS",
    "DEFAULT_VERB",
    "KINDS",
    "TARGET_TYPES",
    "Proposal",
    "Question",
    "Subgoal",
    "Teacher",
    "TeacherCache",
    "TeacherStats",
    "parse_instruction",
]

KINDS = ("positional", "object", "language")
COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")
#: Object types a subgoal can name (walls, floor, lava never are targets).
TARGET_TYPES = ("key", "ball", "box", "door", "goal")
#: Default interaction per object type.
DEFAULT_VERB = {"key": "pick up", "ball": "pick up", "box": "pick up", "door": "open", "goal": "go to"}
_VERB_EVENT = {"pick up": "picked up", "open": "opened"}
#: Teacher counters are added from the env loop (cache hits) and from a deferred question's worker.
_STATS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Subgoal:
    """One subgoal and how to recognise it.

    `obj` is (type, colour) with colour None for the goal; `cell` is the
    absolute (x, y) of a positional target; `verb` is the interaction.
    """

    kind: str
    text: str
    obj: tuple[str, str | None] | None = None
    cell: tuple[int, int] | None = None
    verb: str | None = None

    @property
    def key(self) -> str:
        """Identity used for pay-once bookkeeping within an episode."""
        if self.kind == "positional":
            return f"pos:{self.cell}"
        return f"{self.kind}:{self.verb}:{self.obj}"

    def achieved(self, info: dict[str, Any], env: gym.Env | None = None) -> bool:
        """True when this step's `info` (language view) shows the subgoal done."""
        if self.kind == "positional":
            return tuple(info.get("agent_pos", ())) == self.cell
        if self.obj is None:
            return False
        kind, colour = self.obj
        events = info.get("events") or ()
        name = kind if colour is None else f"{colour} {kind}"
        if kind == "goal":
            return "reached goal" in events
        verb = self.verb or DEFAULT_VERB[kind]
        if verb in _VERB_EVENT:
            return f"{_VERB_EVENT[verb]} {name}" in events
        # "go to X": facing X from the next cell. Imported here: minigrid_planning builds on this module.
        from llmguide.teachers.minigrid_planning import minigrid_base

        base = minigrid_base(env) if env is not None else None
        if base is None:
            return False
        front = base.grid.get(*base.front_pos)
        return front is not None and front.type == kind and (colour is None or front.color == colour)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Subgoal:
        obj = tuple(data["obj"]) if data.get("obj") is not None else None
        cell = tuple(data["cell"]) if data.get("cell") is not None else None
        return cls(kind=data["kind"], text=data["text"], obj=obj, cell=cell, verb=data.get("verb"))  # type: ignore[arg-type]


@dataclass
class Proposal:
    """What one `Teacher.propose` call did (the wrapper sums these per episode)."""

    subgoal: Subgoal | None
    cache_hit: bool = False
    llm_queries: int = 0  # teacher-level questions sent to the LLM
    llm_generations: int = 0  # model generations (response-cache misses)
    invalid: int = 0  # answers rejected after the bounded retries
    budget_skip: bool = False
    #: set by ``propose(..., defer=True)`` on a cache miss: the question to answer off the env loop
    question: Question | None = None


@dataclass(frozen=True)
class Question:
    """A teacher's question with everything read from the env at asking time, so it can be
    answered on another thread while the env moves on (`Teacher.answer`)."""

    key: str | None
    messages: list[Any]
    candidates: list[Subgoal]


# -- language rule ------------------------------------------------------------
_VERBS = (
    ("pick up", ("pick", "grab", "take", "fetch", "collect", "get the", "get a", "hold", "carry")),
    ("open", ("open", "unlock", "toggle")),
    ("go to", ("go", "reach", "get to", "move", "walk", "navigate", "head", "approach", "enter", "find")),
)


def parse_instruction(text: str) -> tuple[str, str, str | None] | None:
    """Parse 'pick up the yellow key' into (verb, type, colour); None when no object is named.

    The object is the first target type mentioned (plurals accepted); the
    colour is the nearest colour word before it; the verb is the first verb
    family found, else the object's default. A verb that cannot apply to the
    object (open a ball) falls back to the default.
    """
    low = " " + re.sub(r"[^a-z ]+", " ", text.lower()) + " "
    best = None
    for t in TARGET_TYPES:
        m = re.search(rf" {t}(?:s|es)? ", low)
        if m and (best is None or m.start() < best[1]):
            best = (t, m.start())
    if best is None:
        return None
    kind, at = best
    colour = None
    words = low[:at].split()
    for w in reversed(words[-3:]):
        if w in COLOURS:
            colour = w
            break
    verb = None
    for name, cues in _VERBS:
        pos = [low.find(" " + c) for c in cues if low.find(" " + c) >= 0]
        if pos and (verb is None or min(pos) < verb[1]):
            verb = (name, min(pos))
    chosen = verb[0] if verb else DEFAULT_VERB[kind]
    if kind == "goal" or (chosen == "open" and kind not in ("door", "box")) or (chosen == "pick up" and kind in ("door",)):
        chosen = DEFAULT_VERB[kind]
    return chosen, kind, None if kind == "goal" else colour


# -- cache ---------------------------------------------------------------------
class TeacherCache:
    """Answers per (layout, progress) key: in memory, optionally in a SQLite file
    shared by SubprocVecEnv workers (WAL; each process opens its own connection).

    Values are JSON (a subgoal dict, or null for 'no subgoal').
    """

    #: returned by `get` when the key is absent (None is a valid cached value)
    MISS: Any = object()

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self._mem: dict[str, Any] = {}
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_mem": dict(self._mem)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]
        self._mem.update(state["_mem"])

    def _db(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        if self._conn is None or self._pid != os.getpid():
            conn = connect_shared(self.path, "CREATE TABLE IF NOT EXISTS subgoals (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _sql(self, query: str, args: tuple[Any, ...] = (), *, commit: bool = False) -> tuple[Any, ...] | None:
        """Run one statement (None without a file); a damaged or stuck file becomes one readable error."""
        try:
            db = self._db()
            if db is None:
                return None
            row = db.execute(query, args).fetchone()
            if commit:
                db.commit()
            return row if row is not None else ()
        except sqlite3.DatabaseError as err:
            raise store_error(
                "Teacher cache", self.path, err,
                "Delete the file: it only holds cached subgoals, which the teacher asks for again.",
            ) from None

    def get(self, key: str) -> Any:
        """The stored value, or `TeacherCache.MISS`."""
        with self._lock:
            if key in self._mem:
                return self._mem[key]
            row = self._sql("SELECT value FROM subgoals WHERE key = ?", (key,))
            if not row:
                return self.MISS
            value = json.loads(row[0])
            self._mem[key] = value
            return value

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._mem[key] = value
            self._sql("INSERT OR IGNORE INTO subgoals (key, value) VALUES (?, ?)", (key, json.dumps(value)), commit=True)

    def __len__(self) -> int:
        with self._lock:
            row = self._sql("SELECT COUNT(*) FROM subgoals")
            return len(self._mem) if row is None else int(row[0])


# -- protocol -------------------------------------------------------------------
@dataclass
class TeacherStats:
    """Totals over a teacher's life in this process."""

    queries: int = 0
    cache_hits: int = 0
    llm_queries: int = 0
    llm_generations: int = 0
    invalid: int = 0
    budget_skips: int = 0

    def add(self, proposal: Proposal) -> None:
        """Count one `Teacher.propose` call and what it cost."""
        self.queries += 1
        self.cache_hits += int(proposal.cache_hit)
        self.llm_queries += proposal.llm_queries
        self.llm_generations += proposal.llm_generations
        self.invalid += proposal.invalid
        self.budget_skips += int(proposal.budget_skip)


class Teacher:
    """Base class: `propose(env, info, achieved) -> Proposal`.

    Subclasses implement `_query`. When `cache` is set, answers are reused per
    key (`cache_key`): the symbolic state for object/language subgoals, plus
    the grid digest for positional ones (a cell depends on the layout).
    The defaults of `check_env`, `cache_key` and `candidates` read a MiniGrid
    grid (`llmguide.teachers.minigrid_planning`, imported when first called,
    since that module builds on this one); teachers of other envs override them.
    """

    name = "teacher"
    uses_llm = False

    def __init__(self, kind: str = "object", *, cache: TeacherCache | bool | str | Path | None = None) -> None:
        from llmguide.errors import ConfigError

        if kind not in KINDS:
            raise ConfigError(f"Unknown subgoal kind {kind!r}: use one of {', '.join(KINDS)}.")
        self.kind = kind
        if cache is True:
            cache = TeacherCache()
        elif isinstance(cache, (str, Path)):
            cache = TeacherCache(cache)
        self.cache: TeacherCache | None = cache if isinstance(cache, TeacherCache) else None
        self.stats = TeacherStats()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r})"

    # -- public -----------------------------------------------------------
    def check_env(self, env: gym.Env) -> None:
        """Raise ConfigError when this teacher cannot guide `env` (call after reset)."""
        from llmguide.teachers.minigrid_planning import minigrid_base

        from llmguide.errors import ConfigError

        if minigrid_base(env) is None:
            raise ConfigError(
                f"{type(self).__name__} needs a MiniGrid/BabyAI env (a grid to validate subgoals against); "
                f"got {type(env.unwrapped).__name__}."
            )

    def cache_key(self, env: gym.Env, achieved: Sequence[Subgoal]) -> str:
        """Key of a cached answer: the symbolic state (+ the layout digest for positional subgoals)."""
        from llmguide.teachers.minigrid_planning import layout_digest, symbolic_state

        state = symbolic_state(env, achieved)
        state["kind"] = self.kind
        if self.kind == "positional":
            state["layout"] = layout_digest(env)
        return hashlib.sha1(json.dumps(state, sort_keys=True).encode()).hexdigest()

    def propose(
        self, env: gym.Env, info: dict[str, Any], achieved: Sequence[Subgoal] = (), *, defer: bool = False
    ) -> Proposal:
        """Next subgoal for the current state (None: no subgoal this time).

        ``defer``: on a cache miss, a teacher that can (`question` is not None)
        returns at once with no subgoal and the question in ``proposal.question``;
        `answer` it later, on any thread. Others answer now, as without it.
        """
        key = self.cache_key(env, achieved) if self.cache is not None else None
        if key is not None:
            hit = self.cache.get(key)  # type: ignore[union-attr]
            if hit is not TeacherCache.MISS:
                proposal = Proposal(Subgoal.from_dict(hit) if hit else None, cache_hit=True)
                with _STATS_LOCK:
                    self.stats.add(proposal)
                return proposal
        if defer:
            question = self.question(env, info, list(achieved), key)
            if question is not None:
                return Proposal(None, question=question)
        proposal = self._query(env, info, list(achieved))
        self._record(key, proposal)
        return proposal

    def _record(self, key: str | None, proposal: Proposal) -> None:
        with _STATS_LOCK:
            self.stats.add(proposal)
        if key is not None and self.cache is not None and not proposal.budget_skip:
            self.cache.put(key, proposal.subgoal.to_dict() if proposal.subgoal else None)

    def question(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal], key: str | None) -> Question | None:
        """The question to answer off the env loop, or None: this teacher answers at once
        (scripted teachers, which cost nothing, and LLM teachers in a mode that reads the env
        while answering)."""
        return None

    def answer(self, question: Question) -> Proposal:
        """Answer a deferred question (thread-safe for LLM teachers: the model has its lock),
        counting it and caching the answer under the question's key."""
        proposal = self._answer(question)
        self._record(question.key, proposal)
        return proposal

    def _answer(self, question: Question) -> Proposal:
        raise NotImplementedError(f"{type(self).__name__} asks no deferred questions")

    def _query(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal]) -> Proposal:
        raise NotImplementedError

    def listing(self, env: gym.Env, achieved: Sequence[Subgoal], seed: int | None) -> list[Subgoal]:
        """The valid subgoals not yet achieved, as a teacher lists them: in layout order
        (``seed`` None) or shuffled by a hash of the situation and ``seed``, so the order
        carries no information and differs between seeds."""
        import random

        done = {s.key for s in achieved}
        options = [c for c in self.candidates(env) if c.key not in done] or self.candidates(env)
        if seed is not None:  # the situation's own key, not a subclass's cache key, so every teacher lists alike
            random.Random(f"{Teacher.cache_key(self, env, achieved)}:{seed}").shuffle(options)
        return options

    def candidates(self, env: gym.Env) -> list[Subgoal]:
        """Valid subgoals of this teacher's kind in the current layout."""
        from llmguide.teachers.minigrid_planning import agent_cell, layout_targets, minigrid_base

        pos = agent_cell(minigrid_base(env))
        out: list[Subgoal] = []
        seen = set()
        for t in layout_targets(env):
            if self.kind == "positional" and t.approach is None:
                continue
            sg = t.as_subgoal(self.kind, pos)
            if sg.text not in seen:
                seen.add(sg.text)
                out.append(sg)
        return out
