"""Teacher questions batched across a VecEnv: one batch per step, the same results as one call per env."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from llmguide.agents.guidance import make_minigrid_env
from llmguide.agents.vec_guidance import BatchedTeacherVecEnv, answer_batch
from llmguide.teachers import SubgoalTeacher
from pydantic import Field
from stable_baselines3.common.vec_env import DummyVecEnv

ENV = "MiniGrid-DoorKey-5x5-v0"
N_ENVS = 4


class PromptChat(BaseChatModel):
    """Answers by a hash of the prompt (so call order cannot change an answer) and records
    what was asked and from where."""

    log: list[tuple[str, str]] = Field(default_factory=list)
    phase: str = "env"

    @property
    def _llm_type(self) -> str:
        return "prompt-hash-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        text = "\n".join(str(m.content) for m in messages)
        options = re.findall(r'"([^"]+)"', text.rsplit("choice is one of:", 1)[-1])
        pick = options[sum(map(ord, text)) % len(options)]
        self.log.append((self.phase, text))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=json.dumps({"choice": pick})))])


def _teacher(kind: str = "object") -> tuple[SubgoalTeacher, PromptChat]:
    llm = PromptChat(cache=False, log=[])
    return SubgoalTeacher(llm, kind, cache=True, seed=0), llm


def _rollout(batched: bool, steps: int) -> tuple[list[Any], PromptChat, Any]:
    teacher, llm = _teacher("positional")  # a cell per layout: the envs' questions differ
    thunk = make_minigrid_env(ENV, teacher, observe_subgoal=True, batched=batched)
    venv: Any = DummyVecEnv([thunk] * N_ENVS)
    if batched:
        venv = BatchedTeacherVecEnv(venv, teacher)
        real = venv.teacher.answer

        def marked(question: Any) -> Any:  # LLM calls made inside the batch are marked as such
            llm.phase = f"batch{venv.batches}"
            try:
                return real(question)
            finally:
                llm.phase = "env"

        venv.teacher.answer = marked  # type: ignore[method-assign]
    venv.seed(7)
    trace: list[Any] = [venv.reset()]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        obs, rewards, dones, infos = venv.step(rng.integers(0, 7, N_ENVS))
        trace.append((obs, rewards, dones, [(i.get("subgoal"), i.get("teacher")) for i in infos]))
    venv.close()
    return trace, llm, venv


def _same(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_batched_questions_equal_the_unbatched_path_one_batch_per_step() -> None:
    plain, plain_llm, _ = _rollout(False, 300)
    batched, llm, venv = _rollout(True, 300)
    _same(plain, batched)  # observations (subgoal vectors included), rewards, dones, subgoals, teacher counters
    assert sorted(t for _, t in plain_llm.log) == sorted(t for _, t in llm.log)  # the same questions reached the LLM
    assert venv.batches > 0 and max(venv.batch_sizes) > 1  # several envs asked in one step (the reset, at least)
    assert all(phase.startswith("batch") for phase, _ in llm.log)  # no LLM call from inside an env's step
    # LLM calls are grouped by the step's batch (a question with one candidate left needs no call),
    # and some batch carried several envs' questions to the LLM
    calls = [sum(1 for p, _ in llm.log if p == phase) for phase in {p for p, _ in llm.log}]
    assert len(calls) <= venv.batches and max(calls) > 1
    episodes = [ep for step in plain[1:] for _, ep in step[3] if ep]
    assert sum(ep["cache_hits"] for ep in episodes) > 0  # repeated situations were answered from the cache


def test_a_repeated_question_in_one_batch_is_asked_once() -> None:
    from llmguide.envs.minigrid import make_minigrid

    teacher, llm = _teacher()
    env = make_minigrid(ENV)
    _, info = env.reset(seed=3)
    q = teacher.propose(env, info, defer=True).question
    assert q is not None
    first, repeat = answer_batch(teacher, [q, q])
    assert len(llm.log) == 1
    assert first.subgoal == repeat.subgoal and first.llm_queries == 1
    assert repeat.cache_hit and repeat.llm_queries == 0
    assert teacher.stats.queries == 2 and teacher.stats.cache_hits == 1


def test_batched_and_asynchronous_exclude_each_other() -> None:
    from llmguide.agents.subgoal_method import GuidanceConfig
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="asynchronous or batched"):
        GuidanceConfig(batched=True, asynchronous=True)


def test_subgoal_method_trains_with_batched_queries(tmp_path: Any) -> None:
    from llmguide.experiment import Experiment

    teacher, llm = _teacher()
    exp = Experiment(
        ENV, teacher=teacher, total_steps=256, n_envs=N_ENVS, guidance={"batched": True, "observe_subgoal": True},
        env_kwargs={"max_steps": 16},
        learner_kwargs={"n_steps": 32, "batch_size": 32, "n_epochs": 1}, policy_kwargs={"net_arch": [16]},
        eval={"every": 0, "episodes": 2}, checkpoint_every=0, run_dir=tmp_path / "run",
    )
    tm = exp.run().metrics["extras"]["teacher_metrics"]
    assert tm["teacher_calls"] == len(llm.log) > 0  # each LLM question counted once, in the episodes' counters
    assert tm["teacher_queries"] > tm["teacher_calls"]  # the rest came from the teacher's cache


@pytest.mark.slow
def test_batched_queries_with_subproc_workers(tmp_path: Any) -> None:
    """SubprocVecEnv: questions come up through env_method, the main process's model answers them."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from llmguide.teachers.base import TeacherCache

    from llmguide.experiment import Experiment

    llm = FakeListChatModel(responses=['{"choice": "grey key"}'] * 3 + ['{"choice": "goal"}'])
    teacher = SubgoalTeacher(llm, "object", cache=TeacherCache(tmp_path / "subgoals.sqlite"))
    exp = Experiment(
        ENV, teacher=teacher, total_steps=256, n_envs=2, vec_env="subproc", guidance={"batched": True},
        env_kwargs={"max_steps": 16},
        learner_kwargs={"n_steps": 64, "batch_size": 64, "n_epochs": 1}, policy_kwargs={"net_arch": [16]},
        eval={"every": 0, "episodes": 2}, checkpoint_every=0, run_dir=tmp_path / "run",
    )
    tm = exp.run().metrics["extras"]["teacher_metrics"]
    assert teacher.stats.llm_queries == tm["teacher_calls"] > 0  # answered here, counted in the workers' episodes
    assert len(TeacherCache(tmp_path / "subgoals.sqlite")) == teacher.stats.llm_queries
