"""The SB3 side: intrinsic reward added and logged apart, count decay, NLE observations and features."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from llmguide.teachers.oni.reward import HashReward
from llmguide.teachers.oni.wrapper import MAX_GLYPH, NLEFeatures, NLEObsWrapper, ONIRewardWrapper, caption_of
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor


class ScriptedEnv(gym.Env):
    """Messages: gold, gold, wall, then the episode ends; extrinsic reward 1 per step."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)
    script = ["You see here 3 gold pieces.", "You see here 3 gold pieces.", "It's a wall."]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        msg = self.script[self.t]
        self.t += 1
        return np.zeros(1, np.float32), 1.0, self.t >= len(self.script), False, {"message": msg}


def test_intrinsic_added_with_count_decay_and_logged_apart() -> None:
    model = HashReward()
    model.update([{"text": "You see here 3 gold pieces.", "helpful": True}, {"text": "It's a wall.", "helpful": False}])
    env = ONIRewardWrapper(VecMonitor(DummyVecEnv([ScriptedEnv])), model, None, coef=0.5, beta=1.0)
    env.reset()
    rewards, infos = [], []
    for _ in range(6):  # two episodes: the per-episode count resets
        _, r, _, info = env.step(np.array([0]))
        rewards.append(float(r[0]))
        infos.append(info[0])
    assert rewards == [1.5, 1.25, 1.0, 1.5, 1.25, 1.0]  # 1 + 0.5 * 1/N, N = 1, 2; wall: 0
    assert [i["oni_intrinsic"] for i in infos[:3]] == [1.0, 0.5, 0.0]
    assert all(i["oni_extrinsic"] == 1.0 for i in infos)
    assert infos[2]["oni_episode"] == {"extrinsic": 3.0, "intrinsic": 1.5}
    assert infos[2]["episode"]["r"] == 3.0  # VecMonitor below the wrapper keeps the extrinsic return
    stats = env.stats()
    assert stats["ep_intrinsic_mean"] == 1.5 and stats["ep_extrinsic_mean"] == 3.0


def test_global_count_scope_keeps_decaying() -> None:
    model = HashReward()
    model.update([{"text": "You see here 3 gold pieces.", "helpful": True}])
    env = ONIRewardWrapper(DummyVecEnv([ScriptedEnv]), model, None, coef=1.0, beta=1.0, count_scope="global")
    env.reset()
    got = [env.step(np.array([0]))[3][0]["oni_intrinsic"] for _ in range(6)]
    assert got == pytest.approx([1.0, 0.5, 0.0, 1 / 3, 0.25, 0.0], rel=1e-6)


def test_caption_from_bytes() -> None:
    raw = np.zeros(256, np.uint8)
    raw[:5] = list(b"Hello")
    assert caption_of({"message": raw}) == "Hello" and caption_of({}) == ""


def test_nle_observation_and_features() -> None:
    import nle
    import nle.nethack

    assert nle.nethack.MAX_GLYPH == MAX_GLYPH
    env = NLEObsWrapper(gym.make("NetHackScore-v0", observation_keys=("glyphs", "blstats", "message"), max_episode_steps=20))
    obs, info = env.reset(seed=0)
    assert set(obs) == {"glyphs", "blstats", "message"} and obs["glyphs"].shape == (9, 9)
    assert env.observation_space.contains(obs) and isinstance(info["message"], str)
    obs, _, _, _, info = env.step(0)
    hero = obs["glyphs"][4, 4]  # the crop is centred on the hero's glyph
    assert nle.nethack.glyph_is_monster(int(hero))
    feats = NLEFeatures(env.observation_space, features_dim=32)
    batch = {k: torch.as_tensor(np.stack([v, v])).float() for k, v in obs.items()}
    assert feats(batch).shape == (2, 32)
    env.close()


def test_blocked_time_is_measured_inside_step() -> None:
    import time

    class WaitingModel(HashReward):
        """A reward model whose lookup waits (as on a lock held by another thread) for 20 ms."""

        def reward(self, captions):
            time.sleep(0.02)
            return super().reward(captions)

    fast = ONIRewardWrapper(VecMonitor(DummyVecEnv([ScriptedEnv])), HashReward(), None)
    slow = ONIRewardWrapper(VecMonitor(DummyVecEnv([ScriptedEnv])), WaitingModel(), None)
    for env in (fast, slow):
        env.reset()
        for _ in range(10):
            env.step(np.array([0]))
    assert 0.2 <= slow.stats()["blocked_s"] <= slow.stats()["overhead_s"]  # 10 waits of 20 ms: not running
    assert fast.stats()["blocked_s"] < 0.05 and fast.stats()["blocked_s"] <= fast.stats()["overhead_s"]
