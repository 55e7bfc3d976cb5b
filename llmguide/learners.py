"""The SB3 learners a method can train: exports `LEARNERS`, `learner_class`, `is_off_policy`.

Names map to lazy ``(module, class)`` pairs so that `import llmguide` does not
import torch; hyperparameter defaults belong to the method (a MiniGrid MLP and
a Crafter CNN want different ones), not to this table.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from llmguide.errors import ConfigError, MissingDependencyError

__all__ = ["LEARNERS", "is_off_policy", "learner_class"]

#: learner name -> (module, class)
LEARNERS: dict[str, tuple[str, str]] = {
    "PPO": ("stable_baselines3", "PPO"),
    "A2C": ("stable_baselines3", "A2C"),
    "DQN": ("stable_baselines3", "DQN"),
    "RecurrentPPO": ("sb3_contrib", "RecurrentPPO"),
    "MaskablePPO": ("sb3_contrib", "MaskablePPO"),
}


def learner_class(name: str) -> Any:
    """The SB3 class for a learner name; unknown names get the close matches."""
    if name not in LEARNERS:
        close = difflib.get_close_matches(name, list(LEARNERS), n=2, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown learner {name!r}.{hint} Known learners: {', '.join(LEARNERS)}.")
    module, cls = LEARNERS[name]
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as err:  # pragma: no cover - both are dependencies
        raise MissingDependencyError(f"Learner {name} needs the `{module}` package ({err}).") from err


def is_off_policy(model: Any) -> bool:
    """True for learners with a replay buffer (saved with the checkpoint so a resume keeps it)."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    return isinstance(model, OffPolicyAlgorithm)
