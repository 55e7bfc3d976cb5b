"""Experiment / Result on the core: run dir contents, evaluation without LLM, checkpoints and resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.teachers import OracleTeacher, RandomTeacher, SubgoalTeacher

from llmguide import Experiment, Result
from llmguide.agents.subgoal_method import make_teacher, teacher_config
from llmguide.errors import ConfigError
from llmguide.llm import METER
from llmguide.record import RunMetrics
from llmguide.training import RunInterrupted, steps_to_target

TINY: dict[str, Any] = {
    "n_envs": 2,
    "learner_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    "policy_kwargs": {"net_arch": [16]},
}
REPO = Path(__file__).resolve().parents[1]


def test_run_dir_has_everything_and_evaluation_uses_no_llm(tmp_path: Path) -> None:
    teacher = SubgoalTeacher(FakeListChatModel(responses=['{"choice": "yellow key"}']), "object")
    exp = Experiment("MiniGrid-DoorKey-5x5-v0", teacher=teacher, total_steps=512,
                     eval={"every": 256, "episodes": 2}, checkpoint_every=256, run_dir=tmp_path / "run", **TINY)
    result = exp.run()
    run = tmp_path / "run"
    for name in ("config.yaml", "progress.csv", "model.zip", "metrics.json", "checkpoints/model.zip", "checkpoints/state.json"):
        assert (run / name).exists(), name
    assert list(run.glob("events.out.tfevents.*"))
    m = RunMetrics.model_validate(result.metrics)
    assert m.method == "subgoal" and m.kind == "trained" and m.steps >= 512
    assert m.extras["teacher"] == "llm-object" and m.extras["teacher_metrics"]["teacher_calls"] >= 1
    assert m.llm_calls >= 1 and len(m.curve) >= 2 and 0.0 <= (m.success or 0.0) <= 1.0
    calls = METER.snapshot().calls
    out = Result.load(run).evaluate(episodes=4)
    assert METER.snapshot().calls == calls  # no LLM at evaluation
    assert out["llm_used"] is False and 0.0 <= out["success"] <= 1.0 and len(out["records"]) == 4
    assert (run / "eval.json").exists()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["method"] == "subgoal" and cfg["teacher"]["kind"] == "object"


def test_interrupt_leaves_a_resumable_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmguide.agents import guidance

    original = guidance.TeacherMetricsCallback._on_step

    def interrupt(self: Any) -> bool:
        if self.num_timesteps >= 256:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(guidance.TeacherMetricsCallback, "_on_step", interrupt)
    exp = Experiment("MiniGrid-DoorKey-5x5-v0", teacher=OracleTeacher(), total_steps=512, eval={"every": 0, "episodes": 2},
                     checkpoint_every=10_000, run_dir=tmp_path, learner="DQN",
                     learner_kwargs={"learning_starts": 64, "buffer_size": 1000}, n_envs=2, policy_kwargs={"net_arch": [16]})
    with pytest.raises(RunInterrupted) as stop:
        exp.run()
    assert stop.value.resumable
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    first_rows = (tmp_path / "progress.csv").read_text()
    assert state["num_timesteps"] >= 256 and (tmp_path / "checkpoints" / "replay_buffer.pkl").exists()
    monkeypatch.setattr(guidance.TeacherMetricsCallback, "_on_step", original)
    m = RunMetrics.model_validate(exp.run(resume=True).metrics)
    assert m.steps >= 512 and m.resumes == 1 and (tmp_path / "model.zip").exists()
    assert (tmp_path / "progress.csv").read_text() == first_rows  # the first segment's log is never overwritten
    assert (tmp_path / "progress-resume1.csv").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"env": "MiniGrid-DoorKey-8x8-v9"}, "DoorKey-8x8-v0"),
        ({"env": "CartPole-v1"}, "MiniGrid"),
        ({"learner": "PPO2"}, "PPO"),
        ({"teacher": {"type": "oracle", "kind": "smell"}}, "kind"),
        ({"teacher": "genius"}, "teacher.type"),
        ({"teacher": {"type": "subgoal", "temperature": 3}}, "temperature"),
        ({"guidance": {"bonus": 0.5, "max_bonus": 1.2}}, "max_bonus"),
        ({"vec_env": "ray"}, "vec_env"),
        ({"total_steps": -5}, "total_steps"),
        ({"episodes": 3}, "total_steps"),
    ],
)
def test_bad_input_gives_clear_errors(kwargs: dict[str, Any], match: str) -> None:
    args = {"env": "MiniGrid-DoorKey-5x5-v0", **kwargs}
    with pytest.raises(ConfigError, match=match):
        exp = Experiment(**args)
        if "learner" in kwargs:
            exp.run()


def test_unknown_config_keys_say_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="unknown key 'totl_steps' for method 'subgoal'. Did you mean 'total_steps'"):
        Experiment.from_config({"method": "subgoal", "env": "MiniGrid-DoorKey-5x5-v0", "totl_steps": 3})
    with pytest.raises(ConfigError, match="eval.episods"):
        Experiment.from_config({"method": "subgoal", "env": "MiniGrid-DoorKey-5x5-v0", "eval": {"episods": 3}})


def test_oracle_on_an_unplannable_env_fails_clearly(tmp_path: Path) -> None:
    exp = Experiment("MiniGrid-Fetch-5x5-N2-v0", teacher="oracle", total_steps=64, eval={"every": 0}, run_dir=tmp_path, **TINY)
    with pytest.raises(ConfigError, match="cannot plan"):
        exp.run()


@pytest.mark.parametrize("name", ["minigrid_doorkey.yaml", "demo.yaml"])
def test_shipped_subgoal_configs_are_valid(name: str) -> None:
    config = yaml.safe_load((REPO / "configs" / name).read_text())
    for over in config.pop("arms", {"": {}}).values():
        exp = Experiment.from_config({**config, **over})
        assert exp.config.env == config["env"]


def test_teacher_objects_round_trip_to_config_without_losing_fields() -> None:
    teacher = SubgoalTeacher("smollm2", "positional", mode="free", max_queries=7, retries=1, include_view=True,
                             max_tokens=32, llm_kwargs={"n_threads": 1}, option_order="layout")
    exp = Experiment("MiniGrid-DoorKey-5x5-v0", teacher=teacher, total_steps=64)
    cfg = exp.to_config()
    assert cfg["teacher"] == teacher_config(teacher).model_dump()
    again = Experiment.from_config(yaml.safe_load(yaml.safe_dump(cfg)))
    assert again.to_config() == cfg
    rebuilt = make_teacher(again.config.teacher)
    for field in ("kind", "mode", "max_queries", "retries", "include_view", "max_tokens", "llm_kwargs", "option_order"):
        assert getattr(rebuilt, field) == getattr(teacher, field), field


def test_make_teacher_forms() -> None:
    assert make_teacher(None) is None and make_teacher("plain") is None
    assert isinstance(make_teacher("oracle"), OracleTeacher)
    assert isinstance(make_teacher({"type": "random", "kind": "language"}, seed=2), RandomTeacher)
    t = make_teacher({"type": "subgoal", "llm": "smollm2", "kind": "positional", "max_queries": 5})
    assert isinstance(t, SubgoalTeacher) and t.max_queries == 5


def test_steps_to_target_uses_a_rolling_window() -> None:
    rows = [{"steps": s, "success": r} for s, r in [(10, 0.5), (20, 0.95), (30, 0.8), (40, 0.95), (50, 1.0)]]
    assert steps_to_target(rows, 0.9, window=2) == 50
    assert steps_to_target(rows, 0.9, window=1) == 20
    skipped = [{"steps": 10, "success": 0.95, "evaluated": False}, {"steps": 20, "success": 0.95}]
    assert steps_to_target(skipped, 0.9, window=2) is None
    exact = [{"steps": 10, "success": 0.85}, {"steps": 20, "success": 0.95}]  # mean 0.8999... in floats
    assert steps_to_target(exact, 0.9, window=2) == 20
