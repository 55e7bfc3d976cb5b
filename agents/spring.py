"""SPRING on Crafter: an LLM agent that reads a game text and reasons over a question DAG.

SPRING reads the game's paper; the Crafter paper's LaTeX is not shipped, so
the offline default context is the manual built from Crafter's own data.yaml
(``context: manual``); a paper's ``.tex`` (e.g. ``teachers/data/crafter_notes.tex``,
a LaTeX paper about Crafter written for llmguide) goes through SPRING's
paragraph selection.

Exports ``SpringMethod`` and ``SpringConfig`` (``method: spring`` for
``llmguide run``), ``SpringAgent`` (``act(obs, info)`` for the shared episode
loop), ``evaluate_crafter`` (any Crafter agent, e.g. the random and PPO
baselines, -> Crafter score, reward, cost per step, invalid actions) and
``achievement_counts``.

Each step the agent builds an observation (the env's text view, a short
action history, what the previous action changed), answers the DAG's
situational questions in topological order
(``llmguide.teachers.spring.QuestionDag``; the questions about the game
alone are answered once per game and reused), then maps the final node's
answer to exactly one of Crafter's 17 actions with a scored choice
(``llmguide.llm.choose``) — so an invalid action cannot happen. ``fast=True``
asks only the DAG's ``fast`` nodes (one by default) before the choice. Every node's
question and answer is written to a JSONL log per episode, so a reader can
see why each action was chosen.

Example:
    >>> from llmguide.core import prepare, run                                       # doctest: +SKIP
    >>> run(prepare({"method": "spring", "episodes": 1, "max_steps": 20}), "runs/spring")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import time
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from llmguide.agents.loop import EpisodeRecord, run_episodes, summarize
from llmguide.teachers.spring import (
    NodeAnswer,
    QuestionDag,
    crafter_data,
    crafter_manual,
    latex_context,
    load_dag,
)
from pydantic import Field, PositiveInt, field_validator

from llmguide.config import AgentConfig
from llmguide.errors import ConfigError
from llmguide.llm import METER, choose, load
from llmguide.methods import AgentMethod, EpisodePlan
from llmguide.metrics import CRAFTER_ACHIEVEMENTS, achievement_success_rates, crafter_score

__all__ = ["SpringAgent", "SpringConfig", "SpringMethod", "achievement_counts", "evaluate_crafter"]

_STATS = ("health", "food", "drink", "energy")


def achievement_counts(info: Mapping[str, Any]) -> dict[str, int]:
    """Achievement counts from a Crafter ``info`` (``achievement_counts`` dict, or ``achievements`` dict/list)."""
    counts = info.get("achievement_counts")
    if isinstance(counts, Mapping):
        return {k: int(v) for k, v in counts.items()}
    raw = info.get("achievements")
    if isinstance(raw, Mapping):
        return {k: int(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple, set)):
        return {str(k): 1 for k in raw}
    return {}


def _inventory(info: Mapping[str, Any]) -> dict[str, int]:
    inv = info.get("inventory")
    return {k: int(v) for k, v in inv.items()} if isinstance(inv, Mapping) else {}


class SpringAgent:
    """SPRING's agent: fixed context + question DAG + constrained action choice.

    Args:
        llm: a model spec (``smollm2``, ``gguf:PATH``, ``openai:MODEL@URL``) or a chat model.
        context: the game text placed first in every prompt: ``"manual"`` (default: the manual
            built from Crafter's own data.yaml), a path to a ``.tex`` paper, or the text itself.
        dag: a ``QuestionDag``, a YAML path, a dict, or None for the packaged default (SPRING's questions).
        history: how many past actions the observation lists.
        log_dir: where ``episode_NNN.jsonl`` logs go (None = no log).
        max_tokens: default answer cap per node (the DAG's own caps win).
        concurrent: run independent nodes in a thread pool (None = only on OpenAI-compatible servers).
        context_llm: model that selects relevant paragraphs of a LaTeX context (default: ``llm``).
        context_tokens: token budget of a LaTeX context.
        fast: ask only the DAG's ``fast`` situational nodes each step (context answers stay cached).
    """

    def __init__(
        self,
        llm: str | BaseChatModel = "smollm2",
        context: str | Path | None = "manual",
        dag: str | Path | Mapping[str, Any] | QuestionDag | None = None,
        *,
        history: int = 4,
        log_dir: str | Path | None = None,
        max_tokens: int = 64,
        n_ctx: int = 4096,
        concurrent: bool | None = None,
        context_llm: str | BaseChatModel | None = None,
        context_tokens: int = 1200,
        action_names: Sequence[str] | None = None,
        fast: bool = False,
    ) -> None:
        self.llm = load(llm, max_tokens=max_tokens, n_ctx=n_ctx) if isinstance(llm, str) else llm
        self.dag = load_dag(dag)
        self.context = self._build_context(context, context_llm, context_tokens)
        self.history_len = history
        self.concurrent = concurrent
        self.fast = fast
        self.nodes = list(self.dag.fast) if fast else self.dag.situation_nodes
        #: seconds of every act() call; the first of a game includes the context answers
        self.step_seconds: list[float] = []
        self.choice_seconds: list[float] = []  # the scored action choice's part of each step
        self.default_actions = list(action_names or crafter_data()["actions"])
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.episode = -1
        self.invalid_actions = 0
        self.steps = 0
        self._reset_episode_state()

    def _build_context(self, context: str | Path | None, context_llm: Any, budget: int) -> str:
        """``manual``: the manual built from Crafter's own data.yaml; a .tex path: the paper's selected paragraphs."""
        if context is None or str(context) == "manual":
            return crafter_manual()
        text = str(context)
        if isinstance(context, Path) or (text.endswith(".tex") and "\n" not in text):
            return latex_context(text, context_llm if context_llm is not None else self.llm, token_budget=budget)
        return text

    def _reset_episode_state(self) -> None:
        self.t = 0
        self.actions: deque[str] = deque(maxlen=max(self.history_len, 1))
        self.prev_info: dict[str, Any] | None = None
        self.last_action: str | None = None
        self.last_answers: dict[str, NodeAnswer] = {}

    # -- loop hooks ------------------------------------------------------
    def reset(self, info: Mapping[str, Any]) -> None:
        """Start an episode: clear the history and open a new JSONL log."""
        self.episode += 1
        self._reset_episode_state()
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path().write_text("")

    def log_path(self) -> Path:
        if self.log_dir is None:
            raise ConfigError("This SpringAgent was built without log_dir; pass log_dir=... to keep logs.")
        return self.log_dir / f"episode_{max(self.episode, 0):03d}.jsonl"

    def act(self, obs: Any, info: Mapping[str, Any]) -> int:
        """One step: answer the DAG about ``info['text']``, then choose one of the actions."""
        if self.episode < 0:
            self.reset(info)
        start = time.perf_counter()
        names = list(info.get("action_names") or self.default_actions)
        observation = self.observation(info)
        answers = self.dag.run(self.llm, self.context, observation, nodes=self.nodes, concurrent=self.concurrent)
        asked = time.perf_counter()
        final = self.final_answer(answers)
        default = "noop" if "noop" in names else names[0]
        options = self.options_by_mention(final.answer, names)
        name = choose(self.llm, self.choice_prompt(observation, final, answers), options, default=default,
                      site="spring:action")
        if name not in names:  # impossible with choose(); counted so a benchmark proves it
            self.invalid_actions += 1
            name = default
        action = names.index(name)
        self._log(observation, answers, name, action, time.perf_counter() - start)
        self.prev_info = dict(info)
        self.last_action = name
        self.actions.append(name)
        self.last_answers = answers
        self.t += 1
        self.steps += 1
        self.step_seconds.append(time.perf_counter() - start)
        self.choice_seconds.append(time.perf_counter() - asked)
        return action

    def final_answer(self, answers: Mapping[str, NodeAnswer]) -> NodeAnswer:
        """The final node's answer, or (fast mode without it) the last situational answer."""
        if self.dag.final in answers:
            return answers[self.dag.final]
        return answers[[n for n in self.nodes if n in answers][-1]]

    def timing(self) -> dict[str, float | None]:
        """Seconds per step: mean over all steps, and median/mean of the warm ones (all but the
        first step of this agent, which also answers the per-game context questions)."""
        s = self.step_seconds
        warm = s[1:]
        return {
            "act_s_per_step": sum(s) / len(s) if s else None,
            "first_step_s": s[0] if s else None,
            "warm_s_per_step_mean": sum(warm) / len(warm) if warm else None,
            "warm_s_per_step_median": statistics.median(warm) if warm else None,
            "warm_choice_s_per_step": statistics.fmean(self.choice_seconds[1:]) if warm else None,
        }

    def end_episode(self, record: EpisodeRecord) -> None:
        if self.log_dir is not None:
            with self.log_path().open("a") as f:
                f.write(json.dumps({"episode_end": record.as_dict()}, default=str) + "\n")

    # -- prompts ---------------------------------------------------------
    def observation(self, info: Mapping[str, Any]) -> str:
        """The per-step part of every prompt: what the agent sees (most stable first), recent actions, last outcome."""
        # No step number first: consecutive views often begin alike, and llama.cpp reuses that prefix.
        parts = [str(info.get("text", "")).strip() or "(no text view)"]
        if self.actions:
            parts.append("Your recent actions (oldest first): " + ", ".join(self.actions) + ".")
        parts.append("Previous step: " + self.previous_outcome(info))
        return "\n".join(parts)

    def previous_outcome(self, info: Mapping[str, Any]) -> str:
        """What the last action changed (inventory, achievements, stats, position), in words."""
        if self.last_action is None or self.prev_info is None:
            return "none yet (first step)."
        before, after = _inventory(self.prev_info), _inventory(info)
        changes = []
        for item in sorted(set(before) | set(after)):
            delta = after.get(item, 0) - before.get(item, 0)
            if delta and item not in _STATS:
                changes.append(f"{item} {delta:+d}")
        stats = [f"{s} {after[s] - before[s]:+d}" for s in _STATS if s in after and s in before and after[s] != before[s]]
        new = sorted(k for k, v in achievement_counts(info).items() if v > achievement_counts(self.prev_info).get(k, 0))
        moved = None
        if "player_pos" in info and "player_pos" in self.prev_info:
            moved = list(info["player_pos"]) != list(self.prev_info["player_pos"])
        text = f"you did {self.last_action}; "
        if new:
            text += "unlocked " + ", ".join(new) + "; "
        if changes:
            text += "inventory " + ", ".join(changes) + "; "
        if stats:
            text += "stats " + ", ".join(stats) + "; "
        if self.last_action.startswith("move_") and moved is False:
            text += "you did not move (blocked, or you only turned); "
        events = info.get("events")
        if events:
            text += "events: " + ", ".join(map(str, events)) + "; "
        if not (new or changes or stats or moved or events):
            text += "nothing changed, so it probably failed or had no effect; "
        return text.rstrip("; ") + "."

    @staticmethod
    def options_by_mention(answer: str, names: Sequence[str]) -> list[str]:
        """The action names, those the final answer mentions first (in the order it mentions them).

        SPRING reads the action off its last answer; with constrained
        choice the options are all 17 names, and listing the ones the answer
        named first keeps the choice anchored to the reasoning.
        """
        low = answer.lower()
        found = []
        for name in names:
            variants = (name, name.replace("_", " "))
            hits = [m.start() for v in variants for m in re.finditer(rf"(?<![a-z_]){re.escape(v)}(?![a-z_])", low)]
            if hits:
                found.append((min(hits), name))
        mentioned = [n for _, n in sorted(found)]
        return mentioned + [n for n in names if n not in mentioned]

    def choice_prompt(self, observation: str, final: NodeAnswer, answers: Mapping[str, NodeAnswer] | None = None) -> list:
        """The DAG's fixed system turn (context, cached context answers), then the final node's
        question and answer: SPRING reads the action off its last answer. The scorer keeps the
        system turn evaluated from step to step, so a step pays only the few tokens of the answer;
        the observation is in the final node's own prompt (measured: adding it again here
        tripled the choice's time on the shared 2-core machine)."""
        body = f"Q: {final.question}\nA: {final.answer}\n\nWhich single action should you take now?"
        return [SystemMessage(content=self.dag.system_text(self.context, answers or {})), HumanMessage(content=body)]

    def _log(self, observation: str, answers: Mapping[str, NodeAnswer], name: str, action: int, seconds: float) -> None:
        if self.log_dir is None:
            return
        if self.t == 0 and self.dag.context_nodes:  # asked once per game: logged once per episode
            context_row = {"episode": self.episode, "context_answers": [
                {"id": n, "question": answers[n].question, "answer": answers[n].answer}
                for n in self.dag.context_nodes if n in answers]}
            with self.log_path().open("a") as f:
                f.write(json.dumps(context_row) + "\n")
        row = {
            "episode": self.episode,
            "step": self.t,
            "observation": observation,
            "nodes": [{"id": a.id, "question": a.question, "parents": list(a.parents), "answer": a.answer}
                      for a in answers.values() if a.id not in self.dag.context_nodes],
            "action": name,
            "action_id": action,
            "seconds": round(seconds, 3),
            "time": time.time(),
        }
        with self.log_path().open("a") as f:
            f.write(json.dumps(row) + "\n")


def crafter_extra(info: Mapping[str, Any]) -> dict[str, Any]:
    """What an episode record keeps of Crafter: the achievements unlocked (name -> count)."""
    return {"achievements": {k: v for k, v in achievement_counts(info).items() if v > 0}}


def crafter_success(terminated: bool, truncated: bool, episode_return: float, info: Mapping[str, Any]) -> bool:
    """A Crafter episode succeeds when it unlocked any achievement (Crafter has no goal state)."""
    return any(v > 0 for v in achievement_counts(info).values())


def crafter_rates(records: Iterable[EpisodeRecord]) -> dict[str, float]:
    """Per-achievement success rates over episode records (their ``extra['achievements']``)."""
    return achievement_success_rates(r.extra.get("achievements", {}) for r in records)


class _CheckedAgent:
    """Wraps any agent and counts actions outside the env's action space (replaced by action 0)."""

    def __init__(self, agent: Any, space: Any) -> None:
        self.agent, self.space, self.invalid = agent, space, 0

    def reset(self, info: Mapping[str, Any]) -> None:
        if hasattr(self.agent, "reset"):
            self.agent.reset(info)

    def end_episode(self, record: EpisodeRecord) -> None:
        if hasattr(self.agent, "end_episode"):
            self.agent.end_episode(record)

    def act(self, obs: Any, info: Mapping[str, Any]) -> Any:
        action = self.agent.act(obs, info)
        if not self.space.contains(action):
            self.invalid += 1
            action = 0
        return action


def evaluate_crafter(
    agent: Any,
    env: Any,
    episodes: int,
    *,
    seed: int = 0,
    max_steps: int | None = None,
    desc: str = "crafter",
    progress: bool = True,
) -> tuple[list[EpisodeRecord], dict[str, Any]]:
    """Run any Crafter agent (random, a trained policy) through the shared loop; records and Crafter metrics.

    SPRING itself runs as a method (``SpringMethod``); this is for the
    baselines it is compared with, on the same seeds, cap and figures:
    ``crafter_score`` (percent), ``reward`` (mean episode return),
    per-achievement ``success_rates``, the loop's summary, LLM cost per step
    and ``invalid_actions``.
    """
    checked = _CheckedAgent(agent, env.action_space)
    usage0 = METER.snapshot()
    records = run_episodes(checked, env, episodes, seed=seed, max_steps=max_steps, desc=desc, progress=progress,
                           extra_fn=crafter_extra, success_fn=crafter_success)
    usage1 = METER.snapshot()
    rates = crafter_rates(records)
    steps = max(sum(r.length for r in records), 1)
    summary = summarize(records)
    metrics = {
        "crafter_score": crafter_score(rates),
        "reward": summary["return_mean"],
        "reward_std": summary["return_std"],
        "episodes": len(records),
        "steps": sum(r.length for r in records),
        "max_steps": max_steps,
        "length_mean": summary["length_mean"],
        "llm_calls_per_step": (usage1.calls - usage0.calls) / steps,
        "prompt_tokens_per_step": (usage1.prompt_tokens - usage0.prompt_tokens) / steps,
        "completion_tokens_per_step": (usage1.completion_tokens - usage0.completion_tokens) / steps,
        "seconds_per_step": summary["seconds_per_step"],
        "llm_fallbacks": usage1.fallbacks - usage0.fallbacks,
        "invalid_actions": checked.invalid + int(getattr(agent, "invalid_actions", 0)),
        "success_rates": {a: rates[a] for a in CRAFTER_ACHIEVEMENTS},
        "achievements_unlocked": sorted(a for a in CRAFTER_ACHIEVEMENTS if rates[a] > 0),
    }
    return records, metrics


# -- the method ---------------------------------------------------------------------------------
class SpringConfig(AgentConfig):
    """`method: spring` — an LLM plays Crafter from a game text (the manual built from Crafter's own
    data.yaml, or a paper's .tex) and a question DAG, no training."""

    env: str = Field("llmguide/Crafter-v0", description="A Crafter id with the text view (llmguide/Crafter-v0).")
    max_steps: PositiveInt | None = Field(50, description="Step cap per episode (Crafter's own is 10000; keep it small on CPU).")
    llm: str = Field("smollm2", description="LLM spec: smollm2, gguf:PATH, openai:MODEL[@BASE_URL].")
    context: str = Field("manual", description="Game text first in every prompt: manual (the manual built from "
                         "Crafter's own data.yaml, offline), a path to a paper's .tex (LLM-selected paragraphs), "
                         "or the text itself.")
    context_tokens: PositiveInt = Field(1200, description="Token budget of a .tex context.")
    dag: str | dict[str, Any] | None = Field(None, description="The question DAG: a YAML path, an inline mapping, "
                                             "or null for the packaged default (SPRING's questions).")
    history: PositiveInt = Field(4, description="Past actions listed in each observation.")
    max_tokens: PositiveInt = Field(64, description="Default answer cap per DAG node (a node's own cap wins).")
    n_ctx: PositiveInt = Field(4096, description="llama.cpp context window (smollm2 / gguf only).")
    concurrent: bool | None = Field(None, description="Run independent DAG nodes in parallel (null: only on openai: servers).")
    fast: bool = Field(False, description="Ask only the DAG's `fast` situational node(s) each step, then the scored "
                       "action choice (the game-context answers are cached either way).")

    @field_validator("env")
    @classmethod
    def _crafter_env(cls, env_id: str) -> str:
        from llmguide.envs.registry import family_of

        if family_of(env_id) != "crafter":
            raise ValueError(f"the spring method plays Crafter; {env_id!r} is not a Crafter id (use llmguide/Crafter-v0)")
        return env_id

    @field_validator("dag")
    @classmethod
    def _valid_dag(cls, dag: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(dag, str) and not Path(dag).expanduser().is_file():
            raise ValueError(f"DAG file {dag!r} not found (null = the packaged default)")
        load_dag(dag)  # missing parents, cycles and duplicate ids are errors now, not at the first step
        return dag

    @field_validator("context")
    @classmethod
    def _context_file(cls, context: str) -> str:
        if context.endswith(".tex") and "\n" not in context and not Path(context).expanduser().is_file():
            raise ValueError(f"context file {context!r} not found (or use `manual`)")
        return context


class SpringMethod(AgentMethod):
    """SPRING (see the module docstring) on the shared episode loop.

    The run dir keeps ``logs/episode_NNN.jsonl`` (every node's question and
    answer at every step); a resume continues their numbering. Achievements
    per episode go to each record's ``extra``; the run's score is the Crafter
    score over them, success = any achievement unlocked. ``objects["llm"]``,
    a live chat model, stands in for the ``llm`` spec.
    """

    name = "spring"
    Config = SpringConfig

    def __init__(self, config: SpringConfig, settings: Any, run_dir: Path, objects: dict[str, Any] | None = None) -> None:
        super().__init__(config, settings, run_dir, objects)
        self.config: SpringConfig = config
        self.agent: SpringAgent | None = None
        self._checked: _CheckedAgent | None = None
        self._env: Any = None
        self._invalid_before = 0
        self._achievements: list[dict[str, int]] = []

    def label(self) -> str:
        return self.settings.name or f"spring:{self.config.llm}"

    def _get_env(self) -> Any:
        if self._env is None:
            from llmguide.envs import make

            self._env = make(self.config.env)
        return self._env

    def build(self, for_eval: bool = False) -> _CheckedAgent:
        """The SPRING agent behind an action-space check; `llmguide eval` logs to eval_logs/, not over the run's."""
        cfg = self.config
        self.agent = SpringAgent(
            llm=self.objects.get("llm") or cfg.llm, context=cfg.context, dag=cfg.dag, history=cfg.history,
            log_dir=self.run_dir / ("eval_logs" if for_eval else "logs"), max_tokens=cfg.max_tokens, n_ctx=cfg.n_ctx,
            concurrent=cfg.concurrent, context_tokens=cfg.context_tokens, fast=cfg.fast,
        )
        self._checked = _CheckedAgent(self.agent, self._get_env().action_space)
        return self._checked

    def env_for(self, plan: EpisodePlan) -> Any:
        return self._get_env()

    def on_resume(self, episodes_done: int) -> None:
        if self.agent is not None:
            self.agent.episode = episodes_done - 1  # the next reset() opens episode_{episodes_done:03d}.jsonl

    def success(self, terminated: bool, truncated: bool, episode_return: float, info: dict[str, Any]) -> bool:
        return crafter_success(terminated, truncated, episode_return, info)

    def episode_extra(self, info: dict[str, Any]) -> dict[str, Any]:
        extra = crafter_extra(info)
        self._achievements.append(extra["achievements"])
        return extra

    def score(self, records: list[EpisodeRecord]) -> float | None:
        return crafter_score(crafter_rates(records)) if records else None

    def invalid_actions(self) -> int:
        now = (self._checked.invalid if self._checked else 0) + (self.agent.invalid_actions if self.agent else 0)
        return self._invalid_before + now

    def state_dict(self) -> dict[str, Any]:
        return {"invalid_actions": self.invalid_actions(), "achievements": self._achievements}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._invalid_before = int(state.get("invalid_actions", 0))
        self._achievements = [dict(a) for a in state.get("achievements", [])]

    def extras(self) -> dict[str, Any]:
        rates = achievement_success_rates(self._achievements)
        return {
            "llm": self.config.llm,
            "dag_nodes": len(load_dag(self.config.dag).nodes),
            "fast": self.config.fast,
            "nodes_per_step": len(self.agent.nodes) if self.agent else None,
            **(self.agent.timing() if self.agent else {}),
            "logs": str(self.run_dir / "logs"),
            "success_rates": rates,
            "achievements_unlocked": sorted(a for a in CRAFTER_ACHIEVEMENTS if rates[a] > 0),
        }

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
