"""`method: oni` on the core: the config, the method (annotator started and stopped by the run),
the CLI (run, eval, Ctrl-C then --resume, config errors)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from llmguide.agents.oni import ONIConfig, ONIMethod
from typer.testing import CliRunner

from llmguide.cli import app
from llmguide.core import evaluate, prepare, run
from llmguide.errors import ConfigError
from llmguide.record import RunMetrics

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "oni_nethack.yaml"
LLMGUIDE = str(Path(sys.executable).with_name("llmguide"))
#: a tiny run: fake annotator LLM, short episodes, one PPO epoch
TINY = {"n_envs": 2, "max_episode_steps": 40, "llm": "fake:rule", "annotator_nice": 0,
        "learner_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 1}, "eval": {"every": 0, "episodes": 1}}


def _sets(values: dict[str, object], prefix: str = "") -> list[str]:
    """`--set` arguments for a (nested) mapping of overrides."""
    args: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict):
            args += _sets(value, f"{prefix}{key}.")
        else:
            args += ["--set", f"{prefix}{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([LLMGUIDE, *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _run_dir(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1].removeprefix("run dir:").strip())


def test_shipped_config_is_valid_and_registered() -> None:
    prepared = prepare(yaml.safe_load(CONFIG.read_text()))
    assert prepared.method_cls is ONIMethod and prepared.settings.total_steps == 20_000
    assert prepared.config.env == "NetHackScore-v0" and prepared.config.reward_model == "hash"
    assert prepared.config.eval.episodes == 4 and prepared.config.learner_kwargs["n_steps"] == 128


@pytest.mark.parametrize("extra, message", [
    ({"rewardmodel": "hash"}, "unknown key 'rewardmodel' for method 'oni'. Did you mean 'reward_model'?"),
    ({"timesteps": 100}, "unknown key 'timesteps' for method 'oni'. Did you mean 'total_steps'?"),
    ({"reward_model": "motif"}, "reward_model"),
    ({"count_scope": "forever"}, "count_scope"),
    ({"total_steps": -5}, "total_steps"),
    ({"max_episode_steps": 0}, "max_episode_steps"),
    ({"env": "NetHackScor-v0"}, "Did you mean NetHackScore-v0"),
])
def test_config_errors_name_the_key(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        prepare({"method": "oni", **extra})
    assert message in str(err.value)


def test_annotator_cpus_config_and_pinning(tmp_path: Path) -> None:
    from llmguide.teachers.oni.process import start_annotator

    assert ONIConfig(annotator_cpus="0, 1").annotator_cpus == [0, 1]
    assert ONIConfig(annotator_cpus="1").annotator_cpus == [1]
    assert ONIConfig(annotator_cpus=1).annotator_cpus == [1]
    assert ONIConfig(annotator_cpus="2-3").annotator_cpus == [2, 3]
    assert ONIConfig(annotator_cpus=[0]).annotator_cpus == [0]
    assert ONIConfig().annotator_cpus is None  # default: no pinning
    cpu = min(os.sched_getaffinity(0))
    with start_annotator("fake:rule", tmp_path / "labels.sqlite", cpus=[cpu], nice=1) as proc:
        assert proc.cpus == [cpu] and os.sched_getaffinity(proc.pid) == {cpu}
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) >= 1  # --nice still applies
    with pytest.raises(ValueError, match="at least one CPU"):
        start_annotator("fake:rule", tmp_path / "other.sqlite", cpus=[])


def test_global_counts_survive_a_resume(tmp_path: Path) -> None:
    from llmguide.teachers.oni.reward import HashReward
    from stable_baselines3.common.vec_env import DummyVecEnv

    prepared = prepare({"method": "oni", "count_scope": "global", "n_envs": 2, "max_episode_steps": 20})
    method = ONIMethod(prepared.config, prepared.settings, tmp_path)
    method.load_state_dict({"global_counts": {"abc": 3}, "learn_s": 2.0})
    method.reward_model = HashReward()  # what start() makes, without an annotator
    venv = method.wrap_vec_env(DummyVecEnv([method.make_env()] * 2))
    try:
        state = method.state_dict()
        assert state["global_counts"] == {"abc": 3} and state["learn_s"] == pytest.approx(2.0)
    finally:
        venv.close()


@pytest.mark.slow
def test_run_starts_and_stops_its_annotator(tmp_path: Path) -> None:
    metrics = run(prepare({"method": "oni", "total_steps": 256, **TINY}), tmp_path)
    assert metrics.method == "oni" and metrics.kind == "trained" and metrics.steps == 256 and metrics.steps_per_s > 0
    extras = metrics.extras
    assert extras["annotator"]["accepted"] > 0  # the run's messages reached the annotator process
    assert extras["learner_wait_s"] < 0.05  # never blocked on the annotator
    assert 0 < extras["client_overhead_s"] < extras["learn_s"] and 0 < extras["client_overhead_frac"] < 1
    assert 0 < extras["wrapper_overhead_frac"] < 1 and extras["labels"] is not None
    assert metrics.llm_calls == extras["annotator"]["llm_calls"] > 0  # the annotator process's LLM calls count
    assert (tmp_path / "oni_labels.sqlite").exists() and (tmp_path / "model.zip").exists()
    with pytest.raises(ProcessLookupError):  # the annotator was stopped (and reaped) at the end
        os.kill(extras["annotator_pid"], 0)
    with (tmp_path / "progress.csv").open() as fh:
        header = next(csv.reader(fh))
    assert "oni/intrinsic_per_step" in header and "oni/learner_wait_s" in header  # ONI's curve next to the others
    out = evaluate(tmp_path, episodes=1)
    assert out["episodes"] == 1 and out["llm_used"] is False and (tmp_path / "eval.json").exists()


@pytest.mark.slow
def test_extrinsic_only_starts_no_annotator(tmp_path: Path) -> None:
    metrics = run(prepare({"method": "oni", "reward_model": "none", "total_steps": 128, **TINY}), tmp_path)
    assert metrics.steps == 128 and "annotator_pid" not in metrics.extras and "oni" not in metrics.extras
    assert not (tmp_path / "oni_labels.sqlite").exists()


def test_cli_annotator_corrupt_db_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "bad.sqlite"
    db.write_bytes(b"garbage" * 300)
    result = CliRunner().invoke(app, ["serve", "annotator", "--llm", "fake:rule", "--db", str(db), "--port", "0"])
    assert result.exit_code == 2
    assert "ONI label store" in result.output and "Traceback" not in result.output


def test_cli_serve_keeps_its_default_command() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--model" in result.output and "annotator" in result.output


def test_cli_misspelled_key_is_one_line(tmp_path: Path) -> None:
    result = _cli("run", str(CONFIG), "--set", "rewardmodel=hash", "--runs-dir", str(tmp_path), "--no-progress")
    assert result.returncode == 2, result.stderr
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "rewardmodel" in errors[0] and "'oni'" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_cli_run_then_eval(tmp_path: Path) -> None:
    result = _cli("run", str(CONFIG), *_sets({"total_steps": 256, **TINY}), "--runs-dir", str(tmp_path), "--no-progress")
    assert result.returncode == 0, result.stderr
    run_dir = _run_dir(result.stdout)
    metrics = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
    assert metrics.method == "oni" and metrics.kind == "trained" and metrics.steps == 256
    evaluated = _cli("eval", str(run_dir), "--episodes", "1")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((run_dir / "eval.json").read_text())["episodes"] == 1


@pytest.mark.slow
def test_cli_ctrl_c_then_resume_continues_from_the_checkpoint(tmp_path: Path) -> None:
    overrides = {**TINY, "total_steps": 2048, "checkpoint_every": 256}
    proc = subprocess.Popen([LLMGUIDE, "run", str(CONFIG), *_sets(overrides), "--runs-dir", str(tmp_path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 300
    states: list[Path] = []
    while not states and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        states = list(tmp_path.glob("*/checkpoints/state.json"))
    assert states, "no checkpoint before the deadline"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    run_dir = states[0].parents[1]
    saved = json.loads(states[0].read_text())["num_timesteps"]
    assert 256 <= saved < 2048
    labels_db = run_dir / "oni_labels.sqlite"
    assert labels_db.exists()
    first_rows = (run_dir / "progress.csv").read_text()

    result = _cli("run", "--resume", str(run_dir), "--no-progress")
    assert result.returncode == 0, result.stderr
    metrics = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
    assert metrics.resumes == 1 and metrics.steps >= 2048
    assert (run_dir / "progress.csv").read_text() == first_rows  # the first segment's rows are kept
    with (run_dir / "progress-resume1.csv").open() as fh:
        steps = [int(float(row["time/total_timesteps"])) for row in csv.DictReader(fh)]
    assert steps and steps[0] > saved  # continued from the checkpoint step, not from 0
    assert metrics.extras["labels_db"] == str(labels_db)  # the same label store, reopened
    assert metrics.extras["learn_s"] > 0
