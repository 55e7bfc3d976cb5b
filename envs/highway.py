"""Language view of highway-env: exports `HighwayText`, `make_highway`, `episode_cap`.

DiLu-style scene text: the ego vehicle's lane and speed, then each vehicle the
observation holds (the same `close_objects_to` query the Kinematics
observation makes) with its lane relative to the ego, the gap ahead or
behind, and its relative speed; then the meta-actions available now.

Info keys added: `text`, `action_names` (highway-env's DiscreteMetaAction
names in index order, e.g. ["LANE_LEFT", "IDLE", "LANE_RIGHT", "FASTER",
"SLOWER"]), `available_actions` (list[int]), `valid_actions` (their names),
`events` ("collision", "changed to the left lane", "left the road",
"arrived"), `ego_speed` (m/s), `crashed` (bool), `vehicles` (one dict per
described vehicle: lane, gap_m, rel_speed).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from llmguide.envs._base import TextView, construct, time_limited

from llmguide.errors import ConfigError

__all__ = ["META_ACTIONS", "HighwayText", "episode_cap", "make_highway"]

#: The five meta-actions in highway-env's DiscreteMetaAction index order.
META_ACTIONS = ["LANE_LEFT", "IDLE", "LANE_RIGHT", "FASTER", "SLOWER"]
_ORDINAL = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def _ordinal(i: int) -> str:
    return _ORDINAL[i] if i < len(_ORDINAL) else f"{i + 1}th"


class HighwayText(TextView):
    """highway-env env (DiscreteMetaAction) with a DiLu-style scene text in `info`.

    Example:
        >>> import gymnasium as gym, highway_env  # doctest: +SKIP
        >>> env = HighwayText(gym.make("highway-fast-v0"))  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> info["text"].startswith("You drive in the")  # doctest: +SKIP
        True
    """

    info_keys = (
        "text",
        "action_names",
        "available_actions",
        "valid_actions",
        "events",
        "ego_speed",
        "crashed",
        "vehicles",
    )

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        action_type = getattr(base, "action_type", None)
        actions = getattr(action_type, "actions", None)
        if not isinstance(actions, dict) or not hasattr(action_type, "get_available_actions"):
            raise ConfigError(
                f"The highway text view needs the DiscreteMetaAction action type, got "
                f"{type(action_type).__name__}; pass config={{'action': {{'type': "
                f"'DiscreteMetaAction'}}}} or text=False."
            )
        self._base = base
        self.action_names: list[str] = [actions[i] for i in range(len(actions))]
        self._lane_before: tuple | None = None
        self._crashed_before = False
        self._seen: list[Any] | None = None

    def _record_observed(self) -> None:
        """Record what the observation holds when it is made.

        Some envs (intersection) remove and spawn vehicles after observing, so
        the query must run at observation time; the hook is set on the
        observation-type instance, which the env re-creates at each reset.
        """
        obs_type = self._base.observation_type
        if getattr(obs_type, "_llmguide_recorded", False):
            return
        observe = obs_type.observe

        def recording_observe() -> Any:
            out = observe()
            self._seen = self._observed()
            return out

        obs_type.observe = recording_observe
        obs_type._llmguide_recorded = True

    # -- scene -------------------------------------------------------------
    def _observed(self) -> list[Any]:
        """The road objects the observation holds, by the observation's own query."""
        base = self._base
        ego = base.vehicle
        obs_type = base.observation_type
        if hasattr(obs_type, "vehicles_count") and hasattr(obs_type, "see_behind"):
            objs = base.road.close_objects_to(
                ego,
                base.PERCEPTION_DISTANCE,
                count=obs_type.vehicles_count - 1,
                see_behind=obs_type.see_behind,
                sort=getattr(obs_type, "order", "sorted") == "sorted",
                vehicles_only=not getattr(obs_type, "include_obstacles", True),
            )
            return objs[-obs_type.vehicles_count + 1 :] if obs_type.vehicles_count > 1 else []
        return base.road.close_vehicles_to(ego, base.PERCEPTION_DISTANCE, count=8)

    def scene(self) -> tuple[str, list[dict[str, Any]], list[int]]:
        """Scene text, described vehicles and available action indices."""
        base = self._base
        ego = base.vehicle
        network = base.road.network
        lane_index = ego.lane_index
        lanes = network.graph.get(lane_index[0], {}).get(lane_index[1], [None])
        n_lanes = len(lanes)
        speed = float(ego.speed)
        if n_lanes > 1:
            where = f"You drive in the {_ordinal(lane_index[2])} lane from the left of {n_lanes}"
        else:
            where = "You drive in a single-lane road"
        parts = [f"{where}, at {speed:.1f} m/s."]
        heading = np.array([np.cos(ego.heading), np.sin(ego.heading)])
        left = np.array([np.sin(ego.heading), -np.cos(ego.heading)])  # y points down
        vehicles = []
        lines = []
        seen, self._seen = self._seen, None
        for k, v in enumerate(self._observed() if seen is None else seen, 1):
            other = getattr(v, "lane_index", None)
            if other is None:
                rel_lane = None
                lane = "off the lanes"
            elif other[:2] == lane_index[:2]:
                rel_lane = int(other[2]) - int(lane_index[2])
                lane = (
                    "in your lane"
                    if rel_lane == 0
                    else f"{abs(rel_lane)} lane{'s' if abs(rel_lane) > 1 else ''} to your "
                    + ("left" if rel_lane < 0 else "right")
                )
            else:
                rel_lane = None
                lane = "on another road"
            if other is not None and other[:2] == lane_index[:2]:
                gap = float(ego.lane_distance_to(v))
            else:
                gap = float(np.dot(np.asarray(v.position) - ego.position, heading))
            rel_speed = float(getattr(v, "speed", 0.0)) - speed
            kind = "vehicle" if hasattr(v, "speed") and type(v).__name__ != "Obstacle" else "obstacle"
            pos = f"{abs(gap):.0f} m {'ahead' if gap >= 0 else 'behind'}"
            if rel_lane is None:
                # Off our road (junctions, ramps): say which side it is on too.
                side = float(np.dot(np.asarray(v.position) - ego.position, left))
                if abs(side) >= 1.0:
                    pos += f", {abs(side):.0f} m to your {'left' if side > 0 else 'right'}"
            if abs(rel_speed) < 0.5:
                rel = "same speed"
            else:
                rel = f"{abs(rel_speed):.1f} m/s {'faster' if rel_speed > 0 else 'slower'}"
            lines.append(f"{kind} {k}: {lane}, {pos}, {rel}")
            vehicles.append({"kind": kind, "lane": rel_lane, "gap_m": gap, "rel_speed": rel_speed})
        if lines:
            parts.append("Nearby: " + "; ".join(lines) + ".")
        else:
            parts.append("No vehicle nearby.")
        available = sorted(int(a) for a in base.action_type.get_available_actions())
        parts.append("Available actions: " + ", ".join(self.action_names[a] for a in available) + ".")
        return " ".join(parts), vehicles, available

    def _view(self, events: list[str]) -> dict[str, Any]:
        text, vehicles, available = self.scene()
        ego = self._base.vehicle
        return {
            "text": text,
            "action_names": self.action_names,
            "available_actions": available,
            "valid_actions": [self.action_names[a] for a in available],
            "events": events,
            "ego_speed": float(ego.speed),
            "crashed": bool(ego.crashed),
            "vehicles": vehicles,
        }

    # -- hooks -------------------------------------------------------------
    def _on_reset(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
        self._seen = None
        self._record_observed()
        return self._view([])

    def _before_step(self, action: Any) -> None:
        ego = self._base.vehicle
        self._lane_before = ego.lane_index
        self._crashed_before = bool(ego.crashed)

    def _on_step(
        self,
        obs: Any,
        action: Any,
        reward: SupportsFloat,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> dict[str, Any]:
        base = self._base
        ego = base.vehicle
        events: list[str] = []
        if ego.crashed and not self._crashed_before:
            events.append("collision")
        before, now = self._lane_before, ego.lane_index
        if before is not None and now != before:
            if now[:2] == before[:2]:
                side = "left" if now[2] < before[2] else "right"
                events.append(f"changed to the {side} lane")
            else:
                events.append("entered a new road section")
        if not getattr(ego, "on_road", True):
            events.append("left the road")
        arrived = getattr(base, "has_arrived", None)
        if callable(arrived):
            try:
                if arrived(ego):
                    events.append("arrived")
            except TypeError:
                pass
        return self._view(events)


def episode_cap(base: Any) -> int | None:
    """Steps until highway-env truncates by itself, or None when it never does.

    The envs whose config has a `duration` truncate once their clock, advanced
    by `1 / policy_frequency` a step, reaches it; the count repeats that float
    sum, so it is exact (0.2 added 200 times falls short of 40). The others
    (merge, two-way, lane-keeping) end only by terminating. Read at
    construction: `configure()` called later does not move the cap.
    """
    duration = base.config.get("duration")
    if duration is None:
        return None
    step, clock, steps = 1 / base.config["policy_frequency"], 0, 0
    while not clock >= duration:
        clock += step
        steps += 1
    return steps


def make_highway(env_id: str, text: bool = True, **kwargs: Any) -> gym.Env:
    """Make a highway-env id (highway-v0, highway-fast-v0, merge-v0, intersection-v0, ...).

    Under one `TimeLimit` at `episode_cap` when the env has a duration, so
    `env.spec.max_episode_steps` is the real cap (None for merge-v0).
    """
    import highway_env  # noqa: F401  (registers the highway-env ids)

    env = construct(env_id, **kwargs)
    env = time_limited(env, episode_cap(env.unwrapped))
    return HighwayText(env) if text else env
