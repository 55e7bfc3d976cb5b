"""Agents: how RL learners consume LLM guidance (wrappers and callbacks for SB3), the LLM-policy
agents (SPRING, DiLu, ScienceWorld) and the methods built from them.

Names are imported on first access, so `import llmguide.agents.subgoal_method` does not load
NLE, ScienceWorld or the highway simulator.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **{name: "llmguide.agents.guidance" for name in (
        "SUBGOAL_DIM", "FlatImage", "SubgoalObservation", "SubgoalRewardWrapper", "SuccessInfo",
        "TeacherMetricsCallback", "encode_subgoal", "make_minigrid_env")},
    "SubgoalMethod": "llmguide.agents.subgoal_method",
    "SpringAgent": "llmguide.agents.spring",
    "SpringMethod": "llmguide.agents.spring",
    "evaluate_crafter": "llmguide.agents.spring",
    "DiLuAgent": "llmguide.agents.dilu",
    "DiLuMethod": "llmguide.agents.dilu",
    "DrivingLog": "llmguide.agents.dilu",
    "make_dilu_env": "llmguide.agents.dilu",
    "RandomValidAgent": "llmguide.agents.scienceworld",
    "ScienceWorldAgent": "llmguide.agents.scienceworld",
    "ScienceWorldMethod": "llmguide.agents.scienceworld",
    "ScienceWorldRLMethod": "llmguide.agents.scienceworld_rl",
    "RLAdapterCallback": "llmguide.agents.rladapter",
    "RLAdapterMethod": "llmguide.agents.rladapter",
    "SubgoalImageExtractor": "llmguide.agents.rladapter",
    "ONIMethod": "llmguide.agents.oni",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llmguide.agents' has no attribute {name!r}")
