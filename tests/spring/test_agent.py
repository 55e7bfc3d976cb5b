"""SpringAgent: observation with history and outcome, constrained action, JSONL log, shared loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.agents.loop import run_episodes
from llmguide.agents.spring import SpringAgent, achievement_counts, evaluate_crafter
from llmguide.teachers.spring import crafter_data

ACTIONS = crafter_data()["actions"]
TWO_NODES = {
    "max_tokens": 24,
    "nodes": [
        {"id": "subgoal", "question": "What is the top-priority subgoal now?"},
        {"id": "action", "question": "What is the best action for it?", "parents": ["subgoal"]},
    ],
}


class TinyCrafter(gym.Env):
    """A stand-in with Crafter's action set and info keys: 'do' gives wood, 'place_table' a table."""

    action_space = gym.spaces.Discrete(17)
    observation_space = gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)

    def reset(self, *, seed: int | None = None, options: Any = None):
        super().reset(seed=seed)
        self.inv = {"health": 9, "food": 9, "drink": 9, "energy": 9, "wood": 0}
        self.ach = {a: 0 for a in crafter_data()["achievements"]}
        self.pos = [32, 32]
        return self._obs(), self._info()

    def _obs(self):
        return np.zeros((4, 4, 3), np.uint8)

    def _info(self):
        return {"text": f"You face a tree. Wood {self.inv['wood']}.", "action_names": list(ACTIONS),
                "inventory": dict(self.inv), "achievement_counts": dict(self.ach), "player_pos": list(self.pos)}

    def step(self, action):
        name = ACTIONS[int(action)]
        reward = 0.0
        if name == "do":
            self.inv["wood"] += 1
            reward += 1.0 if self.ach["collect_wood"] == 0 else 0.0
            self.ach["collect_wood"] += 1
        if name == "move_left":
            self.pos[0] -= 1
        return self._obs(), reward, False, False, self._info()


def _fake(answers: list[str]) -> FakeListChatModel:
    return FakeListChatModel(responses=answers)


def test_act_maps_final_answer_to_one_action_and_logs(tmp_path: Path) -> None:
    # per step: subgoal answer, action answer, then the constrained choice
    llm = _fake(["get wood", "face the tree and do", '{"choice": "do"}',
                 "a table", "place it", '{"choice": "place_table"}',
                 "walk", "go left", "I would say move_left for sure"])
    agent = SpringAgent(llm=llm, dag=TWO_NODES, log_dir=tmp_path)
    env = TinyCrafter()
    records = run_episodes(agent, env, 1, max_steps=3, progress=False)
    assert records[0].length == 3 and records[0].episode_return == 1.0
    rows = [json.loads(ln) for ln in (tmp_path / "episode_000.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "step" in r]
    assert [r["action"] for r in steps] == ["do", "place_table", "move_left"]
    assert [r["action_id"] for r in steps] == [ACTIONS.index(a) for a in ("do", "place_table", "move_left")]
    assert steps[0]["nodes"] == [
        {"id": "subgoal", "question": "What is the top-priority subgoal now?", "parents": [], "answer": "get wood"},
        {"id": "action", "question": "What is the best action for it?", "parents": ["subgoal"], "answer": "face the tree and do"},
    ]
    # second step's observation: history + outcome of 'do'
    assert "recent actions (oldest first): do." in steps[1]["observation"]
    assert "unlocked collect_wood" in steps[1]["observation"] and "wood +1" in steps[1]["observation"]
    assert "nothing changed" in steps[2]["observation"]  # place_table did nothing in TinyCrafter
    assert "episode_end" in rows[-1]
    assert agent.invalid_actions == 0


def test_history_is_short_and_reset_between_episodes(tmp_path: Path) -> None:
    llm = _fake(["x", "y", '{"choice": "noop"}'])
    agent = SpringAgent(llm=llm, dag=TWO_NODES, history=2, log_dir=tmp_path)
    run_episodes(agent, TinyCrafter(), 2, max_steps=4, progress=False)
    assert list(agent.actions) == ["noop", "noop"]  # capped at 2
    assert (tmp_path / "episode_001.jsonl").is_file()
    first = json.loads((tmp_path / "episode_001.jsonl").read_text().splitlines()[0])
    assert first["step"] == 0 and "first step" in first["observation"]
    assert "recent actions" not in first["observation"]


def test_prompt_layout_is_prefix_stable() -> None:
    agent = SpringAgent(llm=_fake(["a"]), dag=TWO_NODES, context="MANUAL TEXT")
    _, info = TinyCrafter().reset(seed=0)
    obs = agent.observation(info)
    for node in agent.dag.nodes.values():
        msgs = agent.dag.prompt(node, agent.context, obs, {"subgoal": agent.dag.run(_fake(["s"]), "c", "o")["subgoal"]})
        assert msgs[0].content == "MANUAL TEXT" and msgs[1].content.startswith(obs)


def test_context_options(tmp_path: Path) -> None:
    manual = SpringAgent(llm=_fake(["a"]), dag=TWO_NODES)
    assert manual.context.startswith("CRAFTER GAME MANUAL")
    tex = Path(__file__).parent / "fixtures" / "crafter_paper.tex"
    paper = SpringAgent(llm=_fake(['{"choice": "yes"}']), dag=TWO_NODES, context=str(tex))
    assert "Blocksworld" in paper.context and "\\" not in paper.context


def test_evaluate_crafter_counts_invalid_actions_and_score() -> None:
    class Bad:
        def act(self, obs, info):
            return 99

    _, metrics = evaluate_crafter(Bad(), TinyCrafter(), 1, max_steps=3, progress=False)
    assert metrics["invalid_actions"] == 3
    llm = _fake(["x", "y", '{"choice": "do"}'])
    _, metrics = evaluate_crafter(SpringAgent(llm=llm, dag=TWO_NODES), TinyCrafter(), 2, max_steps=3, progress=False)
    assert metrics["invalid_actions"] == 0
    assert metrics["success_rates"]["collect_wood"] == 1.0
    assert metrics["crafter_score"] == pytest.approx(101 ** (1 / 22) - 1)
    assert metrics["reward"] == 1.0
    assert metrics["steps"] == 6 and metrics["llm_calls_per_step"] >= 0.0


def test_achievement_counts_accepts_the_view_shapes() -> None:
    assert achievement_counts({"achievement_counts": {"collect_wood": 2}}) == {"collect_wood": 2}
    assert achievement_counts({"achievements": {"wake_up": 1}}) == {"wake_up": 1}
    assert achievement_counts({"achievements": ["place_table"]}) == {"place_table": 1}
    assert achievement_counts({}) == {}
