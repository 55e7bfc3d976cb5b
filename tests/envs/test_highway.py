"""highway-env view: scene text lists exactly the observed vehicles; meta-actions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from llmguide.envs import make
from llmguide.envs.highway import META_ACTIONS

from llmguide.errors import ConfigError


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@pytest.mark.parametrize("env_id", ["highway-fast-v0", "merge-v0", "intersection-v0"])
def test_text_lists_exactly_the_observed_vehicles(env_id):
    env = make(env_id)
    obs, info = env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(25):
        present = int((obs[:, 0] > 0).sum()) - 1  # row 0 is the ego vehicle
        assert len(info["vehicles"]) == present
        assert info["text"].count(" m ahead") + info["text"].count(" m behind") == present
        obs, _, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            obs, info = env.reset()


def test_relative_positions_match_observation():
    env = make("highway-fast-v0")  # Kinematics, relative x, sorted order
    obs, info = env.reset(seed=1)
    for k, v in enumerate(info["vehicles"], 1):
        if abs(v["gap_m"]) > 2:
            assert np.sign(obs[k, 1]) == np.sign(v["gap_m"])


def test_meta_actions_and_availability():
    env = make("highway-fast-v0")
    _, info = env.reset(seed=0)
    assert info["action_names"] == META_ACTIONS
    assert info["valid_actions"] == [META_ACTIONS[a] for a in info["available_actions"]]
    lane = env.unwrapped.vehicle.lane_index[2]
    assert ("LANE_LEFT" in info["valid_actions"]) == (lane > 0)
    assert "Available actions: " + ", ".join(info["valid_actions"]) in info["text"]
    assert info["ego_speed"] == pytest.approx(env.unwrapped.vehicle.speed)
    inter = make("intersection-v0")
    _, info = inter.reset(seed=0)
    assert info["action_names"] == ["SLOWER", "IDLE", "FASTER"]


def test_collision_event():
    env = make("highway-fast-v0")
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(300):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        if info["crashed"]:
            assert "collision" in info["events"]
            return
        assert "collision" not in info["events"]
        if term or trunc:
            env.reset()
    pytest.fail("no crash in 300 random steps")


def test_non_meta_action_type_is_a_clear_error():
    with pytest.raises(ConfigError, match="DiscreteMetaAction"):
        make("highway-fast-v0", config={"action": {"type": "ContinuousAction"}})
    env = make("highway-fast-v0", text=False, config={"action": {"type": "ContinuousAction"}})
    env.reset(seed=0)
