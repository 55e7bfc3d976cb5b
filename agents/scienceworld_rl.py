"""RL on ScienceWorld: MaskablePPO over the valid actions, taught by a subgoal teacher.

Exports `ValidActionSlots` (a fixed ``Discrete(k)`` action space mapped to the
current top-k valid actions, a text-embedding observation and
``action_masks()`` for sb3-contrib's MaskablePPO), `ScoreReward` (score points
-> [0, 1] task reward), `ActionSubgoal`, `GoldPathTeacher` (next step of the
simulator's gold path: the oracle), `LLMActionTeacher` (an LLM picks the next
subgoal among the relevant valid actions), `make_scienceworld_env` and
`train_scienceworld_rl`.

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
    >>> metrics = train_scienceworld_rl("find-living-thing", 0, teacher="gold", total_steps=2048,
    ...                                 run_dir="runs/sw-rl")                          # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from llmguide.agents.scienceworld import ActionRanker, goal_of, gold_path
from llmguide.teachers.base import Proposal, Subgoal, Teacher

from llmguide.errors import ConfigError

__all__ = [
    "EMBED_DIM",
    "ActionSubgoal",
    "GoldPathTeacher",
    "LLMActionTeacher",
    "ScoreReward",
    "ValidActionSlots",
    "make_scienceworld_env",
    "train_scienceworld_rl",
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

        env: gym.Env = make("llmguide/ScienceWorld-v0", task=task, variation=variation, step_limit=step_limit,
                            simplifications=simplifications)
        if isinstance(teacher, GoldPathTeacher):
            teacher.prepare(env, [variation])
        env = ScoreReward(env)
        if teacher is not None:
            env = SubgoalRewardWrapper(env, teacher, bonus=bonus, max_bonus=max_bonus)
        return ValidActionSlots(env, k=k)

    return thunk


def _teacher(spec: Any, llm: str) -> Teacher | None:
    if spec is None or spec in ("none", "plain", False):
        return None
    if isinstance(spec, Teacher):
        return spec
    if spec in ("gold", "oracle"):
        return GoldPathTeacher()
    if spec in ("llm", "subgoal"):
        return LLMActionTeacher(llm)
    raise ConfigError(f"ScienceWorld teacher must be none, gold or llm; got {spec!r}.")


def train_scienceworld_rl(
    task: str = "find-living-thing",
    variation: int = 0,
    *,
    teacher: Any = "gold",
    llm: str = "smollm2",
    total_steps: int = 2048,
    k: int = 16,
    step_limit: int = 30,
    seed: int = 0,
    run_dir: str | Path = "runs/scienceworld-rl",
    eval_episodes: int = 1,
    learner_kwargs: dict[str, Any] | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train MaskablePPO (optionally taught), then evaluate it alone; writes progress.csv, model.zip.

    Returns metrics: score_mean (evaluation, no teacher), success_rate, steps_per_s,
    teacher metrics and LLM usage.
    """
    from llmguide.agents.guidance import TeacherMetricsCallback
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    from llmguide.llm import METER

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    METER.reset()
    guide = _teacher(teacher, llm)
    venv = make_vec_env(make_scienceworld_env(task, variation, guide, k=k, step_limit=step_limit), n_envs=1, seed=seed)
    callback = TeacherMetricsCallback() if guide is not None else None
    kwargs = dict(n_steps=64, batch_size=32, n_epochs=4, learning_rate=3e-4, ent_coef=0.01, gamma=0.99,
                  policy_kwargs={"net_arch": [128, 64]})
    kwargs.update(learner_kwargs or {})
    try:
        model = MaskablePPO("MlpPolicy", venv, seed=seed, verbose=0, device="cpu", **kwargs)
        model.set_logger(configure(str(run_dir), ["csv"]))
        start = time.perf_counter()
        model.learn(total_steps, callback=callback, progress_bar=progress_bar)
        train_s = time.perf_counter() - start
        model.save(run_dir / "model.zip")
    finally:
        venv.close()
    eval_env = make_vec_env(make_scienceworld_env(task, variation, None, k=k, step_limit=step_limit), n_envs=1, seed=seed + 1)
    scores = []
    try:
        for _ in range(eval_episodes):
            obs, done = eval_env.reset(), False
            while not done:
                action, _ = model.predict(obs, action_masks=get_action_masks(eval_env), deterministic=True)
                obs, _, dones, infos = eval_env.step(action)
                done = bool(dones[0])
            scores.append(max(0.0, float(infos[0].get("score", 0))))
    finally:
        eval_env.close()
    metrics: dict[str, Any] = {
        "env": "llmguide/ScienceWorld-v0", "method": "scienceworld", "agent": "maskable_ppo", "tasks": [task],
        "teacher": getattr(guide, "name", "plain"), "seed": seed, "total_steps": int(model.num_timesteps),
        "score_mean": float(np.mean(scores)), "success_rate": float(np.mean([s >= 100 for s in scores])),
        "steps_per_s": int(model.num_timesteps) / max(1e-9, train_s), "wall_s": train_s,
        "llm": METER.snapshot().as_dict(),
    }
    if callback is not None:
        metrics["teacher_metrics"] = callback.summary()
    return metrics
