"""RL on ScienceWorld: MaskablePPO over the valid actions, taught by a subgoal teacher.

Exports `ValidActionSlots` (a fixed ``Discrete(k)`` action space mapped to the
current top-k valid actions, a text-embedding observation and
``action_masks()`` for sb3-contrib's MaskablePPO), `ScoreReward` (score points
-> [0, 1] task reward), `ActionSubgoal`, `GoldPathTeacher` (next step of the
simulator's gold path: the oracle), `LLMActionTeacher` (an LLM picks the next
subgoal among the relevant valid actions), `make_scienceworld_env`, and the
`scienceworld_rl` method: `ScienceWorldRLMethod` with its config
`ScienceWorldRLConfig` (``llmguide run configs/scienceworld_rl.yaml``; the core
trains, evaluates, checkpoints and writes the run record).

The teacher reaches the learner exactly as on MiniGrid: through
`llmguide.agents.guidance.SubgoalRewardWrapper` (bounded bonus, paid once per
subgoal; the task reward still dominates because scores are scaled to [0, 1])
and `TeacherMetricsCallback`. A subgoal here is a valid action (e.g.
"teleport to kitchen"), achieved when the agent runs it. The teacher is used
only while training; evaluation runs the policy alone.

Observation: MiniLM embedding of "goal. observation" followed by the
embeddings of the k candidate actions (zeros for empty slots), so the policy
scores each slot by its content, DRRN-style, with a fixed-size input.

Example:
    >>> from llmguide.core import prepare, run                                              # doctest: +SKIP
    >>> metrics = run(prepare({"method": "scienceworld_rl", "teacher": "gold", "total_steps": 2048}),
    ...               "runs/sw-rl")                                                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from llmguide.agents.scienceworld import (
    ActionRanker,
    InterruptSafe,
    check_task,
    goal_of,
    gold_path,
    interrupt_after,
    score_figures,
)
from llmguide.teachers.base import Proposal, Subgoal, Teacher
from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from llmguide.config import EvalSettings, TrainedConfig
from llmguide.errors import ConfigError
from llmguide.methods import TrainedMethod

__all__ = [
    "EMBED_DIM",
    "ActionSubgoal",
    "GoldPathTeacher",
    "LLMActionTeacher",
    "ScienceWorldRLConfig",
    "ScienceWorldRLMethod",
    "ScoreReward",
    "ValidActionSlots",
    "make_scienceworld_env",
]

EMBED_DIM = 384
_NOOP = "look around"


class ScoreReward(gym.RewardWrapper):
    """ScienceWorld pays score points (0-100; a failed task drops to -100); learners and the
    bounded teacher bonus want [0, 1] per step, so points are divided by 100 and clipped to [-1, 1]."""

    def reward(self, reward: SupportsFloat) -> float:
        return float(np.clip(float(reward) / 100.0, -1.0, 1.0))


class ValidActionSlots(gym.Wrapper):
    """``Discrete(k)`` over the k most task-relevant valid actions, with masks and an embedding observation.

    Slot i runs ``slots[i]`` (an index into the env's current valid list);
    `action_masks()` marks the filled slots, so MaskablePPO never picks an
    empty one (an empty slot, if forced, runs "look around"). Adds
    ``info["slots"]`` and, at the episode's end, ``info["is_success"]`` (score 100).
    """

    def __init__(self, env: gym.Env, k: int = 16, ranker: ActionRanker | None = None, per_verb: int = 3) -> None:
        super().__init__(env)
        self.k, self.per_verb = int(k), int(per_verb)
        self.ranker = ranker or ActionRanker("embedding")
        self.action_space = spaces.Discrete(self.k)
        self.observation_space = spaces.Box(-1.0, 1.0, ((self.k + 1) * EMBED_DIM,), dtype=np.float32)
        self.slots: list[str] = []
        self._valid: list[str] = []

    def _encode(self, obs: Any, info: dict[str, Any]) -> np.ndarray:
        self._valid = list(info.get("valid_actions") or [])
        task = goal_of(str(info.get("task", "")))
        text = " ".join(str(obs).split())[:300]
        self.slots = self.ranker.top(self._valid, [(task, 1.0), (text, 0.5)], self.k, per_verb=self.per_verb)
        out = np.zeros(((self.k + 1), EMBED_DIM), dtype=np.float32)
        out[0] = self.ranker.embed([f"{task}. {text}"])[0]
        if self.slots:
            out[1 : 1 + len(self.slots)] = self.ranker.embed(self.slots)
        info["slots"] = list(self.slots)
        return np.clip(out.reshape(-1), -1.0, 1.0)

    def action_masks(self) -> np.ndarray:
        mask = np.zeros(self.k, dtype=bool)
        mask[: len(self.slots)] = True
        if not mask.any():
            mask[0] = True
        return mask

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._encode(obs, info), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        slot = int(action)
        command = self.slots[slot] if slot < len(self.slots) else _NOOP
        index = self._valid.index(command) if command in self._valid else len(self._valid)
        obs, reward, terminated, truncated, info = self.env.step(index)
        if terminated or truncated:
            info["is_success"] = float(info.get("score", 0)) >= 100
        return self._encode(obs, info), reward, terminated, truncated, info


@dataclass(frozen=True)
class ActionSubgoal(Subgoal):
    """A subgoal that is one ScienceWorld action; achieved when the agent runs it."""

    @property
    def key(self) -> str:
        return f"action:{self.text}"

    def achieved(self, info: dict[str, Any], env: gym.Env | None = None) -> bool:
        return info.get("command") == self.text


def _sw_base(env: gym.Env) -> Any:
    from llmguide.envs.scienceworld import ScienceWorldEnv

    base = env.unwrapped
    if not isinstance(base, ScienceWorldEnv):
        raise ConfigError(f"This teacher needs llmguide/ScienceWorld-v0; got {type(base).__name__}.")
    return base


class _ActionTeacher(Teacher):
    """Base of the ScienceWorld teachers: language-kind subgoals that are valid actions."""

    def __init__(self) -> None:
        super().__init__("language", cache=None)

    def check_env(self, env: gym.Env) -> None:
        _sw_base(env)

    def cache_key(self, env: gym.Env, achieved: Sequence[Subgoal]) -> str:  # pragma: no cover - no cache
        return ""


class GoldPathTeacher(_ActionTeacher):
    """The oracle: the next action of the simulator's gold path that is valid now and not yet done.

    Gold paths are computed by `prepare(env, variations)` before training
    (computing one reloads the simulator, so never mid-episode).
    """

    name = "gold"

    def __init__(self) -> None:
        super().__init__()
        self.paths: dict[tuple[str, int], list[str]] = {}

    def prepare(self, env: gym.Env, variations: Sequence[int]) -> None:
        base = _sw_base(env)
        for v in variations:
            self.paths[(base.task_name, int(v))] = gold_path(env, int(v))

    def _query(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal]) -> Proposal:
        base = _sw_base(env)
        path = self.paths.get((base.task_name, int(info.get("variation", base.variation or 0))), [])
        done = {s.text for s in achieved}
        valid = set(info.get("valid_actions") or [])
        for action in path:
            if action not in done and action in valid:
                return Proposal(ActionSubgoal("language", action))
        return Proposal(None)


class LLMActionTeacher(_ActionTeacher):
    """An LLM picks the next subgoal among the `top_k` valid actions most related to the task.

    ``max_queries`` caps LLM questions over the teacher's life (then: no subgoal).
    """

    name = "llm"
    uses_llm = True

    def __init__(self, llm: Any = "smollm2", top_k: int = 8, max_queries: int | None = 200, ranker: ActionRanker | None = None) -> None:
        from llmguide.llm import load

        super().__init__()
        self.llm_spec = llm if isinstance(llm, str) else type(llm).__name__
        self.llm = load(llm, max_tokens=48, n_ctx=2048) if isinstance(llm, str) else load(llm)
        self.top_k, self.max_queries = int(top_k), max_queries
        self.ranker = ranker or ActionRanker("embedding")
        self.asked = 0

    def _query(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal]) -> Proposal:
        from langchain_core.messages import HumanMessage, SystemMessage

        from llmguide.llm import METER, choose

        if self.max_queries is not None and self.asked >= self.max_queries:
            return Proposal(None, budget_skip=True)
        done = {s.text for s in achieved}
        valid = [a for a in info.get("valid_actions") or [] if a not in done]
        task = str(info.get("task", ""))
        text = str(info.get("text", ""))
        options = self.ranker.top(valid, [(goal_of(task), 1.0), (text[-300:], 0.5)], self.top_k)
        if not options:
            return Proposal(None)
        before = METER.snapshot()
        messages = [
            SystemMessage(content="You teach a student in ScienceWorld. Name the next useful step toward the task."),
            HumanMessage(content=f"{text[:900]}\nDone so far: {', '.join(sorted(done)) or 'nothing'}.\nNext subgoal?"),
        ]
        choice = choose(self.llm, messages, options)
        after = METER.snapshot()
        self.asked += 1
        return Proposal(ActionSubgoal("language", choice), llm_queries=1,
                        llm_generations=(after.calls - after.cache_hits) - (before.calls - before.cache_hits),
                        invalid=after.fallbacks - before.fallbacks)


def make_scienceworld_env(
    task: str,
    variation: int = 0,
    teacher: Teacher | None = None,
    *,
    k: int = 16,
    step_limit: int = 30,
    simplifications: str = "easy",
    bonus: float = 0.1,
    max_bonus: float = 0.3,
) -> Callable[[], gym.Env]:
    """A thunk for SB3's `make_vec_env`: view -> score in [0, 1] -> teacher bonus -> slots."""

    def thunk() -> gym.Env:
        from llmguide.agents.guidance import SubgoalRewardWrapper
        from llmguide.envs import make

        with interrupt_after():
            env: gym.Env = InterruptSafe(make("llmguide/ScienceWorld-v0", task=task, variation=variation,
                                              step_limit=step_limit, simplifications=simplifications))
        if isinstance(teacher, GoldPathTeacher):
            teacher.prepare(env, [variation])
        env = ScoreReward(env)
        if teacher is not None:
            env = SubgoalRewardWrapper(env, teacher, bonus=bonus, max_bonus=max_bonus)
        return ValidActionSlots(env, k=k)

    return thunk


class ScienceWorldRLConfig(TrainedConfig):
    """`method: scienceworld_rl` — a masked learner over the valid actions of one ScienceWorld task
    variation, taught by the gold path, an LLM, or nobody."""

    default_total_steps: ClassVar[int] = 2048

    env: Literal["llmguide/ScienceWorld-v0"] = Field("llmguide/ScienceWorld-v0", description="The ScienceWorld adapter (needs java).")
    learner: str = Field("MaskablePPO", description="SB3 learner; MaskablePPO uses the slots' action masks.")
    n_envs: PositiveInt = Field(1, description="Parallel training envs (each runs its own JVM).")
    task: str = Field("find-living-thing", description="ScienceWorld task name.")
    variation: NonNegativeInt = Field(0, description="Task variation trained and evaluated on.")
    teacher: Literal["none", "gold", "llm"] = Field(
        "gold", description="none | gold (next step of the simulator's gold path: the oracle) | llm (an LLM picks the next step)."
    )
    llm: str = Field("smollm2", description="LLM spec of the llm teacher: smollm2, gguf:PATH, openai:MODEL[@URL].")
    max_queries: PositiveInt | None = Field(200, description="LLM teacher: questions over the run (None = no cap).")
    teacher_top_k: PositiveInt = Field(8, description="LLM teacher: valid actions offered as the next subgoal.")
    k: PositiveInt = Field(16, description="Action slots: the k most task-relevant valid actions each step.")
    step_limit: PositiveInt = Field(30, description="Moves per episode.")
    simplifications: str = Field("easy", description="ScienceWorld simplifications ('easy' = teleport, open doors, ...).")
    bonus: float = Field(0.1, ge=0.0, description="Teacher bonus per reached subgoal (task reward: score / 100).")
    max_bonus: float = Field(0.3, ge=0.0, lt=1.0, description="Per-episode cap of the teacher bonus.")
    checkpoint_every: int = Field(1024, ge=0, description="Env steps between checkpoints (0 = only at the end and on Ctrl-C).")
    eval: EvalSettings = Field(
        default_factory=lambda: EvalSettings(every=0, episodes=1, n_envs=1, deterministic=True),
        description="Evaluation without the teacher (one variation: one greedy episode says it all).",
    )

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        return check_task(task)

    @field_validator("teacher", mode="before")
    @classmethod
    def _no_teacher(cls, value: Any) -> Any:
        return "none" if value is None or value is False or value == "plain" else value

    @model_validator(mode="after")
    def _consistent(self) -> ScienceWorldRLConfig:
        if self.bonus > self.max_bonus:
            raise ValueError(f"need bonus <= max_bonus, got {self.bonus} > {self.max_bonus}")
        if self.teacher == "llm" and self.vec_env == "subproc":
            raise ValueError("the llm teacher runs in this process and counts its questions here; use vec_env: dummy")
        return self


class ScienceWorldRLMethod(TrainedMethod):
    """MaskablePPO over ScienceWorld's valid actions, taught through the MiniGrid guidance wrapper.

    ``objects["teacher"]`` (a `Teacher`) or ``objects["llm"]`` (a chat model for the llm
    teacher) stand in for the config's `teacher` and `llm`.
    """

    name = "scienceworld_rl"
    Config = ScienceWorldRLConfig
    _PPO: ClassVar[dict[str, Any]] = {"n_steps": 64, "batch_size": 32, "n_epochs": 4, "learning_rate": 3e-4,
                                      "ent_coef": 0.01, "gamma": 0.99}
    DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"MaskablePPO": _PPO, "PPO": _PPO, "RecurrentPPO": _PPO}

    def __init__(self, config: ScienceWorldRLConfig, settings: Any, run_dir: Path, objects: dict[str, Any] | None = None) -> None:
        super().__init__(config, settings, run_dir, objects)
        self.config: ScienceWorldRLConfig = config
        self.teacher: Teacher | None = self.objects.get("teacher")
        self._metrics_cb: Any = None

    def label(self) -> str:
        return self.settings.name or f"scienceworld_rl:{self.config.teacher}"

    def _teacher(self) -> Teacher | None:
        """The teacher, made on first use (an LLM teacher loads its model: not for evaluation)."""
        c = self.config
        if self.teacher is None and c.teacher == "gold":
            self.teacher = GoldPathTeacher()
        elif self.teacher is None and c.teacher == "llm":
            self.teacher = LLMActionTeacher(self.objects.get("llm", c.llm), top_k=c.teacher_top_k, max_queries=c.max_queries)
        return self.teacher

    def make_env(self, for_eval: bool = False) -> Callable[[], gym.Env]:
        c = self.config
        return make_scienceworld_env(
            c.task, c.variation, None if for_eval else self._teacher(), k=c.k, step_limit=c.step_limit,
            simplifications=c.simplifications, bonus=c.bonus, max_bonus=c.max_bonus,
        )

    def policy_name(self) -> str:
        return "MlpLstmPolicy" if self.config.learner == "RecurrentPPO" else "MlpPolicy"

    def learner_defaults(self) -> dict[str, Any]:
        return dict(self.DEFAULTS.get(self.config.learner, {}))

    def policy_kwargs(self) -> dict[str, Any]:
        return {"net_arch": [128, 64]}

    def callbacks(self) -> list[Any]:
        if self._teacher() is None:
            return []
        from llmguide.agents.guidance import TeacherMetricsCallback

        if self._metrics_cb is None:
            self._metrics_cb = TeacherMetricsCallback()
        return [self._metrics_cb]

    # -- what an episode means ----------------------------------------------------------------
    def success(self, terminated: bool, truncated: bool, episode_return: float, info: dict[str, Any]) -> bool:
        return float(info.get("score", 0)) >= 100

    def episode_extra(self, info: dict[str, Any]) -> dict[str, Any]:
        return score_figures(info)

    def score(self, records: list[Any]) -> float | None:
        """Mean ScienceWorld score, 0-100, of the policy alone."""
        return float(np.mean([r.extra["score"] for r in records])) if records else None

    # -- run bookkeeping ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._metrics_cb is not None:
            out.update(teacher_totals=dict(self._metrics_cb.totals.__dict__), teacher_episodes=self._metrics_cb.episodes)
        if isinstance(self.teacher, LLMActionTeacher):
            out["teacher_asked"] = self.teacher.asked  # the question budget spent stays spent
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("teacher_totals"):
            cb = self.callbacks()[0]
            for key, value in state["teacher_totals"].items():
                setattr(cb.totals, key, value)
            cb.episodes = int(state.get("teacher_episodes", 0))
        if "teacher_asked" in state:
            teacher = self._teacher()
            if isinstance(teacher, LLMActionTeacher):
                teacher.asked = int(state["teacher_asked"])

    def extras(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"teacher": c.teacher, "learner": c.learner, "task": c.task, "variation": c.variation, "k": c.k}
        if self._metrics_cb is not None:
            out["teacher_metrics"] = {**self._metrics_cb.summary(), "calls_curve": self._metrics_cb.calls_curve}
        return out
