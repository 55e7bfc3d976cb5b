"""`SelfTaughtCallback` drives the stages at each rollout's end: never waiting on a running stage
in use, waiting for it (and counting the wait) under ``wait_for_stages``, the benchmark switch."""

from __future__ import annotations

import time
from typing import Any

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure

from llmguide.agents.hindsight import SelfTaughtCallback
from llmguide.agents.subgoal_method import teacher_config
from llmguide.teachers.self_taught import SelfTaughtTeacher


class _StagedTeacher:
    """The part of `SelfTaughtTeacher` the callback uses; a stage 'runs' for 0.2 s."""

    def __init__(self, wait_for_stages: bool) -> None:
        self.wait_for_stages, self.stage_wait_s, self.stage = wait_for_stages, 0.0, 0
        self.waits: list[float | None] = []

    def poll(self, step: int = 0, wait: float | None = 0.0) -> Any:
        self.waits.append(wait)
        if wait is None:
            time.sleep(0.2)
        return None

    def start_stage(self, step: int = 0) -> bool:
        return True

    def examples_available(self) -> int:
        return 0


@pytest.mark.parametrize("wait", [False, True])
def test_rollout_end_waits_for_a_stage_only_when_asked(wait: bool) -> None:
    teacher = _StagedTeacher(wait)
    callback = SelfTaughtCallback(teacher, "MiniGrid-DoorKey-5x5-v0")
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, device="cpu")
    model.set_logger(configure(None, []))
    callback.init_callback(model)
    callback.on_rollout_end()
    assert teacher.waits == ([None] if wait else [0.0])
    assert (teacher.stage_wait_s >= 0.2) if wait else teacher.stage_wait_s == 0.0


def test_tuning_settings_round_trip_through_the_config() -> None:
    teacher = SelfTaughtTeacher("object", stage_examples=4, finetune_nice=0, wait_for_stages=True)
    tuning = teacher_config(teacher).tuning
    assert (tuning.stage_examples, tuning.finetune_nice, tuning.wait_for_stages) == (4, 0, True)
    assert teacher.summary()["stage_wait_s"] == 0.0
