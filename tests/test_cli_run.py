"""`llmguide run` / `eval` / `methods` through typer's runner: seeds, arms, resume, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llmguide.cli import app
from llmguide.record import RunMetrics

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
    path.write_text(yaml.safe_dump({**TINY, **extra}, sort_keys=False))
    return path


def test_run_seeds_then_eval(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--seeds", "0,1", "--runs-dir", str(runs), "--no-progress"])
    assert result.exit_code == 0, result.output
    dirs = sorted(runs.iterdir())
    assert len(dirs) == 2 and all(RunMetrics.model_validate_json((d / "metrics.json").read_text()) for d in dirs)
    assert "2 seeds" in result.output and "success" in result.output
    assert yaml.safe_load((dirs[1] / "config.yaml").read_text())["seed"] == 1
    evaluated = runner.invoke(app, ["eval", str(dirs[0]), "--episodes", "2"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((dirs[0] / "eval.json").read_text())["episodes"] == 2


def test_arms_run_side_by_side_with_one_report(tmp_path: Path) -> None:
    arms = {"plain": {"teacher": "none"}, "oracle": {"teacher": "oracle"}}
    result = runner.invoke(app, ["run", str(_config(tmp_path, arms=arms)), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    parent = next((tmp_path / "runs").iterdir())
    assert {p.name for p in parent.iterdir() if p.is_dir()} >= {"plain", "oracle"}
    results = json.loads((parent / "results.json").read_text())
    assert [r["label"] for r in results["runs"]] == ["plain", "oracle"]
    assert any(Path(p).name == "learning_curves.png" and Path(p).exists() for p in results["plots"])
    evaluated = runner.invoke(app, ["eval", str(parent), "--episodes", "2"])
    assert evaluated.exit_code == 0, evaluated.output
    assert (parent / "plain" / "eval.json").exists() and (parent / "oracle" / "eval.json").exists()


def test_a_crashed_arm_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    broken = {**TINY["learner_kwargs"], "bogus_key": 1}  # passes the config check, fails when PPO is built
    arms = {"broken": {"learner_kwargs": broken}, "plain": {"teacher": "none"}}
    result = runner.invoke(app, ["run", str(_config(tmp_path, arms=arms)), "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code == 1, result.output
    parent = next((tmp_path / "runs").iterdir())
    results = json.loads((parent / "results.json").read_text())
    rows = {r["label"]: r for r in results["runs"]}
    assert rows["broken"]["status"] == "crashed" and "bogus_key" in rows["broken"]["error"] and results["crashed"] == 1
    assert rows["plain"]["status"] == "finished" and results["report"]
    assert "Traceback" in (parent / "broken" / "error.txt").read_text()
    assert "crashed" in result.output and "broken" in result.output
    again = runner.invoke(app, ["run", "--resume", str(parent), "--no-progress"])
    assert again.exit_code == 1, again.output  # the crashed arm is tried again, the finished one is kept
    assert "arm broken" in again.output and "arm plain" not in again.output


def test_resume_finishes_a_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert runner.invoke(app, ["run", str(_config(tmp_path)), "--runs-dir", str(runs), "--no-progress"]).exit_code == 0
    run_dir = next(runs.iterdir())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["total_steps"] = 256  # a longer budget: the resume continues from the 128-step checkpoint
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["run", "--resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    m = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
    assert m.steps >= 256 and m.resumes == 1


@pytest.mark.parametrize(
    "content, message",
    [
        ("method: teleport\nenv: x\n", "Unknown method 'teleport'"),
        ("method: subgol\nenv: x\n", "Did you mean subgoal"),
        ("env: MiniGrid-DoorKey-5x5-v0\n", "method"),
        ("method: subgoal\nenv: [unclosed\n", "not valid YAML"),
        ("method: subgoal\nenv: MiniGrid-DoorKey-5x5-v0\ntotl_steps: 5\n", "Did you mean 'total_steps'"),
        ("method: subgoal\nenv: MiniGrid-DoorKey-5x5-v0\nn_envs: many\n", "n_envs"),
        ("method: subgoal\nenv: MiniGrid-DoorKey-5x5-v0\ntotal_steps: -1\n", "total_steps"),
    ],
)
def test_bad_configs_are_one_line_errors_and_leave_no_run_dir(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = runner.invoke(app, ["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unwritable_runs_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--runs-dir", str(blocker / "runs"), "--no-progress"])
    assert result.exit_code == 2 and "--runs-dir" in result.output and "Traceback" not in result.output


def test_help_config_and_methods_list_every_method(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(_config(tmp_path)), "--help-config"])
    assert result.exit_code == 0 and "guidance.max_bonus" in result.output and "total_steps" in result.output
    listed = runner.invoke(app, ["methods"])
    assert listed.exit_code == 0, listed.output
    for name in ("subgoal", "spring", "dilu", "rladapter", "oni", "scienceworld"):
        assert name in listed.output


def test_missing_config_and_eval_of_empty_dir(tmp_path: Path) -> None:
    assert runner.invoke(app, ["run"]).exit_code == 2
    assert runner.invoke(app, ["run", str(tmp_path / "nope.yaml")]).exit_code == 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    result = runner.invoke(app, ["eval", str(tmp_path)])
    assert result.exit_code == 2 and "no trained model" in result.output
    assert runner.invoke(app, ["eval", str(tmp_path), "--episodes", "0"]).exit_code == 2
    assert os.path.exists(tmp_path / "config.yaml")


def test_resume_of_a_run_stopped_after_its_last_step_finishes_it(tmp_path: Path) -> None:
    """A checkpoint at the final step but no end-of-run work (a sweep trial lost at that moment):
    resuming trains nothing more and still evaluates, checkpoints and writes the record."""
    from llmguide.core import prepare, run

    cfg = {**TINY, "progress": False}
    run(prepare(cfg), tmp_path)
    (tmp_path / "metrics.json").unlink()
    again = run(prepare({**cfg, "resume": True}), tmp_path)
    assert again.steps == TINY["total_steps"] and again.resumes == 1 and (tmp_path / "metrics.json").exists()
