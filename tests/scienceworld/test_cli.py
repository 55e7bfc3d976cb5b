"""Both ScienceWorld methods through the real CLI: run, eval, Ctrl-C and --resume, config errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmguide.record import RunMetrics

ROOT = Path(__file__).resolve().parents[2]
LLMGUIDE = str(Path(sys.executable).parent / "llmguide")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java")

#: the random control on one variation: no LLM, seconds per episode
AGENT = ["configs/scienceworld.yaml", "--set", "agent=random", "--set", "tasks=[find-living-thing]",
         "--set", "variations=[0]", "--set", "max_steps=4"]
#: MaskablePPO with the gold teacher, small rollouts
RL = ["configs/scienceworld_rl.yaml", "--set", "k=8", "--set", "step_limit=8", "--set", "learner_kwargs.n_steps=16",
      "--set", "learner_kwargs.batch_size=16", "--set", "learner_kwargs.n_epochs=1", "--set", "eval.every=0"]


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LLMGUIDE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def _run_dir(proc: subprocess.CompletedProcess[str]) -> Path:
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("run dir: "), proc.stdout[-2000:]
    return Path(last.removeprefix("run dir: ").strip())


def _metrics(run_dir: Path) -> RunMetrics:
    return RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())


def _interrupt_when(args: list[str], runs: Path, ready: Callable[[Path], bool], timeout: float = 300) -> tuple[Path, str]:
    """Start `llmguide run`, Ctrl-C it once `ready(run_dir)`; returns the run dir and stderr (exit 130 checked).

    SIGINT goes to the whole process group, as a terminal's Ctrl-C does: the JVM gets it too.
    """
    proc = subprocess.Popen([LLMGUIDE, "run", *args, "--runs-dir", str(runs), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    run_dir = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            dirs = [d for d in runs.rglob("config.yaml")]
            run_dir = dirs[0].parent if dirs else None
            if run_dir is not None and ready(run_dir):
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()[1][-2000:]}"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert run_dir is not None
    return run_dir, err


def test_misspelled_key_is_a_one_line_error(tmp_path: Path) -> None:
    for config, key in (("configs/scienceworld.yaml", "top_kk"), ("configs/scienceworld_rl.yaml", "teachr")):
        proc = _cli("run", config, "--set", f"{key}=1", "--runs-dir", str(tmp_path), "--no-progress", timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
        method = "scienceworld_rl" if config.endswith("_rl.yaml") else "scienceworld"
        assert f"'{key}'" in lines[0] and f"'{method}'" in lines[0]


@needs_java
@pytest.mark.slow
def test_agent_run_then_eval(tmp_path: Path) -> None:
    run_dir = _run_dir(_cli("run", *AGENT, "--set", "episodes=2", "--runs-dir", str(tmp_path), "--no-progress"))
    m = _metrics(run_dir)
    assert (m.method, m.kind, m.episodes) == ("scienceworld", "agent", 2) and m.extras["agent"] == "random"
    proc = _cli("eval", str(run_dir), "--episodes", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run_dir / "eval.json").read_text())["episodes"] == 1


@needs_java
@pytest.mark.slow
def test_agent_ctrl_c_then_resume(tmp_path: Path) -> None:
    args = [*AGENT, "--set", "episodes=12", "--set", "max_steps=20"]

    def one_episode(run_dir: Path) -> bool:
        path = run_dir / "episodes.jsonl"
        return path.exists() and bool(path.read_text().strip())

    run_dir, err = _interrupt_when(args, tmp_path, one_episode)
    assert "--resume" in err
    before = (run_dir / "episodes.jsonl").read_text().splitlines()
    assert 1 <= len(before) < 12
    m = _metrics(_run_dir(_cli("run", "--resume", str(run_dir), "--no-progress")))
    assert m.resumes == 1 and m.episodes == 12
    assert (run_dir / "episodes.jsonl").read_text().splitlines()[: len(before)] == before


@needs_java
@pytest.mark.slow
def test_rl_run_then_eval(tmp_path: Path) -> None:
    run_dir = _run_dir(_cli("run", *RL, "--set", "total_steps=32", "--runs-dir", str(tmp_path), "--no-progress"))
    m = _metrics(run_dir)
    assert (m.method, m.kind, m.steps) == ("scienceworld_rl", "trained", 32)
    assert m.score is not None and m.extras["teacher"] == "gold"
    proc = _cli("eval", str(run_dir), "--episodes", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((run_dir / "eval.json").read_text())
    assert out["episodes"] == 1 and out["llm_used"] is False


@needs_java
@pytest.mark.slow
def test_rl_ctrl_c_then_resume(tmp_path: Path) -> None:
    args = [*RL, "--set", "total_steps=160", "--set", "checkpoint_every=16"]
    run_dir, err = _interrupt_when(args, tmp_path, lambda d: (d / "checkpoints" / "state.json").exists())
    assert "--resume" in err
    state: dict[str, Any] = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert 0 < state["num_timesteps"] < 160
    rows = (run_dir / "progress.csv").read_text()
    m = _metrics(_run_dir(_cli("run", "--resume", str(run_dir), "--no-progress")))
    assert m.resumes == 1 and m.steps >= 160
    assert (run_dir / "progress.csv").read_text() == rows and (run_dir / "progress-resume1.csv").exists()
