"""`llmguide report` / `compare`: table and PNGs from run dirs of any method."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from llmguide.errors import ConfigError
from llmguide.report import build_report, compare, load_runs


def _fake_learner_run(root: Path, name: str, seed: int, slope: float) -> Path:
    """A run dir laid out like `method: subgoal` (config.yaml, metrics.json, SB3 progress.csv)."""
    run = root / f"MiniGrid__subgoal__{name}__{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "subgoal", "env": "MiniGrid-DoorKey-5x5-v0", "seed": seed,
                                                     "teacher": None if name == "plain" else {"type": "oracle"}}))
    steps = [512 * (i + 1) for i in range(6)]
    with (run / "progress.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["time/fps", "time/total_timesteps", "rollout/ep_rew_mean", "rollout/success_rate"])
        writer.writeheader()
        for i, x in enumerate(steps):
            writer.writerow({"time/fps": 900 + seed, "time/total_timesteps": x, "rollout/ep_rew_mean": slope * i,
                             "rollout/success_rate": min(1.0, slope * i + 0.05 * seed)})
    teacher_metrics = {} if name == "plain" else {"llm_calls_per_1k_steps": 0.0, "teacher_calls": 0}
    metrics = {"env": "MiniGrid-DoorKey-5x5-v0", "teacher": name, "learner": "PPO", "seed": seed,
               "total_steps": steps[-1], "success_rate": min(1.0, slope * 5), "steps_per_s": 800.0 + seed,
               "evals": [{"steps": steps[-1], "success_rate": min(1.0, slope * 5), "mean_return": 0.5}],
               "llm": {"calls": 0}}
    if teacher_metrics:
        metrics["teacher_metrics"] = teacher_metrics
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def _fake_agent_run(root: Path, arm: str, score: float) -> Path:
    """A run dir laid out like `method: scienceworld` (no progress.csv: an LLM agent does not learn)."""
    run = root / f"ScienceWorld__scienceworld-{arm}__0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "scienceworld", "name": arm, "seed": 0, "tasks": ["boil"]}))
    (run / "metrics.json").write_text(json.dumps({
        "env": "llmguide/ScienceWorld-v0", "tasks": ["boil"], "seed": 0, "agent": arm, "score_mean": score,
        "success_rate": 0.0, "return_mean": score, "llm_calls_per_step": 1.0, "llm_calls_per_decision": 1.0,
        "seconds_per_step": 2.0,
    }))
    return run


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    return [
        _fake_learner_run(root, "plain", 0, 0.05),
        _fake_learner_run(root, "plain", 1, 0.07),
        _fake_learner_run(root, "oracle", 0, 0.15),
        _fake_learner_run(root, "oracle", 1, 0.2),
        _fake_agent_run(root, "llm+memory", 12.5),
    ]


def test_report_writes_table_and_pngs(runs: list[Path], tmp_path: Path) -> None:
    path = build_report(runs, tmp_path / "out")
    assert path == tmp_path / "out" / "report.md"
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("| method")][0]
    for col in ("env", "seeds", "score", "return", "success", "LLM calls/step", "LLM calls/decision", "steps/s"):
        assert col in header
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(rows) >= {"subgoal:plain", "subgoal:oracle", "llm+memory"}
    assert "0, 1" in rows["subgoal:oracle"]  # seeds grouped under one label
    assert "12.5" in rows["llm+memory"]
    assert "0.5" in rows["subgoal:plain"]  # return from the last evaluation
    for png in ("learning_curves.png", "final_scores.png", "llm_cost.png"):
        data = (tmp_path / "out" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"![{png[:-4]}]({png})" in text


def test_seed_spread_and_grouping(runs: list[Path], tmp_path: Path) -> None:
    report = compare(runs, tmp_path / "out")
    oracle = [r for r in report.rows if r["method"] == "subgoal:oracle"][0]
    assert oracle["runs"] == 2
    assert "±" in oracle["success"]  # 0.75 ± 0.25 over two seeds
    assert oracle["success"].startswith("0.875")
    summaries = {(s.label, s.seed): s for s in report.runs}
    assert summaries[("subgoal:oracle", 1)].curve_metric == "rollout/success_rate"
    assert summaries[("subgoal:oracle", 1)].steps_per_s == pytest.approx(801.0)
    assert summaries[("llm+memory", 0)].steps_per_s == pytest.approx(0.5)  # 1 / seconds_per_step
    assert "| llm+memory" in report._repr_markdown_()


def test_folder_of_runs_is_expanded(runs: list[Path], tmp_path: Path) -> None:
    assert len(load_runs([runs[0].parent])) == len(runs)


def test_bad_run_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Run dir not found"):
        build_report([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="No runs"):
        build_report([tmp_path / "empty"], tmp_path / "out")


def test_cli_report(runs: list[Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmguide.cli import app

    result = CliRunner().invoke(app, ["report", *map(str, runs[:2]), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "report.md").exists()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert bad.exit_code == 2


@pytest.mark.slow
def test_report_on_a_real_tiny_run(tmp_path: Path, runs: list[Path]) -> None:
    from llmguide import Experiment

    result = Experiment(env="MiniGrid-DoorKey-5x5-v0", teacher="oracle", learner="PPO", total_steps=256, seed=0,
                        n_envs=2, eval_every=128, eval_episodes=2, run_dir=tmp_path / "real").run()
    report = compare([result, runs[-1]], tmp_path / "out")
    real = [s for s in report.runs if s.run_dir == tmp_path / "real"][0]
    assert real.curve is not None and max(real.curve[0]) >= 128
    assert real.steps_per_s and real.steps_per_s > 0
    assert (tmp_path / "out" / "learning_curves.png").exists()
