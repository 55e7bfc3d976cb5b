"""ScienceWorld RL path: masked slots over valid actions, gold/LLM teachers through the MiniGrid wrapper."""

from __future__ import annotations

import json
import shutil
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
)

from llmguide.core import prepare, run

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java"),
]


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
def test_maskable_ppo_trains_with_the_gold_teacher_on_the_core(tmp_path: Path) -> None:
    """The one SB3 path: MaskablePPO (masks from the slots), gold teacher, evaluation without it."""
    cfg = {"method": "scienceworld_rl", "teacher": "gold", "total_steps": 32, "k": 8, "step_limit": 6,
           "learner_kwargs": {"n_steps": 16, "batch_size": 16, "n_epochs": 1}, "checkpoint_every": 0}
    metrics = run(prepare(cfg), tmp_path)
    assert (metrics.method, metrics.kind, metrics.steps) == ("scienceworld_rl", "trained", 32)
    assert metrics.score is not None and 0 <= metrics.score <= 100 and metrics.success in (0.0, 1.0)
    assert metrics.label == "scienceworld_rl:gold" and metrics.extras["learner"] == "MaskablePPO"
    assert metrics.extras["teacher_metrics"]["teacher_queries"] >= 1
    assert (tmp_path / "progress.csv").exists() and (tmp_path / "model.zip").exists()
    assert np.isfinite(metrics.steps_per_s)
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["method_state"]["teacher_totals"]["queries"] >= 1  # what a resume restores
