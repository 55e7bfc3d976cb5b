"""DiLu on highway-env: a driver that reasons, reflects and remembers.

Exports ``DiLuAgent`` (``act(obs, info)`` for the shared evaluation loop),
``DecisionStep`` (one traced decision), ``lane_figures`` / ``lanes_scene``
(gap and time-to-collision figures from highway-env's state, and the scene
text made of them), ``DrivingLog`` (mean speed and crash
flags for any agent in the loop), ``no_collision`` (the success criterion),
``console_approve`` (a human approves each reflection), ``make_dilu_env``, and
``DiLuMethod`` / ``DiLuConfig`` (``method: dilu`` for ``llmguide run
configs/dilu_highway.yaml``).

Following DiLu (Wen et al., ICLR 2024):
- Reasoning: the scene text -> the ``k`` most similar past experiences from the
  vector memory -> a few-shot prompt after the fixed driving rules ->
  chain-of-thought (on by default, ``cot_tokens``) -> one meta-action chosen
  with ``llmguide.llm.choose`` among the actions available now
  (``info["valid_actions"]``), so an unavailable or invalid action cannot happen.
- Scene: by default the lane view (``scene="lanes"``): for the ego's lane and
  each neighbour lane, the vehicle ahead and behind with gap, relative speed
  and time-to-collision, read from highway-env's own state
  (``lane_figures``, put in ``info["figures"]`` by ``make_dilu_env``). It is
  what a lane-level decision depends on, in about half the env text's tokens
  (a decision's cost on a CPU is mostly prompt tokens).
  ``scene="full"`` uses the env's text of every observed vehicle.
- Reflection: after an episode that ends in a collision, the LLM is shown the
  last few decisions, each with the env's gap / time-to-collision figures
  before and after it, reasons briefly, picks the decisive decision among the
  step numbers, then the corrected action and why; the corrected experience
  (scene, corrected decision, reasoning) goes to memory (after an optional
  ``approve`` callback, e.g. a person). Each reflection records the step it
  picked, its position in the window and the reason. Safe episodes add all
  their decisions as positive experiences; the memory deduplicates them.
- Choices: every ``choose`` the agent makes is counted per site (decision,
  reflection step, reflection action): how often the first listed option won
  and how often ``choose`` fell back (``choice_stats``).
- Memory: ``llmguide.memory.ExperienceMemory`` — grows across episodes and,
  with a persistent path, across runs. No gradient steps anywhere.

Example:
    >>> from llmguide.core import prepare, run                              # doctest: +SKIP
    >>> run(prepare({"method": "dilu", "episodes": 2, "decisions": 5}), "runs/dilu")  # doctest: +SKIP
    >>> from llmguide.agents.loop import run_episodes, summarize          # doctest: +SKIP
    >>> env = make_dilu_env()                                               # doctest: +SKIP
    >>> agent = DiLuAgent(llm="smollm2", memory="runs/dilu-memory", k=3)    # doctest: +SKIP
    >>> summarize(run_episodes(agent, env, 2, success_fn=no_collision))     # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from llmguide.agents.loop import EpisodeRecord
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from llmguide.config import AgentConfig
from llmguide.errors import ConfigError
from llmguide.llm import METER, choose, load
from llmguide.methods import AgentMethod, EpisodePlan

__all__ = [
    "DILU_ENV_CONFIG",
    "DRIVING_RULES",
    "ChoiceStats",
    "DecisionStep",
    "DiLuAgent",
    "DiLuConfig",
    "DiLuMethod",
    "DrivingLog",
    "LaneFigures",
    "console_approve",
    "lane_figures",
    "lanes_scene",
    "make_dilu_env",
    "no_collision",
]

#: The original DiLu setting (highway-v0, 4 lanes, 15 vehicles, density 2, 20 decisions of 1 s).
DILU_ENV_CONFIG: dict[str, Any] = {
    "lanes_count": 4,
    "vehicles_count": 15,
    "vehicles_density": 2,
    "duration": 20,
    "policy_frequency": 1,
    "action": {"type": "DiscreteMetaAction"},
}

#: Fixed context at the head of every prompt (prefix-stable for llama.cpp's cache).
DRIVING_RULES = """You drive the ego car on a multi-lane highway. Each second you pick one meta-action:
LANE_LEFT or LANE_RIGHT (change lane), IDLE (keep lane and speed), FASTER, SLOWER.
Driving rules:
1. Never collide: safety comes before speed.
2. Keep a gap of at least 25 m to the vehicle ahead in your lane; if it is closer and slower than you, SLOWER or change lane.
3. Change lane only when the target lane has no vehicle within 15 m ahead or behind you.
4. When your lane is clear far ahead, drive FASTER; do not change lanes without a reason.
5. A time-to-collision (TTC) under 3 s is dangerous: act on it now.
6. Choose only among the available actions."""

#: A closing vehicle with a time-to-collision under this many seconds is a danger (rule 5).
DANGER_TTC_S = 3.0

Approve = Callable[["Experience", "DecisionStep"], bool]  # noqa: F821 (Experience lives in llmguide.memory)


# -- gap and time-to-collision figures from the env's own state ----------------------------------
#: One neighbour: bumper-to-bumper gap (m, <= 0 = alongside), closing speed (m/s, > 0 = the gap
#: shrinks) and time-to-collision (s; None when the gap is not shrinking).
Neighbour = dict[str, float | None]
#: {"lane": ego lane (0 = leftmost), "lanes": lane count, "speed": ego m/s,
#:  "own"/"left"/"right": {"ahead": Neighbour | None, "behind": Neighbour | None} (None = no such lane),
#:  "min_ttc_s": the smallest TTC in the ego's own lane (None = nothing closing)}
LaneFigures = dict[str, Any]


def _neighbour(ego: Any, other: Any, lane: Any, ahead: bool) -> Neighbour | None:
    if other is None:
        return None
    s_ego = lane.local_coordinates(ego.position)[0]
    s_other = lane.local_coordinates(other.position)[0]
    half = (float(getattr(ego, "LENGTH", 5.0)) + float(getattr(other, "LENGTH", 5.0))) / 2
    gap = (s_other - s_ego if ahead else s_ego - s_other) - half
    other_speed = float(getattr(other, "speed", 0.0))
    closing = (float(ego.speed) - other_speed) if ahead else (other_speed - float(ego.speed))
    if gap <= 0:
        ttc: float | None = 0.0
    else:
        ttc = gap / closing if closing > 1e-6 else None
    return {"gap_m": round(gap, 1), "closing_mps": round(closing, 1),
            "ttc_s": None if ttc is None else round(ttc, 1)}


def lane_figures(env: gym.Env) -> LaneFigures:
    """Gap, closing speed and time-to-collision of the vehicle ahead and behind the ego, in its
    lane and in each neighbour lane, from highway-env's own state (``road.neighbour_vehicles``
    projects the ego onto each lane, as highway-env's IDM and MOBIL models do)."""
    base = env.unwrapped
    ego, road = base.vehicle, base.road
    lane_index = ego.lane_index
    lanes = road.network.graph.get(lane_index[0], {}).get(lane_index[1], [])
    figures: LaneFigures = {"lane": int(lane_index[2]), "lanes": len(lanes), "speed": round(float(ego.speed), 1)}
    for name, offset in (("own", 0), ("left", -1), ("right", 1)):
        i = int(lane_index[2]) + offset
        if not 0 <= i < len(lanes):
            figures[name] = None
            continue
        index = (lane_index[0], lane_index[1], i)
        front, rear = road.neighbour_vehicles(ego, index)
        lane = road.network.get_lane(index)
        figures[name] = {"ahead": _neighbour(ego, front, lane, True), "behind": _neighbour(ego, rear, lane, False)}
    own_ttcs = [n["ttc_s"] for n in (figures["own"] or {}).values() if n is not None and n["ttc_s"] is not None]
    figures["min_ttc_s"] = min(own_ttcs) if own_ttcs else None
    return figures


def _describe(n: Neighbour | None, where: str) -> str:
    if n is None:
        return f"{where} none"
    if n["gap_m"] is not None and n["gap_m"] <= 0:
        return f"{where} 0 m (overlapping), TTC 0.0 s"
    closing = n["closing_mps"] or 0.0
    motion = (" closing " if closing > 0 else " opening ") + f"{abs(closing):.0f} m/s" if abs(closing) >= 0.5 else ""
    # a TTC beyond 10 s changes no decision here: left out, the scene is shorter (every token is evaluated twice)
    ttc = f", TTC {n['ttc_s']:.1f} s" if n["ttc_s"] is not None and n["ttc_s"] <= 10 else ""
    return f"{where} {n['gap_m']:.0f} m{motion}{ttc}"


def lanes_scene(figures: LaneFigures, available: Sequence[str]) -> str:
    """The scene as a lane-level decision needs it, tersely (prompt tokens are a CPU decision's cost):
    per lane, the vehicle ahead and behind with gap, closing speed and TTC when under 10 s."""
    parts = [f"Lane {figures['lane'] + 1} of {figures['lanes']} (1 = leftmost), {figures['speed']:.0f} m/s."]
    for name, label in (("own", "Your lane"), ("left", "Left lane"), ("right", "Right lane")):
        lane = figures.get(name)
        if lane is None:
            parts.append(f"{label}: none.")
        else:
            parts.append(f"{label}: {_describe(lane['ahead'], 'ahead')}; {_describe(lane['behind'], 'behind')}.")
    parts.append("Available: " + ", ".join(available) + ".")
    return " ".join(parts)


def _figures_brief(figures: Mapping[str, Any] | None) -> str:
    """One clause for a reflection: the ego's lane ahead/behind and its smallest TTC."""
    if not figures:
        return "no figures"
    own = figures.get("own") or {}
    ttc = figures.get("min_ttc_s")
    return (f"lane {figures['lane'] + 1}, {figures['speed']:.0f} m/s, {_describe(own.get('ahead'), 'ahead')}; "
            f"{_describe(own.get('behind'), 'behind')}; min TTC {'none' if ttc is None else f'{ttc:.1f} s'}")


class SafetyFigures(gym.Wrapper):
    """Adds ``info["figures"]`` (``lane_figures``) at every reset and step."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "figures": lane_figures(self.env)}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "figures": lane_figures(self.env)}


# -- the agent ----------------------------------------------------------------------------------
@dataclass
class DecisionStep:
    """One decision the agent took: what it saw (text and the env's figures), what it did and why."""

    step: int
    scene: str
    available: list[str]
    decision: str
    reasoning: str
    retrieved: int
    ego_speed: float | None = None
    figures: dict[str, Any] | None = None
    first_option: bool = False
    fallback: bool = False
    seconds: float = 0.0


@dataclass
class ChoiceStats:
    """Counts of one kind of ``choose`` call: how often the first listed option won, how often it fell back."""

    calls: int = 0
    first_option: int = 0
    fallbacks: int = 0

    def add(self, other: Mapping[str, int]) -> None:
        self.calls += int(other.get("calls", 0))
        self.first_option += int(other.get("first_option", 0))
        self.fallbacks += int(other.get("fallbacks", 0))

    def as_dict(self) -> dict[str, Any]:
        n = self.calls
        return {"calls": n, "first_option": self.first_option, "fallbacks": self.fallbacks,
                "first_option_rate": self.first_option / n if n else None,
                "fallback_rate": self.fallbacks / n if n else None}


def no_collision(terminated: bool, truncated: bool, ret: float, info: Mapping[str, Any]) -> bool:
    """DiLu's success: the whole episode without a collision."""
    return not bool(info.get("crashed", terminated))


def console_approve(experience: Any, step: DecisionStep) -> bool:
    """Ask a person on the terminal to approve a reflection (the original DiLu's human check)."""
    print(f"\nScene: {step.scene}\nOriginal decision: {step.decision}")
    print(f"Corrected decision: {experience.decision}\nReasoning: {experience.reasoning}")
    try:
        answer = input("Store this corrected experience? [y/N] ").strip().lower()
    except EOFError:  # no terminal (a background run): nobody approved it
        return False
    return answer in ("y", "yes")


class DrivingLog:
    """Per-episode mean speed and crash flag for any agent run through ``run_episodes``.

    ``log.wrap(agent)`` records ``info["ego_speed"]`` at each decision; pass
    ``extra_fn=log.extra`` so each ``EpisodeRecord.extra`` gets ``crashed``,
    ``mean_speed`` and ``decisions_survived``.
    """

    def __init__(self) -> None:
        self.speeds: list[float] = []

    def wrap(self, agent: Any) -> Any:
        log = self

        class _Logged:
            def act(self, obs: Any, info: dict[str, Any]) -> Any:
                if "ego_speed" in info:
                    log.speeds.append(float(info["ego_speed"]))
                return agent.act(obs, info)

            def reset(self, info: dict[str, Any]) -> None:
                log.speeds = []
                if hasattr(agent, "reset"):
                    agent.reset(info)

            def end_episode(self, record: EpisodeRecord) -> None:
                if hasattr(agent, "end_episode"):
                    agent.end_episode(record)

        return _Logged()

    def extra(self, info: dict[str, Any]) -> dict[str, Any]:
        speeds = self.speeds + ([float(info["ego_speed"])] if "ego_speed" in info else [])
        crashed = bool(info.get("crashed", False))
        return {
            "crashed": crashed,
            "mean_speed": sum(speeds) / len(speeds) if speeds else 0.0,
            "decisions_survived": len(self.speeds) - int(crashed),
        }


def _text(answer: Any) -> str:
    return (answer.content if isinstance(answer.content, str) else str(answer.content)).strip()


def _sentences(text: str, limit: int = 100) -> str:
    """A stored reasoning shown as a few-shot example: its first ``limit`` characters at a word end."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


class DiLuAgent:
    """DiLu's driver agent: retrieval-augmented chain-of-thought + reflection + vector memory.

    Args:
        llm: a model spec (``smollm2``, ``gguf:PATH``, ``openai:MODEL@URL``) or a chat model.
        memory: an ``ExperienceMemory``, a directory path (opened/created persistent), or None (no memory).
        k: how many similar experiences are shown as few-shot examples.
        reflect: after a collision episode, correct the decisive decision and store it.
        learn: store experiences at all (False = evaluate with a frozen memory).
        approve: callback ``(experience, step) -> bool`` before a reflection is stored (None = automatic).
        reflection_window: how many decisions before the crash the reflection looks at.
        cot_tokens: the chain-of-thought token cap (0 = no chain-of-thought, just the choice); the
            reflection's analysis and explanation use the same cap.
        scene: ``"lanes"`` (the env's gap/TTC figures per lane, ``lanes_scene``; needs
            ``info["figures"]`` from ``make_dilu_env``) or ``"full"`` (the env's text of every vehicle).
        rules: the fixed driving rules at the head of every prompt.
        log_dir: where ``episode_NNN.jsonl`` decision traces go (None = no log).
        reflections_path: a JSONL file each reflection is appended to (None = kept in ``reflections`` only).
    """

    def __init__(
        self,
        llm: str | BaseChatModel = "smollm2",
        memory: Any = None,
        k: int = 3,
        *,
        reflect: bool = True,
        learn: bool = True,
        approve: Approve | None = None,
        reflection_window: int = 5,
        cot_tokens: int = 24,
        scene: Literal["lanes", "full"] = "lanes",
        rules: str = DRIVING_RULES,
        log_dir: str | Path | None = None,
        reflections_path: str | Path | None = None,
    ) -> None:
        if k < 0:
            raise ConfigError(f"DiLuAgent k must be >= 0, got {k}.")
        if reflection_window < 1:
            raise ConfigError(f"reflection_window must be >= 1, got {reflection_window}.")
        if scene not in ("lanes", "full"):
            raise ConfigError(f"DiLuAgent scene must be 'lanes' or 'full', got {scene!r}.")
        self.llm = load(llm) if isinstance(llm, str) else llm
        if isinstance(memory, (str, Path)):
            from llmguide.memory import ExperienceMemory

            memory = ExperienceMemory(memory)
        self.memory = memory
        self.k = k
        self.reflect, self.learn, self.approve = reflect, learn, approve
        self.reflection_window = reflection_window
        self.cot_tokens = cot_tokens
        self.scene = scene
        self.rules = rules
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.reflections_path = Path(reflections_path) if reflections_path is not None else None
        self.trace: list[DecisionStep] = []
        self.episodes = 0
        self.reflections: list[dict[str, Any]] = []
        self.memory_sizes: list[int] = [len(memory) if memory is not None else 0]
        #: per choice site ("decision", "reflection_step", "reflection_action")
        self.choice_stats: dict[str, ChoiceStats] = {}
        #: wall seconds of each decision (retrieval + reasoning + choice), over the agent's life
        self.decision_seconds: list[float] = []

    # -- choices ---------------------------------------------------------------
    def _choose(self, site: str, messages: list[BaseMessage], options: list[str], default: str) -> tuple[str, bool]:
        """``llmguide.llm.choose``, counted: the first listed option winning, and fallbacks
        (the meter's fallback count rising during the call)."""
        before = METER.snapshot().fallbacks
        picked = choose(self.llm, messages, options, default=default)
        fell_back = METER.snapshot().fallbacks > before
        stats = self.choice_stats.setdefault(site, ChoiceStats())
        stats.calls += 1
        stats.first_option += int(len(options) > 1 and picked == options[0])
        stats.fallbacks += int(fell_back)
        return picked, fell_back

    # -- reasoning -----------------------------------------------------------
    def reset(self, info: dict[str, Any]) -> None:
        self.trace = []

    def _shots(self, scene: str) -> list[Any]:
        if self.memory is None or self.k == 0:
            return []
        return self.memory.search(scene, k=self.k)

    def prompt(self, scene: str, shots: Sequence[Any]) -> list[BaseMessage]:
        """Rules first (stable prefix), then the retrieved experiences, then the current scene."""
        parts = []
        if shots:
            parts.append("Experiences from similar past scenes:")
            for i, shot in enumerate(shots, 1):
                origin = " (corrected after a crash)" if shot.source == "reflection" else ""
                why = f" Because: {_sentences(shot.reasoning)}" if shot.reasoning.strip() else ""
                parts.append(f"Example {i}{origin}. Scene: {shot.scene}\nDecision: {shot.decision}.{why}")
            parts.append("")
        parts.append(f"Current scene: {scene}")
        parts.append("Briefly: is the gap ahead safe, is a neighbour lane safe, which available action is safest?")
        return [SystemMessage(content=self.rules), HumanMessage(content="\n".join(parts))]

    def decide(self, scene: str, available: list[str], figures: dict[str, Any] | None = None) -> DecisionStep:
        """Reason about one scene and choose one of the ``available`` meta-actions."""
        start = time.perf_counter()
        shots = self._shots(scene)
        messages = self.prompt(scene, shots)
        reasoning = ""
        if self.cot_tokens > 0:
            reasoning = _text(self.llm.invoke(messages, max_tokens=self.cot_tokens))
            messages = [*messages, AIMessage(content=reasoning or "(no reasoning)")]
        default = "IDLE" if "IDLE" in available else available[0]
        decision, fell_back = self._choose("decision", [*messages, HumanMessage(content="So the final decision is:")],
                                           list(available), default)
        return DecisionStep(len(self.trace), scene, list(available), decision, reasoning, len(shots), figures=figures,
                            first_option=len(available) > 1 and decision == available[0], fallback=fell_back,
                            seconds=round(time.perf_counter() - start, 3))

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        names: list[str] = list(info.get("action_names") or [])
        available = list(info.get("valid_actions") or [])
        if not names or not available or "text" not in info:
            raise ConfigError(
                "DiLuAgent needs the highway text view (info text, action_names, valid_actions); "
                "make the env with llmguide.agents.dilu.make_dilu_env or llmguide.envs.make(..., text=True)."
            )
        figures = info.get("figures")
        if self.scene == "lanes":
            if figures is None:
                raise ConfigError("DiLuAgent scene='lanes' needs info['figures']; make the env with "
                                  "llmguide.agents.dilu.make_dilu_env, or use scene='full'.")
            scene = lanes_scene(figures, available)
        else:
            scene = info["text"]
        step = self.decide(scene, available, figures)
        step.ego_speed = float(info["ego_speed"]) if "ego_speed" in info else None
        self.trace.append(step)
        self.decision_seconds.append(step.seconds)
        return names.index(step.decision)

    # -- learning ------------------------------------------------------------
    def end_episode(self, record: EpisodeRecord) -> None:
        crashed = bool(record.extra.get("crashed", record.terminated))
        episode_id = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{record.seed}-ep{self.episodes}"
        added = 0
        if self.memory is not None and self.learn and self.trace:
            if crashed:
                if self.reflect:
                    added = self._reflect(episode_id)
            else:
                added = self._remember(episode_id)
        self._write_log(record, crashed, added)
        self.episodes += 1
        self.memory_sizes.append(len(self.memory) if self.memory is not None else 0)

    def _remember(self, episode_id: str) -> int:
        from llmguide.memory import Experience

        return self.memory.add(
            Experience(scene=s.scene, decision=s.decision, reasoning=s.reasoning, outcome="safe",
                       source="reasoning", episode=episode_id, step=s.step)
            for s in self.trace
        )

    def _window(self, trace: Sequence[DecisionStep]) -> list[DecisionStep]:
        return list(trace[-self.reflection_window:])

    def reflection_prompt(self, window: Sequence[DecisionStep]) -> list[BaseMessage]:
        """Each decision in the window with the env's figures before it and after it (the next
        decision's, the collision after the last), so the step where the danger began can be found."""
        lines = ["The episode ended in a collision. The last decisions, with the distances and "
                 "time-to-collision (TTC) the simulator measured before and after each:"]
        for i, s in enumerate(window):
            after = _figures_brief(window[i + 1].figures) if i + 1 < len(window) else "COLLISION"
            lines.append(f"Step {s.step}: before: {_figures_brief(s.figures)}. Available: {', '.join(s.available)}. "
                         f"Action: {s.decision}. After: {after}.")
        lines.append("Which step was decisive: the last one where a safe action still existed but the action "
                     "taken let the gap or TTC fall? Answer briefly.")
        return [SystemMessage(content=self.rules), HumanMessage(content="\n".join(lines))]

    @staticmethod
    def figures_pick(window: Sequence[DecisionStep]) -> int | None:
        """The step the figures alone point at: the last decision taken while the ego's lane was
        still safe (min TTC none or >= DANGER_TTC_S); the first of the window when none was.
        None without figures. A diagnostic to compare the LLM's pick with, not a ground truth."""
        if not window or any(s.figures is None for s in window):
            return None
        safe = [s.step for s in window
                if s.figures["min_ttc_s"] is None or s.figures["min_ttc_s"] >= DANGER_TTC_S]  # type: ignore[index]
        return safe[-1] if safe else window[0].step

    def reflect_on(self, trace: Sequence[DecisionStep]) -> tuple[Any, DecisionStep, dict[str, Any]] | None:
        """Find the decisive decision among the last few and write the corrected experience (not stored).

        Returns the experience, the step it corrects and the record of the pick
        (``picked_step``, ``position`` in the window, ``window``, ``reason``, ``figures_step``).
        """
        from llmguide.memory import Experience

        window = self._window(trace)
        if not window:
            return None
        messages = self.reflection_prompt(window)
        reason = ""
        if self.cot_tokens > 0:
            reason = _text(self.llm.invoke(messages, max_tokens=max(self.cot_tokens, 32)))
            messages = [*messages, AIMessage(content=reason or "(no reasoning)")]
        labels = [f"step {s.step}" for s in window]
        picked, _ = self._choose("reflection_step", [*messages, HumanMessage(content="So the decisive step is:")],
                                 labels, labels[-1])
        position = labels.index(picked)
        wrong = window[position]
        alternatives = [a for a in wrong.available if a != wrong.decision] or list(wrong.available)
        fix_messages = [
            SystemMessage(content=self.rules),
            HumanMessage(content=f"Scene: {wrong.scene}\nThe action {wrong.decision} here led to a collision "
                                 f"(after it: {_figures_brief(window[position + 1].figures) if position + 1 < len(window) else 'COLLISION'}). "
                                 "Which available action should have been taken instead?"),
        ]
        default = "SLOWER" if "SLOWER" in alternatives else alternatives[0]
        corrected, _ = self._choose("reflection_action", fix_messages, alternatives, default)
        explain = [*fix_messages, AIMessage(content=corrected),
                   HumanMessage(content=f"In one sentence, why is {corrected} safer than {wrong.decision} here?")]
        why = _text(self.llm.invoke(explain, max_tokens=max(self.cot_tokens, 32)))
        reasoning = f"{wrong.decision} here led to a collision; {corrected} is safer. {why}".strip()
        experience = Experience(scene=wrong.scene, decision=corrected, reasoning=reasoning,
                                outcome=f"corrected: {wrong.decision} led to a collision", source="reflection",
                                step=wrong.step)
        pick = {"picked_step": wrong.step, "position": position, "window": [s.step for s in window],
                "reason": reason or why, "figures_step": self.figures_pick(window)}
        return experience, wrong, pick

    def _reflect(self, episode_id: str) -> int:
        found = self.reflect_on(self.trace)
        if found is None:
            return 0
        experience, wrong, pick = found
        experience.episode = episode_id
        approved = self.approve(experience, wrong) if self.approve is not None else True
        added = self.memory.add([experience]) if approved else 0
        row = {
            "episode": episode_id, "wrong_step": wrong.step, "wrong_decision": wrong.decision,
            "position": pick["position"], "window": pick["window"], "first_of_episode": wrong.step == 0,
            "first_of_window": pick["position"] == 0, "reason": pick["reason"], "figures_step": pick["figures_step"],
            "figures_wrong": wrong.figures, "corrected": experience.decision, "reasoning": experience.reasoning,
            "approved": bool(approved), "added": added,
        }
        self.reflections.append(row)
        if self.reflections_path is not None:
            self.reflections_path.parent.mkdir(parents=True, exist_ok=True)
            with self.reflections_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        return added

    def blame_counts(self) -> dict[str, int]:
        """How often the reflections blamed the episode's first decision, the window's first, or a later one."""
        rows = self.reflections
        return {"reflections": len(rows), "first_of_episode": sum(r["first_of_episode"] for r in rows),
                "first_of_window": sum(r["first_of_window"] for r in rows),
                "later": sum(not r["first_of_window"] for r in rows),
                "agrees_with_figures": sum(r["figures_step"] == r["wrong_step"] for r in rows)}

    def _write_log(self, record: EpisodeRecord, crashed: bool, added: int) -> None:
        if self.log_dir is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"episode_{self.episodes:03d}.jsonl"
        with path.open("w") as fh:
            for s in self.trace:
                fh.write(json.dumps(asdict(s)) + "\n")
            fh.write(json.dumps({"end": True, "seed": record.seed, "crashed": crashed, "memories_added": added}) + "\n")


def make_dilu_env(env_id: str = "highway-v0", env_config: Mapping[str, Any] | None = None,
                  render_mode: str | None = None) -> Any:
    """The highway env with DiLu's setting (overridden by ``env_config``), its text view and
    ``info["figures"]`` (``lane_figures``)."""
    from llmguide.envs import make

    config = {**DILU_ENV_CONFIG, **dict(env_config or {})}
    kwargs: dict[str, Any] = {"config": config}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return SafetyFigures(make(env_id, text=True, **kwargs))


# -- the method ---------------------------------------------------------------------------------
class MemoryServer(BaseModel):
    """An experience memory on a Chroma server (``chroma run --path DIR --port N``) that learners
    on several nodes share; DIR stays on that node's local disk."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http(s)://HOST:PORT of the Chroma server.")
    collection: str = Field("experiences", description="Collection on the server (one per shared memory).")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        from llmguide.memory.vector import _server_url

        return _server_url(url)


class DiLuConfig(AgentConfig):
    """`method: dilu` — DiLu's driver on highway-env; `episodes` is the run's budget, `decisions` each episode's."""

    env: str = Field("highway-v0", description="A highway-env id with the text view (highway-v0 is DiLu's setting).")
    env_config: dict[str, Any] = Field(default_factory=dict, description="highway-env config, merged over DiLu's "
                                       "setting (llmguide.agents.dilu.DILU_ENV_CONFIG), e.g. vehicles_density: 3.")
    decisions: PositiveInt = Field(20, description="Decisions per episode (one a second): the episode's step cap "
                                   "and the env's duration (unless env_config sets duration).")
    max_steps: PositiveInt | None = Field(None, exclude=True, description="Not a dilu key: set from `decisions`.")
    llm: str = Field("smollm2", description="LLM spec: smollm2, gguf:PATH, openai:MODEL[@BASE_URL].")
    n_ctx: PositiveInt = Field(4096, description="llama.cpp context window (smollm2 / gguf only).")
    k: NonNegativeInt = Field(3, description="Retrieved experiences shown as few-shot examples (0 = no retrieval).")
    cot_tokens: NonNegativeInt = Field(24, description="Chain-of-thought token cap per decision (0 = choose directly; "
                                       "DiLu reasons first, so the default is on).")
    scene: Literal["lanes", "full"] = Field("lanes", description="lanes: per lane the vehicle ahead/behind with gap "
                                            "and time-to-collision from the env's state; full: the env's text of "
                                            "every observed vehicle (about 3x the tokens).")
    memory: MemoryServer | Path | None = Field(
        None, description="Experience-memory directory (null = RUN_DIR/memory); one fixed path keeps learning "
        "across runs (`llmguide memory stats PATH`); {url: http://HOST:PORT} (or the URL alone) shares one "
        "memory on a Chroma server across processes and nodes.")
    learn: bool = Field(True, description="Store experiences (false = drive with a frozen memory).")
    reflect: bool = Field(True, description="After a collision, correct the wrong decision and store it.")
    reflection_window: PositiveInt = Field(5, description="Decisions before the crash the reflection examines.")
    approve: bool = Field(False, description="A person approves each corrected experience on the terminal.")

    @field_validator("env")
    @classmethod
    def _highway_env(cls, env_id: str) -> str:
        from llmguide.envs.registry import family_of

        if family_of(env_id) != "highway":
            raise ValueError(f"the dilu method drives highway-env; {env_id!r} is not a highway-env id (use highway-v0)")
        return env_id

    @field_validator("max_steps", mode="before")
    @classmethod
    def _not_a_key(cls, value: Any) -> Any:
        raise ValueError("dilu's per-episode cap is `decisions`; set that instead")

    @field_validator("memory", mode="before")
    @classmethod
    def _url_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return {"url": value}
        return value

    @field_validator("memory")
    @classmethod
    def _absolute(cls, path: MemoryServer | Path | None) -> MemoryServer | Path | None:
        # kept absolute in the run's config.yaml, so `--resume` and `eval` find it from any folder
        return path.expanduser().resolve() if isinstance(path, Path) else path

    @model_validator(mode="after")
    def _cap_from_decisions(self) -> DiLuConfig:
        self.max_steps = self.decisions
        return self


class DiLuMethod(AgentMethod):
    """DiLu (see the module docstring) on the shared episode loop.

    The memory directory outlives the run (and a resume reopens it, so what
    was learned before Ctrl-C is kept); the run dir keeps
    ``decisions/episode_NNN.jsonl`` (numbering continues on resume) and
    ``reflections.jsonl`` (appended). Success: no collision. ``objects["llm"]``,
    a live chat model, stands in for the ``llm`` spec.
    """

    name = "dilu"
    Config = DiLuConfig

    def __init__(self, config: DiLuConfig, settings: Any, run_dir: Path, objects: dict[str, Any] | None = None) -> None:
        super().__init__(config, settings, run_dir, objects)
        self.config: DiLuConfig = config
        self.memory_path = config.memory or self.run_dir / "memory"
        self.log = DrivingLog()
        self.agent: DiLuAgent | None = None
        self._agent_base: dict[str, Any] = {"choices": {}, "blame": {}, "reflections": 0}
        self._env: Any = None
        self._state: dict[str, Any] = {"episodes": 0, "speed_sum": 0.0, "survived_sum": 0, "reflections": 0,
                                       "memory_size_before": None, "memory_sizes": [], "choices": {}, "blame": {}}

    def label(self) -> str:
        return self.settings.name or f"dilu:{self.config.llm}"

    def build(self, for_eval: bool = False) -> Any:
        """The driver with its memory; `llmguide eval` drives with the memory frozen and logs to eval_decisions/."""
        from llmguide.memory import ExperienceMemory

        cfg = self.config
        mem = self.memory_path
        memory = (ExperienceMemory(url=mem.url, collection=mem.collection) if isinstance(mem, MemoryServer)
                  else ExperienceMemory(mem))
        self.agent = DiLuAgent(
            llm=self.objects.get("llm") or load(cfg.llm, n_ctx=cfg.n_ctx), memory=memory, k=cfg.k, reflect=cfg.reflect,
            learn=cfg.learn and not for_eval, approve=console_approve if cfg.approve else None,
            reflection_window=cfg.reflection_window, cot_tokens=cfg.cot_tokens, scene=cfg.scene,
            log_dir=self.run_dir / ("eval_decisions" if for_eval else "decisions"),
            reflections_path=None if for_eval else self.run_dir / "reflections.jsonl",
        )
        if self._state["memory_size_before"] is None:
            self._state["memory_size_before"] = len(memory)
        if self._state["memory_sizes"]:
            self.agent.memory_sizes = list(self._state["memory_sizes"])
        self._agent_base = {"choices": self._state["choices"], "blame": self._state["blame"],
                            "reflections": self._state["reflections"]}
        return self.log.wrap(self.agent)

    def env_for(self, plan: EpisodePlan) -> Any:
        if self._env is None:
            self._env = make_dilu_env(self.config.env, {"duration": self.config.decisions, **self.config.env_config})
        return self._env

    def on_resume(self, episodes_done: int) -> None:
        if self.agent is not None:
            self.agent.episodes = episodes_done  # decisions/episode_NNN.jsonl continue after the recorded ones

    def success(self, terminated: bool, truncated: bool, episode_return: float, info: dict[str, Any]) -> bool:
        return no_collision(terminated, truncated, episode_return, info)

    def episode_extra(self, info: dict[str, Any]) -> dict[str, Any]:
        extra = self.log.extra(info)
        self._state["episodes"] += 1
        self._state["speed_sum"] += extra["mean_speed"]
        self._state["survived_sum"] += extra["decisions_survived"]
        return extra

    def state_dict(self) -> dict[str, Any]:
        """Counters of earlier segments (a resumed run) plus the live agent's."""
        state = dict(self._state)
        if self.agent is not None:
            base = self._agent_base
            state["memory_sizes"] = list(self.agent.memory_sizes)
            state["reflections"] = base["reflections"] + len(self.agent.reflections)
            choices: dict[str, dict[str, int]] = {}
            for site in {*base["choices"], *self.agent.choice_stats}:
                stats = ChoiceStats()
                stats.add(base["choices"].get(site, {}))
                stats.add(asdict(self.agent.choice_stats.get(site, ChoiceStats())))
                choices[site] = asdict(stats)
            state["choices"] = choices
            blame = self.agent.blame_counts()
            state["blame"] = {key: int(base["blame"].get(key, 0)) + n for key, n in blame.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._state.update(state)

    def extras(self) -> dict[str, Any]:
        state, n = self.state_dict(), max(self._state["episodes"], 1)
        return {
            "llm": self.config.llm,
            "mean_speed": state["speed_sum"] / n,
            "decisions_survived_mean": state["survived_sum"] / n,
            "memory_path": (f"{self.memory_path.url}#{self.memory_path.collection}"
                            if isinstance(self.memory_path, MemoryServer) else str(self.memory_path)),
            "memory_size_before": state["memory_size_before"],
            "memory_size_after": len(self.agent.memory) if self.agent is not None and self.agent.memory is not None else None,
            "memory_sizes": state["memory_sizes"],
            "reflections": state["reflections"],
            # position bias and fallbacks of the agent's own choices, per kind of choice
            "choices": {site: ChoiceStats(**c).as_dict() for site, c in sorted(state["choices"].items())},
            # which decision the reflections blamed (first of the episode / of the window, or a later one)
            "reflection_blame": state["blame"],
            "reflection_first_decision_share": (state["blame"]["first_of_episode"] / state["blame"]["reflections"]
                                                if state["blame"].get("reflections") else None),
        }

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
