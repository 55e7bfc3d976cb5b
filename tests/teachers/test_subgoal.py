"""Subgoal teachers: oracle plans, validation of LLM answers, caching, budgets, bad input."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.envs.minigrid import make_minigrid
from llmguide.teachers import OracleTeacher, RandomTeacher, Subgoal, SubgoalTeacher, TeacherCache, parse_instruction
from llmguide.teachers.minigrid_planning import layout_targets, plan_next

from llmguide.errors import ConfigError
from llmguide.llm import METER


def _env(env_id: str = "MiniGrid-DoorKey-5x5-v0", seed: int = 0) -> tuple[Any, dict]:
    env = make_minigrid(env_id)
    _, info = env.reset(seed=seed)
    return env, info


def _pick_up_key(env: Any) -> None:
    base = env.unwrapped
    for x in range(base.grid.width):
        for y in range(base.grid.height):
            obj = base.grid.get(x, y)
            if obj is not None and obj.type == "key":
                base.carrying = obj
                base.grid.set(x, y, None)


def _open_doors(env: Any) -> None:
    base = env.unwrapped
    for x in range(base.grid.width):
        for y in range(base.grid.height):
            obj = base.grid.get(x, y)
            if obj is not None and obj.type == "door":
                obj.is_locked, obj.is_open = False, True


class CountingFake(FakeListChatModel):
    """A fake chat model that counts its calls (to see the teacher cache work)."""

    calls: int = 0

    def _call(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        return super()._call(*args, **kwargs)


# -- oracle -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("env_id", ["MiniGrid-DoorKey-5x5-v0", "MiniGrid-DoorKey-8x8-v0"])
def test_oracle_doorkey_order_is_key_door_goal(env_id: str, seed: int) -> None:
    env, info = _env(env_id, seed)
    oracle = OracleTeacher("object")
    seq = [oracle.propose(env, info).subgoal.text]
    _pick_up_key(env)
    seq.append(oracle.propose(env, info).subgoal.text)
    _open_doors(env)
    seq.append(oracle.propose(env, info).subgoal.text)
    assert seq == ["yellow key", "yellow door", "goal"]


@pytest.mark.parametrize("env_id", ["MiniGrid-KeyCorridorS3R3-v0", "MiniGrid-MultiRoom-N4-S5-v0"])
@pytest.mark.parametrize("kind", ["positional", "object", "language"])
def test_oracle_plans_on_harder_families(env_id: str, kind: str) -> None:
    env, info = _env(env_id, 1)
    sg = OracleTeacher(kind).propose(env, info).subgoal
    assert sg is not None and sg.kind == kind
    base = env.unwrapped
    if kind == "positional":
        x, y = sg.cell
        assert 0 <= x < base.grid.width and 0 <= y < base.grid.height
        cell = base.grid.get(x, y)
        assert cell is None or cell.can_overlap()
    else:
        assert sg.obj[0] in ("door", "key", "ball", "goal")


def test_keycorridor_oracle_eventually_targets_the_ball() -> None:
    env, info = _env("MiniGrid-KeyCorridorS3R3-v0", 1)
    _pick_up_key(env)
    _open_doors(env)
    sg = OracleTeacher("language").propose(env, info).subgoal
    assert sg.text == f"pick up the {env.unwrapped.obj.color} ball"


def test_oracle_rejects_missions_it_cannot_plan() -> None:
    env, _ = _env("MiniGrid-Fetch-5x5-N2-v0", 0)
    with pytest.raises(ConfigError, match="cannot plan"):
        OracleTeacher("object").check_env(env)


def test_unknown_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="kind"):
        OracleTeacher("telepathic")


def test_random_teacher_gives_valid_subgoals_reproducibly() -> None:
    env, info = _env()
    names = {t.name for t in layout_targets(env)}
    a = [RandomTeacher("object", seed=3).propose(env, info).subgoal.text for _ in range(5)]
    b = [RandomTeacher("object", seed=3).propose(env, info).subgoal.text for _ in range(5)]
    assert a == b and set(a) <= names


# -- achievement rules -------------------------------------------------------------------
def test_object_subgoal_is_achieved_by_its_event_only() -> None:
    key = Subgoal("object", "yellow key", obj=("key", "yellow"), verb="pick up")
    assert key.achieved({"events": ["picked up yellow key"]})
    assert not key.achieved({"events": ["picked up blue key"]})
    door = Subgoal("object", "yellow door", obj=("door", "yellow"), verb="open")
    assert door.achieved({"events": ["unlocked yellow door", "opened yellow door"]})
    goal = Subgoal("object", "goal", obj=("goal", None), verb="go to")
    assert goal.achieved({"events": ["reached goal"]}) and not goal.achieved({"events": []})
    pos = Subgoal("positional", "(+1, +0)", cell=(2, 3))
    assert pos.achieved({"agent_pos": (2, 3)}) and not pos.achieved({"agent_pos": (3, 2)})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("pick up the yellow key", ("pick up", "key", "yellow")),
        ("Open the yellow door.", ("open", "door", "yellow")),
        ("go to the goal", ("go to", "goal", None)),
        ("get the key", ("pick up", "key", None)),
        ("walk to the green ball", ("go to", "ball", "green")),
        ("unlock the door with the key", ("open", "door", None)),
        ("dance a little", None),
    ],
)
def test_parse_instruction(text: str, expected: Any) -> None:
    assert parse_instruction(text) == expected


def test_subgoal_round_trips_through_dict() -> None:
    sg = Subgoal("language", "open the red door", obj=("door", "red"), verb="open")
    assert Subgoal.from_dict(sg.to_dict()) == sg
    assert Subgoal.from_dict(Subgoal("positional", "(+1, -1)", cell=(3, 4)).to_dict()).cell == (3, 4)


# -- LLM teacher --------------------------------------------------------------------------
def test_choice_mode_is_always_valid_and_cached() -> None:
    llm = CountingFake(responses=['{"choice": "yellow door"}'])
    teacher = SubgoalTeacher(llm, "object")
    env, info = _env()
    first = teacher.propose(env, info)
    assert first.subgoal.text == "yellow door" and first.llm_queries == 1 and not first.cache_hit
    calls = llm.calls
    again = teacher.propose(env, info)
    assert again.cache_hit and again.subgoal == first.subgoal and llm.calls == calls
    _pick_up_key(env)  # progress changed: a new question
    teacher.propose(env, info)
    assert llm.calls > calls and teacher.stats.llm_queries == 2


def test_choice_mode_with_garbage_falls_back_to_a_valid_option() -> None:
    teacher = SubgoalTeacher(FakeListChatModel(responses=["I think the agent should dance."]), "language")
    env, info = _env()
    sg = teacher.propose(env, info).subgoal
    assert sg is not None and sg.text in {t.instruction for t in layout_targets(env)}


def test_free_mode_invalid_answers_are_retried_then_dropped() -> None:
    METER.reset()
    teacher = SubgoalTeacher(
        FakeListChatModel(responses=["not json", '{"object": "ball", "colour": "red"}', "{}"]),
        "object",
        mode="free",
        retries=2,
    )
    env, info = _env()
    proposal = teacher.propose(env, info)
    assert proposal.subgoal is None and proposal.invalid == 1
    assert teacher.stats.invalid == 1
    assert METER.snapshot().fallback_reasons.get("invalid:subgoal") == 1


def test_free_mode_retry_can_recover() -> None:
    teacher = SubgoalTeacher(
        FakeListChatModel(responses=['{"object": "ball", "colour": "red"}', '{"object": "key", "colour": "none"}']),
        "object",
        mode="free",
    )
    env, info = _env()
    sg = teacher.propose(env, info).subgoal
    assert sg == Subgoal("object", "yellow key", obj=("key", "yellow"), verb="pick up")


def test_free_positional_is_checked_against_the_grid() -> None:
    env, info = _env()
    teacher = SubgoalTeacher(FakeListChatModel(responses=['{"dx": 30, "dy": 0}']), "positional", mode="free")
    bad, reason = teacher.validate(env, teacher_answer(teacher, dx=30, dy=0))
    assert bad is None and "outside" in reason
    base = env.unwrapped
    ax = base.agent_pos[0]
    wall_dx = -int(ax)  # column 0 is the outer wall
    bad, reason = teacher.validate(env, teacher_answer(teacher, dx=wall_dx, dy=0))
    assert bad is None and "wall" in reason
    assert teacher.propose(env, info).subgoal is None


def teacher_answer(teacher: SubgoalTeacher, **fields: int) -> Any:
    from llmguide.teachers.subgoal import PositionalAnswer

    return PositionalAnswer(**fields)


def test_free_language_parses_instructions() -> None:
    env, info = _env()
    ok = SubgoalTeacher(FakeListChatModel(responses=['{"instruction": "Pick up the key near you"}']), "language", mode="free")
    sg = ok.propose(env, info).subgoal
    assert sg.kind == "language" and sg.obj == ("key", "yellow") and sg.verb == "pick up"
    bad = SubgoalTeacher(FakeListChatModel(responses=['{"instruction": "explore"}']), "language", mode="free")
    assert bad.propose(env, info).subgoal is None and bad.stats.invalid == 1


def test_query_budget_stops_llm_calls() -> None:
    llm = CountingFake(responses=['{"choice": "yellow key"}'])
    teacher = SubgoalTeacher(llm, "object", max_queries=1)
    env, info = _env()
    assert teacher.propose(env, info).subgoal is not None
    _pick_up_key(env)
    calls = llm.calls
    skipped = teacher.propose(env, info)
    assert skipped.budget_skip and skipped.subgoal is None and llm.calls == calls


def test_positional_cache_key_depends_on_layout() -> None:
    teacher = SubgoalTeacher(FakeListChatModel(responses=['{"choice": "x"}']), "positional")
    env_a, _ = _env("MiniGrid-DoorKey-8x8-v0", seed=0)
    env_b, _ = _env("MiniGrid-DoorKey-8x8-v0", seed=1)
    assert env_a.unwrapped.grid.encode().tobytes() != env_b.unwrapped.grid.encode().tobytes()
    obj_teacher = SubgoalTeacher(FakeListChatModel(responses=['{"choice": "x"}']), "object")
    assert teacher.cache_key(env_a, []) != teacher.cache_key(env_b, [])
    assert obj_teacher.cache_key(env_a, []) == obj_teacher.cache_key(env_b, [])


def test_teacher_cache_persists_and_pickles(tmp_path: Any) -> None:
    path = tmp_path / "subgoals.sqlite"
    cache = TeacherCache(path)
    cache.put("k", {"kind": "object", "text": "goal"})
    cache.put("none", None)
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.get("k") == {"kind": "object", "text": "goal"}
    other = TeacherCache(path)
    assert other.get("none") is None and other.get("missing") is TeacherCache.MISS
    assert len(other) == 2


def test_teacher_pickles_without_loading_the_model() -> None:
    teacher = SubgoalTeacher("smollm2", "object")
    clone = pickle.loads(pickle.dumps(teacher))
    assert clone._llm is None and clone.kind == "object"


def test_plan_next_none_for_non_minigrid() -> None:
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    assert plan_next(env) is None
    with pytest.raises(ConfigError, match="MiniGrid"):
        OracleTeacher().check_env(env)


class RecordingFake(FakeListChatModel):
    """A fake chat model that keeps the prompts it was sent."""

    prompts: list[str]

    def _call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        self.prompts.append(messages[1].content)
        return super()._call(messages, *args, **kwargs)


def _listed(prompt: str) -> list[str]:
    line = next(x for x in prompt.splitlines() if x.startswith("Possible subgoals: "))
    return line.removeprefix("Possible subgoals: ").rstrip(".").split("; ")


def test_option_order_layout_vs_shuffled() -> None:
    env, info = _env("MiniGrid-DoorKey-8x8-v0", 3)
    answer = ['{"choice": "goal"}']
    ordered = RecordingFake(responses=answer, prompts=[])
    SubgoalTeacher(ordered, "object", option_order="layout").propose(env, info)
    assert _listed(ordered.prompts[0]) == ["yellow key", "yellow door", "goal"]
    a, b = RecordingFake(responses=answer, prompts=[]), RecordingFake(responses=answer, prompts=[])
    SubgoalTeacher(a, "object").propose(env, info)
    SubgoalTeacher(b, "object").propose(env, info)
    assert _listed(a.prompts[0]) == _listed(b.prompts[0])  # deterministic per situation
    assert sorted(_listed(a.prompts[0])) == sorted(["yellow key", "yellow door", "goal"])
    with pytest.raises(ConfigError):
        SubgoalTeacher(a, "object", option_order="best-first")
