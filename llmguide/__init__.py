"""llmguide: LLMs guiding reinforcement-learning agents (SB3 learners on Gymnasium envs).

    >>> from llmguide import Experiment          # doctest: +SKIP

`Experiment` and `Result` are imported on first access, so `import llmguide`
stays light (no torch, SB3 or llama.cpp until they are needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Experiment", "Result", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from llmguide.experiment import Experiment, Result


def __getattr__(name: str) -> Any:
    if name in ("Experiment", "Result"):
        from llmguide import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module 'llmguide' has no attribute {name!r}")
