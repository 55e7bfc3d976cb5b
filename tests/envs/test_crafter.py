"""Crafter adapter and view: Gymnasium compliance, seeding, text that follows the world."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from llmguide.envs import make
from llmguide.envs.crafter import CrafterEnv, CrafterText

DO, NOOP, PLACE_TABLE = 5, 0, 8


# A 32x32 world generates 4x faster than the default 64x64; the view logic is the same.
SMALL = {"area": (32, 32)}


@pytest.fixture(scope="module")
def env():
    e = make("llmguide/Crafter-v0", **SMALL)
    yield e
    e.close()


def _in_front(env):
    player = env.unwrapped.crafter_env._player
    return (player.pos[0] + player.facing[0], player.pos[1] + player.facing[1])


def test_check_env_passes():
    check_env(CrafterEnv(render_mode="rgb_array", **SMALL), skip_render_check=False)


def test_action_names_and_info(env):
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert len(info["action_names"]) == env.action_space.n == 17
    assert info["action_names"][DO] == "do"
    assert set(CrafterText.info_keys) <= set(info)
    assert len(info["achievement_counts"]) == 22 and info["achievements"] == []
    assert info["inventory"]["health"] == 9


def test_seeding(env):
    o1, a = env.reset(seed=3)
    o2, b = env.reset(seed=3)
    o3, _ = env.reset(seed=4)
    assert np.array_equal(o1, o2) and a["text"] == b["text"]
    assert not np.array_equal(o1, o3)


def test_area_option():
    e = make("llmguide/Crafter-v0", area=(32, 32), size=(48, 48))
    obs, info = e.reset(seed=0)
    assert info["semantic"].shape == (32, 32) and obs.shape == (48, 48, 3)


def test_inventory_line_changes_after_collect(env):
    _, info = env.reset(seed=0)
    assert "Inventory: empty" in info["text"]
    world = env.unwrapped.crafter_env._world
    world[_in_front(env)] = "tree"
    *_, info = env.step(NOOP)
    assert "in front of you: tree" in info["text"]
    *_, info = env.step(DO)
    assert "collected wood" in info["events"]
    assert info["inventory"]["wood"] == 1
    assert "Inventory: wood 1" in info["text"]
    assert "collect_wood" in info["achievements"] and info["achievement_counts"]["collect_wood"] == 1
    assert "Achievements: collect_wood" in info["text"]


def test_place_table_event_and_nearby_text(env):
    env.reset(seed=1)
    cenv = env.unwrapped.crafter_env
    cenv._player.inventory["wood"] = 3
    cenv._world[_in_front(env)] = "grass"
    *_, before = env.step(NOOP)
    *_, info = env.step(PLACE_TABLE)
    used = before["inventory"]["wood"] - info["inventory"]["wood"]
    assert used > 0
    assert "placed table" in info["events"] and f"used {used} wood" in info["events"]
    assert "in front of you: table" in info["text"]
    assert "table 1 away" in info["text"]


def test_nearby_matches_semantic_window(env):
    _, info = env.reset(seed=2)
    sem, (x, y) = info["semantic"], info["player_pos"]
    window = sem[max(x - 4, 0) : x + 5, max(y - 3, 0) : y + 4]
    names = env._names
    expected = {names[i] for i in np.unique(window).tolist() if i in names and names[i] != "player"}
    seen = info["text"].split("You see: ")[1].split(". You face")[0]
    listed = {part.split(" ")[0] for part in seen.split("; ")}
    assert listed == expected
