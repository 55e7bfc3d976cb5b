"""Teacher queries batched across a VecEnv: exports `BatchedTeacherVecEnv`, `answer_batch`.

Why: with one teacher call per env, N envs that reach a new situation in the
same step cost N round-trips to the LLM, one after the other. Here the
per-env `SubgoalRewardWrapper(batched=True)` holds its uncached question
(`take_question`); after each `step_wait`/`reset` this VecEnv wrapper takes
every env's question, answers them in one LangChain ``Runnable.batch`` call
(identical questions once), hands each answer back (`receive`) and patches
the step's observations and infos, so the learner sees what the unbatched
path would have shown: the same subgoals, bonuses and teacher counters.

With DummyVecEnv the hand-off is a method call per env. With SubprocVecEnv
it is SB3's ``env_method`` round-trip: one pipe message per env to collect
the questions each step, one per asking env to hand the answer back; the
questions (messages and candidate subgoals) and answers are pickled, and the
LLM runs in the main process (one model for all envs, instead of one per worker).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from llmguide.teachers.base import Proposal, Question, Teacher
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

__all__ = ["BatchedTeacherVecEnv", "answer_batch"]


def _identity(question: Question) -> Any:
    """Questions with the same identity get the same answer (temperature 0)."""
    if question.key is not None:
        return question.key
    return (repr(question.messages), tuple(c.key for c in question.candidates))


def answer_batch(teacher: Teacher, questions: list[Question], *, concurrency: int = 1) -> list[Proposal]:
    """Answer ``questions`` in one ``Runnable.batch`` call; a repeated question is asked once.

    A repeat gets the first one's subgoal as a teacher-cache hit, as it would
    have had unbatched (the first answer cached, then read). ``concurrency``:
    questions in flight at once. 1 (default) keeps the order and the
    per-question generation counts exact; more helps only a backend that
    serves requests in parallel (vLLM), and then ``teacher/generations`` may be
    attributed to the wrong question of the batch (the meter's totals stay right).
    """
    from langchain_core.runnables import RunnableLambda

    first: dict[Any, int] = {}
    unique: list[Question] = []
    for q in questions:
        if _identity(q) not in first:
            first[_identity(q)] = len(unique)
            unique.append(q)
    if len(unique) > 1 and concurrency > 1 and getattr(teacher, "uses_llm", False):
        _ = teacher.llm  # type: ignore[attr-defined]  # loaded once, not by racing threads
    answers: list[Proposal] = RunnableLambda(teacher.answer).batch(unique, config={"max_concurrency": concurrency})
    out: list[Proposal] = []
    used: set[int] = set()
    for q in questions:
        j = first[_identity(q)]
        if j not in used:
            used.add(j)
            out.append(answers[j])
            continue
        repeat = Proposal(answers[j].subgoal, cache_hit=not answers[j].budget_skip, budget_skip=answers[j].budget_skip)
        teacher.stats.add(repeat)
        out.append(repeat)
    return out


class BatchedTeacherVecEnv(VecEnvWrapper):
    """Answers the teacher questions of all envs of a step in one batch (see the module docstring).

    Needs envs built with ``make_minigrid_env(..., batched=True)``. Counts, for
    benchmarks: ``batches`` (steps where some env asked), ``batch_sizes``,
    ``teacher_seconds`` (time in the batched calls).

    Example:
        >>> from stable_baselines3.common.vec_env import DummyVecEnv
        >>> from llmguide.agents.guidance import make_minigrid_env
        >>> from llmguide.teachers import OracleTeacher
        >>> teacher = OracleTeacher("object")
        >>> venv = BatchedTeacherVecEnv(DummyVecEnv([make_minigrid_env("MiniGrid-DoorKey-5x5-v0", teacher,
        ...                                                            batched=True)] * 2), teacher)
        >>> venv.reset().shape
        (2, 147)
    """

    def __init__(self, venv: VecEnv, teacher: Teacher, *, concurrency: int = 1) -> None:
        super().__init__(venv)
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.teacher = teacher
        self.concurrency = int(concurrency)
        self.batches = 0
        self.batch_sizes: list[int] = []
        self.teacher_seconds = 0.0

    def reset(self) -> Any:
        return self._answer(self.venv.reset(), None, None)

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        return self._answer(obs, infos, dones), rewards, dones, infos

    def _answer(self, obs: Any, infos: list[dict[str, Any]] | None, dones: np.ndarray | None) -> Any:
        questions = self.venv.env_method("take_question")
        asking = [i for i, q in enumerate(questions) if q is not None]
        if not asking:
            return obs
        start = time.perf_counter()
        proposals = answer_batch(self.teacher, [questions[i] for i in asking], concurrency=self.concurrency)
        self.teacher_seconds += time.perf_counter() - start
        self.batches += 1
        self.batch_sizes.append(len(asking))
        for i, proposal in zip(asking, proposals):
            shown = self.venv.env_method("receive", proposal, indices=[i])[0]
            if isinstance(obs, dict) and "subgoal" in obs:
                obs["subgoal"][i] = shown["vector"]
            if infos is not None and dones is not None and not dones[i]:
                infos[i]["subgoal"] = shown["subgoal"]  # after an episode's end it was asked by the reset
        return obs
