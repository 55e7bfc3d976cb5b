"""`RLAdapterMethod` on the core, in-process and fast: the config, the eval env, a plain run
with its Crafter score, no LLM at evaluation, and an interrupted guided run resumed (a
scripted guide and fake embeddings stand in for the models)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.agents.rladapter import RLAdapterConfig, RLAdapterMethod
from llmguide.teachers.rladapter import RLAdapterTeacher, StageResult

from llmguide.core import evaluate, load_run_config, prepare, run
from llmguide.errors import ConfigError
from llmguide.record import RunMetrics
from llmguide.training import RunInterrupted

ROOT = Path(__file__).resolve().parents[2]
#: a CPU-sized run: small world, short episodes, tiny network
TINY: dict[str, Any] = {
    "method": "rladapter", "total_steps": 128, "n_envs": 2, "every": 16, "stage_every": 0,
    "env_kwargs": {"area": [16, 16], "length": 40}, "checkpoint_every": 32,
    "learner_kwargs": {"n_steps": 32, "batch_size": 64, "n_epochs": 1},
    "net": {"channels": [4, 8, 8], "image_features": 16, "subgoal_features": 8, "net_arch": [8]},
    "eval": {"every": 0, "episodes": 2, "n_envs": 2},
}


def _scripted() -> dict[str, Any]:
    """A scripted guide and fake embeddings in place of the models."""
    guide = FakeListChatModel(responses=['{"choice": "collect wood"}', '{"choice": "place table"}'])
    return {"llm": guide, "embeddings": DeterministicFakeEmbedding(size=384)}


def test_shipped_config_validates_and_names_bad_keys() -> None:
    prepared = prepare(load_run_config(ROOT / "configs" / "rladapter_crafter.yaml"))
    assert prepared.method_cls is RLAdapterMethod and prepared.settings.total_steps == 20_000
    cfg = prepared.config
    assert isinstance(cfg, RLAdapterConfig) and cfg.variant == "rladapter" and cfg.bonus == 0.0
    with pytest.raises(ConfigError, match=r"unknown key 'evry' for method 'rladapter'\. Did you mean 'every'\?"):
        prepare({"method": "rladapter", "evry": 10})
    with pytest.raises(ConfigError, match=r"unknown key 'total_timesteps'.*Did you mean 'total_steps'\?"):
        prepare({"method": "rladapter", "total_timesteps": 10})
    with pytest.raises(ConfigError, match="variant"):
        prepare({"method": "rladapter", "variant": "oracle"})
    with pytest.raises(ConfigError, match="Crafter"):
        prepare({"method": "rladapter", "env": "MiniGrid-Empty-5x5-v0"})
    with pytest.raises(ConfigError, match="episodes"):
        prepare({"method": "rladapter", "episodes": 3})


def test_eval_env_has_the_training_observation_space(tmp_path: Path) -> None:
    prepared = prepare({**TINY, "variant": "guide"})
    method = RLAdapterMethod(prepared.config, prepared.settings, tmp_path)
    train_env, eval_env = method.make_env()(), method.make_env(for_eval=True)()
    assert train_env.observation_space == eval_env.observation_space
    obs, info = eval_env.reset(seed=0)
    assert not obs["subgoal"].any() and "text" not in info  # no subgoal, no language view: nothing for an LLM
    assert "text" in train_env.reset(seed=0)[1]
    assert method.policy_name() == "MultiInputPolicy" and method.learner_defaults()["gae_lambda"] == 0.65
    assert method.policy_kwargs()["features_extractor_kwargs"]["image_features"] == 16
    assert method._teacher is None  # building envs builds no teacher


def test_plain_run_scores_crafter_and_evaluates_without_llm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = run(prepare({**TINY, "variant": "plain"}), tmp_path)
    assert RunMetrics.model_validate(json.loads((tmp_path / "metrics.json").read_text())) == metrics
    assert metrics.method == "rladapter" and metrics.kind == "trained" and metrics.steps >= 128
    assert metrics.label == "rladapter:plain" and metrics.llm_calls == 0 and metrics.score is not None
    extras = metrics.extras
    assert extras["variant"] == "plain" and extras["train_crafter"]["episodes"] == metrics.episodes > 0
    assert "teacher" not in extras
    assert not (tmp_path / "subgoals.jsonl").exists()

    def no_teacher(self: RLAdapterMethod) -> RLAdapterTeacher:
        raise AssertionError("evaluation built a teacher")

    monkeypatch.setattr(RLAdapterMethod, "make_teacher", no_teacher)
    out = evaluate(tmp_path, episodes=2)
    assert out["llm_used"] is False and out["episodes"] == 2 and out["score"] is not None
    assert all("achievements" in r["extra"] for r in out["records"])


def test_interrupted_guided_run_resumes_from_its_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_advise = RLAdapterTeacher.advise

    def advise_then_stop(self: RLAdapterTeacher, *args: Any, **kwargs: Any) -> Any:
        if self.queries == 6:  # Ctrl-C in the middle of training
            raise KeyboardInterrupt
        return real_advise(self, *args, **kwargs)

    monkeypatch.setattr(RLAdapterTeacher, "advise", advise_then_stop)
    config = {**TINY, "variant": "guide", "total_steps": 256}
    with pytest.raises(RunInterrupted) as stop:
        run(prepare(config, _scripted()), tmp_path)
    assert stop.value.resumable
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert 0 < state["num_timesteps"] < 256 and state["method_state"]["teacher"]["queries"] == 6
    progress = (tmp_path / "progress.csv").read_text()
    buffer = (tmp_path / "rladapter_buffer.jsonl").read_text()
    subgoals = (tmp_path / "subgoals.jsonl").read_text()
    assert subgoals.count("\n") == 6

    monkeypatch.setattr(RLAdapterTeacher, "advise", real_advise)
    metrics = run(prepare({**config, "resume": True}, _scripted()), tmp_path)
    assert metrics.resumes == 1 and metrics.steps >= 256
    assert (tmp_path / "progress.csv").read_text() == progress  # the first segment's log is kept
    assert (tmp_path / "progress-resume1.csv").is_file()
    assert (tmp_path / "rladapter_buffer.jsonl").read_text().startswith(buffer)  # appended, not truncated
    assert (tmp_path / "subgoals.jsonl").read_text().startswith(subgoals)
    teacher = metrics.extras["teacher"]
    assert teacher["queries"] > 6 and teacher["buffer_records"] == (tmp_path / "rladapter_buffer.jsonl").read_text().count("\n")
    assert metrics.extras["train_crafter"]["episodes"] == metrics.episodes


class _Adapter:
    """Stands in for `AdapterLM`: records which stage weights it was given."""

    spec = "smollm2"

    def __init__(self) -> None:
        self.loaded: list[tuple[Path, int | None]] = []

    def generate(self, messages: Any, **kwargs: Any) -> str:
        return "the agent should collect wood"

    def save(self, out: Path) -> Path:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "adapter_model.safetensors").write_bytes(b"")
        return Path(out)

    def load_stage(self, folder: Path, stage: int | None = None) -> None:
        self.loaded.append((Path(folder), stage))


def test_teacher_state_keeps_the_adapter_stage_and_numbers_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def teacher(adapter: _Adapter) -> RLAdapterTeacher:
        guide = FakeListChatModel(responses=['{"choice": "collect wood"}'])
        return RLAdapterTeacher(adapter=adapter, llm=guide, every=4, run_dir=tmp_path, min_records=1, min_examples=1, min_new_records=0,
                                embeddings=DeterministicFakeEmbedding(size=384))

    first = teacher(_Adapter())
    info = {"text": "You see: tree.", "achievement_counts": {}}
    for _ in range(3):
        first.advise(0, info, ["collected wood"])
    first.stages.append(StageResult(1, True, 2.5, 64, {"examples": 1}))
    first.stage = 1
    _Adapter().save(tmp_path / "adapter" / "stage_1")
    state = json.loads(json.dumps(first.state_dict()))

    adapter = _Adapter()
    second = teacher(adapter)
    second.load_state_dict(state)
    assert adapter.loaded == [(tmp_path / "adapter" / "stage_1", 1)]
    assert second.stage == 1 and second.queries == 3 and len(second.buffer) == 2
    assert second.summary()["finetune_s_per_stage"] == [2.5]
    assert second.summary()["comprehension_by_stage"] == first.summary()["comprehension_by_stage"]

    started: list[list[str]] = []

    class Popen:
        returncode: int | None = None

        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            started.append(cmd)

        def poll(self) -> int | None:
            return None

        def terminate(self) -> None: ...

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Popen)
    assert second.start_stage(100)
    cmd = started[0]
    assert cmd[cmd.index("--out") + 1].endswith("stage_2") and cmd[cmd.index("--init") + 1].endswith("stage_1")
    second.close()
    assert np.isfinite(second.summary()["comprehension_mean"])
