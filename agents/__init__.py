"""Agents: how RL learners consume LLM guidance (wrappers and callbacks for SB3)."""

from llmguide.agents.guidance import (
    SUBGOAL_DIM,
    FlatImage,
    SubgoalObservation,
    SubgoalRewardWrapper,
    SuccessInfo,
    TeacherMetricsCallback,
    encode_subgoal,
    make_minigrid_env,
)

__all__ = [
    "SUBGOAL_DIM",
    "FlatImage",
    "SubgoalObservation",
    "SubgoalRewardWrapper",
    "SuccessInfo",
    "TeacherMetricsCallback",
    "encode_subgoal",
    "make_minigrid_env",
]

from llmguide.agents.spring import SpringAgent, evaluate_crafter, run_spring_config

__all__ += ["SpringAgent", "evaluate_crafter", "run_spring_config"]

from llmguide.agents.dilu import DiLuAgent, DrivingLog, make_dilu_env, run_dilu_config

__all__ += ["DiLuAgent", "DrivingLog", "make_dilu_env", "run_dilu_config"]

from llmguide.agents.scienceworld import RandomValidAgent, ScienceWorldAgent, run_scienceworld_config

__all__ += ["RandomValidAgent", "ScienceWorldAgent", "run_scienceworld_config"]

from llmguide.agents.rladapter import RLAdapterCallback, SubgoalImageExtractor, run_rladapter_config  # noqa: E402

__all__ += ["RLAdapterCallback", "SubgoalImageExtractor", "run_rladapter_config"]
