"""Hindsight from real MiniGrid episodes: events in order, examples only from successes, written
whole-line under a lock, situations that say what was seen and done (no cells)."""

from __future__ import annotations

import json
from pathlib import Path

from llmguide.agents.hindsight import ROOM_EVENT, HindsightRecorder, build_probe, expert_episode
from llmguide.envs.minigrid import make_minigrid


def test_doorkey_success_gives_next_event_examples(tmp_path: Path) -> None:
    path = tmp_path / "hindsight.jsonl"
    env = HindsightRecorder(make_minigrid("MiniGrid-DoorKey-5x5-v0"), path)
    asked = []
    assert expert_episode(env, seed=3, on_ask=lambda e, info: asked.append(info["situation"]))
    events = [e for _, e in env._events]
    assert events == ["picked up yellow key", "unlocked yellow door", "opened yellow door", ROOM_EVENT, "reached goal"]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    # the final "go to the goal" had a single option left: no choice to teach, so no row
    assert [r["answer"] for r in rows] == ["pick up the yellow key", "open the yellow door"]
    first, second = rows
    assert first["situation"]["carrying"] is None and first["situation"]["done"] == []
    assert second["situation"]["carrying"] == "yellow key" and second["situation"]["done"] == ["picked up yellow key"]
    assert all(r["answer"] in r["options"] for r in rows)
    prompt = first["messages"][-1]["content"]
    assert "Seen:" in prompt and "(" not in prompt  # what the agent saw, not where things are
    assert asked[0] == first["situation"]


def test_failed_episode_writes_nothing_and_room_event_on_multiroom(tmp_path: Path) -> None:
    path = tmp_path / "hindsight.jsonl"
    env = HindsightRecorder(make_minigrid("MiniGrid-DoorKey-5x5-v0"), path)
    env.reset(seed=0)
    done = False
    while not done:  # turning left forever never succeeds
        _, _, term, trunc, info = env.step(0)
        done = term or trunc
    assert not path.exists() and "situation" in info

    multi = HindsightRecorder(make_minigrid("MiniGrid-MultiRoom-N4-S5-v0"), tmp_path / "multi.jsonl")
    assert expert_episode(multi, seed=1)
    events = [e for _, e in multi._events]
    opened = events.index(next(e for e in events if e.startswith("opened ")))
    assert events[opened + 1] == ROOM_EVENT
    answers = [json.loads(line)["answer"] for line in (tmp_path / "multi.jsonl").read_text().splitlines()]
    assert answers and all(a.startswith("open the ") for a in answers)


def test_probe_rows_carry_the_oracle_label_among_several_options() -> None:
    rows = build_probe("MiniGrid-DoorKey-5x5-v0", range(3))
    assert rows and all(r["answer"] in r["options"] and len(r["options"]) > 1 for r in rows)
    assert {r["answer"] for r in rows} <= {"pick up the yellow key", "open the yellow door"}
