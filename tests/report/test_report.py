"""`llmguide report` / `compare`: table and PNGs from run dirs of any method, read only through RunMetrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmguide.errors import ConfigError
from llmguide.record import CurvePoint, RunMetrics
from llmguide.report import build_report, compare, load_runs


def _write(run: Path, metrics: RunMetrics) -> Path:
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(metrics.model_dump_json())
    return run


def _learner_run(root: Path, name: str, seed: int, slope: float) -> Path:
    steps = [512 * (i + 1) for i in range(6)]
    curve = [CurvePoint(steps=x, success=min(1.0, slope * i + 0.05 * seed), return_mean=0.5) for i, x in enumerate(steps)]
    return _write(root / f"MiniGrid__subgoal__{name}__{seed}", RunMetrics(
        method="subgoal", kind="trained", env="MiniGrid-DoorKey-5x5-v0", seed=seed, label=f"subgoal:{name}",
        steps=steps[-1], success=curve[-1].success, return_mean=0.5, steps_per_s=800.0 + seed, curve=curve,
        llm_calls=0 if name == "plain" else 6, llm_calls_per_1k_steps=0.0 if name == "plain" else 2.0,
    ))


def _agent_run(root: Path, label: str, score: float) -> Path:
    return _write(root / f"ScienceWorld__scienceworld-{label}__0", RunMetrics(
        method="scienceworld", kind="agent", env="llmguide/ScienceWorld-v0", seed=0, label=label, steps=10, episodes=2,
        score=score, success=0.0, return_mean=score, steps_per_s=0.5, llm_calls=10, llm_calls_per_1k_steps=1000.0,
        fallbacks=1, curve=[CurvePoint(steps=5, success=0.0, return_mean=score), CurvePoint(steps=10, success=0.0)],
    ))


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    return [
        _learner_run(root, "plain", 0, 0.05),
        _learner_run(root, "plain", 1, 0.07),
        _learner_run(root, "oracle", 0, 0.15),
        _learner_run(root, "oracle", 1, 0.2),
        _agent_run(root, "llm+memory", 12.5),
    ]


def test_report_writes_table_and_pngs(runs: list[Path], tmp_path: Path) -> None:
    path = build_report(runs, tmp_path / "out")
    assert path == tmp_path / "out" / "report.md"
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("| run")][0]
    for col in ("env", "seeds", "success", "score", "return", "steps to target", "LLM calls/1k steps", "fallbacks", "steps/s"):
        assert col in header
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(rows) >= {"subgoal:plain", "subgoal:oracle", "llm+memory"}
    assert "0, 1" in rows["subgoal:oracle"]  # seeds grouped under one label
    assert "12.5" in rows["llm+memory"]
    for png in ("learning_curves.png", "final_scores.png", "llm_cost.png"):
        data = (tmp_path / "out" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"![{png[:-4]}]({png})" in text


def test_seed_spread_and_grouping(runs: list[Path], tmp_path: Path) -> None:
    report = compare(runs, tmp_path / "out")
    oracle = [r for r in report.rows if r["run"] == "subgoal:oracle"][0]
    assert oracle["runs"] == 2
    assert oracle["success"].startswith("0.875 [0.75, 1]")  # IQM of (0.75, 1.0) over two seeds, bootstrap interval
    summaries = {(s.label, s.seed): s for s in report.runs}
    figure, xs, _ = summaries[("subgoal:oracle", 1)].curve
    assert figure == "success" and xs[-1] == 3072
    assert summaries[("llm+memory", 0)].metrics.steps_per_s == pytest.approx(0.5)
    assert "| llm+memory" in report._repr_markdown_()


def test_folder_of_runs_is_expanded(runs: list[Path], tmp_path: Path) -> None:
    assert len(load_runs([runs[0].parent])) == len(runs)


def test_bad_run_dirs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Run dir not found"):
        build_report([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="No runs"):
        build_report([tmp_path / "empty"], tmp_path / "out")
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.json").write_text(json.dumps({"success_rate": 0.5}))  # a record from before the common schema
    with pytest.raises(ConfigError, match="not a llmguide run record"):
        build_report([old], tmp_path / "out")


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
                        n_envs=2, eval={"every": 128, "episodes": 2}, run_dir=tmp_path / "real").run()
    report = compare([result, runs[-1]], tmp_path / "out")
    real = [s for s in report.runs if s.run_dir == tmp_path / "real"][0]
    assert real.curve is not None and max(real.curve[1]) >= 128
    assert real.metrics.steps_per_s > 0
    assert (tmp_path / "out" / "learning_curves.png").exists()


def test_choices_per_call_site_are_pooled_over_seeds(tmp_path: Path) -> None:
    def site(calls: int, first: int, mode: str) -> dict:
        return {"calls": calls, "first_option": first, "first_option_rate": first / calls, "modes": {mode: calls},
                "rank_counts": [first, calls - first], "fallbacks": 1, "options_mean": 4.0}

    for seed, first in ((0, 2), (1, 4)):
        _write(tmp_path / f"dilu__{seed}", RunMetrics(
            method="dilu", kind="agent", env="highway-v0", seed=seed, label="dilu", steps=10, episodes=1,
            choices={"llmguide.agents.dilu": site(10, first, "score")}))
    text = build_report([tmp_path], tmp_path / "out").read_text()
    section = text.split("## LLM choices")[1].split("## Runs")[0]
    row = [line for line in section.splitlines() if "llmguide.agents.dilu" in line][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["dilu", "llmguide.agents.dilu", "20", "score 20", "0.30", "0.25", "2"]


def test_a_report_without_choices_has_no_choice_section(runs: list[Path], tmp_path: Path) -> None:
    assert "## LLM choices" not in build_report(runs, tmp_path / "out").read_text()


def test_usage_of_a_resumed_run_adds_up_choices() -> None:
    from llmguide.record import add_usage

    def usage(first: int) -> dict:
        return {"calls": 5, "choices": {"s": {"calls": 5, "first_option": first, "first_option_rate": first / 5,
                                              "modes": {"score": 5}, "rank_counts": [first, 5 - first],
                                              "fallbacks": 0, "options_mean": 2.0}}, "first_option_rate": first / 5}

    total = add_usage(usage(1), usage(4))
    assert total["calls"] == 10
    assert total["choices"]["s"]["calls"] == 10 and total["choices"]["s"]["rank_counts"] == [5, 5]
    assert total["first_option_rate"] == 0.5
