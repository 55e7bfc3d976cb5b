"""SB3's own `check_env` on every wrapper chain that feeds an SB3 learner.

Each case builds the env the way its learner does (tiny settings) and runs
`stable_baselines3.common.env_checker.check_env` with its warnings on: a
wrapper that breaks SB3's expectations (spaces, dtypes, reset/step API)
fails here rather than deep inside a training run. The one warning allowed
is named, with why, in `_ACCEPTED`.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

#: check_env warnings a case may raise, and why they are fine.
_ACCEPTED = {
    # NLEFeatures (the ONI policy's extractor) reads the 2-D glyph crop as a grid; flattening it would lose that.
    "nethack-oni-obs": ("Your observation glyphs has an unconventional shape",),
}


def _minigrid(teacher: str | None, observe_subgoal: bool) -> gym.Env:
    from llmguide.agents.guidance import make_minigrid_env
    from llmguide.teachers import OracleTeacher

    guide = OracleTeacher(teacher) if teacher else None
    return make_minigrid_env("MiniGrid-DoorKey-5x5-v0", guide, observe_subgoal=observe_subgoal)()


def _crafter() -> gym.Env:
    from llmguide.agents.rladapter import make_crafter_subgoal_env

    return make_crafter_subgoal_env(dim=16, bonus=0.1, env_kwargs={"area": (32, 32), "length": 40})()


def _nethack() -> gym.Env:
    import nle  # noqa: F401  (registers the NetHack ids)
    from llmguide.teachers.oni.wrapper import NLEObsWrapper

    # What the ONI runner feeds PPO: NLE with the three keys the policy reads, then the wrapper.
    env = gym.make("NetHackScore-v0", observation_keys=("glyphs", "blstats", "message"), max_episode_steps=50)
    return NLEObsWrapper(env)


class _HashedWords:
    """384-d hashed bag of words: ValidActionSlots' spaces without loading the MiniLM model."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = np.zeros(384, dtype=np.float32)
            for word in text.lower().split():
                vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % 384] += 1.0
            out.append((vec / max(float(np.linalg.norm(vec)), 1.0)).tolist())
        return out


def _scienceworld() -> gym.Env:
    if shutil.which("java") is None:
        pytest.skip("ScienceWorld runs in a Java process and `java` is not on PATH")
    from llmguide.agents.scienceworld import ActionRanker
    from llmguide.agents.scienceworld_rl import ScoreReward, ValidActionSlots
    from llmguide.envs import make

    env = make("llmguide/ScienceWorld-v0", task="find-living-thing", variation=0, step_limit=8)
    return ValidActionSlots(ScoreReward(env), k=4, ranker=ActionRanker("overlap", embeddings=_HashedWords()))


CASES: dict[str, Callable[[], gym.Env]] = {
    "minigrid-plain": lambda: _minigrid(None, False),
    "minigrid-guided": lambda: _minigrid("object", False),
    "minigrid-observe-subgoal": lambda: _minigrid("language", True),
    "minigrid-observe-subgoal-eval": lambda: _minigrid(None, True),  # the same policy input, no teacher
    "crafter-subgoal-obs": _crafter,
    "nethack-oni-obs": _nethack,
    "scienceworld-valid-action-slots": _scienceworld,
}


@pytest.mark.parametrize("name", list(CASES))
def test_sb3_check_env(name: str) -> None:
    env = CASES[name]()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            check_env(env, warn=True)
        accepted = _ACCEPTED.get(name, ())
        reported = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        unexpected = [m for m in reported if not m.startswith(accepted)]
        assert not unexpected, unexpected
    finally:
        env.close()
