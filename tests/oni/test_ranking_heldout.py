"""benchmarks/oni_ranking.py's held-out AUC: above chance on separable captions, ~chance on shuffled labels."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from llmguide.teachers.oni.reward import RankingReward

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "oni_ranking.py"
_spec = importlib.util.spec_from_file_location("oni_ranking_bench", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


MONSTERS = ["newt", "jackal", "rat", "kobold", "gnome", "lichen", "fox", "coyote", "goblin", "hobbit",
            "orc", "dwarf", "bat", "acid blob", "yellow mold", "gecko", "iguana", "grid bug", "homunculus", "imp"]
HELPFUL = [f"You kill the {m}!" for m in MONSTERS] + [f"You see here {n} gold pieces." for n in range(2, 22)]
UNHELPFUL = [f"The {m} bites!" for m in MONSTERS] + [f"It's a wall near the {m}." for m in MONSTERS]
TEXTS = HELPFUL + UNHELPFUL
Y = np.array([True] * len(HELPFUL) + [False] * len(UNHELPFUL))


@pytest.fixture
def make_model(bag_of_words: type) -> Callable[[], RankingReward]:
    return lambda: RankingReward(embedder=bag_of_words(), background=False, label_pairs=300)  # small fits: fast


def test_auc_is_mann_whitney() -> None:
    y = np.array([True, True, False, False])
    assert bench.auc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 1.0
    assert bench.auc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 0.0
    assert bench.auc(np.zeros(4), y) == 0.5  # ties count half
    assert bench.auc(np.array([0.9, 0.1, 0.5, 0.05]), y) == 0.75


def test_folds_are_stratified_and_held_out() -> None:
    fold = bench.stratified_folds(Y, 5)
    for f in range(5):
        assert (fold == f).sum() == 16 and Y[fold == f].sum() == 8


def test_separable_captions_rank_above_chance(make_model: Callable[[], RankingReward]) -> None:
    iv = bench.kfold_auc(TEXTS, Y, make_model, k=5)
    assert iv.value > 0.9 and iv.low > 0.5 and iv.n == len(TEXTS)


def test_shuffled_labels_give_about_chance(make_model: Callable[[], RankingReward]) -> None:
    values = [bench.kfold_auc(TEXTS, Y, make_model, k=5, seed=s, shuffle=True).value for s in range(3)]
    assert abs(np.mean(values) - 0.5) < 0.15, values
