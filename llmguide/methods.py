"""Methods as plug-ins: exports `Method`, `TrainedMethod`, `AgentMethod`, `EpisodePlan`,
`METHODS`, `register_method`, `method_class`.

A method is one class with a typed config (`Config`, a pydantic model) and a
few hooks; the core (`llmguide.core`) owns everything else once: the run dir,
training (`llmguide.training.train`), the episode loop for LLM agents,
evaluation, checkpoints and resume, logging, and the `RunMetrics` record.

Two kinds, two seams:

- `TrainedMethod`: the LLM reaches an SB3 learner through a Gymnasium wrapper
  (`make_env`), a `VecEnvWrapper` (`wrap_vec_env`) and SB3 callbacks
  (`callbacks`); the policy is evaluated on the plain env (`make_env(for_eval=True)`).
- `AgentMethod`: the LLM is the policy; `build()` returns an agent with
  ``act(obs, info)``, run by the shared episode loop over `plan()`.

Adding a paper is one module with one subclass, and one line in `METHODS`.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from llmguide.config import AgentConfig, MethodConfig, RunSettings, TrainedConfig
from llmguide.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import gymnasium as gym

    from llmguide.agents.loop import EpisodeRecord

__all__ = ["METHODS", "AgentMethod", "EpisodePlan", "Method", "TrainedMethod", "method_class", "register_method"]


class Method:
    """What every method has: its config model, its run settings and its run dir."""

    name: ClassVar[str] = "method"
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, config: MethodConfig, settings: RunSettings, run_dir: Path,
                 objects: dict[str, Any] | None = None) -> None:
        #: live objects a Python user passed in place of their config form (a teacher with a custom LLM)
        self.config, self.settings, self.run_dir = config, settings, Path(run_dir)
        self.objects: dict[str, Any] = dict(objects or {})

    @property
    def kind(self) -> str:
        return self.Config.kind  # type: ignore[attr-defined]

    def label(self) -> str:
        """Run label for tables and plots: the config's `name`, else the method with its variant."""
        return self.settings.name or self.name

    # -- what an episode means (used by training evals, agent runs and `llmguide eval`) --
    def success(self, terminated: bool, truncated: bool, episode_return: float, info: dict[str, Any]) -> bool:
        """Did the episode succeed? Default: the env says so, or it ended with a positive return."""
        if "success" in info:
            return bool(info["success"])
        return bool(terminated and episode_return > 0)

    def episode_extra(self, info: dict[str, Any]) -> dict[str, Any]:
        """Env-specific figures kept in each episode record (achievements, score)."""
        return {}

    def score(self, records: list[EpisodeRecord]) -> float | None:
        """The env's own score over episodes (Crafter score, ScienceWorld score), if it has one."""
        return None

    # -- run bookkeeping --------------------------------------------------------
    def extras(self) -> dict[str, Any]:
        """Method-specific figures for `RunMetrics.extras` at the end of a run."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs besides the model (teacher counters, adapter stage...), JSON-able."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved, before training or episodes continue."""

    def llm_usage(self) -> dict[str, Any] | None:
        """LLM usage when it is not all in this process's meter (e.g. teachers in subprocesses)."""
        return None

    def invalid_actions(self) -> int:
        return 0

    def close(self) -> None:
        """Release what the method started (servers, threads, envs)."""


class TrainedMethod(Method):
    """A method whose product is a trained SB3 policy."""

    Config: ClassVar[type[MethodConfig]] = TrainedConfig
    #: SB3 policy name, or a dict observation policy when the env's obs is a Dict
    policy: ClassVar[str] = "MlpPolicy"

    def make_env(self, for_eval: bool = False) -> Callable[[], gym.Env]:
        """A thunk building one env: with the method's wrappers for training, plain for evaluation."""
        raise NotImplementedError

    def learner_defaults(self) -> dict[str, Any]:
        """Learner hyperparameters for this method; the config's `learner_kwargs` override them."""
        return {}

    def policy_kwargs(self) -> dict[str, Any]:
        """Default SB3 `policy_kwargs` (the config's `policy_kwargs` override them key by key)."""
        return {}

    def policy_name(self) -> str:
        return self.policy

    def start(self) -> None:
        """Start what training needs beyond the envs (an annotator server); called once before training."""

    def wrap_vec_env(self, venv: Any) -> Any:
        """Wrap the training VecEnv (a `VecEnvWrapper` that batches LLM/reward-model work across envs)."""
        return venv

    def callbacks(self) -> list[Any]:
        """The method's SB3 callbacks (teacher metrics, label polling, fine-tune stages)."""
        return []

    def after_training(self) -> None:
        """Called once training stopped and the model is saved (wait for a background stage, flush logs)."""


@dataclass
class EpisodePlan:
    """One episode an agent method will run: its seed, and what the method needs to set it up."""

    seed: int
    tag: str = ""
    setup: dict[str, Any] = field(default_factory=dict)


class AgentMethod(Method):
    """A method whose policy is an LLM agent, run by the shared episode loop."""

    Config: ClassVar[type[MethodConfig]] = AgentConfig

    def build(self, for_eval: bool = False) -> Any:
        """The agent (``act(obs, info) -> action``; optional ``reset(info)``, ``end_episode(record)``).

        `for_eval`: `llmguide eval` re-runs the agent on evaluation seeds: it must not learn (memory
        frozen) nor write over the run's own logs.
        """
        raise NotImplementedError

    def plan(self, episodes: int, seed: int) -> list[EpisodePlan]:
        """The episodes to run, in order (a resume skips the ones already recorded)."""
        return [EpisodePlan(seed=seed + i) for i in range(episodes)]

    def env_for(self, plan: EpisodePlan) -> gym.Env:
        """The env for one planned episode (methods may keep one env and re-use it)."""
        raise NotImplementedError

    def on_resume(self, episodes_done: int) -> None:
        """Told how many episodes are already recorded before a resumed run continues."""


#: method name -> "module:Class"; lazy so `import llmguide` stays light.
METHODS: dict[str, str | type[Method]] = {
    "subgoal": "llmguide.agents.subgoal_method:SubgoalMethod",
    "spring": "llmguide.agents.spring:SpringMethod",
    "dilu": "llmguide.agents.dilu:DiLuMethod",
    "scienceworld": "llmguide.agents.scienceworld:ScienceWorldMethod",
    "scienceworld_rl": "llmguide.agents.scienceworld_rl:ScienceWorldRLMethod",
    "rladapter": "llmguide.agents.rladapter:RLAdapterMethod",
    "oni": "llmguide.agents.oni:ONIMethod",
}


def register_method(name: str, target: str | type[Method]) -> None:
    """Add a method (a class or a lazy ``"module:Class"`` string), e.g. from a notebook or a plug-in."""
    METHODS[name] = target


def method_class(name: str) -> type[Method]:
    """Resolve a method name to its class; unknown names list the close and the known ones."""
    target = METHODS.get(name)
    if target is None:
        close = difflib.get_close_matches(str(name), list(METHODS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown method {name!r} in config.{hint} Known methods: {', '.join(sorted(METHODS))}.")
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        target = getattr(importlib.import_module(module), cls)
        METHODS[name] = target
    return target
