"""DiLu on highway-env: a driver that reasons, reflects and remembers.

Exports ``DiLuAgent`` (``act(obs, info)`` for the shared evaluation loop),
``DecisionStep`` (one traced decision), ``DrivingLog`` (mean speed and crash
flags for any agent in the loop), ``no_collision`` (the success criterion),
``console_approve`` (a human approves each reflection), ``make_dilu_env``, and
``DiLuMethod`` / ``DiLuConfig`` (``method: dilu`` for ``llmguide run
configs/dilu_highway.yaml``).

Following DiLu (Wen et al., ICLR 2024):
- Reasoning: the scene text -> the ``k`` most similar past experiences from the
  vector memory -> a few-shot prompt after the fixed driving rules ->
  chain-of-thought -> one meta-action chosen with constrained decoding among
  the actions available now (``info["valid_actions"]``), so an unavailable or
  invalid action cannot happen.
- Reflection: after an episode that ends in a collision, the LLM is shown the
  last few decisions, names the wrong one, writes the corrected decision and
  its reasoning; the corrected experience goes to memory (after an optional
  ``approve`` callback, e.g. a person). Safe episodes add all their decisions
  as positive experiences; the memory deduplicates them.
- Memory: ``llmguide.memory.ExperienceMemory`` — grows across episodes and,
  with a persistent path, across runs. No gradient steps anywhere.

Example:
    >>> from llmguide.core import prepare, run                              # doctest: +SKIP
    >>> run(prepare({"method": "dilu", "episodes": 2, "decisions": 5}), "runs/dilu")  # doctest: +SKIP
    >>> from llmguide.agents.loop import run_episodes, summarize          # doctest: +SKIP
    >>> env = make_dilu_env()                                               # doctest: +SKIP
    >>> agent = DiLuAgent(llm="smollm2", memory="runs/dilu-memory", k=3)    # doctest: +SKIP
    >>> summarize(run_episodes(agent, env, 2, success_fn=no_collision))     # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from llmguide.agents.loop import EpisodeRecord
from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from llmguide.config import AgentConfig
from llmguide.errors import ConfigError
from llmguide.llm import choose, load
from llmguide.methods import AgentMethod, EpisodePlan

__all__ = [
    "DILU_ENV_CONFIG",
    "DRIVING_RULES",
    "DecisionStep",
    "DiLuAgent",
    "DiLuConfig",
    "DiLuMethod",
    "DrivingLog",
    "console_approve",
    "make_dilu_env",
    "no_collision",
]

#: The original DiLu setting (highway-v0, 4 lanes, 15 vehicles, density 2, 20 decisions of 1 s).
DILU_ENV_CONFIG: dict[str, Any] = {
    "lanes_count": 4,
    "vehicles_count": 15,
    "vehicles_density": 2,
    "duration": 20,
    "policy_frequency": 1,
    "action": {"type": "DiscreteMetaAction"},
}

#: Fixed context at the head of every prompt (prefix-stable for llama.cpp's cache).
DRIVING_RULES = """You drive the ego car on a multi-lane highway. Each second you pick one meta-action:
LANE_LEFT or LANE_RIGHT (change lane), IDLE (keep lane and speed), FASTER, SLOWER.
Driving rules:
1. Never collide: safety comes before speed.
2. Keep a gap of at least 25 m to the vehicle ahead in your lane; if it is closer and slower than you, SLOWER or change lane.
3. Change lane only when the target lane has no vehicle within 15 m ahead or behind you.
4. When your lane is clear far ahead, drive FASTER; do not change lanes without a reason.
5. Choose only among the available actions."""

Approve = Callable[["Experience", "DecisionStep"], bool]  # noqa: F821 (Experience lives in llmguide.memory)


@dataclass
class DecisionStep:
    """One decision the agent took: what it saw, what it did and why."""

    step: int
    scene: str
    available: list[str]
    decision: str
    reasoning: str
    retrieved: int
    ego_speed: float | None = None


def no_collision(terminated: bool, truncated: bool, ret: float, info: Mapping[str, Any]) -> bool:
    """DiLu's success: the whole episode without a collision."""
    return not bool(info.get("crashed", terminated))


def console_approve(experience: Any, step: DecisionStep) -> bool:
    """Ask a person on the terminal to approve a reflection (the original DiLu's human check)."""
    print(f"\nScene: {step.scene}\nOriginal decision: {step.decision}")
    print(f"Corrected decision: {experience.decision}\nReasoning: {experience.reasoning}")
    try:
        answer = input("Store this corrected experience? [y/N] ").strip().lower()
    except EOFError:  # no terminal (a background run): nobody approved it
        return False
    return answer in ("y", "yes")


class DrivingLog:
    """Per-episode mean speed and crash flag for any agent run through ``run_episodes``.

    ``log.wrap(agent)`` records ``info["ego_speed"]`` at each decision; pass
    ``extra_fn=log.extra`` so each ``EpisodeRecord.extra`` gets ``crashed``,
    ``mean_speed`` and ``decisions_survived``.
    """

    def __init__(self) -> None:
        self.speeds: list[float] = []

    def wrap(self, agent: Any) -> Any:
        log = self

        class _Logged:
            def act(self, obs: Any, info: dict[str, Any]) -> Any:
                if "ego_speed" in info:
                    log.speeds.append(float(info["ego_speed"]))
                return agent.act(obs, info)

            def reset(self, info: dict[str, Any]) -> None:
                log.speeds = []
                if hasattr(agent, "reset"):
                    agent.reset(info)

            def end_episode(self, record: EpisodeRecord) -> None:
                if hasattr(agent, "end_episode"):
                    agent.end_episode(record)

        return _Logged()

    def extra(self, info: dict[str, Any]) -> dict[str, Any]:
        speeds = self.speeds + ([float(info["ego_speed"])] if "ego_speed" in info else [])
        crashed = bool(info.get("crashed", False))
        return {
            "crashed": crashed,
            "mean_speed": sum(speeds) / len(speeds) if speeds else 0.0,
            "decisions_survived": len(self.speeds) - int(crashed),
        }


class DiLuAgent:
    """DiLu's driver agent: retrieval-augmented chain-of-thought + reflection + vector memory.

    Args:
        llm: a model spec (``smollm2``, ``gguf:PATH``, ``openai:MODEL@URL``) or a chat model.
        memory: an ``ExperienceMemory``, a directory path (opened/created persistent), or None (no memory).
        k: how many similar experiences are shown as few-shot examples.
        reflect: after a collision episode, correct the wrong decision and store it.
        learn: store experiences at all (False = evaluate with a frozen memory).
        approve: callback ``(experience, step) -> bool`` before a reflection is stored (None = automatic).
        reflection_window: how many decisions before the crash the reflection looks at.
        cot_tokens: the chain-of-thought token cap (0 = no chain-of-thought, just the choice).
        rules: the fixed driving rules at the head of every prompt.
        log_dir: where ``episode_NNN.jsonl`` decision traces go (None = no log).
        reflections_path: a JSONL file each reflection is appended to (None = kept in ``reflections`` only).
    """

    def __init__(
        self,
        llm: str | BaseChatModel = "smollm2",
        memory: Any = None,
        k: int = 3,
        *,
        reflect: bool = True,
        learn: bool = True,
        approve: Approve | None = None,
        reflection_window: int = 5,
        cot_tokens: int = 64,
        rules: str = DRIVING_RULES,
        log_dir: str | Path | None = None,
        reflections_path: str | Path | None = None,
    ) -> None:
        if k < 0:
            raise ConfigError(f"DiLuAgent k must be >= 0, got {k}.")
        if reflection_window < 1:
            raise ConfigError(f"reflection_window must be >= 1, got {reflection_window}.")
        self.llm = load(llm) if isinstance(llm, str) else llm
        if isinstance(memory, (str, Path)):
            from llmguide.memory import ExperienceMemory

            memory = ExperienceMemory(memory)
        self.memory = memory
        self.k = k
        self.reflect, self.learn, self.approve = reflect, learn, approve
        self.reflection_window = reflection_window
        self.cot_tokens = cot_tokens
        self.rules = rules
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.reflections_path = Path(reflections_path) if reflections_path is not None else None
        self.trace: list[DecisionStep] = []
        self.episodes = 0
        self.reflections: list[dict[str, Any]] = []
        self.memory_sizes: list[int] = [len(memory) if memory is not None else 0]

    # -- reasoning -----------------------------------------------------------
    def reset(self, info: dict[str, Any]) -> None:
        self.trace = []

    def _shots(self, scene: str) -> list[Any]:
        if self.memory is None or self.k == 0:
            return []
        return self.memory.search(scene, k=self.k)

    def prompt(self, scene: str, shots: Sequence[Any]) -> list[BaseMessage]:
        """Rules first (stable prefix), then the retrieved experiences, then the current scene."""
        parts = []
        if shots:
            parts.append("Experiences from similar past scenes:")
            for i, shot in enumerate(shots, 1):
                origin = " (corrected after a crash)" if shot.source == "reflection" else ""
                why = f" Because: {shot.reasoning.strip()}" if shot.reasoning.strip() else ""
                parts.append(f"Example {i}{origin}. Scene: {shot.scene}\nDecision: {shot.decision}.{why}")
            parts.append("")
        parts.append(f"Current scene: {scene}")
        parts.append("Think step by step: which vehicles are close ahead or beside you, is each lane safe, "
                     "and which available action is safest?")
        return [SystemMessage(content=self.rules), HumanMessage(content="\n".join(parts))]

    def decide(self, scene: str, available: list[str]) -> DecisionStep:
        """Reason about one scene and choose one of the ``available`` meta-actions."""
        shots = self._shots(scene)
        messages = self.prompt(scene, shots)
        reasoning = ""
        if self.cot_tokens > 0:
            answer = self.llm.invoke(messages, max_tokens=self.cot_tokens)
            reasoning = (answer.content if isinstance(answer.content, str) else str(answer.content)).strip()
            messages = [*messages, AIMessage(content=reasoning or "(no reasoning)")]
        default = "IDLE" if "IDLE" in available else available[0]
        decision = choose(self.llm, [*messages, HumanMessage(content="So the final decision is:")], available,
                          default=default)
        return DecisionStep(len(self.trace), scene, list(available), decision, reasoning, len(shots))

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        names: list[str] = list(info.get("action_names") or [])
        available = list(info.get("valid_actions") or [])
        if not names or not available or "text" not in info:
            raise ConfigError(
                "DiLuAgent needs the highway text view (info text, action_names, valid_actions); "
                "make the env with llmguide.envs.make(..., text=True)."
            )
        step = self.decide(info["text"], available)
        step.ego_speed = float(info["ego_speed"]) if "ego_speed" in info else None
        self.trace.append(step)
        return names.index(step.decision)

    # -- learning ------------------------------------------------------------
    def end_episode(self, record: EpisodeRecord) -> None:
        crashed = bool(record.extra.get("crashed", record.terminated))
        episode_id = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{record.seed}-ep{self.episodes}"
        added = 0
        if self.memory is not None and self.learn and self.trace:
            if crashed:
                if self.reflect:
                    added = self._reflect(episode_id)
            else:
                added = self._remember(episode_id)
        self._write_log(record, crashed, added)
        self.episodes += 1
        self.memory_sizes.append(len(self.memory) if self.memory is not None else 0)

    def _remember(self, episode_id: str) -> int:
        from llmguide.memory import Experience

        return self.memory.add(
            Experience(scene=s.scene, decision=s.decision, reasoning=s.reasoning, outcome="safe",
                       source="reasoning", episode=episode_id, step=s.step)
            for s in self.trace
        )

    def reflection_prompt(self, window: Sequence[DecisionStep]) -> list[BaseMessage]:
        lines = ["The episode ended in a collision. The last decisions before the crash were:"]
        for i, s in enumerate(window, 1):
            lines.append(f"Decision {i}. Scene: {s.scene}\nAction: {s.decision}.")
        lines.append("Which decision was wrong and caused the collision?")
        return [SystemMessage(content=self.rules), HumanMessage(content="\n".join(lines))]

    def reflect_on(self, trace: Sequence[DecisionStep]) -> tuple[Any, DecisionStep] | None:
        """Find the wrong decision among the last few and write the corrected experience (not stored)."""
        from llmguide.memory import Experience

        window = list(trace[-self.reflection_window:])
        if not window:
            return None
        labels = [f"decision {i}" for i in range(1, len(window) + 1)]
        messages = self.reflection_prompt(window)
        picked = choose(self.llm, messages, labels, default=labels[-1])
        wrong = window[labels.index(picked)]
        alternatives = [a for a in wrong.available if a != wrong.decision] or list(wrong.available)
        fix_messages = [
            SystemMessage(content=self.rules),
            HumanMessage(content=f"Scene: {wrong.scene}\nThe action {wrong.decision} here led to a collision. "
                                 f"Which available action should have been taken instead?"),
        ]
        default = "SLOWER" if "SLOWER" in alternatives else alternatives[0]
        corrected = choose(self.llm, fix_messages, alternatives, default=default)
        explain = [*fix_messages, AIMessage(content=corrected),
                   HumanMessage(content=f"In one or two sentences, why is {corrected} safer than {wrong.decision} here?")]
        answer = self.llm.invoke(explain, max_tokens=max(self.cot_tokens, 48))
        why = (answer.content if isinstance(answer.content, str) else str(answer.content)).strip()
        reasoning = f"{wrong.decision} here led to a collision; {corrected} is safer. {why}".strip()
        experience = Experience(scene=wrong.scene, decision=corrected, reasoning=reasoning,
                                outcome=f"corrected: {wrong.decision} led to a collision", source="reflection",
                                step=wrong.step)
        return experience, wrong

    def _reflect(self, episode_id: str) -> int:
        found = self.reflect_on(self.trace)
        if found is None:
            return 0
        experience, wrong = found
        experience.episode = episode_id
        approved = self.approve(experience, wrong) if self.approve is not None else True
        added = self.memory.add([experience]) if approved else 0
        row = {
            "episode": episode_id, "wrong_step": wrong.step, "wrong_decision": wrong.decision,
            "corrected": experience.decision, "reasoning": experience.reasoning,
            "approved": bool(approved), "added": added,
        }
        self.reflections.append(row)
        if self.reflections_path is not None:
            self.reflections_path.parent.mkdir(parents=True, exist_ok=True)
            with self.reflections_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        return added

    def _write_log(self, record: EpisodeRecord, crashed: bool, added: int) -> None:
        if self.log_dir is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"episode_{self.episodes:03d}.jsonl"
        with path.open("w") as fh:
            for s in self.trace:
                fh.write(json.dumps(asdict(s)) + "\n")
            fh.write(json.dumps({"end": True, "seed": record.seed, "crashed": crashed, "memories_added": added}) + "\n")


def make_dilu_env(env_id: str = "highway-v0", env_config: Mapping[str, Any] | None = None,
                  render_mode: str | None = None) -> Any:
    """The highway env with DiLu's setting (overridden by ``env_config``) and its text view."""
    from llmguide.envs import make

    config = {**DILU_ENV_CONFIG, **dict(env_config or {})}
    kwargs: dict[str, Any] = {"config": config}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return make(env_id, text=True, **kwargs)


# -- the method ---------------------------------------------------------------------------------
class DiLuConfig(AgentConfig):
    """`method: dilu` — DiLu's driver on highway-env; `episodes` is the run's budget, `decisions` each episode's."""

    env: str = Field("highway-v0", description="A highway-env id with the text view (highway-v0 is DiLu's setting).")
    env_config: dict[str, Any] = Field(default_factory=dict, description="highway-env config, merged over DiLu's "
                                       "setting (llmguide.agents.dilu.DILU_ENV_CONFIG), e.g. vehicles_density: 3.")
    decisions: PositiveInt = Field(20, description="Decisions per episode (one a second): the episode's step cap "
                                   "and the env's duration (unless env_config sets duration).")
    max_steps: PositiveInt | None = Field(None, exclude=True, description="Not a dilu key: set from `decisions`.")
    llm: str = Field("smollm2", description="LLM spec: smollm2, gguf:PATH, openai:MODEL[@BASE_URL].")
    n_ctx: PositiveInt = Field(4096, description="llama.cpp context window (smollm2 / gguf only).")
    k: NonNegativeInt = Field(3, description="Retrieved experiences shown as few-shot examples (0 = no retrieval).")
    cot_tokens: NonNegativeInt = Field(64, description="Chain-of-thought token cap per decision (0 = choose directly).")
    memory: Path | None = Field(None, description="Experience-memory directory (null = RUN_DIR/memory); one fixed "
                                "path keeps learning across runs (`llmguide memory stats PATH`).")
    learn: bool = Field(True, description="Store experiences (false = drive with a frozen memory).")
    reflect: bool = Field(True, description="After a collision, correct the wrong decision and store it.")
    reflection_window: PositiveInt = Field(5, description="Decisions before the crash the reflection examines.")
    approve: bool = Field(False, description="A person approves each corrected experience on the terminal.")

    @field_validator("env")
    @classmethod
    def _highway_env(cls, env_id: str) -> str:
        from llmguide.envs.registry import family_of

        if family_of(env_id) != "highway":
            raise ValueError(f"the dilu method drives highway-env; {env_id!r} is not a highway-env id (use highway-v0)")
        return env_id

    @field_validator("max_steps", mode="before")
    @classmethod
    def _not_a_key(cls, value: Any) -> Any:
        raise ValueError("dilu's per-episode cap is `decisions`; set that instead")

    @field_validator("memory")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        # kept absolute in the run's config.yaml, so `--resume` and `eval` find it from any folder
        return path.expanduser().resolve() if path is not None else None

    @model_validator(mode="after")
    def _cap_from_decisions(self) -> DiLuConfig:
        self.max_steps = self.decisions
        return self


class DiLuMethod(AgentMethod):
    """DiLu (see the module docstring) on the shared episode loop.

    The memory directory outlives the run (and a resume reopens it, so what
    was learned before Ctrl-C is kept); the run dir keeps
    ``decisions/episode_NNN.jsonl`` (numbering continues on resume) and
    ``reflections.jsonl`` (appended). Success: no collision. ``objects["llm"]``,
    a live chat model, stands in for the ``llm`` spec.
    """

    name = "dilu"
    Config = DiLuConfig

    def __init__(self, config: DiLuConfig, settings: Any, run_dir: Path, objects: dict[str, Any] | None = None) -> None:
        super().__init__(config, settings, run_dir, objects)
        self.config: DiLuConfig = config
        self.memory_path = config.memory or self.run_dir / "memory"
        self.log = DrivingLog()
        self.agent: DiLuAgent | None = None
        self._env: Any = None
        self._state: dict[str, Any] = {"episodes": 0, "speed_sum": 0.0, "survived_sum": 0, "reflections": 0,
                                       "memory_size_before": None, "memory_sizes": []}

    def label(self) -> str:
        return self.settings.name or f"dilu:{self.config.llm}"

    def build(self, for_eval: bool = False) -> Any:
        """The driver with its memory; `llmguide eval` drives with the memory frozen and logs to eval_decisions/."""
        from llmguide.memory import ExperienceMemory

        cfg = self.config
        memory = ExperienceMemory(self.memory_path)
        self.agent = DiLuAgent(
            llm=self.objects.get("llm") or load(cfg.llm, n_ctx=cfg.n_ctx), memory=memory, k=cfg.k, reflect=cfg.reflect,
            learn=cfg.learn and not for_eval, approve=console_approve if cfg.approve else None,
            reflection_window=cfg.reflection_window, cot_tokens=cfg.cot_tokens,
            log_dir=self.run_dir / ("eval_decisions" if for_eval else "decisions"),
            reflections_path=None if for_eval else self.run_dir / "reflections.jsonl",
        )
        if self._state["memory_size_before"] is None:
            self._state["memory_size_before"] = len(memory)
        if self._state["memory_sizes"]:
            self.agent.memory_sizes = list(self._state["memory_sizes"])
        return self.log.wrap(self.agent)

    def env_for(self, plan: EpisodePlan) -> Any:
        if self._env is None:
            self._env = make_dilu_env(self.config.env, {"duration": self.config.decisions, **self.config.env_config})
        return self._env

    def on_resume(self, episodes_done: int) -> None:
        if self.agent is not None:
            self.agent.episodes = episodes_done  # decisions/episode_NNN.jsonl continue after the recorded ones

    def success(self, terminated: bool, truncated: bool, episode_return: float, info: dict[str, Any]) -> bool:
        return no_collision(terminated, truncated, episode_return, info)

    def episode_extra(self, info: dict[str, Any]) -> dict[str, Any]:
        extra = self.log.extra(info)
        self._state["episodes"] += 1
        self._state["speed_sum"] += extra["mean_speed"]
        self._state["survived_sum"] += extra["decisions_survived"]
        return extra

    def state_dict(self) -> dict[str, Any]:
        state = dict(self._state)
        if self.agent is not None:
            state["memory_sizes"] = list(self.agent.memory_sizes)
            state["reflections"] = self._state["reflections"] + len(self.agent.reflections)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._state.update(state)

    def extras(self) -> dict[str, Any]:
        state, n = self.state_dict(), max(self._state["episodes"], 1)
        return {
            "llm": self.config.llm,
            "mean_speed": state["speed_sum"] / n,
            "decisions_survived_mean": state["survived_sum"] / n,
            "memory_path": str(self.memory_path),
            "memory_size_before": state["memory_size_before"],
            "memory_size_after": len(self.agent.memory) if self.agent is not None and self.agent.memory is not None else None,
            "memory_sizes": state["memory_sizes"],
            "reflections": state["reflections"],
        }

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
