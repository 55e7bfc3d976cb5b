"""IQM and its stratified-bootstrap interval (`llmguide.stats`)."""

from __future__ import annotations

import numpy as np
import pytest

from llmguide.stats import iqm, iqm_interval


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert iqm([0, 1, 2, 3, 4, 5, 6, 1000]) == pytest.approx(3.5)  # 2 trimmed each side: mean(2, 3, 4, 5)
    with pytest.raises(ValueError):
        iqm([])


def test_interval_matches_a_plain_resampling_of_the_runs() -> None:
    runs = np.random.default_rng(3).exponential(size=10)
    found = iqm_interval(runs, reps=4000, seed=1)
    rng = np.random.default_rng(7)
    boot = [iqm(rng.choice(runs, size=runs.size)) for _ in range(4000)]
    low, high = np.percentile(boot, [2.5, 97.5])
    assert found.low < found.value < found.high
    assert found.low == pytest.approx(low, abs=0.1) and found.high == pytest.approx(high, abs=0.15)
    assert iqm_interval(runs, reps=4000, seed=1) == found  # reproducible


def test_stratified_over_tasks_and_degenerate_cases() -> None:
    both = iqm_interval({"doorkey": [0.1, 0.2, 0.3], "multiroom": [0.7, 0.8, 0.9]})
    assert both.value == pytest.approx(iqm([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])) and both.n == 6
    assert both.low < both.value < both.high
    assert str(iqm_interval([0.5])) == "0.5" and iqm_interval([0.5]).low == 0.5
    assert str(iqm_interval([1.0, 1.0, 1.0])) == "1"
    with pytest.raises(ValueError):
        iqm_interval({})
