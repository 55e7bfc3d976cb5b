"""DiLuAgent: available actions only, retrieval in the prompt, reflection after a crash, safe memories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.agents.dilu import DecisionStep, DiLuAgent, DrivingLog, make_dilu_env, no_collision
from llmguide.agents.loop import EpisodeRecord, run_episodes
from llmguide.memory import Experience, ExperienceMemory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "memory"))
from fakes import BagOfWords


def fake(*answers: str) -> FakeListChatModel:
    return FakeListChatModel(responses=list(answers))


def memory(tmp_path: Path) -> ExperienceMemory:
    return ExperienceMemory(tmp_path / "mem", embeddings=BagOfWords())


def crash_record(length: int) -> EpisodeRecord:
    return EpisodeRecord(seed=0, episode_return=0.0, length=length, terminated=True, truncated=False,
                         success=False, seconds=0.0, llm_calls=0, extra={"crashed": True})


def steps(n: int) -> list[DecisionStep]:
    return [
        DecisionStep(step=i, scene=f"You drive in lane {i}. vehicle 1: in your lane, {30 - 5 * i} m ahead, slower.",
                     available=["LANE_LEFT", "IDLE", "FASTER", "SLOWER"], decision="FASTER",
                     reasoning="go fast", retrieved=0)
        for i in range(n)
    ]


def test_env_has_dilu_setting() -> None:
    env = make_dilu_env()
    _, info = env.reset(seed=0)
    cfg = env.unwrapped.config
    assert (cfg["lanes_count"], cfg["vehicles_count"], cfg["vehicles_density"], cfg["duration"]) == (4, 15, 2, 20)
    assert "of 4" in info["text"] and info["valid_actions"]
    env.close()


def test_actions_are_always_available_meta_actions(tmp_path: Path) -> None:
    # The fake LLM always wants LANE_LEFT, which is unavailable in the leftmost lane: the agent must not take it.
    env = make_dilu_env(env_config={"lanes_count": 2, "vehicles_count": 5})
    agent = DiLuAgent(llm=fake('{"choice": "LANE_LEFT"}'), memory=None, k=0, cot_tokens=8)
    seen: list[tuple[int, list[int]]] = []

    class Spy:
        def act(self, obs, info):
            action = agent.act(obs, info)
            seen.append((action, list(info["available_actions"])))
            return action

    run_episodes(Spy(), env, 2, seed=3, max_steps=8, success_fn=no_collision, progress=False)
    env.close()
    assert len(seen) >= 4
    assert all(action in available for action, available in seen)
    names = env.unwrapped.action_type.actions
    assert any(names[a] != "LANE_LEFT" for a, _ in seen)  # the fallback was used where LANE_LEFT was unavailable


def test_retrieved_memories_are_few_shot_examples(tmp_path: Path) -> None:
    mem = memory(tmp_path)
    mem.add([Experience("You drive in lane 2. vehicle 1: in your lane, 5 m ahead, slower.", "SLOWER", "too close"),
             Experience("Open road, no vehicle nearby at all.", "FASTER", "clear")])
    llm = fake("The car ahead is close.", '{"choice": "SLOWER"}')
    agent = DiLuAgent(llm=llm, memory=mem, k=1, cot_tokens=16)
    prompt = agent.prompt("You drive in lane 2. vehicle 1: in your lane, 6 m ahead, slower.",
                          mem.search("You drive in lane 2. vehicle 1: in your lane, 6 m ahead, slower.", k=1))
    text = prompt[1].content
    assert "5 m ahead" in text and "Decision: SLOWER" in text and "too close" in text and "Open road" not in text
    assert prompt[0].content.startswith("You drive the ego car")  # rules first: a stable prefix
    step = agent.decide("You drive in lane 2. vehicle 1: in your lane, 6 m ahead, slower.", ["IDLE", "SLOWER"])
    assert step.decision == "SLOWER" and step.retrieved == 1 and step.reasoning == "The car ahead is close."


def test_reflection_on_scripted_crash_adds_corrected_memory(tmp_path: Path) -> None:
    mem = memory(tmp_path)
    # answers: wrong decision = the 3rd of the window, corrected = SLOWER, then the explanation
    llm = fake('{"choice": "decision 3"}', '{"choice": "SLOWER"}', "The gap ahead was shrinking.")
    agent = DiLuAgent(llm=llm, memory=mem, k=0, reflection_window=3, reflections_path=tmp_path / "reflections.jsonl")
    agent.trace = steps(5)
    agent.end_episode(crash_record(5))
    stored = mem.all()
    assert len(stored) == 1
    exp = stored[0]
    assert exp.source == "reflection" and exp.decision == "SLOWER" and exp.scene == steps(5)[4].scene
    assert "FASTER" in exp.reasoning and "gap ahead was shrinking" in exp.reasoning
    assert exp.outcome.startswith("corrected")
    assert agent.reflections[0]["wrong_step"] == 4 and agent.reflections[0]["added"] == 1
    assert agent.memory_sizes == [0, 1]
    (row,) = [json.loads(line) for line in (tmp_path / "reflections.jsonl").read_text().splitlines()]
    assert row == agent.reflections[0]  # appended as it happens, so a Ctrl-C loses none


def test_approve_callback_can_reject(tmp_path: Path) -> None:
    mem = memory(tmp_path)
    seen = []
    llm = fake('{"choice": "decision 1"}', '{"choice": "IDLE"}', "Keep the lane.")
    agent = DiLuAgent(llm=llm, memory=mem, approve=lambda exp, step: seen.append((exp.decision, step.step)) or False)
    agent.trace = steps(2)
    agent.end_episode(crash_record(2))
    assert seen == [("IDLE", 0)] and len(mem) == 0 and agent.reflections[0]["approved"] is False


def test_safe_episode_adds_positive_memories_deduplicated(tmp_path: Path) -> None:
    mem = memory(tmp_path)
    agent = DiLuAgent(llm=fake("x"), memory=mem, log_dir=tmp_path / "log")
    safe = EpisodeRecord(seed=1, episode_return=5.0, length=3, terminated=False, truncated=True,
                         success=True, seconds=0.0, llm_calls=0, extra={"crashed": False})
    agent.trace = steps(3)
    agent.end_episode(safe)
    agent.trace = steps(3)
    agent.end_episode(safe)
    assert len(mem) == 3 and agent.memory_sizes == [0, 3, 3]
    assert {e.source for e in mem.all()} == {"reasoning"} and {e.outcome for e in mem.all()} == {"safe"}
    log = (tmp_path / "log" / "episode_000.jsonl").read_text().splitlines()
    assert json.loads(log[-1]) == {"end": True, "seed": 1, "crashed": False, "memories_added": 3}
    frozen = DiLuAgent(llm=fake("x"), memory=mem, learn=False)
    frozen.trace = steps(4)
    frozen.end_episode(safe)
    assert len(mem) == 3


def test_driving_log_extra() -> None:
    log = DrivingLog()

    class Idle:
        def act(self, obs, info):
            return 1

    env = make_dilu_env(env_config={"vehicles_count": 5})
    rec = run_episodes(log.wrap(Idle()), env, 1, seed=0, max_steps=3, success_fn=no_collision,
                       extra_fn=log.extra, progress=False)[0]
    env.close()
    assert rec.extra["mean_speed"] > 10 and rec.extra["crashed"] is False and rec.extra["decisions_survived"] == 3
    assert rec.success
