"""Learner side: Dict observation + bonus wrapper, the feature extractor, the callback
with a scripted guide (no model downloads, fake embeddings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.agents.rladapter import (
    CrafterSubgoalObs,
    RLAdapterCallback,
    SubgoalImageExtractor,
    make_crafter_subgoal_env,
)
from llmguide.teachers.rladapter import SUBGOALS, RLAdapterTeacher

from llmguide.errors import ConfigError


class Counting(gym.Env):
    """Unlocks `collect_wood` on action 1 and `place_table` on action 2."""

    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: Any = None):
        super().reset(seed=seed)
        self.counts = {"collect_wood": 0, "place_table": 0}
        return np.zeros((8, 8, 3), np.uint8), {"achievement_counts": dict(self.counts)}

    def step(self, action: Any):
        if action == 1:
            self.counts["collect_wood"] += 1
        if action == 2:
            self.counts["place_table"] += 1
        return np.zeros((8, 8, 3), np.uint8), float(action > 0), False, False, {"achievement_counts": dict(self.counts)}


def test_wrapper_observation_and_bonus_once_per_subgoal() -> None:
    env = CrafterSubgoalObs(Counting(), dim=4, bonus=0.5)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"image", "subgoal"} and not obs["subgoal"].any() and info["subgoal"] is None
    env.set_subgoal("collect wood", [0.5, 0.5, 0.5, 0.5], "collect_wood")
    obs, r, *_ , info = env.step(2)  # wrong achievement: task reward only
    assert r == 1.0 and info["subgoal_bonus"] == 0.0 and info["unlocked"] == ["place_table"]
    obs, r, *_, info = env.step(1)
    assert r == 1.5 and info["subgoal_bonus"] == 0.5 and info["task_reward"] == 1.0
    assert np.allclose(obs["subgoal"], 0.5) and info["subgoal"] == "collect wood"
    _, r, *_ = env.step(1)  # paid once per subgoal
    assert r == 1.0
    with pytest.raises(ConfigError, match="dims"):
        env.set_subgoal("x", [1.0, 0.0], None)
    off = CrafterSubgoalObs(Counting(), dim=4)  # default: no bonus
    off.reset(seed=0)
    off.set_subgoal("collect wood", np.ones(4), "collect_wood")
    assert off.step(1)[1] == 1.0


def test_extractor_combines_image_and_subgoal() -> None:
    import torch

    space = gym.spaces.Dict(
        {"image": gym.spaces.Box(0, 255, (3, 64, 64), np.uint8), "subgoal": gym.spaces.Box(-1, 1, (384,), np.float32)}
    )
    ext = SubgoalImageExtractor(space, channels=(4, 8, 8), image_features=32, subgoal_features=8)
    assert ext.features_dim == 40
    img = torch.zeros(2, 3, 64, 64)
    a = ext({"image": img, "subgoal": torch.zeros(2, 384)})
    b = ext({"image": img, "subgoal": torch.ones(2, 384) * 0.1})
    assert a.shape == (2, 40) and not torch.allclose(a, b)
    only = SubgoalImageExtractor(gym.spaces.Dict({"image": space["image"]}), channels=(4, 8, 8), image_features=32)
    assert only.features_dim == 32


def test_callback_with_scripted_guide_sets_subgoals(tmp_path: Path) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    guide = FakeListChatModel(responses=['{"choice": "collect wood"}', '{"choice": "place table"}'])
    teacher = RLAdapterTeacher(adapter=None, llm=guide, every=16, run_dir=tmp_path,
                               embeddings=DeterministicFakeEmbedding(size=384))
    venv = make_vec_env(make_crafter_subgoal_env(env_kwargs={"area": (32, 32)}), n_envs=2, seed=0)
    model = PPO("MultiInputPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"features_extractor_class": SubgoalImageExtractor,
                               "features_extractor_kwargs": {"channels": (4, 8, 8), "image_features": 16,
                                                             "subgoal_features": 8},
                               "net_arch": [8]})
    model.set_logger(configure(str(tmp_path), ["csv"]))
    cb = RLAdapterCallback(teacher, log_path=tmp_path / "subgoals.jsonl")
    model.learn(total_timesteps=64, callback=cb)
    # 2 envs x 32 steps, asked at steps 1 and 17: four queries; every record closed with an
    # outcome (two by the second query, two at the end of training)
    assert teacher.queries == 4
    assert {row["subgoal"] for row in cb.subgoal_log} == {"collect wood", "place table"}
    assert (tmp_path / "subgoals.jsonl").read_text().count("\n") == 4  # written as they are given
    assert len(teacher.buffer) == 4 and all(r["outcome"]["score"] is not None for r in teacher.buffer.records())
    assert (tmp_path / "rladapter_buffer.jsonl").read_text().count("\n") == 4
    subgoals = venv.env_method("get_wrapper_attr", "subgoal")
    assert set(subgoals) <= set(SUBGOALS.values())
    assert np.abs(model._last_obs["subgoal"]).sum() > 0  # the policy sees the embedded subgoal
    header = (tmp_path / "progress.csv").read_text().splitlines()[0]
    assert "rladapter/queries" in header and "rladapter/comprehension" in header
    summary = teacher.summary()
    assert summary["stages_done"] == 0 and set(summary["comprehension_by_stage"]) == {"0"}


def test_teacher_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="every"):
        RLAdapterTeacher(adapter=None, every=0)
    with pytest.raises(ConfigError, match="mode"):
        RLAdapterTeacher(adapter=None, mode="vote")
