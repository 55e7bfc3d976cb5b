"""Subgoal guidance for SB3 learners: exports `SubgoalRewardWrapper`,
`SubgoalObservation`, `FlatImage`, `SuccessInfo`, `make_minigrid_env`,
`encode_subgoal`, `TeacherMetricsCallback`, `SUBGOAL_DIM`.

The teacher reaches the learner only through Gymnasium wrappers and an SB3
callback, so PPO, A2C, DQN and RecurrentPPO work unchanged, with
DummyVecEnv or SubprocVecEnv. Per-episode teacher counters travel in
`info["teacher"]` at the episode's last step: that is how the callback sees
teachers living in subprocesses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from llmguide.teachers.base import COLOURS, KINDS, TARGET_TYPES, Subgoal, Teacher, TeacherStats
from llmguide.teachers.minigrid_planning import minigrid_base
from stable_baselines3.common.callbacks import BaseCallback

__all__ = [
    "SUBGOAL_DIM",
    "EpisodeTeacherStats",
    "FlatImage",
    "SubgoalObservation",
    "SubgoalRewardWrapper",
    "SuccessInfo",
    "TeacherMetricsCallback",
    "encode_subgoal",
    "make_minigrid_env",
]

_HASH_DIM = 16
#: has-subgoal flag, kind (3), object type (5), colour (6), target (ahead, right), hashed words (16)
SUBGOAL_DIM = 1 + len(KINDS) + len(TARGET_TYPES) + len(COLOURS) + 2 + _HASH_DIM


def _word_slot(word: str) -> tuple[int, float]:
    digest = hashlib.md5(word.encode()).digest()
    return digest[0] % _HASH_DIM, 1.0 if digest[1] & 1 else -1.0


def encode_subgoal(subgoal: Subgoal | None, env: gym.Env | None = None) -> np.ndarray:
    """Fixed-size float vector of a subgoal, for the policy's observation.

    The language channel is a deterministic hashed bag of words (no model,
    stable across processes), not a sentence embedding: cheap, and enough to
    tell this task family's instructions apart. Positional targets are given
    in the agent's frame (steps ahead, steps right), scaled by the grid size.
    """
    vec = np.zeros(SUBGOAL_DIM, dtype=np.float32)
    if subgoal is None:
        return vec
    vec[0] = 1.0
    i = 1
    vec[i + KINDS.index(subgoal.kind)] = 1.0
    i += len(KINDS)
    if subgoal.obj is not None:
        kind, colour = subgoal.obj
        vec[i + TARGET_TYPES.index(kind)] = 1.0
        if colour in COLOURS:
            vec[i + len(TARGET_TYPES) + COLOURS.index(colour)] = 1.0
    i += len(TARGET_TYPES) + len(COLOURS)
    base = minigrid_base(env) if env is not None else None
    if subgoal.cell is not None and base is not None:
        dx = subgoal.cell[0] - int(base.agent_pos[0])
        dy = subgoal.cell[1] - int(base.agent_pos[1])
        ahead, right = [(dx, dy), (dy, -dx), (-dx, -dy), (-dy, dx)][int(base.agent_dir)]
        size = float(max(base.grid.width, base.grid.height))
        vec[i], vec[i + 1] = ahead / size, right / size
    i += 2
    for word in subgoal.text.lower().split():
        slot, sign = _word_slot(word)
        vec[i + slot] += sign
    norm = np.linalg.norm(vec[i:])
    if norm > 0:
        vec[i:] /= norm
    return vec


class FlatImage(gym.ObservationWrapper):
    """MiniGrid's 7x7x3 symbolic view as a flat float vector in [0, 1].

    Why: SB3 would take the uint8 view for a picture and divide by 255,
    squashing object ids 0..10 to ~0; an MLP learns faster on per-channel
    scaled ids (type/10, colour/5, state/2).
    """

    _SCALE = np.array([10.0, 5.0, 2.0], dtype=np.float32)

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        image = space["image"] if isinstance(space, spaces.Dict) else space
        self._shape = image.shape
        self.observation_space = spaces.Box(0.0, 1.0, (int(np.prod(image.shape)),), dtype=np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        img = observation["image"] if isinstance(observation, dict) else observation
        return (np.asarray(img, dtype=np.float32) / self._SCALE).reshape(-1)


class SuccessInfo(gym.Wrapper):
    """Adds `info["is_success"]` at episode end (MiniGrid pays > 0 only on success),
    so SB3 logs `rollout/success_rate` for plain and guided runs alike."""

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            task = info.get("task_reward", reward)
            info["is_success"] = bool(terminated and float(task) > 0)
        return obs, reward, terminated, truncated, info


@dataclass
class EpisodeTeacherStats(TeacherStats):
    """Teacher counters of one episode (sent in `info["teacher"]`): the teacher's own
    counters plus what the wrapper sees."""

    no_subgoal: int = 0
    subgoals_reached: int = 0
    bonus: float = 0.0
    task_return: float = 0.0
    #: proposals compared with the oracle's next subgoal for the same state, and how many matched it
    oracle_compared: int = 0
    oracle_agreed: int = 0
    #: asynchronous mode: questions sent to the worker, env steps taken while one was open
    #: (the learner went on with the subgoal it had, if any, instead of waiting), answers that came
    #: too late to use
    deferred: int = 0
    steps_waiting: int = 0
    late_answers: int = 0


def _changes_the_state(events: Any) -> bool:
    """Whether a step's events may change the teacher's answer: bumping into something
    ("blocked by wall") leaves the world, the agent's cell and what it carries as they were."""
    return any(not str(e).startswith("blocked by ") for e in events or ())


class SubgoalRewardWrapper(gym.Wrapper):
    """Pays a bounded bonus once per achieved subgoal and asks for the next.

    Needs a language view below it (`info["events"]`, `info["agent_pos"]`:
    `llmguide.envs.minigrid.MiniGridText`). The bonus per subgoal is `bonus`;
    the total per episode never exceeds `max_bonus` (< 1, MiniGrid's best task
    reward), and a subgoal already paid this episode pays nothing again. After
    an event (key picked up, door opened; not "blocked by ...", which changes
    nothing) the teacher is asked again, so a stale subgoal is replaced; the
    teacher's cache makes that cheap.

    ``asynchronous=True``: the learner never waits on the LLM. A question the
    teacher's cache cannot answer goes to a worker thread (with what the
    prompt needs read from the env at that moment); the env steps on with the
    subgoal it had (none at an episode's start or right after reaching one)
    until the answer comes, then the answer is used if it is still this
    episode's latest question (else it is only cached). Counted per episode:
    ``deferred``, ``steps_waiting``, ``late_answers``.

    ``batched=True``: an uncached question is held (`take_question`) for a
    VecEnv-level wrapper (`llmguide.agents.vec_guidance.BatchedTeacherVecEnv`)
    that answers every env's question of this step in one batch and hands
    each answer back (`receive`) before the learner sees the step.

    Example:
        >>> from llmguide.envs.minigrid import make_minigrid
        >>> from llmguide.teachers import OracleTeacher
        >>> env = SubgoalRewardWrapper(make_minigrid("MiniGrid-DoorKey-5x5-v0"), OracleTeacher("object"))
        >>> _, info = env.reset(seed=0)
        >>> info["subgoal"]
        'yellow key'
    """

    def __init__(
        self, env: gym.Env, teacher: Teacher, *, bonus: float = 0.1, max_bonus: float = 0.3, asynchronous: bool = False,
        batched: bool = False,
    ) -> None:
        super().__init__(env)
        if not 0 <= bonus <= max_bonus < 1:
            raise ValueError(f"need 0 <= bonus <= max_bonus < 1, got bonus={bonus}, max_bonus={max_bonus}")
        if asynchronous and batched:
            raise ValueError("choose asynchronous or batched teacher queries, not both")
        self.teacher = teacher
        self.bonus = float(bonus)
        self.max_bonus = float(max_bonus)
        self.current: Subgoal | None = None
        self.achieved: list[Subgoal] = []
        self._paid = 0.0
        self._ep = EpisodeTeacherStats()
        self._checked = False
        #: on MiniGrid, the oracle that a teacher's proposals are scored against (see `_apply`)
        self._reference: Teacher | None = None
        #: asynchronous: a teacher's LLM question is answered on a worker thread while the env goes on
        self.asynchronous = asynchronous
        self._worker: Any = None
        self._pending: Any = None  # (Future, episode number, situation key) of the open question
        self._outstanding: list[Any] = []  # every question not yet collected (its cost still to count)
        self._episode = 0
        #: batched: the question held for the VecEnv wrapper, with the step's info it was asked at
        self.batched = batched
        self._held: tuple[Any, dict[str, Any]] | None = None

    def _ask(self, info: dict[str, Any]) -> None:
        proposal = self.teacher.propose(self.env, info, self.achieved, defer=self.asynchronous or self.batched)
        if proposal.question is not None and self.batched:
            self._held, self.current = (proposal.question, info), None
            return
        if proposal.question is not None:
            self._defer(proposal)
            return
        self._use(proposal, info)

    def take_question(self) -> Any:
        """Batched mode: the question this env asked in its last step or reset (None: none),
        for the VecEnv wrapper to answer with the other envs' questions."""
        return self._held[0] if self._held is not None else None

    def receive(self, proposal: Any) -> dict[str, Any]:
        """Batched mode: the answer to `take_question`'s question, used as if it had come at
        once; returns what the step's outputs above this wrapper show of it (the subgoal's
        text and its `encode_subgoal` vector), for the VecEnv wrapper to patch in."""
        if self._held is None:
            raise RuntimeError("receive() without a held question: call take_question() first")
        (_, info), self._held = self._held, None
        self._use(proposal, info)
        return {"subgoal": self.current.text if self.current else None, "vector": encode_subgoal(self.current, self.env)}

    def _defer(self, proposal: Any) -> None:
        """Send the question to the worker; until its answer comes the agent keeps the subgoal it
        had (a stale hint beats none; the answer replaces it)."""
        from concurrent.futures import ThreadPoolExecutor

        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teacher")
        question = proposal.question
        if self._pending is not None and self._pending[1] == self._episode:
            if question.key is not None and self._pending[2] == question.key:
                return  # the same situation is already being asked about
            self._ep.late_answers += 1  # superseded before it was answered: the situation moved on
            # (a question still open from an earlier episode was counted late when that episode ended)
        future = self._worker.submit(self.teacher.answer, question)
        self._outstanding.append(future)
        self._pending = (future, self._episode, question.key)
        self._ep.deferred += 1

    def _collect(self, info: dict[str, Any]) -> None:
        """Take answers that have come (never waits): each one's cost is counted, and the open
        question's answer, if still of this episode, becomes the subgoal."""
        for future in [f for f in self._outstanding if f.done()]:
            self._outstanding.remove(future)
            proposal = future.result()  # the teacher never raises on an LLM answer; a bug should surface
            self._ep.add(proposal)
            if self._pending is not None and self._pending[0] is future:
                episode, self._pending = self._pending[1], None
                if episode == self._episode:
                    self._apply(proposal, info)
        self._ep.steps_waiting += int(self._pending is not None)

    def _use(self, proposal: Any, info: dict[str, Any]) -> None:
        self._ep.add(proposal)
        self._apply(proposal, info)

    def _apply(self, proposal: Any, info: dict[str, Any]) -> None:
        self._ep.no_subgoal += int(proposal.subgoal is None)
        if self._reference is not None and proposal.subgoal is not None:
            # scored against the oracle's plan, never taught from it
            right = self._reference.propose(self.env, info, self.achieved).subgoal
            if right is not None:
                self._ep.oracle_compared += 1
                self._ep.oracle_agreed += int(right.key == proposal.subgoal.key)
        done = {s.key for s in self.achieved}
        self.current = proposal.subgoal if proposal.subgoal is None or proposal.subgoal.key not in done else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        if not self._checked:
            self.teacher.check_env(self.env)
            self._checked = True
            from llmguide.teachers.oracle import OracleTeacher

            if not isinstance(self.teacher, OracleTeacher) and minigrid_base(self.env) is not None:
                self._reference = OracleTeacher(self.teacher.kind, cache=None)
        self._episode += 1  # an answer to an earlier episode's question is cached, not used
        self.achieved, self._paid, self._ep = [], 0.0, EpisodeTeacherStats()
        self._held = None  # a question of the last episode no VecEnv wrapper collected
        self.current = None  # the last episode's subgoal means nothing in this layout
        self._ask(info)
        info["subgoal"] = self.current.text if self.current else None
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._collect(info)
        paid = 0.0
        sg = self.current
        if sg is not None and sg.achieved(info, self.env):
            paid = min(self.bonus, self.max_bonus - self._paid)
            self._paid += paid
            self.achieved.append(sg)
            self._ep.subgoals_reached += 1
            self.current = None
            if not (terminated or truncated):
                self._ask(info)
        elif _changes_the_state(info.get("events")) and not (terminated or truncated):
            self._ask(info)
        self._ep.bonus += paid
        self._ep.task_return += float(reward)
        info["task_reward"] = float(reward)
        info["teacher_bonus"] = paid
        info["subgoal"] = self.current.text if self.current else None
        if terminated or truncated:
            self._ep.late_answers += int(self._pending is not None)
            info["teacher"] = self._ep.__dict__.copy()
        return obs, float(reward) + paid, terminated, truncated, info

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            self._worker = None
        super().close()


class SubgoalObservation(gym.ObservationWrapper):
    """Dict observation {"image": flat view, "subgoal": `encode_subgoal` vector}.

    `guide` is the `SubgoalRewardWrapper` below (None: always "no subgoal",
    which is what the policy sees at evaluation, without a teacher).
    """

    def __init__(self, env: gym.Env, guide: SubgoalRewardWrapper | None) -> None:
        super().__init__(env)
        self.guide = guide
        self._flat = FlatImage(env)
        self.observation_space = spaces.Dict(
            {
                "image": self._flat.observation_space,
                "subgoal": spaces.Box(-1.0, 1.0, (SUBGOAL_DIM,), dtype=np.float32),
            }
        )

    def observation(self, observation: Any) -> dict[str, np.ndarray]:
        current = self.guide.current if self.guide is not None else None
        return {"image": self._flat.observation(observation), "subgoal": encode_subgoal(current, self.env)}


def make_minigrid_env(
    env_id: str,
    teacher: Teacher | None = None,
    *,
    observe_subgoal: bool = False,
    bonus: float = 0.1,
    max_bonus: float = 0.3,
    env_kwargs: dict[str, Any] | None = None,
    asynchronous: bool = False,
    batched: bool = False,
    hindsight: str | Path | bool | None = None,
) -> Callable[[], gym.Env]:
    """A picklable thunk building one env for SB3's `make_vec_env`.

    No teacher: the plain env (no language view: plain runs pay nothing for
    guidance). With a teacher: language view -> (hindsight recorder) -> reward
    wrapper -> observation. ``hindsight``: a JSONL path the recorder appends the
    successful episodes' examples to (True: the situation only, nothing written).
    """

    def thunk() -> gym.Env:
        from llmguide.envs.minigrid import make_minigrid

        env = make_minigrid(env_id, text=teacher is not None, **(env_kwargs or {}))
        guide = None
        if teacher is not None and hindsight:
            from llmguide.agents.hindsight import HindsightRecorder

            env = HindsightRecorder(env, None if hindsight is True else hindsight)
        if teacher is not None:
            env = guide = SubgoalRewardWrapper(
                env, teacher, bonus=bonus, max_bonus=max_bonus, asynchronous=asynchronous, batched=batched
            )
        env = SubgoalObservation(env, guide) if observe_subgoal else FlatImage(env)
        return SuccessInfo(env)

    return thunk


class TeacherMetricsCallback(BaseCallback):
    """Logs teacher cost and effect under `teacher/*` from episodes' `info["teacher"]`.

    Keys: `teacher/calls` (LLM questions, cumulative), `teacher/queries`,
    `teacher/cache_hit_rate`, `teacher/generations` (model runs past the
    response cache), `teacher/invalid`, `teacher/subgoals_reached` (mean per
    episode), `teacher/bonus_share` (bonus / total return), and
    `teacher/calls_per_1k_steps`, `teacher/oracle_agreement` (share of proposals equal to the
    oracle's next subgoal in the same state). `totals` holds the cumulative counters.
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.totals = EpisodeTeacherStats()
        self.episodes = 0
        self._window: list[dict[str, Any]] = []
        #: (env steps, cumulative LLM questions) at each rollout end: the cost curve
        self.calls_curve: list[tuple[int, int]] = []

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            ep = info.get("teacher")
            if ep is None:
                continue
            self.episodes += 1
            self._window.append(ep)
            for key, value in ep.items():
                setattr(self.totals, key, getattr(self.totals, key) + value)
        return True

    def summary(self) -> dict[str, float]:
        """Cumulative figures for the run's metrics."""
        t = self.totals
        steps = max(1, self.num_timesteps)
        total_return = t.bonus + t.task_return
        return {
            "teacher_calls": t.llm_queries,
            "teacher_queries": t.queries,
            "teacher_cache_hit_rate": t.cache_hits / t.queries if t.queries else 0.0,
            "teacher_generations": t.llm_generations,
            "teacher_invalid": t.invalid,
            "teacher_budget_skips": t.budget_skips,
            "teacher_no_subgoal": t.no_subgoal,
            "teacher_subgoals_per_episode": t.subgoals_reached / self.episodes if self.episodes else 0.0,
            "teacher_bonus_share": t.bonus / total_return if total_return > 0 else 0.0,
            "teacher_oracle_agreement": t.oracle_agreed / t.oracle_compared if t.oracle_compared else None,
            "teacher_deferred": t.deferred,
            "teacher_steps_waiting": t.steps_waiting,
            "teacher_late_answers": t.late_answers,
            "llm_calls_per_1k_steps": 1000.0 * t.llm_queries / steps,
            "episodes": self.episodes,
        }

    def _on_rollout_end(self) -> None:
        s = self.summary()
        self.calls_curve.append((int(self.num_timesteps), int(s["teacher_calls"])))
        window = self._window
        self._window = []
        logger = self.logger
        logger.record("teacher/calls", s["teacher_calls"])
        logger.record("teacher/queries", s["teacher_queries"])
        logger.record("teacher/cache_hit_rate", s["teacher_cache_hit_rate"])
        logger.record("teacher/generations", s["teacher_generations"])
        logger.record("teacher/invalid", s["teacher_invalid"])
        logger.record("teacher/calls_per_1k_steps", s["llm_calls_per_1k_steps"])
        if s["teacher_oracle_agreement"] is not None:
            logger.record("teacher/oracle_agreement", s["teacher_oracle_agreement"])
        if window:
            bonus = sum(e["bonus"] for e in window)
            ret = bonus + sum(e["task_return"] for e in window)
            logger.record("teacher/subgoals_reached", float(np.mean([e["subgoals_reached"] for e in window])))
            logger.record("teacher/bonus_share", bonus / ret if ret > 0 else 0.0)
