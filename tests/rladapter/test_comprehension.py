"""Comprehension score, behaviour text, achievement bookkeeping, buffer and SFT data selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from llmguide.teachers.rladapter import (
    SUBGOALS,
    AdapterBuffer,
    behaviour_text,
    comprehension_score,
    subgoal_achievement,
    unlocked_since,
)
from llmguide.teachers.rladapter_finetune import adapter_messages, sft_examples


@pytest.fixture(scope="module")
def minilm():
    from llmguide.memory.embeddings import default_embeddings

    return default_embeddings()


def test_score_higher_for_matching_than_unrelated_behaviour(minilm) -> None:
    pairs = [
        ("collect wood", "collected wood x3", "drank water, fell asleep"),
        ("place table", "collected wood x2, placed table", "ate cow, lost 2 health"),
        ("drink water", "drank water x2", "collected stone, placed stone"),
        ("defeat zombie", "defeated zombie, lost 2 health", "collected sapling, placed plant"),
    ]
    for subgoal, matching, unrelated in pairs:
        hi = comprehension_score(matching, subgoal, minilm)
        lo = comprehension_score(unrelated, subgoal, minilm)
        assert 0.0 < lo < hi < 1.0, (subgoal, hi, lo)


def test_score_is_sigmoid_of_cosine() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert comprehension_score(a, a) == pytest.approx(1 / (1 + np.exp(-1)))
    assert comprehension_score(a, b) == pytest.approx(0.5)
    assert comprehension_score(a, -a, scale=4.0) == pytest.approx(1 / (1 + np.exp(4)))


def test_behaviour_text_counts_repeats() -> None:
    assert behaviour_text([]) == "nothing notable happened"
    assert behaviour_text(["collected wood", "collected wood", "placed table"]) == "collected wood x2, placed table"


def test_unlocked_since_handles_new_episode() -> None:
    assert unlocked_since({"collect_wood": 1}, {"collect_wood": 3, "place_table": 1}) == ["collect_wood", "place_table"]
    assert unlocked_since({"collect_wood": 1}, {"collect_wood": 1}) == []
    # counts dropped: a new episode began, so everything counted now is new
    assert unlocked_since({"collect_wood": 4}, {"collect_wood": 1, "eat_cow": 0}) == ["collect_wood"]


def test_subgoal_achievement_maps_all_phrases() -> None:
    for ach, phrase in SUBGOALS.items():
        assert subgoal_achievement(phrase) == ach
    assert subgoal_achievement("Go and make a wood pickaxe now") == "make_wood_pickaxe"
    assert subgoal_achievement("explore the map") is None


def _record(i: int, score: float, achieved: bool) -> dict:
    return {
        "step": i, "env": 0, "stage": 0, "state": f"state {i}", "behaviour": "collected wood",
        "last_subgoal": "collect wood", "score": 0.6, "analysis": f"analysis {i}", "subgoal": "place table",
        "achievement": "place_table", "outcome": {"score": score, "subgoal_achieved": achieved},
    }


def test_sft_keeps_the_best_outcomes() -> None:
    rows = [_record(0, 0.50, False), _record(1, 0.70, False), _record(2, 0.55, True), _record(3, 0.40, False)]
    examples = sft_examples(rows, keep=0.5)
    answers = sorted(a for _, a in examples)
    assert answers == ["analysis 1", "analysis 2"]
    messages = examples[0][0]
    assert messages == adapter_messages(rows[2]["state"], "collected wood", "collect wood", 0.6) or messages == adapter_messages(
        rows[1]["state"], "collected wood", "collect wood", 0.6
    )
    assert "comprehension score 0.60" in messages[1]["content"]
    assert len(sft_examples(rows, keep=1.0)) == 4
    assert sft_examples([{**_record(0, 0.5, False), "analysis": None}]) == []


def test_buffer_persists_jsonl_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "run" / "rladapter_buffer.jsonl"
    buf = AdapterBuffer(path)
    buf.append(_record(0, 0.5, False))
    buf.append({**_record(1, 0.6, True), "score": np.float32(0.25)})
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["score"] == pytest.approx(0.25)
    again = AdapterBuffer(path)
    assert len(again) == 2 and again.records()[0]["analysis"] == "analysis 0"
