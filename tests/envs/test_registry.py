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


# -- one chain per id: gymnasium's wrappers once, one TimeLimit at the real cap ----------------
def _chain(env: gym.Env) -> list[str]:
    """Class names from the outermost wrapper down to the env."""
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return [*names, type(env).__name__]


def _real_cap(family: str, base) -> int | None:
    """The step cap the env enforces itself, read from its own settings."""
    if family == "minigrid":
        return None if getattr(base, "fixed_max_steps", True) is False else base.max_steps
    if family == "crafter":
        return 10000  # CrafterEnv's default length
    if family == "nethack":
        return base._max_episode_steps
    if family == "highway":
        cfg = base.config
        return int(cfg["duration"] * cfg["policy_frequency"]) if "duration" in cfg else None
    return None  # ScienceWorld caps moves, not steps


def _make_all_ids():
    out = []
    for e in ENVS:
        installed = next(r["installed"] for r in list_envs() if r["id"] == e.id)
        mark = pytest.mark.skipif(not installed, reason=f"{e.family} is not installed (ScienceWorld also needs java)")
        out.append(pytest.param(e, marks=mark, id=e.base_id))
    return out


@pytest.mark.parametrize("spec", _make_all_ids())
def test_gym_make_wraps_once_with_the_real_cap(spec):
    env = gym.make(spec.id, **_LIGHT.get(spec.base_id, {}))
    try:
        chain = _chain(env)
        cap = _real_cap(spec.family, env.unwrapped)
        assert chain.count("OrderEnforcing") == 1 and chain.count("PassiveEnvChecker") == 1, chain
        assert chain.count("TimeLimit") == (0 if cap is None else 1), chain
        assert env.spec.id == spec.id
        assert env.spec.max_episode_steps == cap
    finally:
        env.close()


@pytest.mark.parametrize(
    ("env_id", "kwargs", "action"),
    [
        ("llmguide/MiniGrid-Empty-5x5-v0", {}, 0),  # turning left forever
        ("llmguide/Crafter-v0", {"length": 12, "area": (32, 32)}, 0),  # noop
        ("llmguide/highway-fast-v0", {"config": {"duration": 3, "policy_frequency": 2}}, 1),  # IDLE
    ],
)
def test_episode_ends_at_spec_max_episode_steps(env_id, kwargs, action):
    env = gym.make(env_id, **kwargs)
    try:
        cap = env.spec.max_episode_steps
        assert cap is not None and _chain(env).count("TimeLimit") == 1
        for wrapped in (env, env.unwrapped):  # the TimeLimit ends no episode the env would not end itself
            wrapped.reset(seed=0)
            steps, done = 0, False
            while not done:
                _, _, terminated, truncated, _ = wrapped.step(action)
                steps += 1
                done = terminated or truncated
            assert steps == cap and truncated, (wrapped, steps, cap)
    finally:
        env.close()


def test_nethack_cap_is_nle_own_limit():
    env = make("NetHackScore-v0", max_episode_steps=5)
    try:
        assert env.spec.max_episode_steps == 5 and _chain(env).count("TimeLimit") == 1
        env.reset(seed=0)
        for step in range(1, 6):
            _, _, terminated, truncated, _ = env.step(env.action_names.index("SEARCH"))
            assert (terminated or truncated) == (step == 5)
    finally:
        env.close()


def test_max_episode_steps_of_gym_make_shortens_episodes():
    env = gym.make("llmguide/MiniGrid-Empty-5x5-v0", max_episode_steps=10)
    assert env.spec.max_episode_steps == 10
    env.reset(seed=0)
    results = [env.step(0)[3] for _ in range(10)]
    assert results == [False] * 9 + [True]


def test_make_returns_the_view_over_one_time_limit():
    env = make("MiniGrid-DoorKey-5x5-v0")
    assert _chain(env) == ["MiniGridText", "TimeLimit", "DoorKeyEnv"]
    assert env.spec.id == "MiniGrid-DoorKey-5x5-v0"  # teacher caches key on the env id
    assert env.spec.max_episode_steps == env.unwrapped.max_steps
