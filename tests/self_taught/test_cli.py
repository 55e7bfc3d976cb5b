"""`llmguide run configs/self_taught_doorkey.yaml` through the CLI with a tiny budget: it runs, records
its probe and the teacher state in its checkpoint, `llmguide eval` scores the policy alone, and
`--resume` continues it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from llmguide.cli import app
from llmguide.record import RunMetrics

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "env=MiniGrid-DoorKey-5x5-v0", "env_kwargs.max_steps=40",  # short episodes: their counters reach the metrics
    "total_steps=128", "n_envs=2", "learner_kwargs.n_steps=64", "learner_kwargs.batch_size=64",
    "learner_kwargs.n_epochs=1", "policy_kwargs.net_arch=[16]", "eval.every=0", "eval.episodes=1",
    "checkpoint_every=64", "teacher.tuning.lora_r=4", "teacher.tuning.stage_steps=1", "teacher.tuning.probe_episodes=1",
]


def test_self_taught_config_runs_evaluates_and_resumes(tmp_path: Path) -> None:
    runner = CliRunner()
    runs = tmp_path / "runs"
    sets = [arg for s in TINY for arg in ("--set", s)]
    result = runner.invoke(app, ["run", str(REPO / "configs" / "self_taught_doorkey.yaml"), *sets,
                                 "--runs-dir", str(runs), "--no-progress"])
    assert result.exit_code == 0, result.output
    run_dir = next(runs.iterdir())
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["teacher"]["type"] == "self_taught" and saved["guidance"]["asynchronous"] is True
    assert (run_dir / "self_taught" / "probe.jsonl").is_file()  # the oracle's scoring set, built once
    m = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
    assert m.extras["teacher"] == "self_taught" and "stages" in m.extras["self_taught"]
    tm = m.extras["teacher_metrics"]
    assert tm["episodes"] > 0 and tm["teacher_deferred"] + tm["teacher_queries"] > 0  # asked, never waited on
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert "stage" in state["method_state"]["teacher_state"]

    evaluated = runner.invoke(app, ["eval", str(run_dir), "--episodes", "1"])  # the policy alone, no teacher
    assert evaluated.exit_code == 0, evaluated.output

    saved["total_steps"] = 256
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    again = runner.invoke(app, ["run", "--resume", str(run_dir), "--no-progress"])
    assert again.exit_code == 0, again.output
    m = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
    assert m.steps >= 256 and m.resumes == 1 and "self_taught" in m.extras
