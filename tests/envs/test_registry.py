"""Registry: every curated id runs with a text view; unknown ids fail clearly; imports stay lazy."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import pytest
from llmguide.envs import ENVS, family_of, list_envs, make

from llmguide.errors import EnvNotFoundError

# Simulation-heavy highway ids get a lighter traffic config in the 200-step
# smoke run (the text logic is the same); the default configs run in the
# highway tests and the benchmark.
_LIGHT = {
    "highway-v0": {"config": {"vehicles_count": 15, "simulation_frequency": 5}},
    "intersection-v0": {"config": {"simulation_frequency": 5}},
}
_SMOKE = [e for e in ENVS if e.family != "scienceworld"]  # ScienceWorld: its own module


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def test_list_envs_shape():
    rows = list_envs()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) >= 10
    assert all(i.startswith("llmguide/") for i in ids)
    assert {r["family"] for r in rows} == {"minigrid", "crafter", "nethack", "scienceworld", "highway"}
    assert all(isinstance(r["installed"], bool) and r["description"] for r in rows)


@pytest.mark.parametrize("spec", _SMOKE, ids=lambda e: e.base_id)
def test_every_id_200_random_steps(spec):
    env = make(spec.id, **_LIGHT.get(spec.base_id, {}))
    try:
        obs, info = env.reset(seed=0)
        assert isinstance(info["text"], str) and info["text"].strip()
        assert len(info["action_names"]) == env.action_space.n
        assert all(isinstance(n, str) and n for n in info["action_names"])
        assert obs in env.observation_space
        env.action_space.seed(0)
        for _ in range(200):
            obs, _, terminated, truncated, info = env.step(env.action_space.sample())
            assert info["text"].strip()
            assert isinstance(info["events"], list)
            if terminated or truncated:
                obs, info = env.reset()
                assert info["text"].strip()
    finally:
        env.close()


@pytest.mark.parametrize("spec", [e for e in _SMOKE if e.base_id != "NetHackChallenge-v0"], ids=lambda e: e.base_id)
def test_seeded_resets_give_identical_text(spec):
    env = make(spec.id, **_LIGHT.get(spec.base_id, {}))
    try:
        _, a = env.reset(seed=7)
        env.step(env.action_space.sample())
        _, b = env.reset(seed=7)
        assert a["text"] == b["text"]
    finally:
        env.close()


def test_text_false_returns_bare_env():
    env = make("MiniGrid-DoorKey-5x5-v0", text=False)
    _, info = env.reset(seed=0)
    assert "text" not in info
    assert "text" in make("MiniGrid-DoorKey-5x5-v0").reset(seed=0)[1]


def test_gymnasium_namespace_ids():
    env = gym.make("llmguide/MiniGrid-DoorKey-8x8-v0")
    _, info = env.reset(seed=0)
    assert "Mission:" in info["text"]
    bare = gym.make("llmguide/MiniGrid-DoorKey-8x8-v0", text=False)
    assert "text" not in bare.reset(seed=0)[1]


def test_any_minigrid_and_babyai_id():
    for env_id in ("MiniGrid-LavaGapS5-v0", "BabyAI-OpenDoor-v0"):
        _, info = make(env_id).reset(seed=1)
        assert info["mission"] and info["text"].startswith("Mission:")


def test_unknown_id_lists_close_matches():
    with pytest.raises(EnvNotFoundError, match="MiniGrid-DoorKey-8x8-v0"):
        make("MiniGird-DoorKey-8x8-v0")
    with pytest.raises(EnvNotFoundError, match="Close matches: .*MiniGrid-DoorKey-8x8-v0"):
        make("MiniGrid-DoorKey-8x8-v7")  # right family, no such version
    with pytest.raises(EnvNotFoundError, match="llmguide envs"):
        make("totally-unknown-thing")


def test_family_of():
    assert family_of("llmguide/Crafter-v0") == "crafter"
    assert family_of("BabyAI-GoToLocal-v0") == "minigrid"
    assert family_of("NetHackScore-v0") == "nethack"
    assert family_of("merge-v0") == "highway"
    assert family_of("CartPole-v1") is None


def test_import_is_lazy():
    code = (
        "import sys, llmguide.envs\n"
        "heavy = [m for m in ('nle', 'scienceworld', 'crafter', 'highway_env', 'minigrid') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import gymnasium\nassert 'llmguide/Crafter-v0' in gymnasium.registry\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
