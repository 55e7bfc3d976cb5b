"""Aggregate figures over seeds the way RL papers should: ``iqm`` and ``iqm_interval``.

Few seeds and heavy tails make a mean ± std misleading. Following Agarwal et
al. (2021, "Deep RL at the Edge of the Statistical Precipice", the ``rliable``
package), a method's figure is the interquartile mean (the mean of the middle
50% of runs) with a 95% percentile-bootstrap interval; with several tasks
(envs), runs are resampled within each task (a stratified bootstrap) and the
IQM is taken over all of them.

Why not ``rliable`` itself: it pulls statsmodels, arch and seaborn into every
install for two functions that SciPy (already installed) gives us:
``scipy.stats.trim_mean`` is the IQM at proportion 0.25, and
``scipy.stats.bootstrap`` with one sample per task and ``paired=False``
resamples each task independently, which is the stratified bootstrap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "iqm", "iqm_interval"]


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of ``values`` (25% trimmed each side)."""
    from scipy.stats import trim_mean

    if len(values) == 0:
        raise ValueError("iqm of no values")
    return float(trim_mean(np.asarray(values, dtype=float), 0.25))


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval, over ``n`` runs."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n < 2 or self.low == self.high == self.value:
            return f"{self.value:.3g}"
        return f"{self.value:.3g} [{self.low:.3g}, {self.high:.3g}]"


def iqm_interval(
    runs: Sequence[float] | Mapping[str, Sequence[float]],
    *,
    confidence: float = 0.95,
    reps: int = 2000,
    seed: int = 0,
) -> Interval:
    """IQM of ``runs`` and its stratified-bootstrap percentile interval.

    ``runs`` is one figure per run, or a mapping task -> figures (each task
    resampled on its own). With a single run, or all runs equal, the interval
    is the point. ``seed`` makes the interval reproducible.
    """
    from scipy.stats import bootstrap

    tasks = [np.asarray(v, dtype=float) for v in (runs.values() if isinstance(runs, Mapping) else [runs])]
    tasks = [t for t in tasks if t.size]
    if not tasks:
        raise ValueError("iqm_interval of no runs")
    pooled = np.concatenate(tasks)
    point = iqm(pooled)
    if pooled.size < 2 or np.all(pooled == pooled[0]) or any(t.size < 2 for t in tasks):
        return Interval(point, point, point, int(pooled.size))

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        from scipy.stats import trim_mean

        return trim_mean(np.concatenate(samples, axis=axis), 0.25, axis=axis)

    result = bootstrap(tuple(tasks), statistic, n_resamples=reps, confidence_level=confidence, method="percentile",
                       paired=False, vectorized=True, random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return Interval(point, float(low), float(high), int(pooled.size))
