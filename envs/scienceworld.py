"""ScienceWorld as a Gymnasium env, and its language view: exports `ScienceWorldEnv`, `ScienceWorldText`, `make_scienceworld`.

ScienceWorld is a text simulator running in a Java process (py4j). The
adapter starts that process on construction and stops it on `close()`
(waiting for the JVM to exit, killing it if it lingers), so no JVM outlives
the env. A missing `java` raises `MissingDependencyError` with how to
install it.

Action convention: the action space is `Discrete(max_actions)`. At each step
the valid commands are `info["valid_actions"]`, sorted alphabetically so an
index means the same thing for the same state; action `i` runs
`valid_actions[i]`, and any index `>= len(valid_actions)` runs "look around"
(a no-op on the world that only costs a move; `info["invalid_index"]` says
it happened). Agents that produce commands as text use `step_command(cmd)`.

Info (adapter): `task`, `valid_actions`, `score` (0-100), `moves`,
`invalid_index`, `command`, `disambiguated`, `rejected`, `task_name`, `variation`; `look()` and
`inventory()` are methods (free actions, fetched on demand). The valid list
comes from the simulator as one JSON string: one JVM round trip per step
instead of one per action. The view adds `text`
(task, observation, score), `action_names` (= `valid_actions`) and `events`
("score +25", "task completed", "task failed").

ScienceWorld's enumerated "valid" commands are not all accepted by its own
parser (allenai/ScienceWorld#48: strings are not unique, referents vary).
An ambiguous command is resolved by answering the parser's question with
its first reading (`info["disambiguated"]`); a command the parser rejects
costs nothing and is flagged (`info["rejected"]`, an event), never hidden.
"""

from __future__ import annotations

import json
import shutil
import string
import subprocess
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
from gymnasium import spaces
from llmguide.envs._base import TextView

from llmguide.errors import MissingDependencyError

__all__ = ["NOOP", "ScienceWorldEnv", "ScienceWorldText", "make_scienceworld", "require_java"]

#: The command run for an out-of-range action index.
NOOP = "look around"
_CHARSET = frozenset(string.printable)
_MAX_OBS = 16384
_AMBIGUOUS = "Ambiguous request"
_REJECTED = "No known action matches that input"


def require_java() -> str:
    """Path of the `java` executable, or a clear error saying how to install it."""
    java = shutil.which("java")
    if java is None:
        raise MissingDependencyError(
            "ScienceWorld needs a Java runtime (8 or newer) on PATH; install one with "
            "`sudo apt-get install default-jre-headless` (Debian/Ubuntu), "
            "`brew install openjdk` (macOS) or `conda install -c conda-forge openjdk`."
        )
    return java


def _clean(text: str) -> str:
    """Fit text to the observation space (printable ASCII, bounded length)."""
    if not all(c in _CHARSET for c in text):
        text = "".join(c if c in _CHARSET else "?" for c in text)
    return text[:_MAX_OBS]


class ScienceWorldEnv(gym.Env):
    """Gymnasium adapter over ScienceWorld; observations are strings.

    Example:
        >>> env = ScienceWorldEnv(task="find-living-thing", variation=0)  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> obs, r, term, trunc, info = env.step(0)  # runs info["valid_actions"][0]  # doctest: +SKIP
        >>> env.close()  # stops the JVM  # doctest: +SKIP
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        task: str = "find-living-thing",
        variation: int | None = 0,
        simplifications: str = "easy",
        step_limit: int = 100,
        max_actions: int = 4096,
        render_mode: str | None = None,
    ) -> None:
        require_java()
        from scienceworld import ScienceWorldEnv as _SW

        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self._sw = _SW("", envStepLimit=step_limit)
        self._closed = False
        self.task_name = task
        self.variation = variation
        self.simplifications = simplifications
        self.max_actions = max_actions
        self.observation_space = spaces.Text(max_length=_MAX_OBS, min_length=0, charset="".join(sorted(_CHARSET)))
        self.action_space = spaces.Discrete(max_actions)
        self.valid_actions: list[str] = []
        self._last_obs = ""
        self._task = ""
        self._load(variation if variation is not None else 0)

    # -- lifecycle -----------------------------------------------------------
    def _load(self, variation: int) -> None:
        self._sw.load(self.task_name, variation, self.simplifications)
        self._loaded_variation = variation

    def close(self) -> None:
        """Stop the Java process and wait for it to exit (killed after 5 s)."""
        if self._closed:
            return
        self._closed = True
        sw = self._sw
        proc = getattr(sw._gateway, "java_process", None)
        try:
            sw.close()
        finally:
            sw.close = lambda: None  # its __del__ would shut the gateway down again
            tmp = getattr(sw, "_obj_tree_tempdir", None)
            if tmp is not None:  # else a ResourceWarning at exit
                tmp.cleanup()
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()

    @property
    def java_process(self) -> subprocess.Popen | None:
        """The JVM's process (for tests and monitoring)."""
        return getattr(self._sw._gateway, "java_process", None)

    # -- helpers ---------------------------------------------------------------
    def task_names(self) -> list[str]:
        """All ScienceWorld task names."""
        return list(self._sw.get_task_names())

    def max_variations(self, task: str | None = None) -> int:
        return int(self._sw.get_max_variations(task or self.task_name))

    def look(self) -> str:
        """Describe the current room (free: costs no move)."""
        return _clean(self._sw.look())

    def inventory(self) -> str:
        """List what the agent carries (free: costs no move)."""
        return _clean(self._sw.inventory())

    def _valid(self) -> list[str]:
        raw = self._sw.server.getValidActionObjectCombinationsJSON()
        actions = {d["action"] for d in json.loads(raw)["validActions"]}
        return sorted(actions)[: self.max_actions]

    def _info(self, score: int, moves: int, invalid: bool) -> dict[str, Any]:
        self.valid_actions = self._valid()
        return {
            "task": self._task,
            "valid_actions": self.valid_actions,
            "score": score,
            "moves": moves,
            "invalid_index": invalid,
            "task_name": self.task_name,
            "variation": self._loaded_variation,
        }

    # -- gymnasium API -----------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        variation = options.get("variation", self.variation)
        if variation is None:  # a seeded draw among the training variations
            train = list(self._sw.get_variations_train())
            variation = int(train[int(self.np_random.integers(len(train)))])
        if variation != self._loaded_variation:
            self._load(int(variation))
        self._sw.server.reset()
        self._sw.lastStepScore = 0
        task = _clean(self._sw.server.freeActionTaskDesc()).strip()
        self._task = task.removeprefix("Task Description:").strip()
        obs, _, _, _, info = self._run(NOOP, False)
        return obs, info

    def step_command(self, command: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Run a command given as text (what an LLM agent produces)."""
        return self._run(command, False)

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        i = int(action)
        if 0 <= i < len(self.valid_actions):
            return self._run(self.valid_actions[i], False)
        return self._run(NOOP, True)

    def _run(self, command: str, invalid: bool) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        # The same bookkeeping as scienceworld's own step(), without the three
        # extra JVM calls (look, inventory, task) it makes every step.
        server = self._sw.server
        obs = server.step(command)
        ambiguous = obs.lstrip().startswith(_AMBIGUOUS)
        if ambiguous:  # enumerated commands need not be unique: take the parser's first reading
            obs = server.step("0")
        score = round(100 * server.getScore())
        moves = int(server.getNumMoves())
        reward = score - self._sw.lastStepScore
        self._sw.lastStepScore = score
        terminated = bool(server.getCompleted()) or score < 0
        truncated = not terminated and moves > self._sw.envStepLimit
        self._last_obs = _clean(obs)
        info = self._info(score, moves, invalid)
        info["command"] = command
        info["disambiguated"] = ambiguous
        info["rejected"] = _REJECTED in obs
        return self._last_obs, float(reward), terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_obs
        return None


class ScienceWorldText(TextView):
    """ScienceWorld with `text`, `action_names` and `events` in `info`.

    Example:
        >>> env = ScienceWorldText(ScienceWorldEnv())  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> info["text"].startswith("Task:")  # doctest: +SKIP
        True
    """

    info_keys = ("text", "task", "action_names", "valid_actions", "score", "events")

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, ScienceWorldEnv):
            raise TypeError(f"ScienceWorldText needs a ScienceWorldEnv, got {type(env.unwrapped).__name__}")
        self._score = 0

    def step_command(self, command: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Run a text command through the view (info gains text and events)."""
        obs, reward, terminated, truncated, info = self.env.unwrapped.step_command(command)
        info.update(self._on_step(obs, command, reward, terminated, truncated, info))
        self.last_text = info["text"]
        return obs, reward, terminated, truncated, info

    def _view(self, obs: str, info: dict[str, Any], events: list[str]) -> dict[str, Any]:
        self._score = info["score"]
        text = (
            f"Task: {info['task'].strip()}\nObservation: {obs.strip()}\n"
            f"Score: {info['score']}/100. {len(info['valid_actions'])} valid actions."
        )
        return {"text": text, "action_names": info["valid_actions"], "events": events}

    def _on_reset(self, obs: Any, info: dict[str, Any]) -> dict[str, Any]:
        return self._view(obs, info, [])

    def _on_step(
        self,
        obs: Any,
        action: Any,
        reward: SupportsFloat,
        terminated: bool,
        truncated: bool,
        info: dict[str, Any],
    ) -> dict[str, Any]:
        events = []
        delta = info["score"] - self._score
        if delta:
            events.append(f"score {'+' if delta > 0 else ''}{delta}")
        if terminated:
            events.append("task completed" if info["score"] >= 100 else "task failed")
        if info.get("invalid_index"):
            events.append(f"index out of range: ran '{NOOP}'")
        if info.get("rejected"):
            events.append(f"the simulator did not parse '{info.get('command')}'")
        return self._view(obs, info, events)


def make_scienceworld(env_id: str = "ScienceWorld-v0", text: bool = True, **kwargs: Any) -> gym.Env:
    """Make the ScienceWorld adapter (kwargs: task, variation, simplifications, step_limit, max_actions).

    No `TimeLimit`: `step_limit` counts the simulator's moves, and free
    actions ("look around") cost none, so no number of steps is the cap.
    """
    env: gym.Env = ScienceWorldEnv(**kwargs)
    return ScienceWorldText(env) if text else env
