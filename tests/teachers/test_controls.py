"""The controls an LLM teacher is measured against, and its agreement with the oracle."""

from __future__ import annotations

import gymnasium as gym
import minigrid  # noqa: F401  (registers the ids)
import numpy as np
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from llmguide.agents.guidance import SubgoalRewardWrapper
from llmguide.agents.subgoal_method import make_teacher, teacher_config
from llmguide.envs.minigrid import make_minigrid
from llmguide.teachers import FirstOptionTeacher, OracleTeacher, SubgoalTeacher


def _doorkey(seed: int = 0) -> gym.Env:
    env = gym.make("MiniGrid-DoorKey-8x8-v0")
    env.reset(seed=seed)
    return env


def test_first_option_takes_the_head_of_the_seeded_listing() -> None:
    env = _doorkey()
    orders = {tuple(s.text for s in FirstOptionTeacher().listing(env, [], seed)) for seed in range(8)}
    assert len(orders) > 1  # seeds see different orders
    for seed in range(4):
        teacher = FirstOptionTeacher("object", seed=seed)
        assert teacher.propose(env, {}).subgoal.text == teacher.listing(env, [], seed)[0].text
    llm = SubgoalTeacher(FakeListChatModel(responses=["{}"]), "object", seed=3)
    assert llm.listing(env, [], 3) == FirstOptionTeacher("object", seed=3).listing(env, [], 3)  # the same list
    layout = FirstOptionTeacher("object", seed=None)  # layout order: key first, the oracle's own plan
    assert layout.propose(env, {}).subgoal.text == OracleTeacher("object").propose(env, {}).subgoal.text


def test_first_option_round_trips_through_its_config() -> None:
    teacher = make_teacher({"type": "first_option", "kind": "object"}, seed=3)
    assert isinstance(teacher, FirstOptionTeacher) and teacher.seed == 3
    assert teacher_config(teacher).type == "first_option"
    assert make_teacher({"type": "first_option", "option_order": "layout"}).seed is None


def test_the_llm_teacher_lists_options_per_seed_and_caches_per_seed() -> None:
    env = _doorkey()
    shown: list[str] = []

    class Recording(FakeListChatModel):
        def invoke(self, messages, *args, **kwargs):  # type: ignore[no-untyped-def]
            shown.append(messages[-2].content if len(messages) > 1 else messages[-1].content)
            return super().invoke(messages, *args, **kwargs)

    keys = set()
    for seed in range(6):
        teacher = SubgoalTeacher(Recording(responses=['{"choice": "green goal"}']), "object", seed=seed, cache=True)
        teacher.propose(env, {})
        keys.add(teacher.cache_key(env, []))
    assert len(keys) == 6
    assert len({line for text in shown for line in text.splitlines() if line.startswith("Possible subgoals")}) > 1


def test_the_wrapper_scores_each_proposal_against_the_oracle() -> None:
    rng = np.random.default_rng(0)
    for teacher, layout_order in ((FirstOptionTeacher("object", seed=None), True), (FirstOptionTeacher("object", seed=5), None)):
        env = SubgoalRewardWrapper(make_minigrid("MiniGrid-DoorKey-5x5-v0"), teacher)
        env.reset(seed=1)
        info: dict = {}
        for _ in range(1000):  # to the episode's end (time limit 250)
            *_, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                break
        stats = info["teacher"]
        assert 1 <= stats["oracle_compared"] and 0 <= stats["oracle_agreed"] <= stats["oracle_compared"]
        if layout_order:  # at least at the start: key first is the plan (later, random play breaks the order)
            assert stats["oracle_agreed"] >= 1
    oracle_env = SubgoalRewardWrapper(make_minigrid("MiniGrid-DoorKey-5x5-v0"), OracleTeacher("object"))
    oracle_env.reset(seed=1)
    assert oracle_env._reference is None  # the oracle is not scored against itself
