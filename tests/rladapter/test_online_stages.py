"""The online adaptation loop (issue 14): a stage starts only on enough usable examples and
new records, later boundaries are not skipped while the teacher cannot start, each finished
stage is swapped in at the step it is found ready and serves the queries after it, and the
run record keeps per stage: examples, seconds, queries served, online comprehension.
A stand-in adapter and a fake worker process keep it fast; the real worker is tested in
test_adapter_lm.py and the real loop in test_guided_run.py."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.agents.rladapter import RLAdapterCallback, make_crafter_subgoal_env, plot_stage_curve, rolling_curve
from llmguide.teachers.rladapter import RLAdapterTeacher

from llmguide.errors import ConfigError


class _Adapter:
    """Stands in for `AdapterLM` (no `generate_batch`: the teacher asks it one prompt at a time)."""

    spec = "smollm2"

    def __init__(self) -> None:
        self.loaded: list[int | None] = []
        self.prompts = 0

    def generate(self, messages: Any, **kwargs: Any) -> str:
        self.prompts += 1
        return f"analysis {self.prompts}"

    def save(self, out: Path) -> Path:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "adapter_model.safetensors").write_bytes(b"")
        return Path(out)

    def load_stage(self, folder: Path, stage: int | None = None) -> None:
        self.loaded.append(stage)


class _Worker:
    """Stands in for the fine-tune worker process: writes the stage's files, done at the first poll."""

    started: ClassVar[list[list[str]]] = []

    def __init__(self, cmd: list[str], **kwargs: Any) -> None:
        _Worker.started.append(cmd)
        out = Path(cmd[cmd.index("--out") + 1])
        (out / "adapter_model.safetensors").write_bytes(b"")
        records = int(cmd[cmd.index("--records") + 1])
        (out / "stats.json").write_text(json.dumps({"records": records, "examples": records // 2, "steps": 2,
                                                    "loss_first": 2.0, "loss_last": 1.5, "load_s": 0.1}))
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.returncode = 0
        return 0

    def wait(self, timeout: float | None = None) -> int:
        self.returncode = 0
        return 0

    def terminate(self) -> None: ...


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> type[_Worker]:
    _Worker.started = []
    monkeypatch.setattr(subprocess, "Popen", _Worker)
    return _Worker


def _teacher(tmp_path: Path, adapter: Any = None, **kwargs: Any) -> RLAdapterTeacher:
    guide = FakeListChatModel(responses=['{"choice": "collect wood"}', '{"choice": "place table"}'])
    return RLAdapterTeacher(adapter=adapter or _Adapter(), llm=guide, every=4, run_dir=tmp_path,
                            embeddings=DeterministicFakeEmbedding(size=384), min_records=1, **kwargs)


INFO = {"text": "You see: tree 1 away.", "achievement_counts": {}}


def test_stage_waits_for_usable_examples_then_for_new_records(tmp_path: Path, worker: type[_Worker]) -> None:
    teacher = _teacher(tmp_path, min_examples=3, min_new_records=4, keep=0.5, worker_nice=0)
    for i in range(6):  # 5 closed records, distinct outcomes -> top half = 3 examples (ceil)
        assert not teacher.start_stage(0)
        teacher.advise(0, INFO, [f"event {i}"])
    assert len(teacher.buffer) == 5 and teacher.usable_examples() == 3
    assert teacher.start_stage(10)
    cmd = worker.started[-1]
    assert cmd[cmd.index("--records") + 1] == "5" and cmd[cmd.index("--nice") + 1] == "0"
    assert teacher.poll(12) is not None and teacher.stage == 1
    assert "new records" in (teacher.stage_blocker() or "")
    for i in range(3):
        teacher.advise(0, INFO, [f"later {i}"])
    assert not teacher.start_stage(20)  # 3 of 4 new records
    teacher.advise(0, INFO, [])
    assert teacher.stage_blocker() is None and teacher.start_stage(30)


def test_bad_stage_thresholds_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="min_examples"):
        _teacher(tmp_path, min_examples=0)


def test_batch_answers_every_env_and_counts_queries_per_stage(tmp_path: Path, worker: type[_Worker]) -> None:
    adapter = _Adapter()
    teacher = _teacher(tmp_path, adapter=adapter, min_examples=1, min_new_records=1)
    advice = teacher.advise_batch([(i, INFO, ["collected wood"], 0.0) for i in range(3)], step=1)
    assert [a.analysis for a in advice] == ["analysis 1", "analysis 2", "analysis 3"] and teacher.queries == 3
    advice = teacher.advise_batch([(i, INFO, ["collected wood"], 0.0) for i in range(3)], step=9)
    assert len(teacher.buffer) == 3 and all(a.score is not None for a in advice)
    assert teacher.start_stage(9) and teacher.poll(11).ready_step == 11 and adapter.loaded[-1] == 1
    advice = teacher.advise_batch([(i, INFO, [], 0.0) for i in range(3)], step=17)
    assert {a.stage for a in advice} == {1}
    table = teacher.summary()["stages"]
    assert [(r["stage"], r["queries_served"], r["ready_step"]) for r in table] == [(0, 6, 0), (1, 3, 11)]
    assert table[1]["examples"] == 1 and table[1]["finetune_s"] >= 0 and table[0]["comprehension_n"] == 6
    assert teacher.summary()["stages_serving"] == 1
    again = _teacher(tmp_path, min_examples=1)
    again.load_state_dict(json.loads(json.dumps(teacher.state_dict())))
    assert again.stage_table() == table  # resumed runs keep the per-stage figures


def test_callback_retries_the_stage_boundary_and_serves_each_stage(tmp_path: Path, worker: type[_Worker]) -> None:
    from llmguide.agents.rladapter import SubgoalImageExtractor
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    teacher = _teacher(tmp_path, min_examples=3, min_new_records=2, keep=1.0)
    venv = make_vec_env(make_crafter_subgoal_env(env_kwargs={"area": (16, 16), "length": 40}), n_envs=2, seed=0)
    model = PPO("MultiInputPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"features_extractor_class": SubgoalImageExtractor,
                               "features_extractor_kwargs": {"channels": (4, 8, 8), "image_features": 16,
                                                             "subgoal_features": 8},
                               "net_arch": [8]})
    model.set_logger(configure(str(tmp_path), ["csv"]))
    cb = RLAdapterCallback(teacher, stage_every=8, log_path=tmp_path / "subgoals.jsonl")
    model.learn(total_timesteps=128, callback=cb)
    # 2 envs x 64 steps, asked every 4 steps per env (at steps 2, 10, 18, ...): 32 queries; the
    # boundary at step 8 passes with 0 records, 3 examples exist from the batch at step 18 on
    assert teacher.queries == 32 and max(teacher.adapter_batches) == 2
    starts = [s.started_step for s in teacher.stages]
    assert starts[0] == 18  # the first step past the boundary where it could start (not the next boundary, 24)
    assert all(b - a >= 8 for a, b in itertools.pairwise(starts)) and len(starts) >= 3
    table = teacher.summary()["stages"]
    assert sum(r["queries_served"] for r in table) == 32
    assert all(r["queries_served"] > 0 for r in table[:4])  # stages 0..3 each served queries
    stages_logged = [json.loads(line)["stage"] for line in (tmp_path / "subgoals.jsonl").read_text().splitlines()]
    assert stages_logged == sorted(stages_logged)
    assert set(stages_logged) == {r["stage"] for r in table if r["queries_served"]}
    assert len(cb.episode_steps) == len(cb.returns) == len(cb.episodes)
    assert cb.state_dict()["episode_steps"] == cb.episode_steps


def test_stage_plot_marks_each_stage(tmp_path: Path) -> None:
    xs, ys = rolling_curve([40, 80, 120], [1.0, 3.0, 2.0], window=2)
    assert xs == [40, 80, 120] and np.allclose(ys, [1.0, 2.0, 2.5])
    path = plot_stage_curve({"rladapter s0": (xs, ys)}, {"rladapter s0": [50, 90]}, tmp_path / "c.png")
    assert path.is_file() and path.stat().st_size > 1000
