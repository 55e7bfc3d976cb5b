"""Hindsight from the run's own episodes: exports `HindsightRecorder`, `SelfTaughtCallback`,
`expert_episode`, `build_probe`, `ROOM_EVENT`.

`HindsightRecorder` is a Gymnasium wrapper above the MiniGrid language view.
Each step it reads the view's events (picked up <colour> key, opened <colour>
door, reached goal) and adds one of its own from MiniGrid's state, "entered a
new room" (the agent crossed a door into cells it had not visited this
episode). It keeps what the agent has seen (objects in its partial view) and
done, as the ``situation`` in `info` for the teacher to read. When an episode
succeeds, each first "useful" event (one a teacher could have asked for)
gives an example: the situation at the last moment the teacher was asked
before it -> that event as an instruction. The oracle is never consulted.

Examples are appended to a JSONL by the wrapper itself, under an exclusive
``fcntl`` lock, one ``write`` per episode. Why there and not through `info`
and a callback: the rows are produced where the episode runs (possibly a
SubprocVecEnv worker), need nothing from the learner, and a locked append of
whole lines is all the readers need (they count complete lines only).

`SelfTaughtCallback` drives the teacher's tuning stages from the training
process (start when enough new examples came, poll, hot swap, log).
`expert_episode` and `build_probe` give the fixed probe set each stage is
scored on: situations of expert-driven episodes on held-out seeds, labelled
with the oracle's next subgoal (scoring only).
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
from llmguide.teachers.minigrid_planning import agent_cell, minigrid_base, plan_next, shortest_path
from llmguide.teachers.self_taught import event_instruction, situation_messages, target_options
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["ROOM_EVENT", "HindsightRecorder", "SelfTaughtCallback", "build_probe", "expert_episode"]

ROOM_EVENT = "entered a new room"
_NOTED = ("picked up ", "opened ", "unlocked ", "reached goal", ROOM_EVENT)
#: events that change nothing the teacher is told (bumping into a wall is not progress)
_MOVES_NOTHING = ("blocked by ",)


class HindsightRecorder(gym.Wrapper):
    """Adds `info["situation"]` (seen, carrying, done) and the room event; writes hindsight examples.

    Args:
        env: a MiniGrid env under `llmguide.envs.minigrid.MiniGridText` (its `events`, `visible`).
        path: the JSONL to append examples to (None: only the situation is kept, nothing written).

    Example:
        >>> from llmguide.envs.minigrid import make_minigrid
        >>> env = HindsightRecorder(make_minigrid("MiniGrid-DoorKey-5x5-v0"))
        >>> _, info = env.reset(seed=0)
        >>> sorted(info["situation"])
        ['carrying', 'done', 'mission', 'seen']
    """

    def __init__(self, env: gym.Env, path: str | Path | None = None) -> None:
        super().__init__(env)
        self.path = None if path is None else Path(path)
        self.episodes = 0
        self.written = 0
        self._reset_episode()

    def _reset_episode(self) -> None:
        self._seen: dict[str, str] = {}  # "yellow door" -> "locked yellow door" (last seen state)
        self._done: list[str] = []
        self._snapshots: list[tuple[int, dict[str, Any], list[str]]] = []  # (step, situation, options)
        self._events: list[tuple[int, str]] = []
        self._visited: set[tuple[int, int]] = set()
        self._door_entry: tuple[int, int] | None = None  # cell the agent stepped onto a door from
        self._t = 0

    # -- what the agent has seen and done ------------------------------------------------------
    def _see(self, info: dict[str, Any]) -> None:
        for name, *_ in info.get("visible") or ():
            if name in ("wall", "lava", "floor", "empty", "unseen"):
                continue
            words = name.split()
            ident = " ".join(words[1:]) if words[0] in ("open", "closed", "locked") else name
            self._seen[ident] = name

    def situation(self) -> dict[str, Any]:
        base = minigrid_base(self.env)
        carrying = None if base.carrying is None else f"{base.carrying.color} {base.carrying.type}"
        return {"mission": str(base.mission), "seen": sorted(self._seen.values()), "carrying": carrying,
                "done": list(self._done)}

    def _room_event(self) -> list[str]:
        """'entered a new room' when the agent leaves a door cell for a cell it has not visited."""
        base = minigrid_base(self.env)
        pos = agent_cell(base)
        cell = base.grid.get(*pos)
        out = []
        if cell is not None and cell.type == "door":
            if self._door_entry is None:
                self._door_entry = self._last_pos
        elif self._door_entry is not None:
            if pos != self._door_entry and pos not in self._visited:
                out.append(ROOM_EVENT)
            self._door_entry = None
        self._visited.add(pos)
        self._last_pos = pos
        return out

    def _snapshot(self, info: dict[str, Any]) -> None:
        situation = self.situation()
        info["situation"] = situation
        self._snapshots.append((self._t, situation, [o for o, _ in target_options(self.env)]))

    # -- gym API ---------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._reset_episode()
        self._last_pos = agent_cell(minigrid_base(self.env))
        self._visited.add(self._last_pos)
        self._see(info)
        self._snapshot(info)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        events = list(info.get("events") or ()) + self._room_event()
        info["events"] = events
        self._see(info)
        noted = [e for e in events if e.startswith(_NOTED)]
        for e in noted:
            self._events.append((self._t, e))
            if e not in self._done:
                self._done.append(e)
        if any(not e.startswith(_MOVES_NOTHING) for e in events):  # the situation changed: a new question
            self._snapshot(info)
        else:
            info["situation"] = self._snapshots[-1][1]
        if terminated or truncated:
            self.episodes += 1
            if terminated and float(reward) > 0:
                self._write(self.examples())
        return obs, reward, terminated, truncated, info

    # -- hindsight ---------------------------------------------------------------------------------
    def examples(self) -> list[dict[str, Any]]:
        """(situation -> next useful event) rows of this episode, in order (call at its end).

        A useful event is the first time an instruction a teacher could give was
        fulfilled (a key picked up again later teaches nothing new); its situation
        is the last one the teacher was asked in before that step.
        """
        base = minigrid_base(self.env)
        env_id = getattr(getattr(base, "spec", None), "id", None) or type(base).__name__
        rows, taught = [], set()
        for t, event in self._events:
            answer = event_instruction(event)
            if answer is None or answer in taught:
                continue
            taught.add(answer)
            before = [s for s in self._snapshots if s[0] < t]
            if not before:
                continue
            _, situation, options = before[-1]
            if answer not in options or len(options) < 2:  # a single option teaches no choice
                continue
            rows.append({
                "messages": situation_messages(situation, options), "answer": answer, "options": options,
                "situation": situation, "env": env_id, "episode": self.episodes, "step": t,
            })
        return rows

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if self.path is None or not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(r) + "\n" for r in rows)
        with self.path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.write(data)
                fh.flush()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        self.written += len(rows)


# -- the expert that makes the probe set (scoring only) ------------------------------------------
_LEFT, _RIGHT, _FORWARD, _PICKUP, _TOGGLE = 0, 1, 2, 3, 5
_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))


def _turn_to(base: Any, cell: tuple[int, int]) -> Iterator[int]:
    ax, ay = agent_cell(base)
    want = _DIRS.index((cell[0] - ax, cell[1] - ay))
    turn = (want - int(base.agent_dir)) % 4
    yield from ([_RIGHT] if turn == 1 else [_LEFT] if turn == 3 else [_RIGHT, _RIGHT] if turn == 2 else [])


def expert_episode(env: gym.Env, seed: int, on_ask: Any = None) -> bool:
    """Play one episode by walking the oracle's plan (BFS); True when it succeeded.

    `on_ask(env, info)` is called at reset and after each step with events,
    the moments a guided run asks its teacher. For probe sets and tests only.
    """
    _, info = env.reset(seed=seed)
    if on_ask is not None:
        on_ask(env, info)
    base = minigrid_base(env)
    cap = int(getattr(base, "max_steps", 1000))
    for _ in range(64):
        target = plan_next(env)
        if target is None:
            return False
        goal = target.cell if target.type == "goal" else target.approach
        if goal is None:
            return False
        path = shortest_path(base, agent_cell(base), goal, lambda d: d.is_open)
        if path is None:
            return False
        plan = _walk(path)
        if target.type != "goal":
            plan += [("face", target.cell), ("act", _PICKUP if target.verb == "pick up" else _TOGGLE)]
        for op, arg in plan:
            seq = list(_turn_to(base, arg)) if op == "face" else [arg]
            for a in seq:
                _, reward, terminated, truncated, info = env.step(a)
                if on_ask is not None and (info.get("events") or terminated):
                    on_ask(env, info)
                if terminated or truncated:
                    return bool(terminated and float(reward) > 0)
                cap -= 1
                if cap <= 0:
                    return False
    return False


def _walk(path: list[tuple[int, int]]) -> list[tuple[str, Any]]:
    """('face', cell) then ('act', forward) for each next cell of the path."""
    out: list[tuple[str, Any]] = []
    for nxt in path[1:]:
        out += [("face", nxt), ("act", _FORWARD)]
    return out


def build_probe(env_id: str, seeds: range | list[int], kind: str = "object") -> list[dict[str, Any]]:
    """Probe rows {"messages", "options", "answer"} from expert episodes on `seeds`: the
    situations a recorder sees when the teacher is asked, labelled with the oracle's next
    target (it scores the teacher; nothing trains on it). Duplicate prompts are kept once."""
    from llmguide.envs.minigrid import make_minigrid

    env = HindsightRecorder(make_minigrid(env_id))
    rows: dict[str, dict[str, Any]] = {}

    def ask(e: gym.Env, info: dict[str, Any]) -> None:
        right = plan_next(e)
        situation = info.get("situation")
        if right is None or situation is None:
            return
        options = [o for o, _ in target_options(e, kind)]
        if right.instruction in options and len(options) > 1:  # one option is no question
            messages = situation_messages(situation, options)
            rows.setdefault(messages[-1]["content"], {"messages": messages, "options": options,
                                                       "answer": right.instruction})

    try:
        for s in seeds:
            expert_episode(env, int(s), ask)
    finally:
        env.close()
    return list(rows.values())


# -- the training-side driver ----------------------------------------------------------------------
class SelfTaughtCallback(BaseCallback):
    """Runs a `SelfTaughtTeacher`'s stages during SB3 training: at each rollout end it swaps in
    a finished stage and starts the next when enough new hindsight came in; the learner never
    waits (the stage runs in its own process) unless the teacher's ``wait_for_stages`` is on.
    Logs `self_taught/*`."""

    def __init__(self, teacher: Any, env_id: str, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.teacher = teacher
        self.env_id = env_id

    def _on_training_start(self) -> None:
        t = self.teacher
        probe = t.probe_path
        if t.tuning and t.probe_episodes > 0 and probe is not None and not probe.is_file():
            rows = build_probe(self.env_id, range(100_000, 100_000 + t.probe_episodes), t.kind)
            tmp = probe.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            tmp.replace(probe)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        t = self.teacher
        if t.wait_for_stages:
            started = time.perf_counter()
            done = t.poll(self.num_timesteps, wait=None)
            t.stage_wait_s += time.perf_counter() - started
        else:
            done = t.poll(self.num_timesteps)
        if done is not None:
            self.logger.record("self_taught/stage", t.stage)
            self.logger.record("self_taught/stage_examples", done.examples)
            self.logger.record("self_taught/finetune_s", done.seconds)
            if done.probe_after is not None:
                self.logger.record("self_taught/probe_before", done.probe_before)
                self.logger.record("self_taught/probe_after", done.probe_after)
        t.start_stage(self.num_timesteps)
        self.logger.record("self_taught/hindsight_examples", t.examples_available())

    def _on_training_end(self) -> None:
        self.teacher.stop()
