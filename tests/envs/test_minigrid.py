"""MiniGrid view: the text follows the agent's view, carried object and events."""

from __future__ import annotations

import numpy as np
import pytest
from llmguide.envs import make
from llmguide.envs.minigrid import MiniGridText
from minigrid.core.actions import Actions

DONE = Actions.done  # a no-op in DoorKey: refreshes the observation


def _place(env, pos, direction):
    base = env.unwrapped
    base.agent_pos = np.array(pos)
    base.agent_dir = direction


def _find(env, kind):
    grid = env.unwrapped.grid
    for x in range(grid.width):
        for y in range(grid.height):
            obj = grid.get(x, y)
            if obj is not None and obj.type == kind:
                return x, y
    raise AssertionError(kind)


@pytest.fixture
def doorkey():
    env = make("MiniGrid-DoorKey-8x8-v0")
    env.reset(seed=0)
    return env


def test_info_keys_and_action_names(doorkey):
    _, info = doorkey.reset(seed=0)
    assert set(MiniGridText.info_keys) <= set(info)
    assert info["action_names"] == [a.name for a in Actions]
    assert info["mission"] == "use the key to open the door and then get to the goal"
    assert info["carrying"] is None and info["events"] == []
    assert isinstance(info["agent_pos"], tuple) and all(type(p) is int for p in info["agent_pos"])
    assert info["agent_dir"] in range(4)


def test_relative_positions_left_and_right(doorkey):
    kx, ky = _find(doorkey, "key")  # seed 0: key at (4, 5), free cells west of it
    grid = doorkey.unwrapped.grid
    assert grid.get(kx - 1, ky + 1) is None and grid.get(kx - 1, ky - 2) is None
    _place(doorkey, (kx - 1, ky + 1), 3)  # facing north, key up and to the east
    *_, info = doorkey.step(DONE)
    assert "You face north" in info["text"]
    assert "yellow key 1 step ahead, 1 to the right" in info["text"]
    _place(doorkey, (kx - 1, ky - 2), 1)  # facing south: east is on the left
    *_, info = doorkey.step(DONE)
    assert "yellow key 2 steps ahead, 1 to the left" in info["text"]
    assert ("yellow key", 2, -1) in info["visible"]


def test_key_mentioned_in_view_then_carried_then_door_then_goal(doorkey):
    kx, ky = _find(doorkey, "key")
    _place(doorkey, (kx - 1, ky), 0)  # west of the key, facing east
    *_, info = doorkey.step(DONE)
    assert "Directly in front of you: yellow key" in info["text"]
    assert "carry nothing" in info["text"]

    *_, info = doorkey.step(Actions.pickup)
    assert info["events"] == ["picked up yellow key"]
    assert info["carrying"] == "yellow key"
    assert "carry a yellow key" in info["text"]
    assert "You see: " in info["text"] and "yellow key" not in info["text"].split("You see: ")[1]

    dx, dy = _find(doorkey, "door")
    _place(doorkey, (dx - 1, dy), 0)
    *_, info = doorkey.step(DONE)
    assert "Directly in front of you: locked yellow door" in info["text"]
    *_, info = doorkey.step(Actions.forward)
    assert info["events"] == ["blocked by locked yellow door"]
    *_, info = doorkey.step(Actions.toggle)
    assert info["events"] == ["unlocked yellow door", "opened yellow door"]
    assert "open yellow door" in info["text"]
    *_, info = doorkey.step(Actions.toggle)
    assert info["events"] == ["closed yellow door"]

    *_, info = doorkey.step(Actions.drop)
    assert info["events"] == [] or info["carrying"] is None  # cannot drop onto a door

    gx, gy = _find(doorkey, "goal")
    _place(doorkey, (gx, gy - 1), 1)  # above the goal, facing south
    _, reward, terminated, _, info = doorkey.step(Actions.forward)
    assert terminated and reward > 0
    assert "reached goal" in info["events"]


def test_drop_event():
    env = make("MiniGrid-DoorKey-8x8-v0")
    env.reset(seed=0)
    kx, ky = _find(env, "key")
    _place(env, (kx - 1, ky), 0)
    env.step(Actions.pickup)
    *_, info = env.step(Actions.drop)
    assert info["events"] == ["dropped yellow key"] and info["carrying"] is None


def test_cached_text_matches_fresh(doorkey):
    doorkey.action_space.seed(3)
    for _ in range(50):
        *_, info = doorkey.step(doorkey.action_space.sample())
        view = doorkey.unwrapped.gen_obs()["image"]
        doorkey._cache.clear()
        fresh, _ = doorkey.describe(view, info["carrying"], info["agent_dir"])
        assert fresh == info["text"]


def test_works_on_wrapped_image_only_obs():
    import gymnasium as gym
    from minigrid.wrappers import ImgObsWrapper

    env = MiniGridText(ImgObsWrapper(gym.make("MiniGrid-KeyCorridorS3R3-v0")))
    obs, info = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and info["text"].startswith("Mission:")
