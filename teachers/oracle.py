"""Scripted teachers: exports `OracleTeacher` (upper bound), and the controls `RandomTeacher`
and `FirstOptionTeacher`.

None calls an LLM. The oracle reads MiniGrid's true grid and plans with
BFS (`plan_next`): key -> door -> goal on DoorKey, door after door on
MultiRoom, doors -> key -> locked door -> ball on KeyCorridor. The random
teacher picks uniformly among the valid subgoals of the current layout. The
first-option teacher takes the first subgoal of the list an LLM teacher would
be shown (same per-seed shuffle): what a model with a pure position bias would
teach, the baseline an LLM teacher must beat to show it reads the state.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from llmguide.teachers.base import Proposal, Subgoal, Teacher
from llmguide.teachers.minigrid_planning import minigrid_base, plan_next

from llmguide.errors import ConfigError

__all__ = ["FirstOptionTeacher", "OracleTeacher", "RandomTeacher"]


class OracleTeacher(Teacher):
    """Subgoals from the true state, in the order that solves the mission.

    Example:
        >>> import minigrid, gymnasium as gym
        >>> env = gym.make("MiniGrid-DoorKey-5x5-v0"); _ = env.reset(seed=0)
        >>> OracleTeacher("object").propose(env, {}).subgoal.text
        'yellow key'
    """

    name = "oracle"

    def check_env(self, env: gym.Env) -> None:
        super().check_env(env)
        if plan_next(env) is None:
            base = minigrid_base(env)
            raise ConfigError(
                f"OracleTeacher cannot plan for mission {base.mission!r} "
                "(it knows 'get to the goal' and 'pick up / go to / open the COLOUR OBJECT' missions)."
            )

    def _query(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal]) -> Proposal:
        target = plan_next(env)
        if target is None:
            return Proposal(None)
        base = minigrid_base(env)
        return Proposal(target.as_subgoal(self.kind, (int(base.agent_pos[0]), int(base.agent_pos[1]))))


class RandomTeacher(Teacher):
    """A uniformly random valid subgoal each time it is asked (seeded)."""

    name = "random"

    def __init__(self, kind: str = "object", *, seed: int = 0) -> None:
        super().__init__(kind, cache=None)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"RandomTeacher(kind={self.kind!r}, seed={self.seed})"

    def _query(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal]) -> Proposal:
        options = self.candidates(env)
        done = {s.key for s in achieved}
        options = [o for o in options if o.key not in done] or options
        if not options:
            return Proposal(None)
        return Proposal(options[int(self._rng.integers(len(options)))])


class FirstOptionTeacher(Teacher):
    """Always the first subgoal as `SubgoalTeacher` would list it (``seed``: its per-seed shuffle;
    None: layout order, which on DoorKey is the plan itself)."""

    name = "first_option"

    def __init__(self, kind: str = "object", *, seed: int | None = 0) -> None:
        super().__init__(kind, cache=None)
        self.seed = seed

    def __repr__(self) -> str:
        return f"FirstOptionTeacher(kind={self.kind!r}, seed={self.seed})"

    def _query(self, env: gym.Env, info: dict[str, Any], achieved: list[Subgoal]) -> Proposal:
        options = self.listing(env, achieved, self.seed)
        return Proposal(options[0] if options else None)
