"""ScienceWorld LLM agent: always a valid action; knowledge switches change the prompt as documented."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.agents.loop import EpisodeRecord, run_episodes
from llmguide.agents.scienceworld import (
    AFFORDANCE_HEADER,
    EXCLUDED_ACTIONS,
    MEMORY_HEADER,
    ActionRanker,
    CorrectAction,
    ListActionMemory,
    RandomValidAgent,
    ScienceWorldAgent,
    VectorActionMemory,
    affordances,
    parse_action,
    seed_memory_from_gold,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java")

TASK = "Your task is to boil water. First, focus on the substance. Then, take actions that will cause it to change its state."
VALID = [
    "activate stove", "deactivate stove", "focus on stove", "look at stove", "open stove",
    "focus on metal pot", "look at metal pot", "pick up metal pot", "move metal pot to stove", "move stove to metal pot",
    "focus on water", "look at water", "pour water into metal pot",
    "focus on kitchen", "look at kitchen", "teleport to kitchen", "look around", "reset task", "inventory",
]


def _info(score: int = 0, valid: list[str] | None = None) -> dict[str, Any]:
    return {"task": TASK, "score": score, "valid_actions": list(valid or VALID)}


def _fake(n: int = 50) -> FakeListChatModel:
    """A model whose answers are never one of the options (forces choose()'s fallback path)."""
    return FakeListChatModel(responses=['{"choice": "eat the moon"}', "I think you should dance."] * n)


class _Recorder:
    """Wraps an agent: checks each chosen index against the valid list the env offered."""

    def __init__(self, agent: Any) -> None:
        self.agent, self.chosen = agent, []

    def reset(self, info: dict[str, Any]) -> None:
        if hasattr(self.agent, "reset"):
            self.agent.reset(info)

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        action = self.agent.act(obs, info)
        assert isinstance(action, int) and 0 <= action < len(info["valid_actions"])
        self.chosen.append(info["valid_actions"][action])
        return action

    def end_episode(self, record: EpisodeRecord) -> None:
        if hasattr(self.agent, "end_episode"):
            self.agent.end_episode(record)


@pytest.fixture(scope="module")
def env():
    """One ScienceWorld JVM for the whole module (starting one costs seconds)."""
    from llmguide.envs import make

    env = make("llmguide/ScienceWorld-v0", task="boil", variation=0, step_limit=50)
    yield env
    env.close()


# -- prompt and knowledge switches (no env) ---------------------------------------------
def _agent(**kw: Any) -> ScienceWorldAgent:
    agent = ScienceWorldAgent(_fake(), rank="overlap", **kw)
    agent.reset(_info())
    agent._observe("This room is called the kitchen. In it, you see: a stove, a metal pot.", _info())
    return agent


def test_both_switches_off_gives_the_plain_prompt() -> None:
    agent = _agent()
    text = agent.prompt(_info())[1].content
    assert text.startswith("Task: Your task is to boil water.")
    assert MEMORY_HEADER not in text and AFFORDANCE_HEADER not in text
    assert "Observation: This room is called the kitchen." in text
    assert agent.label == "llm"


def test_memory_switch_adds_correct_actions_and_offers_them() -> None:
    memory = ListActionMemory()
    memory.add([CorrectAction("Goal: boil water. Room: kitchen. Last: a stove", "activate stove", 10, "boil water", "kitchen")])
    agent = _agent(memory=memory, top_k=3)
    text = agent.prompt(_info())[1].content
    assert MEMORY_HEADER in text and "- activate stove (+10, in kitchen)" in text
    assert AFFORDANCE_HEADER not in text
    assert agent.candidates(_info())[0] == "activate stove"  # a remembered valid action is always offered
    # an action taken (and credited) this episode is listed as such and not offered again
    agent._last = ("activate stove", "Goal: boil water. Room: kitchen. Last: a stove")
    agent._observe("The stove is now activated.", _info(score=10))
    text = agent.prompt(_info(score=10))[1].content
    assert "- activate stove (+10, this episode)" in text
    assert agent.candidates(_info(score=10))[0] != "activate stove"
    assert agent.label == "llm+memory"


def test_affordance_switch_adds_what_objects_afford() -> None:
    agent = _agent(affordances=True)
    text = agent.prompt(_info())[1].content
    assert AFFORDANCE_HEADER in text and MEMORY_HEADER not in text
    stove = next(line for line in text.splitlines() if line.startswith("- stove:"))
    assert "activate" in stove and "deactivate" in stove and "holds things" in stove
    pot = next(line for line in text.splitlines() if line.startswith("- metal pot:"))
    assert "pick up" in pot
    assert "- every object: focus on, look at" in text
    assert agent.label == "llm+affordances"


def test_affordances_parse_two_object_actions() -> None:
    table = affordances(VALID)
    assert table["metal pot"]["as_tool"] == {"move"} and "move" in table["stove"]["as_target"]
    assert table["water"]["as_tool"] == {"pour"} and "pour" in table["metal pot"]["as_target"]
    assert parse_action("move metal pot to stove", set(table)) == ("move", ["metal pot", "stove"])


def test_ranker_caps_verbs_and_never_offers_reset() -> None:
    for method in ("overlap", "embedding"):
        top = ActionRanker(method).top(VALID, [("boil water on the stove", 1.0)], 6, per_verb=2)
        assert len(top) == 6 and not set(top) & EXCLUDED_ACTIONS
        assert sum(a.startswith("focus on") for a in top) <= 2
    ranked = ActionRanker("embedding").top(VALID, [("boil water on the stove", 1.0)], 3, per_verb=3, per_object=3)
    assert any("stove" in a or "water" in a for a in ranked)


def test_correct_actions_go_to_memory_after_the_episode() -> None:
    memory = ListActionMemory()
    agent = _agent(memory=memory)
    agent._last = ("teleport to kitchen", "Goal: boil water. Room: hallway. Last: hi")
    agent.end_episode(EpisodeRecord(0, 5.0, 1, False, True, False, 1.0, 1, extra={"raw_score": 5}))
    assert [(i.action, i.delta) for i in memory.items] == [("teleport to kitchen", 5.0)]


def test_learned_actions_are_kept_and_logs_named(tmp_path: Path) -> None:
    memory = ListActionMemory()
    agent = _agent(memory=memory)
    agent.log_dir, agent.log_name = tmp_path, "boil-v0-s7"
    agent._last = ("activate stove", "Goal: boil water. Room: kitchen. Last: a stove")
    agent.end_episode(EpisodeRecord(7, 10.0, 1, False, True, False, 1.0, 1, extra={"raw_score": 10}))
    assert [c.action for c in agent.learned] == ["activate stove"]  # what a resumed run re-adds
    assert (tmp_path / "boil-v0-s7.jsonl").exists()


def test_vector_memory_round_trip(tmp_path: Path) -> None:
    memory = VectorActionMemory(tmp_path / "mem")
    items = [CorrectAction("Goal: boil water. Room: kitchen. Last: You see a stove.", "activate stove", 10, "boil water", "kitchen"),
             CorrectAction("Goal: find a living thing. Room: outside. Last: You see a bee.", "focus on bee", 50, "find", "outside")]
    assert memory.add(items) == 2
    hit = memory.search("Goal: boil water. Room: kitchen. Last: a stove is here", 1)[0]
    assert (hit.action, hit.delta, hit.room) == ("activate stove", 10.0, "kitchen")
    assert len(VectorActionMemory(tmp_path / "mem")) == 2  # persisted


# -- the real simulator -------------------------------------------------------------------
@needs_java
def test_agent_never_emits_an_invalid_action(env: Any) -> None:
    """Even a model that only answers nonsense yields valid ScienceWorld actions."""
    rec = _Recorder(ScienceWorldAgent(_fake(), memory=ListActionMemory(), affordances=True, rank="overlap"))
    records = run_episodes(rec, env, 1, max_steps=6, progress=False)
    assert records[0].length == 6 and len(rec.chosen) == 6
    assert not set(rec.chosen) & EXCLUDED_ACTIONS
    assert env.unwrapped.valid_actions  # the env kept answering with a valid list


@needs_java
def test_random_baseline_is_valid(env: Any) -> None:
    rec = _Recorder(RandomValidAgent(seed=3))
    records = run_episodes(rec, env, 2, max_steps=10, progress=False)  # a wrong "focus on" may end one early
    assert len(rec.chosen) == sum(r.length for r in records) >= 2 and "reset task" not in rec.chosen


@needs_java
@pytest.mark.slow
def test_smollm2_agent_with_knowledge_acts_validly(env: Any, smollm2: Any) -> None:
    """The embedded model, both switches on, gold-seeded memory: valid actions, prompt carries the knowledge."""
    memory = ListActionMemory()
    assert seed_memory_from_gold(memory, env, [1]) >= 1  # a boil gold path raises the score at least once
    assert any(i.action.startswith("focus on") for i in memory.items)
    env.unwrapped.variation = 0
    agent = ScienceWorldAgent(smollm2, memory=memory, affordances=True, top_k=6)
    rec = _Recorder(agent)
    run_episodes(rec, env, 1, max_steps=3, progress=False)
    assert len(rec.chosen) == 3 and agent.decisions == 3
    assert all(row["choice"] in row["candidates"] for row in agent.log)
    text = agent.prompt({"valid_actions": env.unwrapped.valid_actions})[1].content
    assert MEMORY_HEADER in text and AFFORDANCE_HEADER in text
