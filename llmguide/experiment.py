"""Compose any method from Python: exports `Experiment`, `Result`.

    >>> from llmguide import Experiment
    >>> from llmguide.teachers import SubgoalTeacher
    >>> exp = Experiment(env="MiniGrid-DoorKey-8x8-v0", method="subgoal",
    ...                  teacher=SubgoalTeacher(llm="smollm2", kind="object"),
    ...                  learner="PPO", total_steps=200_000, seed=0)      # doctest: +SKIP
    >>> result = exp.run()                                               # doctest: +SKIP
    >>> result.evaluate(episodes=100)                                    # doctest: +SKIP

`Experiment` is a thin, typed front door to the core (`llmguide.core`): its
keywords are the keys of the method's YAML config (nested sections as dicts),
validated by the same pydantic models, and `to_config()` gives the mapping
back, so a Python experiment and a `llmguide run` config are one thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmguide.core import PreparedRun, evaluate, prepare, run
from llmguide.rundir import make_run_dir, read_json

__all__ = ["Experiment", "Result"]


@dataclass
class Result:
    """A finished (or interrupted) run: its folder and its record (`RunMetrics` as a dict)."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: str | Path) -> Result:
        run_dir = Path(run_dir)
        metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
        return cls(run_dir, metrics)

    def evaluate(self, episodes: int = 20, deterministic: bool | None = None) -> dict[str, Any]:
        """A trained policy on the plain env (no teacher, no LLM), or an LLM agent on fixed seeds;
        writes `eval.json` in the run dir and returns it."""
        return evaluate(self.run_dir, episodes=episodes, deterministic=deterministic)


def _config_value(key: str, value: Any) -> Any:
    """Objects users pass in Python (a teacher) in their config form."""
    if key == "teacher" and value is not None and not isinstance(value, (str, dict)):
        from llmguide.agents.subgoal_method import teacher_config

        cfg = teacher_config(value)
        return None if cfg is None else cfg.model_dump()
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


class Experiment:
    """One run of any method, described by its config.

    Args:
        env: environment id (default: the method's).
        method: `llmguide methods` lists them (subgoal, spring, dilu, rladapter, oni, scienceworld, ...).
        total_steps / episodes: the budget (trained methods / LLM agents; default: the method's).
        seed, name, progress: run settings.
        run_dir: the folder (default: a fresh `runs/env__method__seed__time`).
        **config: the method's own keys, as in its YAML (e.g. ``teacher=OracleTeacher()``,
            ``eval={"every": 0}``, ``learner_kwargs={...}``); `llmguide methods METHOD` lists them.
    """

    def __init__(
        self,
        env: str | None = None,
        method: str = "subgoal",
        *,
        total_steps: int | None = None,
        episodes: int | None = None,
        seed: int = 0,
        name: str | None = None,
        progress: bool = False,
        run_dir: str | Path | None = None,
        **config: Any,
    ) -> None:
        raw: dict[str, Any] = {"method": method, "seed": seed, "progress": progress}
        for key, value in (("env", env), ("total_steps", total_steps), ("episodes", episodes), ("name", name)):
            if value is not None:
                raw[key] = value
        raw.update({k: _config_value(k, v) for k, v in config.items()})
        objects = {k: v for k, v in config.items() if k == "teacher" and v is not None and not isinstance(v, (str, dict))}
        self.prepared: PreparedRun = prepare(raw, objects)  # validates now: a bad key fails here, not after a run dir exists
        self.run_dir = Path(run_dir) if run_dir is not None else None

    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: str | Path | None = None) -> Experiment:
        """From a flat config mapping (what `llmguide run` reads from YAML)."""
        config = dict(config)
        return cls(method=config.pop("method", "subgoal"), run_dir=run_dir, **config)

    def to_config(self) -> dict[str, Any]:
        """The flat config mapping (YAML-able) this experiment is fully described by."""
        return self.prepared.to_dict()

    @property
    def config(self) -> Any:
        """The method's validated config model."""
        return self.prepared.config

    def __repr__(self) -> str:
        s = self.prepared.settings
        return f"Experiment(method={s.method!r}, env={self.prepared.config.env!r}, seed={s.seed}, budget={s.budget})"

    def run(self, resume: bool = False) -> Result:
        """Train or run the method (continuing `run_dir`'s checkpoint when `resume`); returns the `Result`."""
        s = self.prepared.settings
        if self.run_dir is None:
            self.run_dir = make_run_dir(self.prepared.config.env, s.method, s.seed)
        s.resume = resume
        metrics = run(self.prepared, self.run_dir)
        return Result(self.run_dir, metrics.model_dump(mode="json"))

    @staticmethod
    def compare(run_dirs_or_results: Any, out_dir: str | Path | None = None) -> Any:
        """One table + plots across runs (any methods); see ``llmguide.report.compare``."""
        from llmguide.report import compare

        return compare(run_dirs_or_results, out_dir)
