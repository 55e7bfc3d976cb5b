"""RLAdapter through the real CLI: run, eval (no LLM), Ctrl-C and --resume, a misspelled key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmguide.record import RunMetrics

ROOT = Path(__file__).resolve().parents[2]
LLMGUIDE = str(Path(sys.executable).parent / "llmguide")
#: real guide (SmolLM2 through llama.cpp) on a small, short Crafter world with a tiny network
TINY = ["configs/rladapter_crafter.yaml", "--set", "n_envs=1", "--set", "env_kwargs.area=[16,16]",
        "--set", "env_kwargs.length=48", "--set", "stage_every=0", "--set", "max_new_tokens=8", "--set", "lora_r=4",
        "--set", "learner_kwargs.n_steps=32", "--set", "learner_kwargs.batch_size=32", "--set", "learner_kwargs.n_epochs=1",
        "--set", "net.channels=[4,8,8]", "--set", "net.image_features=16", "--set", "net.subgoal_features=8",
        "--set", "net.net_arch=[8]", "--set", "eval.every=0", "--set", "eval.episodes=1", "--set", "eval.n_envs=1"]


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LLMGUIDE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def _run_dir(proc: subprocess.CompletedProcess[str]) -> Path:
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("run dir: "), proc.stdout[-2000:]
    return Path(last.removeprefix("run dir: ").strip())


def _metrics(run_dir: Path) -> RunMetrics:
    return RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())


def test_misspelled_key_is_a_one_line_error(tmp_path: Path) -> None:
    proc = _cli("run", "configs/rladapter_crafter.yaml", "--set", "evry=10", "--runs-dir", str(tmp_path), "--no-progress",
                timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "'evry'" in lines[0] and "'rladapter'" in lines[0] and "'every'" in lines[0]


@pytest.mark.slow
def test_run_then_eval_without_llm(tmp_path: Path) -> None:
    run_dir = _run_dir(_cli("run", *TINY, "--set", "total_steps=64", "--set", "every=32",
                            "--runs-dir", str(tmp_path), "--no-progress"))
    m = _metrics(run_dir)
    assert (m.method, m.kind, m.steps, m.label) == ("rladapter", "trained", 64, "rladapter:rladapter")
    assert m.score is not None and m.llm_calls >= 2
    teacher = m.extras["teacher"]
    assert teacher["queries"] == 2 and teacher["adapter_ms_mean"] > 0 and set(m.extras["comprehension_by_stage"]) == {"0"}
    assert (run_dir / "subgoals.jsonl").read_text().count("\n") == 2
    proc = _cli("eval", str(run_dir), "--episodes", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((run_dir / "eval.json").read_text())
    assert out["episodes"] == 1 and out["llm_used"] is False and out["score"] is not None


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path: Path) -> None:
    args = [*TINY, "--set", "variant=guide", "--set", "total_steps=160", "--set", "every=32", "--set", "checkpoint_every=32"]
    proc = subprocess.Popen([LLMGUIDE, "run", *args, "--runs-dir", str(tmp_path), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    deadline, run_dir = time.monotonic() + 600, None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(tmp_path.rglob("checkpoints/state.json"))  # written atomically
            if found and json.loads(found[0].read_text())["method_state"]["teacher"]["queries"] >= 2:
                run_dir = found[0].parents[1]  # a checkpoint after a buffer record was written
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()[1][-2000:]}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    assert run_dir is not None and "--resume" in err
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    stopped_at = state["num_timesteps"]
    assert 0 < stopped_at < 160 and state["method_state"]["teacher"]["queries"] >= 2
    progress = (run_dir / "progress.csv").read_text() if (run_dir / "progress.csv").exists() else None
    buffer = (run_dir / "rladapter_buffer.jsonl").read_text()
    subgoals = (run_dir / "subgoals.jsonl").read_text()

    m = _metrics(_run_dir(_cli("run", "--resume", str(run_dir), "--no-progress")))
    assert m.resumes == 1 and m.steps >= 160 and m.label == "rladapter:guide"
    assert m.extras["teacher"]["queries"] > state["method_state"]["teacher"]["queries"]
    assert (run_dir / "progress-resume1.csv").exists()
    if progress is not None:
        assert (run_dir / "progress.csv").read_text() == progress
    assert (run_dir / "rladapter_buffer.jsonl").read_text().startswith(buffer)
    assert (run_dir / "subgoals.jsonl").read_text().startswith(subgoals)
