"""Language views of the environments (`llmguide.envs`).

Exports `make`, `list_envs`, `ENVS`, `family_of` and the view classes
`TextView`, `MiniGridText`, `CrafterEnv`, `CrafterText`, `NetHackText`,
`ScienceWorldEnv`, `HighwayText`. Importing this package registers the
`llmguide/...` Gymnasium ids and imports no env package: minigrid, crafter,
nle, scienceworld and highway_env load when one of their envs is made (or
their view class is first accessed).

Example:
    >>> from llmguide.envs import make
    >>> env = make("MiniGrid-DoorKey-5x5-v0")
    >>> obs, info = env.reset(seed=0)
    >>> info["action_names"][:3]
    ['left', 'right', 'forward']
"""

from __future__ import annotations

import importlib
from typing import Any

from llmguide.envs.registry import ENVS, NAMESPACE, family_of, list_envs, make, register_envs

__all__ = [
    "ENVS",
    "NAMESPACE",
    "CrafterEnv",
    "CrafterText",
    "HighwayText",
    "MiniGridText",
    "NetHackText",
    "ScienceWorldEnv",
    "TextView",
    "family_of",
    "list_envs",
    "make",
    "register_envs",
]

_LAZY = {
    "TextView": "llmguide.envs._base",
    "MiniGridText": "llmguide.envs.minigrid",
    "CrafterEnv": "llmguide.envs.crafter",
    "CrafterText": "llmguide.envs.crafter",
    "NetHackText": "llmguide.envs.nethack",
    "ScienceWorldEnv": "llmguide.envs.scienceworld",
    "HighwayText": "llmguide.envs.highway",
}


def __getattr__(name: str) -> Any:
    """Import a view class on first access, so heavy env packages load only when used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmguide.envs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
