"""Method runners: ``llmguide run CONFIG.yaml`` dispatches on the config's ``method``.

A runner is ``fn(config: dict, run_dir: Path) -> dict`` returning the run's
final metrics (written to ``run_dir/metrics.json`` by the caller). Runners are
named here as lazy ``"module:function"`` strings so that importing llmguide
never imports NLE, ScienceWorld, Chroma or torch-heavy code it does not need.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
from typing import Any, Callable

from llmguide.errors import ConfigError

__all__ = ["RunnerFn", "RUNNERS", "get_runner", "register_runner"]

RunnerFn = Callable[[dict[str, Any], Path], dict[str, Any]]

#: method name -> "module:function"; each method's module adds its line here.
RUNNERS: dict[str, str] = {
    "subgoal": "llmguide.experiment:run_subgoal_config",
    "spring": "llmguide.agents.spring:run_spring_config",
    "oni": "llmguide.teachers.oni.runner:run_oni_config",
    "dilu": "llmguide.agents.dilu:run_dilu_config",
    "scienceworld": "llmguide.agents.scienceworld:run_scienceworld_config",
    "rladapter": "llmguide.agents.rladapter:run_rladapter_config",
}


def register_runner(method: str, target: str | RunnerFn) -> None:
    """Add a runner (a callable or a lazy ``"module:function"`` string) at run time."""
    RUNNERS[method] = target  # type: ignore[assignment]


def get_runner(method: str) -> RunnerFn:
    """Resolve a method name to its runner; unknown names list the known ones."""
    target = RUNNERS.get(method)
    if target is None:
        close = difflib.get_close_matches(method, list(RUNNERS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"Unknown method {method!r} in config.{hint} Known methods: {', '.join(sorted(RUNNERS))}."
        )
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
