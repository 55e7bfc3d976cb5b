"""ScienceWorld RL path: masked slots over valid actions, gold/LLM teachers through the MiniGrid wrapper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from llmguide.agents.guidance import SubgoalRewardWrapper
from llmguide.agents.scienceworld_rl import (
    EMBED_DIM,
    ActionSubgoal,
    GoldPathTeacher,
    LLMActionTeacher,
    ScoreReward,
    ValidActionSlots,
    train_scienceworld_rl,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def env():
    from llmguide.envs import make

    env = make("llmguide/ScienceWorld-v0", task="find-living-thing", variation=0, step_limit=40)
    yield env
    env.close()


def test_slots_map_to_valid_actions_with_masks(env: Any) -> None:
    slots = ValidActionSlots(ScoreReward(env), k=6)
    obs, info = slots.reset(seed=0)
    assert obs.shape == (7 * EMBED_DIM,) and slots.observation_space.contains(obs)
    assert len(info["slots"]) == 6 and set(info["slots"]) <= set(info["valid_actions"])
    assert slots.action_masks().tolist() == [True] * 6
    for slot in (0, 5, 2):
        expected = slots.slots[slot]
        obs, reward, terminated, truncated, info = slots.step(slot)
        assert info["command"] == expected and not info["invalid_index"]
        assert abs(float(reward)) <= 1.0  # score points scaled to [0, 1]
        if terminated or truncated:
            break


def test_gold_teacher_pays_through_the_minigrid_wrapper(env: Any) -> None:
    teacher = GoldPathTeacher()
    teacher.prepare(env, [0])
    path = teacher.paths[("find-living-thing", 0)]
    assert len(path) >= 2
    wrapped = SubgoalRewardWrapper(ScoreReward(env), teacher, bonus=0.1, max_bonus=0.3)
    _, info = wrapped.reset(options={"variation": 0})
    first = info["subgoal"]
    assert first in path and first in info["valid_actions"]
    _, reward, _, _, info = wrapped.step(info["valid_actions"].index(first))
    assert info["teacher_bonus"] == pytest.approx(0.1)
    assert float(reward) == pytest.approx(0.1 + info["task_reward"])
    assert info["subgoal"] != first  # paid once, the next gold step follows
    sg = ActionSubgoal("language", "open door")
    assert sg.achieved({"command": "open door"}) and not sg.achieved({"command": "look around"})
    assert sg.key == "action:open door"


def test_llm_teacher_proposes_a_valid_action(env: Any) -> None:
    teacher = LLMActionTeacher(FakeListChatModel(responses=["nonsense"] * 10), top_k=5, max_queries=1)
    _, info = env.reset(seed=0)
    proposal = teacher.propose(env, info)
    assert proposal.subgoal is not None and proposal.subgoal.text in info["valid_actions"]
    assert proposal.llm_queries == 1
    assert teacher.propose(env, info).budget_skip  # over its budget: no more LLM questions


@pytest.mark.slow
def test_maskable_ppo_trains_with_the_gold_teacher(tmp_path: Path) -> None:
    metrics = train_scienceworld_rl("find-living-thing", 0, teacher="gold", total_steps=32, k=8, step_limit=6,
                                    run_dir=tmp_path, learner_kwargs={"n_steps": 16, "batch_size": 16, "n_epochs": 1})
    assert metrics["total_steps"] == 32 and 0 <= metrics["score_mean"] <= 100
    assert metrics["teacher_metrics"]["teacher_queries"] >= 1
    assert (tmp_path / "progress.csv").exists() and (tmp_path / "model.zip").exists()
    assert np.isfinite(metrics["steps_per_s"])
