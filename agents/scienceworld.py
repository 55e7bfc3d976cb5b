"""An LLM agent for ScienceWorld with switchable injected knowledge.

Exports ``ScienceWorldAgent`` (``act(obs, info) -> index into
info["valid_actions"]`` for the shared evaluation loop), ``RandomValidAgent``
(the random-valid-action baseline), ``CorrectAction``, ``ActionMemory`` (the
small interface the agent needs from a memory) with ``VectorActionMemory``
(over ``llmguide.memory.ExperienceMemory``: Chroma + MiniLM) and
``ListActionMemory`` (in-process word overlap), ``ActionRanker`` (the cheap
candidate pre-filter), ``affordances`` (object -> what it affords, from the
valid actions), ``seed_memory_from_gold``, ``score_figures``, ``check_task``,
``interrupt_after`` and ``InterruptSafe`` (Ctrl-C waits for the JVM call in
progress), and the ``scienceworld`` method: ``ScienceWorldMethod`` with its
config ``ScienceWorldConfig`` (``llmguide run configs/scienceworld.yaml``; the
core runs the episodes and writes the run record).

Why it is built this way (knowledge-enhanced text-game agents, Chhikara et al., 2023):
a ScienceWorld room offers up to ~1000 valid actions, far too many to list to
an LLM. Each step the agent ranks the valid actions cheaply (MiniLM cosine to
the task and the latest observation, or word overlap), keeps the top-K with at
most a few per verb, and asks the LLM for one of them with constrained choice
(``llmguide.llm.choose``) — so the action is always valid, whatever the model.

Knowledge switches (each changes the prompt exactly as below; both off gives
the plain prompt: task, recent actions, observation, score):

- ``memory``: adds a section ``Previous correct actions (each raised the
  score):`` listing this episode's score-raising actions, then up to
  ``memory_k`` retrieved from the action memory for a situation like this one
  (task, room, last observation), as ``- ACTION (+N, in ROOM)``. Retrieved
  actions that are valid now and not yet taken this episode also join the
  front of the candidate list (a memory that cannot be chosen cannot help).
  Score-raising actions are written to the memory at the end of each episode.
- ``affordances``: adds a section ``What the relevant objects afford:`` with
  one line per object most related to the task (``affordance_objects`` of
  them), e.g. ``- stove: activate, deactivate, open; holds things (move/pour
  X to it)``, plus one line naming the verbs every object affords. It is
  derived from the current valid actions alone (object list = the ``look at
  X`` actions; verbs from ScienceWorld's action templates).

Example:
    >>> from llmguide.envs import make                                             # doctest: +SKIP
    >>> from llmguide.agents.loop import run_episodes, summarize                    # doctest: +SKIP
    >>> env = make("llmguide/ScienceWorld-v0", task="boil", variation=0)             # doctest: +SKIP
    >>> agent = ScienceWorldAgent(llm="smollm2", memory=True, affordances=True)     # doctest: +SKIP
    >>> summarize(run_episodes(agent, env, 1, max_steps=20))                         # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, SupportsFloat, runtime_checkable

import gymnasium as gym
import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from llmguide.agents.loop import EpisodeRecord
from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from llmguide.config import AgentConfig
from llmguide.errors import ConfigError
from llmguide.interrupts import interrupt_after
from llmguide.llm import METER, choose, load
from llmguide.methods import AgentMethod, EpisodePlan

__all__ = [
    "AFFORDANCE_HEADER",
    "EXCLUDED_ACTIONS",
    "MEMORY_HEADER",
    "ActionMemory",
    "ActionRanker",
    "CorrectAction",
    "InterruptSafe",
    "ListActionMemory",
    "RandomValidAgent",
    "ScienceWorldAgent",
    "ScienceWorldConfig",
    "ScienceWorldMethod",
    "VectorActionMemory",
    "affordance_lines",
    "affordances",
    "check_task",
    "interrupt_after",
    "parse_action",
    "score_figures",
    "seed_memory_from_gold",
    "visible_objects",
]

#: Never offered: restarting the task is a meta command, not a move in the world.
EXCLUDED_ACTIONS = frozenset({"reset task"})
MEMORY_HEADER = "Previous correct actions (each raised the score):"
AFFORDANCE_HEADER = "What the relevant objects afford:"
SYSTEM_PROMPT = (
    "You are an agent in ScienceWorld, a text simulator of science experiments. "
    "Read the task and the observation, then pick the single best next action."
)
#: Two-word verbs of ScienceWorld's action templates (the rest are one word).
_TWO_WORD = ("look at", "look in", "focus on", "pick up", "put down", "go to", "teleport to")
#: Two-object templates: verb -> connector between the objects.
_TWO_OBJECT = {"move": " to ", "pour": " into ", "dunk": " into ", "use": " on ", "put": " in ", "connect": " to "}
#: Objects that never help a task (the agent itself, the air, the inventory).
_BORING = frozenset({"agent", "air", "inventory"})
_ROOM = re.compile(r"(?:This room is called the|You (?:move|teleport) to the) ([a-z ]+?)\.")
_WORD = re.compile(r"[a-z]+")
_STOP = frozenset(
    ["a", "an", "the", "to", "of", "in", "on", "at", "for", "and", "or", "is", "it", "its", "your", "you", "this", "that", "with", "from", "then", "first", "take", "actions", "will", "cause", "change", "task", "which", "by", "be", "as", "are", "into", "can"]
)


def verb_of(action: str) -> str:
    """The template verb of an action string ('pick up thermometer' -> 'pick up')."""
    for verb in _TWO_WORD:
        if action == verb or action.startswith(verb + " "):
            return verb
    return action.split(" ", 1)[0]


def goal_of(task: str) -> str:
    """The task's first sentence without the boilerplate ('boil water')."""
    first = task.strip().split(".")[0]
    return re.sub(r"^(task description:\s*)?your task is to\s*", "", first, flags=re.IGNORECASE).strip() or task.strip()


def room_of(text: str) -> str | None:
    """The room named in a 'look around' observation, if any."""
    found = _ROOM.search(text)
    return found.group(1) if found else None


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def visible_objects(valid_actions: Sequence[str]) -> set[str]:
    """The objects named by the valid actions: every ``look at X`` (ScienceWorld offers it for all)."""
    return {a[len("look at ") :] for a in valid_actions if a.startswith("look at ")}


def parse_action(action: str, objects: set[str]) -> tuple[str, list[str]]:
    """Split an action into its template verb and objects ('use lighter on pot' -> ('use', ['lighter', 'pot'])).

    A two-object action is split at its template's connector where both sides
    are known objects; anything else keeps its remainder as one object.
    """
    verb = verb_of(action)
    rest = action[len(verb) :].strip()
    if not rest:
        return verb, []
    if rest in objects:
        return verb, [rest]
    conn = _TWO_OBJECT.get(verb)
    if conn is not None:
        start = 0
        while (at := rest.find(conn, start)) >= 0:
            first, second = rest[:at], rest[at + len(conn) :]
            if first in objects and second in objects:
                return verb, [first, second]
            start = at + 1
    return verb, [rest]


# -- candidate pre-filter -------------------------------------------------------------
class ActionRanker:
    """Ranks action strings by relevance to queries, cheaply.

    ``method="embedding"``: all-MiniLM-L6-v2 (the shared, packaged model).
    An action is scored from its parts, not embedded whole: a room offers
    ~1000 actions but only ~25 verbs and ~40 objects, so each step embeds a
    few new words (cached per process) instead of a thousand sentences.
    score = sum over queries of weight * (0.3 cos(verb, q) + 0.7 mean cos(object, q)).
    ``method="overlap"``: shared content words (no model at all).
    """

    def __init__(self, method: str = "embedding", embeddings: Any = None) -> None:
        if method not in ("embedding", "overlap"):
            raise ConfigError(f"rank must be 'embedding' or 'overlap', got {method!r}.")
        self.method = method
        self._embeddings = embeddings
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (n, 384) for `texts`, from the per-string cache where possible."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            if self._embeddings is None:
                from llmguide.memory import default_embeddings

                self._embeddings = default_embeddings()
            model = getattr(self._embeddings, "model", None)
            if model is not None and hasattr(model, "encode"):
                vecs = model.encode(list(missing), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
            else:
                vecs = np.asarray(self._embeddings.embed_documents(list(missing)), dtype=np.float32)
            for text, vec in zip(missing, np.asarray(vecs, dtype=np.float32)):
                self._cache[text] = vec
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def scores(self, actions: Sequence[str], queries: Sequence[tuple[str, float]]) -> np.ndarray:
        """Weighted relevance of each action to the (query, weight) pairs."""
        total = np.zeros(len(actions), dtype=np.float32)
        queries = [(q, w) for q, w in queries if q.strip()]
        if not actions or not queries:
            return total
        if self.method == "overlap":
            action_words = [_words(a) for a in actions]
            for query, weight in queries:
                q = _words(query)
                total += weight * np.array([len(w & q) / (len(w) or 1) for w in action_words], dtype=np.float32)
            return total
        objects = visible_objects(actions)
        parsed = [parse_action(a, objects) for a in actions]
        parts = sorted({p for verb, objs in parsed for p in [verb, *objs]})
        index = {p: i for i, p in enumerate(parts)}
        sims = self.embed(parts) @ self.embed([q for q, _ in queries]).T  # (parts, queries)
        weights = np.array([w for _, w in queries], dtype=np.float32)
        part_score = sims @ weights
        for i, (verb, objs) in enumerate(parsed):
            obj = float(np.mean([part_score[index[o]] for o in objs])) if objs else 0.0
            total[i] = 0.3 * part_score[index[verb]] + 0.7 * obj
        return total

    def top(
        self,
        actions: Sequence[str],
        queries: Sequence[tuple[str, float]],
        k: int,
        *,
        per_verb: int = 3,
        per_object: int = 3,
        first: Sequence[str] = (),
    ) -> list[str]:
        """`first` (kept in order), then the best-scoring actions, at most `per_verb` per verb
        and `per_object` per object named, `k` in all."""
        pool = [a for a in dict.fromkeys(actions) if a not in EXCLUDED_ACTIONS]
        valid = set(pool)
        out = [a for a in dict.fromkeys(first) if a in valid][:k]
        rest = [a for a in pool if a not in set(out)]
        order = np.argsort(-self.scores(rest, queries), kind="stable")
        objects = visible_objects(pool)
        per: dict[str, int] = {}

        def keys(action: str) -> list[str]:
            verb, objs = parse_action(action, objects)
            return ["v:" + verb] + ["o:" + o for o in objs]

        for a in out:
            for key in keys(a):
                per[key] = per.get(key, 0) + 1
        for i in order:
            if len(out) >= k:
                break
            action = rest[int(i)]
            ks = keys(action)
            if per.get(ks[0], 0) >= per_verb or any(per.get(key, 0) >= per_object for key in ks[1:]):
                continue
            for key in ks:
                per[key] = per.get(key, 0) + 1
            out.append(action)
        if len(out) < k:  # few verbs here: fill from the best regardless of verb
            taken = set(out)
            out.extend([rest[int(i)] for i in order if rest[int(i)] not in taken][: k - len(out)])
        return out


# -- affordances ------------------------------------------------------------------------
def affordances(valid_actions: Sequence[str]) -> dict[str, dict[str, set[str]]]:
    """What each visible object affords, from the valid actions alone.

    Returns ``{object: {"verbs": {...}, "as_tool": {...}, "as_target": {...}}}``:
    one-object verbs ('open', 'activate'), verbs where it is the first of two
    objects ('use' in 'use thermometer on X'), and verbs where it receives
    another ('move' in 'move X to pot'). The object list is the ``look at X``
    actions; a two-object action is split where both sides are known objects.
    """
    objects = visible_objects(valid_actions)
    table: dict[str, dict[str, set[str]]] = {o: {"verbs": set(), "as_tool": set(), "as_target": set()} for o in objects}
    for action in valid_actions:
        verb, objs = parse_action(action, objects)
        if len(objs) == 1 and objs[0] in objects:
            table[objs[0]]["verbs"].add(verb)
        elif len(objs) == 2:
            table[objs[0]]["as_tool"].add(verb)
            table[objs[1]]["as_target"].add(verb)
    return table


def affordance_lines(
    valid_actions: Sequence[str], task: str, ranker: ActionRanker, n_objects: int = 5, observation: str = ""
) -> list[str]:
    """The prompt lines of the ``affordances`` switch: the objects most related to
    the task with their non-universal verbs, then the verbs every object affords."""
    table = affordances(valid_actions)
    rooms = {a.split(" to ", 1)[1] for a in valid_actions if a.startswith(("go to ", "teleport to "))}
    names = [o for o in sorted(table) if o not in _BORING and o not in rooms and "door" not in o]
    if not names:
        return []
    counts: dict[str, int] = {}
    for entry in table.values():
        for verb in entry["verbs"]:
            counts[verb] = counts.get(verb, 0) + 1
    universal = {v for v, c in counts.items() if c >= 0.7 * len(table)}
    scores = ranker.scores(names, [(goal_of(task), 1.0), (" ".join(observation.split())[:300], 0.5)])
    chosen = [names[int(i)] for i in np.argsort(-scores, kind="stable")[:n_objects]]
    lines = []
    for name in chosen:
        entry = table[name]
        parts = sorted(entry["verbs"] - universal)
        parts += [f"{v} it {_TWO_OBJECT[v].strip()} something" for v in sorted(entry["as_tool"]) if v in ("use", "pour", "dunk")]
        if entry["as_target"] & {"move", "pour", "put", "dunk"}:
            parts.append("holds things (move/pour X to it)")
        lines.append(f"- {name}: {', '.join(parts) if parts else 'nothing special'}")
    if universal:
        lines.append(f"- every object: {', '.join(sorted(universal))}")
    return lines


# -- memory of correct actions ---------------------------------------------------------------
@dataclass
class CorrectAction:
    """An action that raised the ScienceWorld score, with the situation it was taken in."""

    context: str  # what gets embedded: goal, room, last observation
    action: str
    delta: float
    task: str = ""
    room: str = ""
    episode: str = ""
    step: int = -1


@runtime_checkable
class ActionMemory(Protocol):
    """What the agent needs from a memory: store correct actions, retrieve similar ones."""

    def add(self, items: Sequence[CorrectAction]) -> int: ...

    def search(self, context: str, k: int) -> list[CorrectAction]: ...


class ListActionMemory:
    """In-process memory ranked by shared words (no model, no store): tests and tiny runs."""

    def __init__(self) -> None:
        self.items: list[CorrectAction] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, items: Sequence[CorrectAction]) -> int:
        known = {(i.context, i.action) for i in self.items}
        new = [i for i in items if (i.context, i.action) not in known]
        self.items.extend(new)
        return len(new)

    def search(self, context: str, k: int) -> list[CorrectAction]:
        q = _words(context)
        ranked = sorted(self.items, key=lambda i: -len(q & _words(i.context)))
        return ranked[:k]


class VectorActionMemory:
    """Correct actions in the shared vector memory (``llmguide.memory.ExperienceMemory``).

    Each action is an ``Experience(scene=context, decision=action, outcome="score +N")``;
    ``path`` None keeps it in this process, a directory persists it.
    """

    def __init__(self, path: str | Path | None = None, memory: Any = None) -> None:
        if memory is None:
            from llmguide.memory import ExperienceMemory

            memory = ExperienceMemory(path, collection="scienceworld-actions")
        self.memory = memory

    def __len__(self) -> int:
        return len(self.memory)

    def add(self, items: Sequence[CorrectAction]) -> int:
        from llmguide.memory import Experience

        batch = [
            Experience(
                scene=i.context, decision=i.action, reasoning=i.task, outcome=f"score +{i.delta:g} in {i.room or '?'}",
                episode=i.episode, step=i.step,
            )
            for i in items
        ]
        return self.memory.add(batch)

    def search(self, context: str, k: int) -> list[CorrectAction]:
        out = []
        for exp in self.memory.search(context, k=k):
            delta, room = 0.0, ""
            found = re.match(r"score \+([\d.]+) in (.*)", exp.outcome or "")
            if found:
                delta, room = float(found.group(1)), found.group(2)
            out.append(CorrectAction(exp.scene, exp.decision, delta, exp.reasoning, room, exp.episode, exp.step))
        return out


def _make_memory(memory: bool | str | Path | ActionMemory | None) -> ActionMemory | None:
    if memory is None or memory is False:
        return None
    if memory is True:
        return VectorActionMemory()
    if isinstance(memory, (str, Path)):
        return VectorActionMemory(memory)
    if isinstance(memory, ActionMemory):
        return memory
    raise ConfigError(f"memory must be True/False, a directory, or an ActionMemory; got {type(memory).__name__}.")


def situation(task: str, room: str | None, last_obs: str) -> str:
    """The memory key of a moment: goal, room, last observation (short, so similar moments match)."""
    return f"Goal: {goal_of(task)}. Room: {room or 'unknown'}. Last: {' '.join(last_obs.split())[:160]}"


# -- the agent --------------------------------------------------------------------------------
class ScienceWorldAgent:
    """LLM agent choosing among pre-filtered valid ScienceWorld actions (see the module docstring).

    Args:
        llm: a model spec (``smollm2``, ``gguf:PATH``, ``openai:MODEL[@URL]``) or a chat model;
            None: no LLM, the ranker's top candidate is taken (the control that isolates the LLM).
        memory: False, True (in-process vector memory), a directory (persistent vector
            memory) or any ``ActionMemory``.
        affordances: add the affordances section to the prompt.
        top_k: candidates offered to the LLM per step; ``per_verb`` caps one verb's share.
        memory_k: retrieved correct actions shown (and offered) per step.
        affordance_objects: objects described by the affordances section.
        history: past (action, observation) pairs shown.
        rank: candidate pre-filter, "embedding" (MiniLM) or "overlap" (words).
        learn: write score-raising actions to the memory after each episode.
    """

    def __init__(
        self,
        llm: str | BaseChatModel | None = "smollm2",
        *,
        memory: bool | str | Path | ActionMemory | None = False,
        affordances: bool = False,
        top_k: int = 10,
        per_verb: int = 2,
        memory_k: int = 4,
        affordance_objects: int = 5,
        history: int = 3,
        rank: str | ActionRanker = "embedding",
        learn: bool = True,
        max_tokens: int = 48,
        n_ctx: int = 2048,
        log_dir: str | Path | None = None,
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}.")
        self.llm = None if llm is None else load(llm, max_tokens=max_tokens, n_ctx=n_ctx) if isinstance(llm, str) else load(llm)
        self.memory = _make_memory(memory)
        self.use_affordances = bool(affordances)
        self.top_k, self.per_verb, self.memory_k = int(top_k), int(per_verb), int(memory_k)
        self.affordance_objects, self.history = int(affordance_objects), int(history)
        self.ranker = rank if isinstance(rank, ActionRanker) else ActionRanker(rank)
        self.learn = learn
        self.log_dir = Path(log_dir) if log_dir is not None else None
        #: file name (without .jsonl) of the next episode's log; None: episode_NNN
        self.log_name: str | None = None
        self.decisions = 0
        #: decisions where the LLM took another action than the ranker's top candidate
        self.differs_from_ranker = 0
        self.episodes = 0
        #: every correct action this agent wrote to its memory (a resumed run re-adds them)
        self.learned: list[CorrectAction] = []
        self._new_episode({})

    @property
    def label(self) -> str:
        """'llm', 'llm+memory', 'llm+affordances', 'llm+memory+affordances', or 'ranker...' without an LLM."""
        parts = ["llm" if self.llm is not None else "ranker"] + (["memory"] if self.memory is not None else [])
        parts += ["affordances"] if self.use_affordances else []
        return "+".join(parts)

    # -- episode state ------------------------------------------------------------------
    def _new_episode(self, info: Mapping[str, Any]) -> None:
        self.task = str(info.get("task", ""))
        self.score = float(info.get("score", 0) or 0)
        self.room: str | None = None
        self.steps: list[tuple[str, str]] = []  # (action, observation it produced)
        self.correct: list[CorrectAction] = []
        self.log: list[dict[str, Any]] = []
        self._last: tuple[str, str] | None = None  # (action, situation before it)
        self._obs = ""

    def reset(self, info: dict[str, Any]) -> None:
        self._new_episode(info)

    def _observe(self, obs: Any, info: Mapping[str, Any]) -> None:
        """Take in what the previous action did: room, history, and whether it raised the score."""
        text = str(obs or "")
        if not self.task:
            self.task = str(info.get("task", ""))
        self.room = room_of(text) or self.room
        score = float(info.get("score", self.score) or 0)
        if self._last is not None:
            action, before = self._last
            self.steps.append((action, text))
            if score > self.score:
                self._credit(action, before, score - self.score)
        self.score = score
        self._obs = text

    def _credit(self, action: str, before: str, delta: float) -> None:
        self.correct.append(
            CorrectAction(before, action, float(delta), goal_of(self.task), self.room or "", f"ep{self.episodes}", len(self.steps))
        )

    # -- prompt ---------------------------------------------------------------------------
    def retrieved(self) -> list[CorrectAction]:
        """Correct actions from past episodes for the current situation (memory switch)."""
        if self.memory is None or self.memory_k <= 0 or len(self.memory) == 0:  # type: ignore[arg-type]
            return []
        taken = {c.action for c in self.correct}
        hits = self.memory.search(situation(self.task, self.room, self._obs), self.memory_k + len(taken))
        return [h for h in hits if h.action not in taken][: self.memory_k]

    def candidates(self, info: Mapping[str, Any]) -> list[str]:
        """The top-K valid actions offered to the LLM (memory hits first when memory is on)."""
        valid = list(info.get("valid_actions") or [])
        first = [h.action for h in self.retrieved()] if self.memory is not None else []
        queries = [(goal_of(self.task), 1.0), (" ".join(self._obs.split())[:300], 0.5)]
        return self.ranker.top(valid, queries, self.top_k, per_verb=self.per_verb, first=first)

    def knowledge(self, info: Mapping[str, Any]) -> list[str]:
        """The knowledge sections the switches add (empty when both are off)."""
        parts: list[str] = []
        if self.memory is not None:
            lines = [f"- {c.action} (+{c.delta:g}, this episode)" for c in self.correct]
            lines += [f"- {c.action} (+{c.delta:g}, in {c.room or 'some room'})" for c in self.retrieved()]
            parts.append(MEMORY_HEADER + "\n" + ("\n".join(lines) if lines else "- none yet"))
        if self.use_affordances:
            lines = affordance_lines(
                list(info.get("valid_actions") or []), self.task, self.ranker, self.affordance_objects, self._obs
            )
            parts.append(AFFORDANCE_HEADER + "\n" + ("\n".join(lines) if lines else "- nothing visible"))
        return parts

    def prompt(self, info: Mapping[str, Any]) -> list[BaseMessage]:
        """Messages for this step: fixed system and task first (prefix-stable), then knowledge, history, observation."""
        task = self.task or str(info.get("task", ""))
        body = [f"Task: {' '.join(task.split())}"]
        body += self.knowledge(info)
        if self.history > 0 and self.steps:
            recent = [f"- {a} -> {' '.join(o.split())[:120]}" for a, o in self.steps[-self.history :]]
            body.append("Recent actions:\n" + "\n".join(recent))
        body.append(f"Observation: {' '.join(self._obs.split())[:700]}")
        body.append(f"Score: {self.score:g}/100. Pick the next action.")
        return [SystemMessage(content=SYSTEM_PROMPT), HumanMessage(content="\n\n".join(body))]

    # -- acting ------------------------------------------------------------------------------
    def act(self, obs: Any, info: dict[str, Any]) -> int:
        """Index into ``info["valid_actions"]`` of the chosen action (always a valid one)."""
        self._observe(obs, info)
        valid = list(info.get("valid_actions") or [])
        if not valid:
            raise ConfigError("ScienceWorldAgent needs info['valid_actions'] (use the llmguide ScienceWorld env).")
        options = self.candidates(info)
        if not options:  # only excluded actions are valid: do the least harmful
            options = ["look around"] if "look around" in valid else valid[:1]
        calls, start = METER.snapshot().calls, time.perf_counter()
        if self.llm is None:
            choice = options[0]
        else:
            choice = choose(self.llm, self.prompt(info), options, default=options[0])
            self.differs_from_ranker += int(len(options) > 1 and choice != options[0])
        self.decisions += int(len(options) > 1)
        self.log.append({"step": len(self.steps), "candidates": options, "choice": choice, "score": self.score,
                         "llm_calls": METER.snapshot().calls - calls, "seconds": round(time.perf_counter() - start, 3)})
        self._last = (choice, situation(self.task, self.room, self._obs))
        return valid.index(choice)

    def end_episode(self, record: EpisodeRecord) -> None:
        """Credit the last action, write this episode's correct actions to memory, save the log."""
        final = record.extra.get("raw_score") if record.extra else None
        if self._last is not None and final is not None and float(final) > self.score:
            self._credit(self._last[0], self._last[1], float(final) - self.score)
        if self.memory is not None and self.learn and self.correct:
            self.memory.add(self.correct)
            self.learned.extend(self.correct)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            path = self.log_dir / f"{self.log_name or f'episode_{self.episodes:03d}'}.jsonl"
            path.write_text("".join(json.dumps(row) + "\n" for row in self.log))
        self.episodes += 1


class RandomValidAgent:
    """The baseline: a uniformly random valid action (never ``reset task``)."""

    label = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        valid = list(info["valid_actions"])
        allowed = [i for i, a in enumerate(valid) if a not in EXCLUDED_ACTIONS] or list(range(len(valid)))
        return int(allowed[int(self.rng.integers(len(allowed)))])


# -- Ctrl-C and the JVM ----------------------------------------------------------------------------
class InterruptSafe(gym.Wrapper):
    """ScienceWorld env whose `reset` and `step` finish before Ctrl-C is raised (see `interrupt_after`)."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        with interrupt_after():
            return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        with interrupt_after():
            return self.env.step(action)


# -- memory seeding from the simulator's gold paths -----------------------------------------------
def gold_path(env: Any, variation: int) -> list[str]:
    """The simulator's gold action sequence for a variation of the env's task.

    The adapter does not expose gold paths yet, so this reloads its simulator
    with ``generateGoldPath=True``; the next ``reset`` starts that variation.
    """
    base = env.unwrapped
    sw = getattr(base, "_sw", None)
    if sw is None:
        raise ConfigError("gold paths need the llmguide ScienceWorld env (llmguide/ScienceWorld-v0).")
    with interrupt_after():
        sw.load(base.task_name, int(variation), base.simplifications, generateGoldPath=True)
        base._loaded_variation = int(variation)
        path = list(sw.get_gold_action_sequence())
    if path and path[0].startswith("ERROR"):
        return []
    return path


def seed_memory_from_gold(memory: ActionMemory, env: Any, variations: Sequence[int]) -> int:
    """Play the gold path of each variation and store its score-raising actions (no LLM).

    Why: "previous correct actions" from training variations, so the memory
    switch has something to retrieve on the first evaluation episode.
    """
    added = 0
    for variation in variations:
        actions = gold_path(env, int(variation))
        obs, info = env.reset(options={"variation": int(variation)})
        task, room, score, items = str(info.get("task", "")), room_of(str(obs)), float(info.get("score", 0)), []
        for step, action in enumerate(actions):
            before = situation(task, room, str(obs))
            with interrupt_after():
                obs, _, terminated, truncated, info = env.unwrapped.step_command(action)
            room = room_of(str(obs)) or room
            if action.startswith(("go to ", "teleport to ")):
                room = action.split(" to ", 1)[1]
            new = float(info.get("score", score))
            if new > score:
                items.append(CorrectAction(before, action, new - score, goal_of(task), room or "", f"gold{variation}", step))
            score = new
            if terminated or truncated:
                break
        added += memory.add(items)
    return added


# -- the method -------------------------------------------------------------------------------------
ENV_ID = "llmguide/ScienceWorld-v0"


def score_figures(info: Mapping[str, Any]) -> dict[str, Any]:
    """An episode's ScienceWorld figures from its last info: score 0-100 (a failed task's -100 counts
    as 0, and as a failure), the raw score, task and variation."""
    raw = float(info.get("score", 0))
    return {"score": max(0.0, raw), "raw_score": raw, "failed": raw < 0, "task": info.get("task_name"),
            "variation": info.get("variation")}


def check_task(name: str) -> str:
    """A ScienceWorld task name or id, checked against the package's own task list (no JVM needed)."""
    import difflib

    from scienceworld.constants import ID2TASK, NAME2ID

    if name in ID2TASK or name in NAME2ID or name in ID2TASK.values():
        return name
    close = difflib.get_close_matches(name, list(ID2TASK.values()), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown ScienceWorld task {name!r}.{hint} Known tasks: {', '.join(ID2TASK.values())}")


class ScienceWorldConfig(AgentConfig):
    """`method: scienceworld` — the LLM agent (or the random control) over ScienceWorld's valid actions.

    The run's `episodes` is the number of episodes per task variation.
    """

    env: Literal["llmguide/ScienceWorld-v0"] = Field(ENV_ID, description="The ScienceWorld adapter (needs java).")
    agent: Literal["llm", "ranker", "random"] = Field(
        "llm", description="llm | ranker (no LLM: the pre-filter's top candidate, memory hits first when memory is on; "
        "the control that isolates the LLM) | random (uniform over valid actions, never 'reset task').")
    llm: str = Field("smollm2", description="LLM spec: smollm2, gguf:PATH, openai:MODEL[@URL].")
    tasks: list[str] = Field(default_factory=lambda: ["find-living-thing"], min_length=1, description="ScienceWorld task names.")
    variations: PositiveInt | list[NonNegativeInt] = Field(
        1, description="Per task: the first N variations of `split`, or a list of variation ids."
    )
    split: Literal["train", "dev", "test"] = Field("test", description="Variation pool that `variations: N` draws from.")
    max_steps: PositiveInt | None = Field(20, description="Step cap per episode (the simulator's own limit sits 5 above it).")
    simplifications: str = Field("easy", description="ScienceWorld simplifications ('easy' = teleport, open doors, ...).")
    memory: bool | str = Field(
        False, description="Knowledge 1, previous correct actions: false | true (in-process vector memory) | "
        "run_dir (RUN_DIR/memory) | a directory (shared by runs)."
    )
    affordances: bool = Field(False, description="Knowledge 2: what the task-relevant objects afford.")
    seed_gold: NonNegativeInt | list[NonNegativeInt] = Field(
        0, description="Fill the memory first from the gold paths of the first N training variations per task "
        "(or of these variation ids); 0 = none."
    )
    top_k: PositiveInt = Field(10, description="Candidate actions offered to the LLM per step.")
    per_verb: PositiveInt = Field(2, description="At most this many candidates share a verb.")
    memory_k: NonNegativeInt = Field(4, description="Retrieved correct actions shown (and offered) per step.")
    affordance_objects: NonNegativeInt = Field(5, description="Objects described by the affordances section.")
    history: NonNegativeInt = Field(3, description="Past (action, observation) pairs in the prompt.")
    rank: Literal["embedding", "overlap"] = Field("embedding", description="Candidate pre-filter: MiniLM or shared words.")
    max_tokens: PositiveInt = Field(48, description="Answer token cap.")
    n_ctx: PositiveInt = Field(2048, description="LLM context length (local models).")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        return [check_task(t) for t in tasks]

    @field_validator("variations")
    @classmethod
    def _some_variations(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("need at least one variation id")
        return value


class ScienceWorldMethod(AgentMethod):
    """The ScienceWorld LLM agent (or random control) run by the core's episode loop.

    One env (one JVM) per task, re-used by its episodes and closed by `close()`.
    ``objects["llm"]`` (a chat model) and ``objects["memory"]`` (an `ActionMemory`)
    stand in for the config's `llm` and `memory`.
    """

    name = "scienceworld"
    Config = ScienceWorldConfig

    def __init__(self, config: ScienceWorldConfig, settings: Any, run_dir: Path, objects: dict[str, Any] | None = None) -> None:
        super().__init__(config, settings, run_dir, objects)
        self.config: ScienceWorldConfig = config
        self.agent: ScienceWorldAgent | RandomValidAgent | None = None
        self._envs: dict[str, Any] = {}
        self._variations: dict[str, list[int]] = {}
        # carried by state_dict across a resume: episode outcomes, memory writes, LLM cost so far
        self._outcomes: list[dict[str, Any]] = []
        self._learned: list[CorrectAction] = []
        self._decisions_before = 0
        self._differs_before = 0
        self._calls_before = 0

    def variant(self) -> str:
        """'random', or 'llm' / 'ranker' with its knowledge switches ('llm+memory+affordances')."""
        c = self.config
        if c.agent == "random":
            return "random"
        memory = c.memory is not False or self.objects.get("memory") is not None
        return "+".join([c.agent] + (["memory"] if memory else []) + (["affordances"] if c.affordances else []))

    def label(self) -> str:
        return self.settings.name or f"scienceworld:{self.variant()}"

    # -- envs and variations ------------------------------------------------------------------
    def _env(self, task: str) -> Any:
        env = self._envs.get(task)
        if env is None:
            from llmguide.envs import make

            limit = (self.config.max_steps or 95) + 5
            with interrupt_after():  # kept before a held Ctrl-C is raised, so close() stops its JVM
                env = self._envs[task] = InterruptSafe(
                    make(ENV_ID, task=task, variation=0, simplifications=self.config.simplifications, step_limit=limit)
                )
        return env

    def _pool(self, task: str, split: str) -> list[int]:
        sw = self._env(task).unwrapped._sw
        pools = {"train": sw.get_variations_train, "dev": sw.get_variations_dev, "test": sw.get_variations_test}
        with interrupt_after():
            return [int(v) for v in pools[split]()]

    def variations(self, task: str) -> list[int]:
        """The variations a task's episodes run on (an explicit list, or the first N of `split`)."""
        if task not in self._variations:
            spec = self.config.variations
            self._variations[task] = list(spec) if isinstance(spec, list) else self._pool(task, self.config.split)[:spec]
        return self._variations[task]

    def _gold_variations(self, task: str) -> list[int]:
        spec = self.config.seed_gold
        return list(spec) if isinstance(spec, list) else self._pool(task, "train")[:spec] if spec else []

    # -- the agent and its episodes --------------------------------------------------------------
    def build(self, for_eval: bool = False) -> ScienceWorldAgent | RandomValidAgent:
        """The agent; for `llmguide eval` its memory is read, never written, and logs go to eval_logs/."""
        c = self.config
        if c.agent == "random":
            self.agent = RandomValidAgent(seed=self.settings.seed)
            return self.agent
        memory = self.objects.get("memory")  # an empty memory is falsy: test for None
        if memory is None:
            memory = self.run_dir / "memory" if c.memory == "run_dir" else c.memory
        agent = ScienceWorldAgent(
            llm=None if c.agent == "ranker" else self.objects.get("llm", c.llm), memory=memory, affordances=c.affordances,
            top_k=c.top_k, per_verb=c.per_verb, memory_k=c.memory_k, affordance_objects=c.affordance_objects,
            history=c.history, rank=c.rank, learn=not for_eval, max_tokens=c.max_tokens, n_ctx=c.n_ctx,
            log_dir=self.run_dir / ("eval_logs" if for_eval else "logs"),
        )
        if agent.memory is not None:
            for task in c.tasks:  # training variations' gold paths, so the memory has something on episode 1
                gold = self._gold_variations(task)
                if gold:
                    seed_memory_from_gold(agent.memory, self._env(task), gold)
            agent.memory.add(self._learned)  # an in-process memory lost them with the interrupted process
        self.agent = agent
        return agent

    def plan(self, episodes: int, seed: int) -> list[EpisodePlan]:
        """`episodes` rounds over every task variation: a larger budget only appends rounds, so a
        resume with more episodes continues the same list."""
        pairs = [(task, variation) for task in self.config.tasks for variation in self.variations(task)]
        return [
            EpisodePlan(seed=seed + repeat * len(pairs) + i, tag=f"{task}[{variation}]#{repeat}",
                        setup={"task": task, "variation": variation})
            for repeat in range(episodes) for i, (task, variation) in enumerate(pairs)
        ]

    def env_for(self, plan: EpisodePlan) -> Any:
        task, variation = plan.setup["task"], int(plan.setup["variation"])
        env = self._env(task)
        env.unwrapped.variation = variation
        if isinstance(self.agent, RandomValidAgent):  # each episode its own draws: a resume replays them exactly
            self.agent.rng = np.random.default_rng(plan.seed)
        elif isinstance(self.agent, ScienceWorldAgent):
            self.agent.log_name = f"{task}-v{variation}-s{plan.seed}"
        return env

    def on_resume(self, episodes_done: int) -> None:
        if isinstance(self.agent, ScienceWorldAgent):
            self.agent.episodes = episodes_done

    # -- what an episode means ----------------------------------------------------------------
    def success(self, terminated: bool, truncated: bool, episode_return: float, info: dict[str, Any]) -> bool:
        return float(info.get("score", 0)) >= 100

    def episode_extra(self, info: dict[str, Any]) -> dict[str, Any]:
        figures = score_figures(info)
        self._outcomes.append({k: figures[k] for k in ("task", "variation", "score", "failed")})
        return figures

    def score(self, records: list[EpisodeRecord]) -> float | None:
        """Mean ScienceWorld score, 0-100."""
        return float(np.mean([r.extra["score"] for r in records])) if records else None

    # -- run bookkeeping ----------------------------------------------------------------------
    def _totals(self) -> tuple[int, int]:
        decisions = getattr(self.agent, "decisions", 0)
        return self._decisions_before + decisions, self._calls_before + METER.snapshot().calls

    def _differs(self) -> int:
        return self._differs_before + getattr(self.agent, "differs_from_ranker", 0)

    def extras(self) -> dict[str, Any]:
        rows = self._outcomes
        per_task = {t: float(np.mean([r["score"] for r in rows if r["task"] == t]))
                    for t in self.config.tasks if any(r["task"] == t for r in rows)}
        decisions, calls = self._totals()
        memory = getattr(self.agent, "memory", None)
        return {
            "agent": self.variant(), "tasks": list(self.config.tasks), "variations": dict(self._variations),
            "per_task_score": per_task, "table": [{"task": t, "score": round(s, 1)} for t, s in per_task.items()],
            "score_std": float(np.std([r["score"] for r in rows])) if rows else 0.0,
            "failure_rate": float(np.mean([r["failed"] for r in rows])) if rows else 0.0,
            "decisions": decisions,
            "llm_calls_per_decision": calls / decisions if decisions else (None if self.config.agent != "llm" else 0.0),
            # how often the LLM overruled the ranker's top candidate: 0 means the LLM added nothing
            "llm_differs_from_ranker": self._differs() / decisions if decisions and self.config.agent == "llm" else None,
            "memory_size": len(memory) if memory is not None else 0,  # type: ignore[arg-type]
        }

    def state_dict(self) -> dict[str, Any]:
        decisions, calls = self._totals()
        learned = self._learned + list(getattr(self.agent, "learned", []))
        return {"outcomes": self._outcomes, "learned": [asdict(c) for c in learned], "decisions": decisions,
                "llm_calls": calls, "differs_from_ranker": self._differs()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._outcomes = list(state.get("outcomes", []))
        self._learned = [CorrectAction(**item) for item in state.get("learned", [])]
        self._decisions_before = int(state.get("decisions", 0))
        self._differs_before = int(state.get("differs_from_ranker", 0))
        self._calls_before = int(state.get("llm_calls", 0))

    def close(self) -> None:
        """Stop every task's JVM."""
        envs, self._envs = list(self._envs.values()), {}
        for env in envs:
            env.close()
