"""`method: oni` runs: the config, the runner (annotator started and stopped by the run), the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from llmguide.teachers.oni.runner import ONIConfig, run_oni_config
from typer.testing import CliRunner

from llmguide.cli import app
from llmguide.errors import ConfigError
from llmguide.runners import get_runner

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "oni_nethack.yaml"


def test_shipped_config_is_valid_and_registered() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["method"] == "oni"
    cfg = ONIConfig.from_dict(config)
    assert cfg.env == "NetHackScore-v0" and cfg.reward_model == "hash"
    assert get_runner("oni") is run_oni_config
    with pytest.raises(ConfigError, match="Unknown ONI config keys: rewardmodel"):
        ONIConfig.from_dict({"rewardmodel": "hash"})
    with pytest.raises(ConfigError, match="reward_model must be"):
        ONIConfig.from_dict({"reward_model": "motif"})


@pytest.mark.slow
def test_run_starts_and_stops_its_annotator(tmp_path) -> None:
    config = {"method": "oni", "env": "NetHackScore-v0", "reward_model": "hash", "timesteps": 256, "n_envs": 2,
              "max_episode_steps": 40, "llm": "fake:rule", "eval_episodes": 1, "annotator_nice": 0,
              "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 1}}
    metrics = run_oni_config(config, tmp_path)
    assert metrics["timesteps"] == 256 and metrics["steps_per_s"] > 0
    details = metrics["details"]
    assert details["annotator"]["accepted"] > 0  # the run's messages reached the annotator process
    assert metrics["learner_wait_s"] < 0.05  # never blocked on the annotator
    assert 0 < metrics["client_overhead_s"] < details["train_s"] and 0 < metrics["client_overhead_frac"] < 1
    assert details["oni"]["client_overhead_s"] == pytest.approx(metrics["client_overhead_s"], abs=1e-3)
    assert (tmp_path / "oni_labels.sqlite").exists() and (tmp_path / "ppo.zip").exists()
    with pytest.raises(ProcessLookupError):  # the annotator was stopped (and reaped) at the end
        os.kill(details["annotator_pid"], 0)
    assert details["eval"]["episodes"] == 1


def test_cli_annotator_corrupt_db_is_one_line(tmp_path) -> None:
    db = tmp_path / "bad.sqlite"
    db.write_bytes(b"garbage" * 300)
    result = CliRunner().invoke(app, ["serve", "annotator", "--llm", "fake:rule", "--db", str(db), "--port", "0"])
    assert result.exit_code == 2
    assert "ONI label store" in result.output and "Traceback" not in result.output


def test_cli_serve_keeps_its_default_command() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--model" in result.output and "annotator" in result.output


def test_annotator_cpus_config_and_pinning(tmp_path) -> None:
    from llmguide.teachers.oni.process import start_annotator

    assert ONIConfig.from_dict({"annotator_cpus": "0, 1"}).annotator_cpus == [0, 1]
    assert ONIConfig.from_dict({"annotator_cpus": [0]}).annotator_cpus == [0]
    assert ONIConfig().annotator_cpus is None  # default: no pinning
    cpu = min(os.sched_getaffinity(0))
    with start_annotator("fake:rule", tmp_path / "labels.sqlite", cpus=[cpu], nice=1) as proc:
        assert proc.cpus == [cpu] and os.sched_getaffinity(proc.pid) == {cpu}
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) >= 1  # --nice still applies
    with pytest.raises(ValueError, match="at least one CPU"):
        start_annotator("fake:rule", tmp_path / "other.sqlite", cpus=[])
