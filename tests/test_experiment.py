"""Experiment / Result: run dir contents, evaluation without LLM, checkpoints and resume, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.teachers import OracleTeacher, RandomTeacher, SubgoalTeacher

from llmguide import Experiment, Result
from llmguide.errors import ConfigError, EnvNotFoundError
from llmguide.experiment import make_teacher, run_subgoal_config, steps_to_target
from llmguide.llm import METER

TINY: dict[str, Any] = {
    "n_envs": 2,
    "learner_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    "policy_kwargs": {"net_arch": [16]},
    "eval_episodes": 2,
}
REPO = Path(__file__).resolve().parents[1]


def test_run_dir_has_everything_and_evaluation_uses_no_llm(tmp_path: Path) -> None:
    teacher = SubgoalTeacher(FakeListChatModel(responses=['{"choice": "yellow key"}']), "object")
    exp = Experiment("MiniGrid-DoorKey-5x5-v0", teacher, total_steps=512, eval_every=256, checkpoint_every=256,
                     run_dir=tmp_path, **TINY)
    result = exp.run()
    for name in ("config.yaml", "progress.csv", "evals.csv", "model.zip", "learning_curve.png", "metrics.json",
                 "checkpoints/model.zip", "checkpoints/state.json"):
        assert (tmp_path / name).exists(), name
    assert list(tmp_path.glob("events.out.tfevents.*"))
    m = result.metrics
    assert m["teacher"] == "llm-object" and m["teacher_metrics"]["teacher_calls"] >= 1
    assert len(m["evals"]) >= 2 and 0.0 <= m["success_rate"] <= 1.0
    calls = METER.snapshot().calls
    out = Result.load(tmp_path).evaluate(episodes=4)
    assert METER.snapshot().calls == calls  # no LLM at evaluation
    assert out["teacher_used"] is False and 0.0 <= out["success_rate"] <= 1.0
    assert (tmp_path / "eval.json").exists()
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert cfg["method"] == "subgoal" and cfg["teacher"]["kind"] == "object"


def test_interrupt_leaves_a_resumable_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmguide.agents import guidance

    original = guidance.TeacherMetricsCallback._on_step

    def interrupt(self: Any) -> bool:
        if self.num_timesteps >= 256:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(guidance.TeacherMetricsCallback, "_on_step", interrupt)
    exp = Experiment("MiniGrid-DoorKey-5x5-v0", OracleTeacher(), total_steps=512, eval_every=0,
                     checkpoint_every=10_000, run_dir=tmp_path, **TINY)
    with pytest.raises(KeyboardInterrupt):
        exp.run()
    state = yaml.safe_load((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] >= 256
    monkeypatch.setattr(guidance.TeacherMetricsCallback, "_on_step", original)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    metrics = run_subgoal_config({**config, "resume": True}, tmp_path)
    assert metrics["total_steps"] >= 512
    assert (tmp_path / "model.zip").exists()


def test_compare_runs_plain_and_guided_side_by_side(tmp_path: Path) -> None:
    config = {
        "method": "subgoal", "env": "MiniGrid-Empty-5x5-v0", "teacher": "oracle", "total_steps": 256,
        "n_envs": 2, "learner_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
        "policy_kwargs": {"net_arch": [16]}, "eval": {"every": 0, "episodes": 2}, "compare": "plain",
    }
    m = run_subgoal_config(config, tmp_path)
    assert Path(m["plot"]).exists() and {r["arm"] for r in m["table"]} == {"plain", "guided"}
    assert (tmp_path / "plain" / "model.zip").exists() and (tmp_path / "guided" / "model.zip").exists()
    assert "teacher_metrics" not in m["arms"]["plain"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"env": "MiniGrid-DoorKey-8x8-v9"}, EnvNotFoundError, "DoorKey-8x8-v0"),
        ({"env": "CartPole-v1"}, ConfigError, "MiniGrid"),
        ({"learner": "PPO2"}, ConfigError, "PPO"),
        ({"teacher": {"type": "oracle", "kind": "smell"}}, ConfigError, "kind"),
        ({"teacher": "genius"}, ConfigError, "teacher type"),
        ({"teacher": {"type": "subgoal", "temperature": 3}}, ConfigError, "temperature"),
        ({"bonus": 0.5, "max_bonus": 1.2}, ConfigError, "max_bonus"),
        ({"vec_env": "ray"}, ConfigError, "vec_env"),
    ],
)
def test_bad_input_gives_clear_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    args = {"env": "MiniGrid-DoorKey-5x5-v0", **kwargs}
    with pytest.raises(error, match=match):
        Experiment(**args)


def test_unknown_config_keys_are_rejected() -> None:
    with pytest.raises(ConfigError, match="totl_steps"):
        Experiment.from_config({"method": "subgoal", "env": "MiniGrid-DoorKey-5x5-v0", "totl_steps": 3})
    with pytest.raises(ConfigError, match="episods"):
        Experiment.from_config({"method": "subgoal", "env": "MiniGrid-DoorKey-5x5-v0", "eval": {"episods": 3}})


def test_oracle_on_an_unplannable_env_fails_clearly(tmp_path: Path) -> None:
    exp = Experiment("MiniGrid-Fetch-5x5-N2-v0", "oracle", total_steps=64, eval_every=0, run_dir=tmp_path, **TINY)
    with pytest.raises(ConfigError, match="cannot plan"):
        exp.run()


@pytest.mark.parametrize("name", ["minigrid_doorkey.yaml", "demo.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = yaml.safe_load((REPO / "configs" / name).read_text())
    assert config["method"] == "subgoal"
    exp = Experiment.from_config({k: v for k, v in config.items() if k != "compare"})
    assert isinstance(exp.teacher, SubgoalTeacher) and exp.teacher._llm is None  # the model loads lazily


def test_make_teacher_forms() -> None:
    assert make_teacher(None) is None and make_teacher("plain") is None
    assert isinstance(make_teacher("oracle"), OracleTeacher)
    assert isinstance(make_teacher({"type": "random", "kind": "language"}, seed=2), RandomTeacher)
    t = make_teacher({"type": "subgoal", "llm": "smollm2", "kind": "positional", "max_queries": 5})
    assert isinstance(t, SubgoalTeacher) and t.max_queries == 5


def test_steps_to_target_uses_a_rolling_window() -> None:
    rows = [{"steps": s, "success_rate": r} for s, r in [(10, 0.5), (20, 0.95), (30, 0.8), (40, 0.95), (50, 1.0)]]
    assert steps_to_target(rows, 0.9, window=2) == 50
    assert steps_to_target(rows, 0.9, window=1) == 20
    skipped = [{"steps": 10, "success_rate": 0.95, "evaluated": False}, {"steps": 20, "success_rate": 0.95}]
    assert steps_to_target(skipped, 0.9, window=2) is None
    exact = [{"steps": 10, "success_rate": 0.85}, {"steps": 20, "success_rate": 0.95}]  # mean 0.8999... in floats
    assert steps_to_target(exact, 0.9, window=2) == 20
