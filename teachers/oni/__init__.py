"""ONI on NetHack: an asynchronous LLM annotation server distilled online into intrinsic rewards.

The learner never waits for the LLM. Parts (one concept per module):

- ``store``   — ``LabelStore``: SQLite (WAL) store of seen captions, labels, preferences.
- ``server``  — the annotation server (FastAPI): dedup, bounded queue, batch labelling worker.
- ``process`` — ``start_annotator``: the server as a real separate process on a free loopback port.
- ``supervisor`` — ``AnnotatorSupervisor``: restarts a dead annotator (backoff, bounded), counts the outage.
- ``client``  — ``AnnotatorClient``: non-blocking learner-side client (background thread).
- ``reward``  — ``HashReward``, ``ClassifierReward``, ``RankingReward`` (+ ``make_reward_model``).
- ``trainer`` — ``RemoteReward``: an embedding reward model trained in a process of its own.
- ``wrapper`` — ``ONIRewardWrapper`` (SB3 VecEnv), ``ONILogCallback``, ``NLEObsWrapper``, ``NLEFeatures``.

The training run itself is the ``oni`` method, ``llmguide.agents.oni.ONIMethod``
(``llmguide run configs/oni_nethack.yaml``): teachers never import agents.

Names are imported lazily, so ``import llmguide.teachers.oni`` pulls in neither
torch nor FastAPI.

>>> from llmguide.teachers.oni import start_annotator, AnnotatorClient, HashReward   # doctest: +SKIP
>>> with start_annotator("smollm2") as proc:                                        # doctest: +SKIP
...     client = AnnotatorClient(proc.url); client.submit(["You kill the newt!"])
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Annotator",
    "AnnotatorClient",
    "AnnotatorProcess",
    "AnnotatorSettings",
    "AnnotatorSupervisor",
    "ClassifierReward",
    "HashReward",
    "IntrinsicReward",
    "LabelStore",
    "NLEFeatures",
    "NLEObsWrapper",
    "ONILogCallback",
    "ONIRewardWrapper",
    "RankingReward",
    "RemoteReward",
    "caption_hash",
    "create_app",
    "make_reward_model",
    "restart_annotator",
    "start_annotator",
]

_WHERE = {
    "LabelStore": "store", "caption_hash": "store",
    "AnnotatorSettings": "server", "Annotator": "server", "create_app": "server",
    "AnnotatorProcess": "process", "start_annotator": "process", "restart_annotator": "process",
    "AnnotatorSupervisor": "supervisor", "RemoteReward": "trainer",
    "AnnotatorClient": "client",
    "IntrinsicReward": "reward", "HashReward": "reward", "ClassifierReward": "reward", "RankingReward": "reward",
    "make_reward_model": "reward",
    "ONIRewardWrapper": "wrapper", "ONILogCallback": "wrapper", "NLEObsWrapper": "wrapper", "NLEFeatures": "wrapper",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'llmguide.teachers.oni' has no attribute {name!r}")
    return getattr(importlib.import_module(f"llmguide.teachers.oni.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
