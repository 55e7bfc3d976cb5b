"""Benchmark figures shared by the Crafter evaluations: exports ``crafter_score``,
``achievement_success_rates`` and ``CRAFTER_ACHIEVEMENTS``.

The Crafter paper (Hafner, 2021) ranks agents by a score that rewards breadth:
the geometric mean over the 22 achievements of their success rates (in
percent, each shifted by 1 so an unseen achievement does not zero the mean):

    S = exp( mean_i ln(1 + s_i) ) - 1,    s_i in [0, 100]

>>> round(crafter_score({"collect_wood": 1.0}), 3)
0.233
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from llmguide.errors import ConfigError

__all__ = ["CRAFTER_ACHIEVEMENTS", "achievement_success_rates", "crafter_score"]

#: The 22 achievements, in the order of Crafter's data.yaml.
CRAFTER_ACHIEVEMENTS: tuple[str, ...] = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling",
    "collect_stone", "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant",
    "make_iron_pickaxe", "make_iron_sword", "make_stone_pickaxe", "make_stone_sword",
    "make_wood_pickaxe", "make_wood_sword", "place_furnace", "place_plant", "place_stone",
    "place_table", "wake_up",
)


def crafter_score(success_rates: Mapping[str, float] | Sequence[float]) -> float:
    """The Crafter score in percent from per-achievement success rates in [0, 1].

    A mapping may omit achievements (they count as 0) but must not name
    unknown ones; a sequence must list all 22 rates in ``CRAFTER_ACHIEVEMENTS``
    order.
    """
    if isinstance(success_rates, Mapping):
        unknown = sorted(set(success_rates) - set(CRAFTER_ACHIEVEMENTS))
        if unknown:
            raise ConfigError(f"Unknown Crafter achievements {unknown}; expected names from CRAFTER_ACHIEVEMENTS.")
        rates = [float(success_rates.get(a, 0.0)) for a in CRAFTER_ACHIEVEMENTS]
    else:
        rates = [float(r) for r in success_rates]
        if len(rates) != len(CRAFTER_ACHIEVEMENTS):
            raise ConfigError(f"crafter_score needs {len(CRAFTER_ACHIEVEMENTS)} success rates, got {len(rates)}.")
    bad = [r for r in rates if not 0.0 <= r <= 1.0 or math.isnan(r)]
    if bad:
        raise ConfigError(f"Success rates must be fractions in [0, 1], got {bad[:3]}; divide percentages by 100.")
    return math.exp(sum(math.log(1.0 + 100.0 * r) for r in rates) / len(rates)) - 1.0


def achievement_success_rates(episodes: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per achievement, the fraction of episodes that unlocked it at least once.

    Each item is one episode's achievement counts (Crafter's
    ``info["achievements"]``); names outside the 22 are ignored.
    """
    episodes = list(episodes)
    if not episodes:
        return {a: 0.0 for a in CRAFTER_ACHIEVEMENTS}
    return {a: sum(1 for ep in episodes if ep.get(a, 0) > 0) / len(episodes) for a in CRAFTER_ACHIEVEMENTS}
