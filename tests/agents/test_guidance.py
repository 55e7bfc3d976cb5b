"""Guidance wrappers and callback: bounded bonus, pay-once, Dict observation, SB3 learners."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.agents import (
    SUBGOAL_DIM,
    SubgoalObservation,
    SubgoalRewardWrapper,
    encode_subgoal,
    make_minigrid_env,
)
from llmguide.envs.minigrid import make_minigrid
from llmguide.teachers import OracleTeacher, Proposal, Subgoal, SubgoalTeacher, Teacher
from llmguide.teachers.base import TeacherCache


class FrontCellTeacher(Teacher):
    """Always proposes the free cell in front of the agent (so FORWARD achieves it)."""

    def __init__(self) -> None:
        super().__init__("positional")

    def _query(self, env: Any, info: dict, achieved: list) -> Proposal:
        base = env.unwrapped
        fx, fy = (int(v) for v in base.front_pos)
        cell = base.grid.get(fx, fy)
        if cell is not None and not cell.can_overlap():
            return Proposal(None)
        return Proposal(Subgoal("positional", "(ahead)", cell=(fx, fy)))


FORWARD, LEFT = 2, 0


def test_bonus_is_paid_once_per_subgoal_and_capped() -> None:
    env = SubgoalRewardWrapper(make_minigrid("MiniGrid-Empty-8x8-v0"), FrontCellTeacher(), bonus=0.1, max_bonus=0.15)
    env.reset(seed=0)
    total, paid = 0.0, []
    for action in [FORWARD] * 3:
        _, reward, _, _, info = env.step(action)
        total += reward
        paid.append(info["teacher_bonus"])
    assert paid[0] == pytest.approx(0.1) and paid[1] == pytest.approx(0.05) and paid[2] == 0.0
    assert total == pytest.approx(0.15)
    # walking back onto an already-paid cell pays nothing
    env.step(LEFT)
    env.step(LEFT)
    _, reward, *_ = env.step(FORWARD)
    assert reward == 0.0


class FarCellTeacher(Teacher):
    """Always proposes the far corner, and counts how often it is asked."""

    def __init__(self) -> None:
        super().__init__("positional", cache=None)
        self.asked = 0

    def _query(self, env: Any, info: dict, achieved: list) -> Proposal:
        self.asked += 1
        return Proposal(Subgoal("positional", "(far corner)", cell=(6, 6)))


def test_bumping_into_a_wall_does_not_ask_the_teacher_again() -> None:
    """'blocked by wall' changes nothing the answer depends on: no new question (the
    profile of a MultiRoom run showed these re-asks as a large part of the teacher's cost)."""
    teacher = FarCellTeacher()
    env = SubgoalRewardWrapper(make_minigrid("MiniGrid-Empty-8x8-v0"), teacher)
    env.reset(seed=0)
    asked = teacher.asked
    events = []
    for _ in range(8):  # the agent starts facing east: it walks up to the wall and bumps into it
        *_, info = env.step(FORWARD)
        events += info["events"]
    assert "blocked by wall" in events and info["subgoal"] == "(far corner)"
    assert teacher.asked == asked


def test_bonus_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        SubgoalRewardWrapper(make_minigrid("MiniGrid-Empty-5x5-v0"), FrontCellTeacher(), bonus=0.5, max_bonus=1.0)


def test_oracle_guided_random_rollouts_stay_bounded() -> None:
    env = make_minigrid_env("MiniGrid-DoorKey-5x5-v0", OracleTeacher("object"), bonus=0.1, max_bonus=0.3)()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    episodes, bonus = [], 0.0
    for _ in range(3000):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(7)))
        bonus += info["teacher_bonus"]
        assert reward == pytest.approx(info["task_reward"] + info["teacher_bonus"])
        if terminated or truncated:
            episodes.append(info["teacher"])
            assert info["teacher"]["bonus"] <= 0.3 + 1e-9
            assert "is_success" in info
            env.reset()
    assert episodes and sum(e["subgoals_reached"] for e in episodes) > 0 and bonus > 0


def test_subgoal_observation_and_encoding() -> None:
    env = make_minigrid_env("MiniGrid-DoorKey-5x5-v0", OracleTeacher("language"), observe_subgoal=True)()
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"image", "subgoal"} and obs["subgoal"].shape == (SUBGOAL_DIM,)
    assert env.observation_space.contains(obs)
    assert obs["subgoal"][0] == 1.0  # has a subgoal
    sg = Subgoal("language", "pick up the yellow key", obj=("key", "yellow"), verb="pick up")
    np.testing.assert_array_equal(encode_subgoal(sg), encode_subgoal(sg))
    other = Subgoal("language", "open the yellow door", obj=("door", "yellow"), verb="open")
    assert not np.allclose(encode_subgoal(sg), encode_subgoal(other))
    assert not encode_subgoal(None).any()
    plain = SubgoalObservation(make_minigrid("MiniGrid-DoorKey-5x5-v0"), None)
    obs, _ = plain.reset(seed=0)
    assert not obs["subgoal"].any()  # evaluation without a teacher: an empty channel


def test_positional_encoding_is_in_the_agent_frame() -> None:
    env = make_minigrid("MiniGrid-Empty-8x8-v0")
    env.reset(seed=0)
    base = env.unwrapped
    x, y = (int(v) for v in base.agent_pos)
    fx, fy = (int(v) for v in base.front_pos)
    vec = encode_subgoal(Subgoal("positional", "p", cell=(fx, fy)), env)
    i = 1 + 3 + 5 + 6
    assert vec[i] == pytest.approx(1 / 8) and vec[i + 1] == 0.0  # one step ahead, zero right
    del x, y


@pytest.mark.parametrize("learner", ["PPO", "A2C", "DQN", "RecurrentPPO"])
def test_learners_train_with_a_teacher(learner: str, tmp_path: Path) -> None:
    from llmguide.experiment import Experiment

    kwargs: dict[str, Any] = {"PPO": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
                              "RecurrentPPO": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
                              "A2C": {"n_steps": 8},
                              "DQN": {"learning_starts": 64, "buffer_size": 1000}}[learner]
    if learner == "RecurrentPPO":
        kwargs["policy_kwargs"] = {"net_arch": [16], "lstm_hidden_size": 16}
    exp = Experiment(
        "MiniGrid-DoorKey-5x5-v0", teacher=OracleTeacher("object"), learner=learner, total_steps=256, n_envs=2,
        guidance={"observe_subgoal": learner in ("PPO", "DQN")}, learner_kwargs=kwargs, policy_kwargs={"net_arch": [16]},
        eval={"every": 0, "episodes": 2}, checkpoint_every=0, run_dir=tmp_path / learner,
    )
    m = exp.run().metrics
    assert m["steps"] >= 256 and m["extras"]["learner"] == learner
    assert "teacher_metrics" in m["extras"] and (tmp_path / learner / "model.zip").exists()


def test_callback_logs_teacher_keys(tmp_path: Path) -> None:
    from llmguide.experiment import Experiment

    exp = Experiment(
        "MiniGrid-Empty-5x5-v0", teacher=OracleTeacher("object"), total_steps=512, n_envs=2,
        learner_kwargs={"n_steps": 64, "batch_size": 64, "n_epochs": 1}, policy_kwargs={"net_arch": [16]},
        eval={"every": 0, "episodes": 2}, checkpoint_every=0, run_dir=tmp_path,
    )
    m = exp.run().metrics
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("teacher/calls", "teacher/cache_hit_rate", "teacher/subgoals_reached", "teacher/bonus_share", "rollout/success_rate"):
        assert key in header, key
    assert m["extras"]["teacher_metrics"]["teacher_queries"] > 0 and m["extras"]["teacher_metrics"]["episodes"] > 0


@pytest.mark.slow
def test_subproc_workers_share_the_teacher_cache(tmp_path: Path) -> None:
    """Two SubprocVecEnv workers ask a (fake) LLM teacher; answers land in one SQLite cache."""
    from llmguide.experiment import Experiment

    teacher = SubgoalTeacher(FakeListChatModel(responses=['{"choice": "yellow key"}']), "object",
                             cache=TeacherCache(tmp_path / "subgoals.sqlite"))
    exp = Experiment(
        "MiniGrid-DoorKey-5x5-v0", teacher=teacher, total_steps=512, n_envs=2, vec_env="subproc",
        learner_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 1}, policy_kwargs={"net_arch": [16]},
        eval={"every": 0, "episodes": 2}, checkpoint_every=0, run_dir=tmp_path / "run",
    )
    m = exp.run().metrics
    cache = TeacherCache(tmp_path / "subgoals.sqlite")
    assert len(cache) >= 1
    tm = m["extras"]["teacher_metrics"]
    assert tm["teacher_queries"] > 0 and tm["teacher_cache_hit_rate"] > 0
    assert teacher.stats.queries == 0  # the workers asked their own copies, not this one


def test_asynchronous_teacher_never_blocks_the_env() -> None:
    """The LLM is held mid-answer: the env keeps stepping without a subgoal, then takes the answer."""
    import threading

    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from llmguide.agents.guidance import SubgoalRewardWrapper
    from llmguide.envs.minigrid import make_minigrid
    from llmguide.teachers import SubgoalTeacher

    release = threading.Event()

    class HeldModel(FakeListChatModel):
        def invoke(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not release.wait(timeout=30):  # a blocking env would deadlock here: fail instead
                raise TimeoutError("the env never went on while the LLM was busy")
            return super().invoke(*args, **kwargs)

    teacher = SubgoalTeacher(HeldModel(responses=['{"choice": "yellow key"}']), "object", option_order="layout")
    env = SubgoalRewardWrapper(make_minigrid("MiniGrid-DoorKey-5x5-v0"), teacher, asynchronous=True)
    _, info = env.reset(seed=0)
    assert info["subgoal"] is None
    for _ in range(5):  # would hang if step() waited on the model
        *_, info = env.step(2)
        assert info["subgoal"] is None
    release.set()
    import time

    for _ in range(200):  # the worker answers within a few steps once the model is free
        *_, info = env.step(0)  # turn in place: nothing happens in the world
        if info["subgoal"] is not None:
            break
        time.sleep(0.02)
    assert info["subgoal"] == "yellow key"
    assert env._ep.deferred == 1 and env._ep.steps_waiting >= 5 and env._ep.llm_queries == 1
    assert teacher.stats.llm_queries == 1 and teacher.cache.get(teacher.cache_key(env.env, [])) is not None
    env.close()


def test_asynchronous_keeps_the_current_subgoal_while_a_question_is_open() -> None:
    """A re-ask whose answer is still being computed leaves the agent its subgoal (not none);
    the answer replaces it when it comes, and a new episode starts with no old subgoal."""
    import threading
    import time

    from llmguide.teachers.base import Question

    release = threading.Event()
    first, second = Subgoal("positional", "(far corner)", cell=(6, 6)), Subgoal("positional", "(near)", cell=(2, 1))

    class SlowSecondAnswer(Teacher):
        def __init__(self) -> None:
            super().__init__("positional", cache=None)
            self.calls = 0

        def propose(self, env: Any, info: dict, achieved: Any = (), *, defer: bool = False) -> Proposal:
            self.calls += 1
            if self.calls == 1:
                return Proposal(first)
            return Proposal(None, question=Question(f"q{self.calls}", [], [second]))

        def answer(self, question: Question) -> Proposal:
            assert release.wait(timeout=30)
            return Proposal(question.candidates[0])

    env = SubgoalRewardWrapper(make_minigrid("MiniGrid-Empty-8x8-v0"), SlowSecondAnswer(), asynchronous=True)
    _, info = env.reset(seed=0)
    assert info["subgoal"] == "(far corner)"
    env._ask(info)  # what an event does: a new question, answered on the worker
    *_, info = env.step(LEFT)
    assert info["subgoal"] == "(far corner)" and env._ep.deferred == 1
    release.set()
    for _ in range(200):
        *_, info = env.step(LEFT)
        if info["subgoal"] != "(far corner)":
            break
        time.sleep(0.02)
    assert info["subgoal"] == "(near)"
    release.clear()
    _, info = env.reset(seed=1)  # its question is deferred: the last episode's subgoal is not kept
    assert info["subgoal"] is None
    release.set()
    env.close()


def test_asynchronous_with_a_scripted_teacher_answers_at_once() -> None:
    from llmguide.agents.guidance import SubgoalRewardWrapper
    from llmguide.envs.minigrid import make_minigrid
    from llmguide.teachers import OracleTeacher

    env = SubgoalRewardWrapper(make_minigrid("MiniGrid-DoorKey-5x5-v0"), OracleTeacher("object"), asynchronous=True)
    _, info = env.reset(seed=0)
    assert info["subgoal"] == "yellow key" and env._ep.deferred == 0


def test_asynchronous_guidance_trains_with_the_real_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from llmguide import Experiment

    result = Experiment(env="MiniGrid-DoorKey-5x5-v0", teacher={"type": "llm", "kind": "object"}, learner="PPO",
                        total_steps=512, seed=0, n_envs=1, guidance={"asynchronous": True},
                        eval={"every": 0, "episodes": 1}, run_dir=tmp_path / "run").run()
    teacher = result.metrics["extras"]["teacher_metrics"]
    assert teacher["teacher_deferred"] >= 1  # questions went to the worker instead of blocking the step
    assert teacher["teacher_steps_waiting"] >= 1
