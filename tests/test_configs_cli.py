"""Every shipped config through the real `llmguide` console script (subprocesses, tiny budgets):
run -> metrics.json in the common schema -> `llmguide eval` -> Ctrl-C (SIGINT by pid) -> `--resume`
continues the step or episode count instead of restarting.

The subgoal configs are run here; each other method's config is run the same way by its own
test file (named in `OWN_CLI_TEST`), which also checks what is particular to it (ONI's label
store, DiLu's memory, RLAdapter's stages...). A config with neither fails
`test_every_config_goes_through_the_cli`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmguide.record import RunMetrics

REPO = Path(__file__).resolve().parents[1]
LLMGUIDE = str(Path(sys.executable).with_name("llmguide"))

#: config -> the test file that runs it through the CLI (run, eval, Ctrl-C, --resume)
OWN_CLI_TEST: dict[str, str] = {
    "spring_crafter.yaml": "tests/spring/test_end_to_end.py",
    "dilu_highway.yaml": "tests/dilu/test_method.py",
    "scienceworld.yaml": "tests/scienceworld/test_cli.py",
    "scienceworld_rl.yaml": "tests/scienceworld/test_cli.py",
    "rladapter_crafter.yaml": "tests/rladapter/test_cli.py",
    "oni_nethack.yaml": "tests/oni/test_runner.py",
    "self_taught_doorkey.yaml": "tests/self_taught/test_cli.py",
}
#: config -> overrides that make one run take seconds on 2 cores
TINY: dict[str, list[str]] = {
    "demo.yaml": ["total_steps=256", "n_envs=2", "eval.every=0", "eval.episodes=2", "learner_kwargs.n_steps=64",
                  "learner_kwargs.batch_size=64", "learner_kwargs.n_epochs=1", "arms.llm.teacher.max_queries=4"],
    "minigrid_doorkey.yaml": ["total_steps=256", "n_envs=2", "eval.every=128", "eval.episodes=2", "teacher=oracle",
                              "learner_kwargs.n_steps=64"],
}
#: config -> (overrides for a run long enough to interrupt, progress marker file, budget to resume to)
INTERRUPTIBLE: dict[str, tuple[list[str], str, str]] = {
    "minigrid_doorkey.yaml": (["total_steps=200000", "n_envs=2", "eval.every=0", "eval.episodes=2", "teacher=oracle",
                               "checkpoint_every=256", "learner_kwargs.n_steps=64"], "checkpoints/state.json", "total_steps"),
}

CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml") if "method" in yaml.safe_load(p.read_text()))


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LLMGUIDE, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _run_dir(output: str) -> Path:
    lines = [line for line in output.splitlines() if line.startswith("run dir: ")]
    assert lines, output
    return Path(lines[-1].removeprefix("run dir: ").strip())


def _records(run_dir: Path) -> list[RunMetrics]:
    found = [run_dir / "metrics.json"] if (run_dir / "metrics.json").exists() else sorted(run_dir.glob("*/metrics.json"))
    assert found, f"no metrics.json under {run_dir}"
    return [RunMetrics.model_validate_json(p.read_text()) for p in found]


def test_every_config_goes_through_the_cli() -> None:
    for name in CONFIGS:
        if name in TINY:
            continue
        assert name in OWN_CLI_TEST, f"configs/{name}: add tiny overrides to TINY, or name its CLI test in OWN_CLI_TEST"
        text = (REPO / OWN_CLI_TEST[name]).read_text()
        assert name in text and "--resume" in text and "eval" in text, f"{OWN_CLI_TEST[name]} must run {name} through the CLI"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_config_runs_and_evaluates_through_the_cli(name: str, tmp_path: Path) -> None:
    sets = [arg for s in TINY[name] for arg in ("--set", s)]
    done = _cli("run", f"configs/{name}", *sets, "--runs-dir", str(tmp_path), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = _run_dir(done.stdout)
    method = yaml.safe_load((REPO / "configs" / name).read_text())["method"]
    for m in _records(run_dir):
        assert m.method == method and m.status == "finished"
        assert (m.steps > 0) if m.kind == "trained" else (m.episodes >= 1)
    evaluated = _cli("eval", str(run_dir), "--episodes", "1")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(INTERRUPTIBLE))
def test_ctrl_c_then_resume_continues(name: str, tmp_path: Path) -> None:
    overrides, marker, budget_key = INTERRUPTIBLE[name]
    sets = [arg for s in overrides for arg in ("--set", s)]
    proc = subprocess.Popen([LLMGUIDE, "run", f"configs/{name}", *sets, "--runs-dir", str(tmp_path), "--no-progress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    run_dir = None
    while time.monotonic() < deadline and proc.poll() is None:
        dirs = [d for d in tmp_path.iterdir() if d.is_dir()]
        if dirs and (dirs[0] / marker).exists() and (dirs[0] / marker).stat().st_size > 0:
            run_dir = dirs[0]
            break
        time.sleep(0.2)
    assert run_dir is not None, "the run made no progress marker in time"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert f"--resume {run_dir}" in err.replace("\n", "")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    if budget_key == "total_steps":
        reached = json.loads((run_dir / "checkpoints" / "state.json").read_text())["num_timesteps"]
        first_log = (run_dir / "progress.csv").read_text()
        cfg["total_steps"] = reached + 256  # resume to a little past the checkpoint
    else:
        reached = len((run_dir / "episodes.jsonl").read_text().splitlines())
        first_log = (run_dir / "episodes.jsonl").read_text()
        cfg["episodes"] = reached + 1
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    resumed = _cli("run", "--resume", str(run_dir), "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (m,) = _records(run_dir)
    assert m.resumes == 1 and m.status == "finished"
    if budget_key == "total_steps":
        assert m.steps >= reached + 256 and (run_dir / "progress.csv").read_text() == first_log
        rows = (run_dir / "progress-resume1.csv").read_text().splitlines()
        assert len(rows) >= 2  # the resumed segment logged on its own, from the checkpoint on
    else:
        assert m.episodes == reached + 1 and (run_dir / "episodes.jsonl").read_text().startswith(first_log)
