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


def figures(gap: float, ttc: float | None) -> dict:
    ahead = {"gap_m": gap, "closing_mps": 5.0 if ttc else 0.0, "ttc_s": ttc}
    return {"lane": 1, "lanes": 4, "speed": 25.0, "own": {"ahead": ahead, "behind": None},
            "left": {"ahead": None, "behind": None}, "right": {"ahead": None, "behind": None}, "min_ttc_s": ttc}


#: gap ahead 40, 35, 30, 12, 4 m: safe (no TTC / >= 3 s) until the decision at step 2, dangerous after it
GAPS = [(40.0, None), (35.0, 7.0), (30.0, 6.0), (12.0, 2.4), (4.0, 0.8)]


def steps(n: int) -> list[DecisionStep]:
    return [
        DecisionStep(step=i, scene=f"You drive in lane {i}. vehicle 1: in your lane, {30 - 5 * i} m ahead, slower.",
                     available=["LANE_LEFT", "IDLE", "FASTER", "SLOWER"], decision="FASTER",
                     reasoning="go fast", retrieved=0, figures=figures(*GAPS[i % len(GAPS)]))
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
    # answers: the analysis, the decisive step (the 2nd of the window: step 3), corrected = SLOWER, the explanation
    llm = fake("At step 3 the gap fell to 4 m.", '{"choice": "step 3"}', '{"choice": "SLOWER"}',
               "The gap ahead was shrinking.")
    agent = DiLuAgent(llm=llm, memory=mem, k=0, reflection_window=3, reflections_path=tmp_path / "reflections.jsonl")
    agent.trace = steps(5)
    agent.end_episode(crash_record(5))
    stored = mem.all()
    assert len(stored) == 1
    exp = stored[0]
    assert exp.source == "reflection" and exp.decision == "SLOWER" and exp.scene == steps(5)[3].scene
    assert "FASTER" in exp.reasoning and "gap ahead was shrinking" in exp.reasoning
    assert exp.outcome.startswith("corrected")
    row = agent.reflections[0]
    assert (row["wrong_step"], row["position"], row["window"], row["added"]) == (3, 1, [2, 3, 4], 1)
    assert row["reason"] == "At step 3 the gap fell to 4 m." and row["figures_wrong"]["own"]["ahead"]["gap_m"] == 12.0
    assert row["first_of_episode"] is False and row["first_of_window"] is False
    assert row["figures_step"] == 2  # the last decision taken with the lane still safe (TTC 6 s before it)
    assert agent.blame_counts() == {"reflections": 1, "first_of_episode": 0, "first_of_window": 0, "later": 1,
                                    "agrees_with_figures": 0}
    assert agent.memory_sizes == [0, 1]
    (logged,) = [json.loads(line) for line in (tmp_path / "reflections.jsonl").read_text().splitlines()]
    assert logged == row  # appended as it happens, so a Ctrl-C loses none


def test_reflection_prompt_shows_each_step_with_its_figures_before_and_after(tmp_path: Path) -> None:
    agent = DiLuAgent(llm=fake("x"), memory=None, k=0, reflection_window=3)
    text = agent.reflection_prompt(steps(5)[-3:])[1].content
    lines = [ln for ln in text.splitlines() if ln.startswith("Step ")]
    assert [ln.split(":")[0] for ln in lines] == ["Step 2", "Step 3", "Step 4"]
    # step 3: 12 m ahead before (TTC 2.4 s), 4 m ahead after (the next decision's figures, TTC 0.8 s)
    assert "before: lane 2, 25 m/s, ahead 12 m closing 5 m/s, TTC 2.4 s; behind none; min TTC 2.4 s" in lines[1]
    assert "Action: FASTER. After: lane 2, 25 m/s, ahead 4 m" in lines[1] and "TTC 0.8 s" in lines[1]
    assert lines[2].endswith("After: COLLISION.")


def test_choice_stats_count_first_option_and_fallbacks() -> None:
    # The fake answers the first option, then garbage (choose falls back to the default), then SLOWER.
    agent = DiLuAgent(llm=fake('{"choice": "LANE_LEFT"}', "no idea", "no idea", "no idea", '{"choice": "SLOWER"}'),
                      memory=None, k=0, cot_tokens=0, scene="full")
    available = ["LANE_LEFT", "IDLE", "FASTER", "SLOWER"]
    first = agent.decide("scene a", available)
    fell = agent.decide("scene b", available)
    last = agent.decide("scene c", available)
    assert (first.decision, first.first_option, first.fallback) == ("LANE_LEFT", True, False)
    assert (fell.decision, fell.first_option, fell.fallback) == ("IDLE", False, True)
    assert (last.decision, last.first_option, last.fallback) == ("SLOWER", False, False)
    assert agent.choice_stats["decision"].as_dict() == {"calls": 3, "first_option": 1, "fallbacks": 1,
                                                         "first_option_rate": 1 / 3, "fallback_rate": 1 / 3}


def test_approve_callback_can_reject(tmp_path: Path) -> None:
    mem = memory(tmp_path)
    seen = []
    llm = fake("The first.", '{"choice": "step 0"}', '{"choice": "IDLE"}', "Keep the lane.")
    agent = DiLuAgent(llm=llm, memory=mem, approve=lambda exp, step: seen.append((exp.decision, step.step)) or False)
    agent.trace = steps(2)
    agent.end_episode(crash_record(2))
    assert seen == [("IDLE", 0)] and len(mem) == 0 and agent.reflections[0]["approved"] is False
    assert agent.blame_counts()["first_of_episode"] == 1


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


def test_lane_figures_are_the_env_state() -> None:
    """Place a slower car 20 m (bumper to bumper) ahead of the ego and one 2 m behind in the left lane."""
    env = make_dilu_env(env_config={"vehicles_count": 1, "lanes_count": 3})
    env.reset(seed=0)
    base = env.unwrapped
    ego, road = base.vehicle, base.road
    road.vehicles = [ego]
    lane = ego.lane_index
    if lane[2] == 0:  # need a left lane
        ego.position = road.network.get_lane((lane[0], lane[1], 1)).position(ego.position[0], 0)
        ego.lane_index = lane = (lane[0], lane[1], 1)
    s_ego = road.network.get_lane(lane).local_coordinates(ego.position)[0]
    ego.speed = 25.0
    from highway_env.vehicle.kinematics import Vehicle

    ahead = Vehicle(road, road.network.get_lane(lane).position(s_ego + 25.0, 0), speed=20.0)
    left = (lane[0], lane[1], lane[2] - 1)
    behind = Vehicle(road, road.network.get_lane(left).position(s_ego - 7.0, 0), speed=26.0)
    road.vehicles += [ahead, behind]
    from llmguide.agents.dilu import lane_figures, lanes_scene

    fig = lane_figures(env)
    env.close()
    assert fig["lane"] == lane[2] and fig["lanes"] == 3 and fig["speed"] == 25.0
    assert fig["own"]["ahead"] == {"gap_m": 20.0, "closing_mps": 5.0, "ttc_s": 4.0}
    assert fig["own"]["behind"] is None and fig["min_ttc_s"] == 4.0
    assert fig["left"]["behind"] == {"gap_m": 2.0, "closing_mps": 1.0, "ttc_s": 2.0} and fig["left"]["ahead"] is None
    text = lanes_scene(fig, ["IDLE", "SLOWER"])
    assert "Your lane: ahead 20 m closing 5 m/s, TTC 4.0 s; behind none." in text
    assert "Left lane: ahead none; behind 2 m closing 1 m/s, TTC 2.0 s." in text and text.endswith("IDLE, SLOWER.")


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
