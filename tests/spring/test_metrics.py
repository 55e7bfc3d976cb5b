"""The Crafter score as the Crafter paper defines it."""

from __future__ import annotations

import math

import pytest

from llmguide.errors import ConfigError
from llmguide.metrics import CRAFTER_ACHIEVEMENTS, achievement_success_rates, crafter_score


def test_score_bounds_and_known_values() -> None:
    assert len(CRAFTER_ACHIEVEMENTS) == 22
    assert crafter_score({}) == 0.0
    assert crafter_score([1.0] * 22) == pytest.approx(100.0)
    # one achievement always unlocked: 101 ** (1/22) - 1
    assert crafter_score({"collect_wood": 1.0}) == pytest.approx(101 ** (1 / 22) - 1)
    rates = [0.5] * 11 + [0.0] * 11
    assert crafter_score(rates) == pytest.approx(math.sqrt(51) - 1)
    # geometric, not arithmetic: breadth beats depth
    assert crafter_score({"collect_wood": 0.5, "place_table": 0.5}) > crafter_score({"collect_wood": 1.0})


def test_score_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="22"):
        crafter_score([0.5] * 3)
    with pytest.raises(ConfigError, match="Unknown"):
        crafter_score({"collect_gold": 0.5})
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        crafter_score({"collect_wood": 40.0})


def test_success_rates_from_episode_counts() -> None:
    rates = achievement_success_rates([{"collect_wood": 3, "wake_up": 0}, {"collect_wood": 1, "place_table": 1}, {}, {"junk": 1}])
    assert rates["collect_wood"] == 0.5
    assert rates["place_table"] == 0.25
    assert rates["wake_up"] == 0.0
    assert set(rates) == set(CRAFTER_ACHIEVEMENTS)
