"""`llmguide sweep` on Ray: a real two-node cluster on this machine (head + a worker node with its own
resources), a worker node lost mid-sweep, and the local default; plus the trial expansion."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from typer.testing import CliRunner

from llmguide.cli import app
from llmguide.errors import ConfigError
from llmguide.net import free_port
from llmguide.record import RunMetrics
from llmguide.sweep import make_trials, parse_seeds

BIN = Path(sys.executable).parent
TINY = {
    "method": "subgoal",
    "env": "MiniGrid-Empty-5x5-v0",
    "teacher": {"type": "oracle", "kind": "object"},
    "total_steps": 256,
    "n_envs": 1,
    "learner_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    "policy_kwargs": {"net_arch": [16]},
    "eval": {"every": 0, "episodes": 2, "n_envs": 1},
    "checkpoint_every": 64,
}


def _config(folder: Path, **extra: Any) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **extra}, sort_keys=False))
    return path


# -- trial expansion (no Ray) ------------------------------------------------------------------------
def test_seeds_and_grid_expand_into_validated_trials() -> None:
    assert parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    with pytest.raises(ConfigError, match="0-9"):
        parse_seeds("a-b")
    trials = make_trials({"subgoal": dict(TINY, vec_env="subproc", n_envs=3)}, [0, 1],
                         ["learner_kwargs.learning_rate=1e-3,3e-4"])
    assert [t.name for t in trials] == ["learning_rate=0.001__seed0", "learning_rate=0.001__seed1",
                                        "learning_rate=0.0003__seed0", "learning_rate=0.0003__seed1"]
    assert trials[2].config["learner_kwargs"] == {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "learning_rate": 3e-4}
    assert trials[1].config["seed"] == 1 and trials[0].resources == {"CPU": 4.0}  # learner + 3 subproc envs
    assert trials[0].config["name"] == "learning_rate=0.001"  # grid points are told apart in the report
    offload = make_trials({"llm": dict(TINY, teacher={"type": "subgoal", "llm": "smollm2",
                                                      "llm_kwargs": {"n_gpu_layers": -1}})}, [0], gpu_fraction=0.5)
    assert offload[0].resources == {"CPU": 1.0, "GPU": 0.5}
    with pytest.raises(ConfigError, match="trial 'lerning_rate=0.1__seed0'.*unknown key 'lerning_rate'"):
        make_trials({"subgoal": TINY}, [0], ["lerning_rate=0.1"])


def test_cli_rejects_a_bad_grid_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sweep", str(_config(tmp_path)), "--grid", "total_steps"])
    assert result.exit_code == 2 and "--grid expects KEY=V1,V2" in result.output


# -- a real cluster ----------------------------------------------------------------------------------
def _ray_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
               RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    return env


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop `ray start --block` nodes we started and every process under them, by pid."""
    family: list[psutil.Process] = []
    for proc in procs:
        try:
            family += [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    _, alive = psutil.wait_procs(family, timeout=20)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    """`ray start --head` on a free port + a second node joined with `--address`, 1 CPU each."""
    root = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's unix sockets live under it
    env, port = _ray_env(), free_port()
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false",
             f"--temp-dir={root / 'h'}", *common], env=env, start_new_session=True,
            stdout=(root / "head.log").open("w"), stderr=subprocess.STDOUT))
        _wait_for(lambda: (root / "head.log").exists() and "Ray runtime started" in (root / "head.log").read_text(),
                  60, procs, root / "head.log")
        procs.append(subprocess.Popen(
            [str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}", f"--temp-dir={root / 'w'}", *common],
            env=env, start_new_session=True, stdout=(root / "worker.log").open("w"), stderr=subprocess.STDOUT))
        _wait_for(lambda: _raylet(procs[1]) is not None and "Ray runtime started" in (root / "worker.log").read_text(),
                  60, procs, root / "worker.log")
        yield {"address": f"127.0.0.1:{port}", "env": env, "root": root, "worker": procs[1]}
    finally:
        _stop(procs)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(check: Any, timeout: float, procs: list[subprocess.Popen], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise AssertionError(f"Ray node did not start: {log.read_text()[-2000:] if log.exists() else ''}")
        time.sleep(0.5)


def _raylet(node: subprocess.Popen) -> psutil.Process | None:
    try:
        return next((c for c in psutil.Process(node.pid).children(recursive=True) if c.name() == "raylet"), None)
    except psutil.NoSuchProcess:
        return None


def _sweep_cmd(config: Path, runs: Path, *extra: str) -> list[str]:
    return [str(BIN / "llmguide"), "sweep", str(config), "--seeds", "0-3", "--runs-dir", str(runs), "--refresh", "2", *extra]


def _results(runs: Path) -> dict[str, Any]:
    (sweep_dir,) = list(runs.iterdir())
    return json.loads((sweep_dir / "results.json").read_text())


def _assert_complete(results: dict[str, Any]) -> None:
    assert [t["trial"] for t in results["trials"]] == ["seed0", "seed1", "seed2", "seed3"]
    for trial in results["trials"]:
        assert trial["status"] == "finished", trial
        m = RunMetrics.model_validate_json((Path(trial["run_dir"]) / "metrics.json").read_text())
        assert m.steps == 256 and m.seed == int(trial["trial"][-1]) and m.status == "finished"
    assert Path(results["report"]).is_file()


def test_sweep_runs_on_both_nodes_of_a_cluster_and_resumes(cluster: dict[str, Any], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    sweep = subprocess.Popen(_sweep_cmd(_config(tmp_path), runs, "--address", cluster["address"]),
                             env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # Ctrl-C once a trial has finished: the sweep stops, saved, and says how to resume
        deadline = time.monotonic() + 120
        while not list(runs.glob("*/*/metrics.json")) and time.monotonic() < deadline and sweep.poll() is None:
            time.sleep(0.2)
        done_before = {p.parent.name for p in runs.glob("*/*/metrics.json")}
        sweep.send_signal(signal.SIGINT)
        first, _ = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode in (0, 130), first[-3000:]  # 0: every trial finished before the signal landed
    assert "steps/s" in first  # the live table
    (sweep_dir,) = list(runs.iterdir())
    if sweep.returncode == 130:
        assert f"llmguide sweep --resume {sweep_dir}" in " ".join(first.split())
        out = subprocess.run([str(BIN / "llmguide"), "sweep", "--resume", str(sweep_dir), "--address", cluster["address"]],
                             env=cluster["env"], capture_output=True, text=True, timeout=600, check=False)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = _results(runs)
    _assert_complete(results)
    assert done_before and all(t["attempts"] == 1 for t in results["trials"] if t["trial"] in done_before)  # not re-run
    assert len({node for t in results["trials"] for node in t["nodes"]}) == 2  # trials landed on both nodes


def test_a_worker_node_lost_mid_sweep_loses_no_trial(cluster: dict[str, Any], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    config = _config(tmp_path, total_steps=2048, checkpoint_every=256)
    raylet = _raylet(cluster["worker"])
    assert raylet is not None
    sweep = subprocess.Popen(_sweep_cmd(config, runs, "--address", cluster["address"], "--max-failures", "2"),
                             env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        on_worker = None
        while on_worker is None and time.monotonic() < deadline and sweep.poll() is None:
            time.sleep(0.3)
            for attempts in runs.glob("*/*/sweep_trial.json"):
                pid = json.loads(attempts.read_text())["attempts"][-1]["pid"]
                try:
                    if psutil.Process(pid).ppid() == raylet.pid:
                        on_worker = attempts.parent
                except psutil.NoSuchProcess:
                    continue
        assert on_worker is not None, "no trial started on the worker node"
        raylet.kill()
        output, _ = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode in (0, 1), output[-3000:]  # 1: some trial reported failed after its retries
    results = _results(runs)
    assert [t["trial"] for t in results["trials"]] == ["seed0", "seed1", "seed2", "seed3"]  # none lost
    assert {t["status"] for t in results["trials"]} <= {"finished", "failed"}
    for trial in results["trials"]:
        if trial["status"] == "finished":
            assert RunMetrics.model_validate_json((Path(trial["run_dir"]) / "metrics.json").read_text()).steps == 2048
        else:
            assert trial["error"], trial  # reported with its cause
    moved = next(t for t in results["trials"] if Path(t["run_dir"]) == on_worker)
    assert moved["attempts"] >= 2 and len(set(moved["nodes"])) == 2, moved  # retried on the surviving node


def test_local_default_runs_the_same_sweep(tmp_path: Path) -> None:
    # Subprocess timeouts here are ceilings against a hang, not measurements: 240 s was too short
    # for 4 tiny trials on 2 cores that other jobs also loaded.
    runs = tmp_path / "runs"
    env = _ray_env()
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    try:
        out = subprocess.run(_sweep_cmd(_config(tmp_path), runs, "--num-cpus", "2"), env=env,
                             capture_output=True, text=True, timeout=600, check=False)
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = _results(runs)
    _assert_complete(results)
    assert len({node for t in results["trials"] for node in t["nodes"]}) == 1
