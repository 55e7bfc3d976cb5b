"""Typed configs for every method: exports `RunSettings`, `MethodConfig`, `TrainedConfig`,
`AgentConfig`, `EvalSettings`, `split_config`, `validation_message`.

A run config is one flat YAML mapping. The run-level keys (`RunSettings`:
`method`, `seed`, `total_steps` or `episodes`, `progress`, `resume`, `name`,
`description`) mean the same for every method; every other key belongs to the
method's own pydantic model (`extra="forbid"`), so a misspelled key is an
error that names the key, the method and the closest known key.

    >>> from llmguide.config import RunSettings
    >>> RunSettings(method="spring", episodes=2).budget
    2
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from llmguide.errors import ConfigError

__all__ = [
    "AgentConfig",
    "EvalSettings",
    "MethodConfig",
    "RunSettings",
    "TrainedConfig",
    "describe_fields",
    "split_config",
    "validation_message",
]


class RunSettings(BaseModel):
    """What every run has, whatever the method."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(description="The method to run: subgoal, spring, dilu, rladapter, oni, scienceworld, ...")
    seed: int = Field(0, description="Seed of the run (envs, learner, sampling).")
    total_steps: PositiveInt | None = Field(
        None, description="Env-step budget of a trained method (all parallel envs together)."
    )
    episodes: PositiveInt | None = Field(None, description="Episode budget of an LLM-agent method.")
    progress: bool = Field(False, description="Show a progress bar (env steps or episodes).")
    resume: bool = Field(False, description="Continue from the run dir's last checkpoint.")
    name: str | None = Field(None, description="Label of the run in reports (default: method and variant).")
    description: str | None = Field(None, description="Free text kept with the run.")

    @property
    def budget(self) -> int | None:
        """The budget that was set: total_steps for trained methods, episodes for agents."""
        return self.total_steps if self.total_steps is not None else self.episodes


class MethodConfig(BaseModel):
    """Base of every method's config: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    env: str = Field(description="Environment id (`llmguide envs` lists them).")


class EvalSettings(BaseModel):
    """Periodic evaluation of a trained policy on the plain env (no teacher, no LLM)."""

    model_config = ConfigDict(extra="forbid")

    every: int = Field(10_000, ge=0, description="Evaluate every N env steps (0 = only at the end).")
    episodes: PositiveInt = Field(20, description="Episodes per evaluation.")
    deterministic: bool = Field(False, description="Greedy actions (False: sampled, as trained).")
    n_envs: PositiveInt = Field(4, description="Parallel evaluation envs.")
    gate: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Skip an evaluation while the training success rate is below this (report the training "
        "figure, marked evaluated=false); the last evaluation always runs.",
    )
    target: float = Field(0.9, description="Success rate whose first reach is reported as steps_to_target.")
    window: PositiveInt = Field(2, description="Evaluations averaged for steps_to_target.")
    stop_at_target: bool = Field(False, description="Stop training once steps_to_target is reached.")


class TrainedConfig(MethodConfig):
    """Base of the configs of trained methods (an SB3 learner trained for `total_steps`)."""

    kind: ClassVar[Literal["trained"]] = "trained"
    default_total_steps: ClassVar[int] = 100_000

    learner: str = Field("PPO", description="SB3 learner: PPO, A2C, DQN, RecurrentPPO, MaskablePPO.")
    n_envs: PositiveInt = Field(4, description="Parallel training envs.")
    vec_env: Literal["dummy", "subproc"] = Field("dummy", description="DummyVecEnv or SubprocVecEnv.")
    learner_kwargs: dict[str, Any] = Field(default_factory=dict, description="Learner hyperparameters (override the method's defaults).")
    policy_kwargs: dict[str, Any] = Field(default_factory=dict, description="SB3 policy_kwargs (e.g. net_arch).")
    eval: EvalSettings = Field(default_factory=EvalSettings, description="Evaluation without the LLM.")
    checkpoint_every: int = Field(25_000, ge=0, description="Env steps between checkpoints (0 = only at the end and on Ctrl-C).")
    torch_threads: PositiveInt | None = Field(1, description="torch CPU threads of the learner (None: torch's default).")


class AgentConfig(MethodConfig):
    """Base of the configs of LLM-agent methods (an agent run for `episodes`)."""

    kind: ClassVar[Literal["agent"]] = "agent"
    default_episodes: ClassVar[int] = 1

    max_steps: PositiveInt | None = Field(None, description="Step cap per episode (None: the env's own).")


_RUN_KEYS = set(RunSettings.model_fields)


def _user_keys(model: type[BaseModel]) -> list[str]:
    """The keys a user may write (fields marked `exclude=True` are derived, not config)."""
    return [name for name, info in model.model_fields.items() if not info.exclude]


def _close(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def validation_message(err: ValidationError, method: str, known: list[str]) -> str:
    """One readable line per problem: which key, what is wrong, the closest known key."""
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(config)"
        if item["type"] == "extra_forbidden":
            leaf = str(item["loc"][-1])
            lines.append(f"unknown key {loc!r} for method {method!r}.{_close(leaf, known)}")
        elif item["type"] == "missing":
            lines.append(f"missing key {loc!r} for method {method!r}")
        else:
            msg = str(item["msg"]).removeprefix("Value error, ")
            lines.append(f"{loc}: {msg} (got {item.get('input')!r}) for method {method!r}")
    return "Invalid config: " + "; ".join(lines) + f". Known keys: {', '.join(sorted(known))}."


def split_config(raw: dict[str, Any], config_cls: type[MethodConfig]) -> tuple[RunSettings, MethodConfig]:
    """Validate one flat config into run settings and the method's config.

    The budget key must fit the method's kind (total_steps for trained methods,
    episodes for agents) and defaults to the method's default budget.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"A config must be a mapping of keys to values, got {type(raw).__name__}.")
    method = str(raw.get("method", "?"))
    known = sorted(_RUN_KEYS | set(_user_keys(config_cls)))
    run_part = {k: v for k, v in raw.items() if k in _RUN_KEYS}
    method_part = {k: v for k, v in raw.items() if k not in _RUN_KEYS}
    try:
        settings = RunSettings(**run_part)
        config = config_cls(**method_part)
    except ValidationError as err:
        raise ConfigError(validation_message(err, method, known)) from None
    kind = getattr(config_cls, "kind", "trained")
    if kind == "trained":
        if settings.episodes is not None:
            raise ConfigError(f"Method {method!r} is trained for `total_steps` env steps; `episodes` is for LLM-agent methods.")
        settings.total_steps = settings.total_steps or config_cls.default_total_steps  # type: ignore[attr-defined]
    else:
        if settings.total_steps is not None:
            raise ConfigError(f"Method {method!r} is an LLM agent run for `episodes`; `total_steps` is for trained methods.")
        settings.episodes = settings.episodes or config_cls.default_episodes  # type: ignore[attr-defined]
    return settings, config


def describe_fields(model: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None) -> list[tuple[str, str, str]]:
    """(key, default, description) rows of a config model, nested models flattened with dots.

    `defaults` is the instance a nested model defaults to in its parent (a method may set
    `eval.gate=0.2` where `EvalSettings` alone says 0.0), so the rows show the method's own defaults.
    """
    rows: list[tuple[str, str, str]] = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        annotation = info.annotation
        default = getattr(defaults, name) if defaults is not None else (
            None if info.is_required() else info.get_default(call_default_factory=True))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(describe_fields(annotation, f"{prefix}{name}.", default if isinstance(default, BaseModel) else None))
            continue
        shown = "required" if info.is_required() and defaults is None else repr(default)
        rows.append((f"{prefix}{name}", shown, info.description or ""))
    return rows
