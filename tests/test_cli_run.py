"""`llmguide run` / `llmguide eval`: generic dispatch, seeds sweep, resume, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llmguide.cli import app

runner = CliRunner()

TINY = {
    "method": "subgoal",
    "env": "MiniGrid-Empty-5x5-v0",
    "teacher": {"type": "oracle", "kind": "object"},
    "total_steps": 128,
    "n_envs": 2,
    "learner_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    "policy_kwargs": {"net_arch": [16]},
    "eval": {"every": 0, "episodes": 2},
    "checkpoint_every": 64,
}


def _config(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**TINY, **extra}))
    return path


def test_run_seeds_then_eval(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--seeds", "0,1", "--runs-dir", str(runs), "--no-progress"])
    assert result.exit_code == 0, result.output
    dirs = sorted(runs.iterdir())
    assert len(dirs) == 2 and all((d / "metrics.json").exists() and (d / "config.yaml").exists() for d in dirs)
    assert "2 seeds" in result.output and "success_rate" in result.output
    assert yaml.safe_load((dirs[1] / "config.yaml").read_text())["seed"] == 1
    evaluated = runner.invoke(app, ["eval", str(dirs[0]), "--episodes", "2"])
    assert evaluated.exit_code == 0, evaluated.output
    assert (dirs[0] / "eval.json").exists() and "success_rate" in evaluated.output


def test_resume_finishes_a_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert runner.invoke(app, ["run", str(_config(tmp_path)), "--runs-dir", str(runs), "--no-progress"]).exit_code == 0
    run_dir = next(runs.iterdir())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["total_steps"] = 256  # pretend the first run was cut short
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["run", "--resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run_dir / "metrics.json").read_text())["total_steps"] >= 256


@pytest.mark.parametrize(
    "content, message",
    [
        ("method: teleport\nenv: x\n", "Unknown method 'teleport'"),
        ("env: MiniGrid-DoorKey-5x5-v0\n", "method"),
        ("method: subgoal\nenv: [unclosed\n", "not valid YAML"),
        ("method: subgoal\nenv: MiniGrid-DoorKey-5x5-v0\nlearner: PPO3\n", "Unknown learner"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = runner.invoke(app, ["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_missing_config_and_eval_of_empty_dir(tmp_path: Path) -> None:
    assert runner.invoke(app, ["run"]).exit_code == 2
    assert runner.invoke(app, ["run", str(tmp_path / "nope.yaml")]).exit_code == 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    result = runner.invoke(app, ["eval", str(tmp_path)])
    assert result.exit_code == 2 and "no trained model" in result.output
