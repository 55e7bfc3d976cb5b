"""The LLM subgoal teacher: exports `SubgoalTeacher`.

The prompt is built from the language view (mission, the objects in the
layout with their states, what is carried, subgoals already achieved; for
positional subgoals also where the agent stands), prefix-stable so llama.cpp
reuses its cache. Two ways to ask:

- ``mode="choice"`` (default): constrained choice among the valid candidate
  subgoals of the layout (`llmguide.llm.choose`). Every answer is valid by
  construction; this is how a 135M model can be a teacher at all.
- ``mode="free"``: a structured answer (`llmguide.llm.structured`) that is then
  validated against the env (a cell inside the grid and not a wall, an object
  that exists, an instruction that parses to one). An invalid answer is
  retried a bounded number of times with the reason appended, then the
  teacher returns no subgoal (counted in `stats.invalid`). Training never
  crashes on an LLM answer.

Answers are cached per (layout, progress) key (see `Teacher.cache_key`), on
top of the persistent LLM response cache; `max_queries` bounds the LLM
questions per teacher instance (per process under SubprocVecEnv).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from llmguide.teachers.base import (
    COLOURS,
    DEFAULT_VERB,
    TARGET_TYPES,
    Proposal,
    Question,
    Subgoal,
    Teacher,
    TeacherCache,
    parse_instruction,
)
from llmguide.teachers.minigrid_planning import layout_targets, minigrid_base, relative_text, symbolic_state
from pydantic import BaseModel, Field

from llmguide.errors import ConfigError

__all__ = ["LanguageAnswer", "ObjectAnswer", "PositionalAnswer", "SubgoalTeacher"]

SYSTEM = (
    "You are a teacher for an agent in a grid world. The agent can turn, move forward, pick up one "
    "object at a time, drop it, and toggle (open) doors in front of it; a locked door opens only "
    "while the agent carries the key of the same colour. Give the single next subgoal that brings "
    "the agent closer to completing its mission."
)


class PositionalAnswer(BaseModel):
    """A cell relative to the agent: dx columns east (negative: west), dy rows south."""

    dx: int = Field(ge=-32, le=32)
    dy: int = Field(ge=-32, le=32)


class ObjectAnswer(BaseModel):
    """An object of the layout."""

    object: Literal["key", "ball", "box", "door", "goal"]
    colour: Literal["red", "green", "blue", "purple", "yellow", "grey", "none"]


class LanguageAnswer(BaseModel):
    """A short instruction such as 'pick up the yellow key'."""

    instruction: str = Field(max_length=120)


_ANSWER_MODELS: dict[str, type[BaseModel]] = {
    "positional": PositionalAnswer,
    "object": ObjectAnswer,
    "language": LanguageAnswer,
}


def _generations_since(before: Any) -> int:
    """Model runs past the response cache since the meter snapshot ``before``."""
    from llmguide.llm import METER

    after = METER.snapshot()
    return max(0, (after.calls - after.cache_hits) - (before.calls - before.cache_hits))


class SubgoalTeacher(Teacher):
    """An LLM proposes subgoals; the env validates them.

    Args:
        llm: a model spec (``smollm2``, ``gguf:PATH``, ``openai:MODEL[@URL]``) or a LangChain chat model.
        kind: ``positional``, ``object`` or ``language``.
        mode: ``choice`` (constrained among valid candidates) or ``free`` (structured, then validated).
        max_queries: LLM questions allowed (None: unbounded); past it only cached answers are used.
        retries: extra attempts after an invalid answer (free mode).
        cache: True (in memory), a path (SQLite shared by subprocesses), or a `TeacherCache`.
        include_view: also put the agent's own view (`info["text"]`) in the prompt.
        llm_kwargs: passed to `llmguide.llm.load` (n_threads, n_gpu_layers, n_ctx, ...).
        option_order: ``shuffled`` (default): candidates listed in an order drawn from a hash of the
            situation and ``seed``, deterministic but uninformative, and different per seed;
            ``layout``: keys, balls, boxes, doors, goal, which on DoorKey is the plan itself, so a model that always takes the first option
            would look like the oracle.
        seed: the run's seed: it draws the option order and is part of the cache key, so
            seeds do not share one table of answers.

    Example:
        >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
        >>> teacher = SubgoalTeacher(FakeListChatModel(responses=['{"choice": "yellow key"}']), kind="object")
        >>> teacher.kind
        'object'
    """

    name = "llm"
    uses_llm = True

    def __init__(
        self,
        llm: str | BaseChatModel = "smollm2",
        kind: str = "object",
        *,
        mode: str = "choice",
        max_queries: int | None = 2000,
        retries: int = 2,
        cache: TeacherCache | bool | str | Path | None = True,
        include_view: bool = False,
        max_tokens: int = 64,
        llm_kwargs: dict[str, Any] | None = None,
        option_order: str = "shuffled",
        seed: int = 0,
    ) -> None:
        super().__init__(kind, cache=cache)
        if mode not in ("choice", "free"):
            raise ConfigError(f"Unknown SubgoalTeacher mode {mode!r}: use 'choice' or 'free'.")
        self.llm_spec = llm if isinstance(llm, str) else getattr(llm, "model_name", type(llm).__name__)
        self._llm_arg = llm
        self._llm: BaseChatModel | None = None
        self.mode = mode
        self.max_queries = max_queries
        self.retries = retries
        self.include_view = include_view
        self.max_tokens = max_tokens
        self.llm_kwargs = dict(llm_kwargs or {})
        if option_order not in ("shuffled", "layout"):
            raise ConfigError(f"option_order must be 'shuffled' or 'layout', got {option_order!r}.")
        self.option_order = option_order
        self.seed = seed

    def __repr__(self) -> str:
        return f"SubgoalTeacher(llm={self.llm_spec!r}, kind={self.kind!r}, mode={self.mode!r}, seed={self.seed})"

    def cache_key(self, env: gym.Env, achieved: Sequence[Subgoal]) -> str:
        """The situation, and the seed when options are shuffled (the order is part of the question)."""
        key = super().cache_key(env, achieved)
        return f"{key}:seed{self.seed}" if self.option_order == "shuffled" and self.mode == "choice" else key

    @property
    def llm(self) -> BaseChatModel:
        """The chat model, loaded on first use (so a teacher is cheap to build and pickle)."""
        if self._llm is None:
            from llmguide.llm import load

            self._llm = load(self._llm_arg, **{"max_tokens": self.max_tokens, **self.llm_kwargs})
        return self._llm

    # -- prompt -----------------------------------------------------------
    def prompt(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal], options: list[str] | None) -> list[BaseMessage]:
        """Messages for one question; the fixed part comes first (prefix-stable)."""
        state = symbolic_state(env, achieved)
        lines = [f"Mission: {state['mission']}."]
        lines.append("Objects in the environment: " + (", ".join(state["objects"]) or "none") + ".")
        lines.append(f"The agent carries: {state['carrying'] or 'nothing'}.")
        lines.append("Subgoals already achieved: " + ("; ".join(state["achieved"]) or "none") + ".")
        if self.kind == "positional":
            base = minigrid_base(env)
            ax, ay = int(base.agent_pos[0]), int(base.agent_pos[1])
            where = [
                f"{t.name} at {relative_text(t.cell, (ax, ay))}" for t in layout_targets(env)
            ]
            lines.append(
                f"Positions are (columns east, rows south) relative to the agent, on a "
                f"{base.grid.width}x{base.grid.height} grid: " + "; ".join(where) + "."
            )
        if self.include_view and info.get("text"):
            lines.append(f"What the agent sees: {info['text']}")
        question = {
            "positional": "Which cell should the agent go to next?",
            "object": "Which object should the agent go for next?",
            "language": "What should the agent do next? Answer with a short instruction.",
        }[self.kind]
        if options is not None:
            lines.append("Possible subgoals: " + "; ".join(options) + ".")
        lines.append(question)
        return [SystemMessage(content=SYSTEM), HumanMessage(content="\n".join(lines))]

    # -- query ------------------------------------------------------------
    def _over_budget(self) -> bool:
        return self.max_queries is not None and self.stats.llm_queries >= self.max_queries

    def question(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal], key: str | None) -> Question | None:
        """In choice mode, the prompt and the candidates, read now; answered later by `answer`
        (free mode validates its answer against the env as it is, so it answers at once)."""
        if self.mode != "choice" or self._over_budget():
            return None
        candidates = self.listing(env, achieved, self.seed if self.option_order == "shuffled" else None)
        if not candidates:
            return None
        return Question(key, self.prompt(env, info, achieved, [c.text for c in candidates]), candidates)

    def _answer(self, question: Question) -> Proposal:
        from llmguide.llm import METER, choose

        if self._over_budget():
            return Proposal(None, budget_skip=True)
        before = METER.snapshot()
        options = [c.text for c in question.candidates]
        picked = choose(self.llm, question.messages, options, retries=self.retries)
        subgoal = next(c for c in question.candidates if c.text == picked)
        return Proposal(subgoal, llm_queries=1, llm_generations=_generations_since(before))

    def _query(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal]) -> Proposal:
        from llmguide.llm import METER, structured

        if self._over_budget():
            return Proposal(None, budget_skip=True)
        if self.mode == "choice":
            question = self.question(env, info, achieved, None)
            return self._answer(question) if question is not None else Proposal(None)
        before = METER.snapshot()
        invalid = 0
        subgoal: Subgoal | None = None
        if not self.candidates(env):
            subgoal = None
        else:
            messages = self.prompt(env, info, achieved, None)
            model = _ANSWER_MODELS[self.kind]
            for _ in range(self.retries + 1):
                answer = structured(self.llm, model, messages, retries=0)
                subgoal, reason = self.validate(env, answer)
                if subgoal is not None:
                    break
                invalid += 1
                messages = [*messages, HumanMessage(content=f"That answer is not valid: {reason}. Try again.")]
            if subgoal is None:
                METER.count_fallback("invalid:subgoal")
                invalid = 1  # one query that ended with no subgoal
        return Proposal(subgoal, llm_queries=1, llm_generations=_generations_since(before),
                        invalid=invalid if subgoal is None else 0)

    def validate(self, env: gym.Env, answer: BaseModel | None) -> tuple[Subgoal | None, str]:
        """Turn a structured answer into a valid subgoal of this env, or say why not."""
        if answer is None:
            return None, "the answer did not match the schema"
        base = minigrid_base(env)
        targets = layout_targets(env)
        if isinstance(answer, PositionalAnswer):
            ax, ay = int(base.agent_pos[0]), int(base.agent_pos[1])
            x, y = ax + answer.dx, ay + answer.dy
            if not (0 <= x < base.grid.width and 0 <= y < base.grid.height):
                return None, f"({answer.dx:+d}, {answer.dy:+d}) is outside the grid"
            cell = base.grid.get(x, y)
            if cell is not None and not cell.can_overlap() and cell.type != "door":
                return None, f"({answer.dx:+d}, {answer.dy:+d}) is a {cell.type}, the agent cannot stand there"
            return Subgoal("positional", f"({answer.dx:+d}, {answer.dy:+d})", cell=(x, y)), ""
        if isinstance(answer, ObjectAnswer):
            colour = None if answer.colour == "none" else answer.colour
            return self._match(targets, answer.object, colour, None, "object")
        if isinstance(answer, LanguageAnswer):
            parsed = parse_instruction(answer.instruction)
            if parsed is None:
                return None, f"{answer.instruction!r} names no object ({', '.join(TARGET_TYPES)})"
            verb, kind, colour = parsed
            return self._match(targets, kind, colour, verb, "language", answer.instruction)
        return None, "unexpected answer type"

    @staticmethod
    def _match(
        targets: list[Any], kind: str, colour: str | None, verb: str | None, sg_kind: str, text: str | None = None
    ) -> tuple[Subgoal | None, str]:
        """The layout object an answer names (colour may be omitted when unambiguous)."""
        same = [t for t in targets if t.type == kind and (colour is None or kind == "goal" or t.colour == colour)]
        if not same:
            what = kind if colour is None or kind == "goal" else f"{colour} {kind}"
            present = ", ".join(t.name for t in targets) or "nothing"
            return None, f"there is no {what} to go for (present: {present})"
        colours = {t.colour for t in same}
        if len(colours) > 1:
            return None, f"which {kind}? say its colour ({', '.join(sorted(c for c in colours if c))})"
        t = same[0]
        v = verb or DEFAULT_VERB[kind]
        if sg_kind == "object":
            return Subgoal("object", t.name, obj=(t.type, t.colour), verb=v), ""
        return Subgoal("language", text or f"{v} the {t.name}", obj=(t.type, t.colour), verb=v), ""


assert set(COLOURS) <= set(ObjectAnswer.model_fields["colour"].annotation.__args__)  # type: ignore[union-attr]
