"""SPRING on Crafter: an LLM agent that reads the game's manual and reasons over a question DAG.

Exports ``SpringAgent`` (``act(obs, info)`` for the shared evaluation loop),
``evaluate_crafter`` (any Crafter agent -> Crafter score, reward, cost per
step, invalid actions) and ``run_spring_config`` (the ``spring`` runner
behind ``llmguide run configs/spring_crafter.yaml``).

Each step the agent builds an observation (the env's text view, a short
action history, what the previous action changed), answers the DAG's
questions in topological order (``llmguide.teachers.spring.QuestionDag``),
then maps the final node's answer to exactly one of Crafter's 17 actions with
constrained choice — so an invalid action cannot happen. Every node's
question and answer is written to a JSONL log per episode, so a reader can
see why each action was chosen.

Example:
    >>> from llmguide.envs import make                                # doctest: +SKIP
    >>> from llmguide.agents.loop import run_episodes, summarize       # doctest: +SKIP
    >>> agent = SpringAgent(llm="smollm2", log_dir="runs/spring")      # doctest: +SKIP
    >>> summarize(run_episodes(agent, make("llmguide/Crafter-v0"), 1, max_steps=20))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
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

from llmguide.errors import ConfigError
from llmguide.llm import METER, choose, load
from llmguide.metrics import CRAFTER_ACHIEVEMENTS, achievement_success_rates, crafter_score

__all__ = ["SpringAgent", "achievement_counts", "evaluate_crafter", "run_spring_config"]

_STATS = ("health", "food", "drink", "energy")

#: Keys the ``spring`` runner reads (configs/spring_crafter.yaml documents each).
CONFIG_KEYS = frozenset({
    "method", "env", "llm", "context", "dag", "episodes", "max_steps", "seed", "history",
    "max_tokens", "n_ctx", "context_tokens", "concurrent", "name", "description",
})


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
        context: the game text placed first in every prompt: ``"manual"`` (default,
            generated from Crafter's data.yaml), a path to a ``.tex`` paper, or the text itself.
        dag: a ``QuestionDag``, a YAML path, a dict, or None for ``configs/spring_dag.yaml``.
        history: how many past actions the observation lists.
        log_dir: where ``episode_NNN.jsonl`` logs go (None = no log).
        max_tokens: default answer cap per node (the DAG's own caps win).
        concurrent: run independent nodes in a thread pool (None = only on OpenAI-compatible servers).
        context_llm: model that selects relevant paragraphs of a LaTeX context (default: ``llm``).
        context_tokens: token budget of a LaTeX context.
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
    ) -> None:
        self.llm = load(llm, max_tokens=max_tokens, n_ctx=n_ctx) if isinstance(llm, str) else llm
        self.dag = load_dag(dag)
        self.context = self._build_context(context, context_llm, context_tokens)
        self.history_len = history
        self.concurrent = concurrent
        self.default_actions = list(action_names or crafter_data()["actions"])
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.episode = -1
        self.invalid_actions = 0
        self.steps = 0
        self._reset_episode_state()

    def _build_context(self, context: str | Path | None, context_llm: Any, budget: int) -> str:
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
        names = list(info.get("action_names") or self.default_actions)
        observation = self.observation(info)
        answers = self.dag.run(self.llm, self.context, observation, concurrent=self.concurrent)
        final = answers[self.dag.final]
        default = "noop" if "noop" in names else names[0]
        options = self.options_by_mention(final.answer, names)
        name = choose(self.llm, self.choice_prompt(observation, final), options, default=default)
        if name not in names:  # impossible with choose(); counted so a benchmark proves it
            self.invalid_actions += 1
            name = default
        action = names.index(name)
        self._log(observation, answers, name, action)
        self.prev_info = dict(info)
        self.last_action = name
        self.actions.append(name)
        self.last_answers = answers
        self.t += 1
        self.steps += 1
        return action

    def end_episode(self, record: EpisodeRecord) -> None:
        if self.log_dir is not None:
            with self.log_path().open("a") as f:
                f.write(json.dumps({"episode_end": record.as_dict()}, default=str) + "\n")

    # -- prompts ---------------------------------------------------------
    def observation(self, info: Mapping[str, Any]) -> str:
        """The per-step part of every prompt: what the agent sees, recent actions, last outcome."""
        parts = [f"Step {self.t}. What you see:", str(info.get("text", "")).strip() or "(no text view)"]
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

    def choice_prompt(self, observation: str, final: NodeAnswer) -> list:
        """Context first, then the step, then the final node's answer: prefix-stable for llama.cpp."""
        body = f"{observation}\n\nQ: {final.question}\nA: {final.answer}\n\nWhich single action should you take now?"
        return [SystemMessage(content=self.context), HumanMessage(content=body)]

    def _log(self, observation: str, answers: Mapping[str, NodeAnswer], name: str, action: int) -> None:
        if self.log_dir is None:
            return
        row = {
            "episode": self.episode,
            "step": self.t,
            "observation": observation,
            "nodes": [{"id": a.id, "question": a.question, "parents": list(a.parents), "answer": a.answer} for a in answers.values()],
            "action": name,
            "action_id": action,
            "time": time.time(),
        }
        with self.log_path().open("a") as f:
            f.write(json.dumps(row) + "\n")


class _CheckedAgent:
    """Wraps any agent and counts actions outside the env's action space."""

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
    """Run ``agent`` through the shared loop; return records and Crafter metrics.

    Metrics: ``crafter_score`` (percent), ``reward`` (mean episode return),
    per-achievement ``success_rates``, the loop's summary, LLM cost per step
    (calls, prompt/completion tokens, seconds) and ``invalid_actions``.
    """
    checked = _CheckedAgent(agent, env.action_space)
    usage0 = METER.snapshot()
    records = run_episodes(
        checked, env, episodes, seed=seed, max_steps=max_steps, desc=desc, progress=progress,
        extra_fn=lambda info: {"achievements": {k: v for k, v in achievement_counts(info).items() if v > 0}},
        success_fn=lambda term, trunc, ret, info: any(v > 0 for v in achievement_counts(info).values()),
    )
    usage1 = METER.snapshot()
    rates = achievement_success_rates(r.extra.get("achievements", {}) for r in records)
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


def run_spring_config(config: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """The ``spring`` runner: build the env and a SpringAgent from ``config``, evaluate, log.

    Reads (see configs/spring_crafter.yaml): env, llm, context, dag, episodes,
    max_steps, seed, history, max_tokens, n_ctx, context_tokens, concurrent.
    Writes ``run_dir/logs/episode_NNN.jsonl`` and ``run_dir/episodes.json``.
    """
    from llmguide.envs import make

    from llmguide.rundir import write_json

    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"Unknown spring config keys {unknown}; known keys: {', '.join(sorted(CONFIG_KEYS))}.")
    run_dir = Path(run_dir)
    env = make(config.get("env", "llmguide/Crafter-v0"))
    try:
        agent = SpringAgent(
            llm=config.get("llm", "smollm2"),
            context=config.get("context", "manual"),
            dag=config.get("dag"),
            history=int(config.get("history", 4)),
            log_dir=run_dir / "logs",
            max_tokens=int(config.get("max_tokens", 64)),
            n_ctx=int(config.get("n_ctx", 4096)),
            context_tokens=int(config.get("context_tokens", 1200)),
            concurrent=config.get("concurrent"),
        )
        records, metrics = evaluate_crafter(
            agent, env, int(config.get("episodes", 1)), seed=int(config.get("seed", 0)),
            max_steps=config.get("max_steps", 50), desc="spring",
        )
    finally:
        env.close()
    write_json(run_dir / "episodes.json", [r.as_dict() for r in records])
    metrics["llm"] = str(config.get("llm", "smollm2"))
    metrics["logs"] = str(run_dir / "logs")
    return metrics
