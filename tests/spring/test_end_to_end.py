"""SPRING as a method on the core: config errors, a run with per-episode logs, resume, and the real CLI."""

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
from langchain_core.language_models.fake_chat_models import FakeListChatModel

# llama.cpp's OpenMP workers spin while waiting; on a shared 2-core machine that
# starves everything else. Only takes effect if llama_cpp is not loaded yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from llmguide.teachers.spring import DEFAULT_DAG_PATH, crafter_data

from llmguide.core import evaluate, load_run_config, prepare, run
from llmguide.errors import ConfigError
from llmguide.record import RunMetrics

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "spring_crafter.yaml"
LLMGUIDE = str(Path(sys.executable).with_name("llmguide"))
SMALL_DAG = """
max_tokens: 8
nodes:
  - id: subgoal
    question: What is the top-priority subgoal now?
  - id: action
    question: What is the best action for it?
    parents: [subgoal]
"""
TWO_NODES = yaml.safe_load(SMALL_DAG)


def fake_llm() -> FakeListChatModel:
    """Per step: the two DAG answers, then the constrained choice (the list cycles)."""
    return FakeListChatModel(responses=["get wood", "face the tree and do", '{"choice": "do"}'])


def spring(**keys: object) -> dict[str, object]:
    return {"method": "spring", "dag": TWO_NODES, "episodes": 2, "max_steps": 2, **keys}


def test_config_errors_name_the_key_and_the_method(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'episodez' for method 'spring'. Did you mean 'episodes'"):
        prepare({"method": "spring", "episodez": 2})
    with pytest.raises(ConfigError, match="not a Crafter id"):
        prepare({"method": "spring", "env": "highway-v0"})
    with pytest.raises(ConfigError, match="DAG file"):
        prepare({"method": "spring", "dag": str(tmp_path / "missing.yaml")})
    with pytest.raises(ConfigError, match="episodes"):
        prepare({"method": "spring", "episodes": 0})
    with pytest.raises(ConfigError, match="total_steps"):
        prepare({"method": "spring", "total_steps": 100})


def test_shipped_config_is_valid_and_uses_the_packaged_dag() -> None:
    prepared = prepare(load_run_config(CONFIG))
    assert prepared.settings.method == "spring" and prepared.config.env == "llmguide/Crafter-v0"
    assert prepared.config.dag is None and DEFAULT_DAG_PATH.is_file()  # null = the DAG packaged with llmguide.teachers


def test_run_scores_crafter_and_logs_every_step(tmp_path: Path) -> None:
    metrics = run(prepare(spring(), {"llm": fake_llm()}), tmp_path / "run")
    assert (metrics.method, metrics.kind, metrics.episodes, metrics.steps) == ("spring", "agent", 2, 4)
    assert metrics.invalid_actions == 0 and 0.0 <= metrics.score <= 100.0
    assert set(metrics.extras["success_rates"]) == set(crafter_data()["achievements"])
    assert metrics.extras["dag_nodes"] == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert [r["success"] for r in records] == [bool(r["extra"]["achievements"]) for r in records]
    names = crafter_data()["actions"]
    for episode in (0, 1):
        rows = [json.loads(ln) for ln in (tmp_path / "run" / "logs" / f"episode_{episode:03d}.jsonl").read_text().splitlines()]
        steps = [r for r in rows if "step" in r]
        assert [r["step"] for r in steps] == [0, 1] and all(r["episode"] == episode for r in steps)
        assert all(r["action"] == "do" and names.index("do") == r["action_id"] for r in steps)
        assert "episode_end" in rows[-1]


def test_resume_continues_the_log_numbering_and_counters(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run(prepare(spring(episodes=1), {"llm": fake_llm()}), run_dir)
    first_log = (run_dir / "logs" / "episode_000.jsonl").read_text()
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    state["method_state"]["invalid_actions"] = 3  # as if the first part had counted some
    (run_dir / "checkpoints" / "state.json").write_text(json.dumps(state))
    metrics = run(prepare(spring(episodes=3, resume=True), {"llm": fake_llm()}), run_dir)
    assert metrics.resumes == 1 and metrics.episodes == 3 and metrics.steps == 6
    assert metrics.invalid_actions == 3
    assert (run_dir / "logs" / "episode_000.jsonl").read_text() == first_log
    for episode in (1, 2):
        rows = [json.loads(ln) for ln in (run_dir / "logs" / f"episode_{episode:03d}.jsonl").read_text().splitlines()]
        assert {r["episode"] for r in rows if "step" in r} == {episode}
    assert len(json.loads((run_dir / "checkpoints" / "state.json").read_text())["method_state"]["achievements"]) == 3


def test_eval_agent_logs_apart_from_the_run(tmp_path: Path) -> None:
    from llmguide.agents.spring import SpringMethod

    prepared = prepare(spring(), {"llm": fake_llm()})
    method = SpringMethod(prepared.config, prepared.settings, tmp_path, prepared.objects)
    try:
        assert method.build(for_eval=True).agent.log_dir == tmp_path / "eval_logs"
        assert method.build().agent.log_dir == tmp_path / "logs"
    finally:
        method.close()


def test_evaluation_keeps_the_run_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    run(prepare(spring(episodes=1), {"llm": fake_llm()}), run_dir)
    log = (run_dir / "logs" / "episode_000.jsonl").read_text()
    monkeypatch.setattr("llmguide.agents.spring.load", lambda *args, **kwargs: fake_llm())
    assert evaluate(run_dir, episodes=1)["episodes"] == 1
    assert (run_dir / "logs" / "episode_000.jsonl").read_text() == log
    assert (run_dir / "eval_logs" / "episode_000.jsonl").is_file()


# -- the real CLI, with the embedded model ------------------------------------------------------
def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LLMGUIDE, *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _run_dir(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1].removeprefix("run dir: ").strip())


def _tiny(tmp_path: Path, episodes: int) -> list[str]:
    dag = tmp_path / "dag.yaml"
    dag.write_text(SMALL_DAG)
    sets = [f"episodes={episodes}", "max_steps=2", f"dag={dag}", "max_tokens=8", "n_ctx=2048"]
    return [arg for s in sets for arg in ("--set", s)]


def test_cli_misspelled_key_is_a_one_line_error(tmp_path: Path) -> None:
    done = _cli("run", str(CONFIG), "--set", "histroy=2", "--runs-dir", str(tmp_path), "--no-progress", timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    error = done.stderr.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error:")
    assert "unknown key 'histroy' for method 'spring'" in error and "'history'" in error
    assert not any(tmp_path.iterdir())  # validated before any run dir is made


@pytest.mark.slow
def test_cli_run_then_eval_with_smollm2(tmp_path: Path) -> None:
    done = _cli("run", str(CONFIG), *_tiny(tmp_path, 1), "--runs-dir", str(tmp_path / "runs"), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = _run_dir(done.stdout)
    metrics = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
    assert (metrics.method, metrics.kind, metrics.episodes, metrics.steps) == ("spring", "agent", 1, 2)
    assert metrics.invalid_actions == 0 and metrics.fallbacks == 0  # constrained decoding: the choice always parsed
    assert metrics.llm_calls_per_1k_steps == pytest.approx(3000.0)  # 2 DAG nodes + 1 choice per step
    rows = [json.loads(ln) for ln in (run_dir / "logs" / "episode_000.jsonl").read_text().splitlines()]
    assert all("Vitals:" in r["observation"] and all(n["answer"] for n in r["nodes"]) for r in rows if "step" in r)
    evaluated = _cli("eval", str(run_dir), "--episodes", "1")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert json.loads((run_dir / "eval.json").read_text())["episodes"] == 1


@pytest.mark.slow
def test_cli_ctrl_c_then_resume_continues_episodes_and_logs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.Popen([LLMGUIDE, "run", str(CONFIG), *_tiny(tmp_path, 3), "--runs-dir", str(runs), "--no-progress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, run_dir = time.monotonic() + 600, None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(runs.glob("*/episodes.jsonl")) if runs.exists() else []
        if found and found[0].read_text().strip():
            run_dir = found[0].parent
            break
        time.sleep(0.2)
    assert run_dir is not None, "no episode was recorded in time"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    assert f"--resume {run_dir}" in err.replace("\n", "")  # the message says how to continue
    first = (run_dir / "episodes.jsonl").read_text()
    done_before = len(first.splitlines())
    first_log = (run_dir / "logs" / "episode_000.jsonl").read_text()
    resumed = _cli("run", "--resume", str(run_dir), "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    metrics = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
    assert metrics.resumes == 1 and metrics.episodes == 3 and metrics.steps == 6 and metrics.status == "finished"
    assert (run_dir / "episodes.jsonl").read_text().startswith(first) and done_before >= 1
    assert (run_dir / "logs" / "episode_000.jsonl").read_text() == first_log
    assert sorted(p.name for p in (run_dir / "logs").glob("episode_*.jsonl")) == [f"episode_{i:03d}.jsonl" for i in range(3)]


def test_ctrl_c_while_an_episode_is_saved_leaves_the_run_resumable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C that lands while an episode's record is written is held, then raised as a resumable
    stop (the race the CLI test hits on a loaded machine), and `--resume` finishes the run."""
    import llmguide.core as core
    from llmguide.training import RunInterrupted

    written = core.write_json

    def write_then_ctrl_c(path: Path, data: object) -> None:
        written(path, data)
        if path.name == "state.json":
            os.kill(os.getpid(), signal.SIGINT)  # held by interrupt_after until the block ends

    monkeypatch.setattr(core, "write_json", write_then_ctrl_c)
    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted) as stop:
        run(prepare(spring(episodes=2), {"llm": fake_llm()}), run_dir)
    assert stop.value.resumable and stop.value.progress == "1 of 2 episodes done"
    assert len((run_dir / "episodes.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(core, "write_json", written)
    metrics = run(prepare(spring(episodes=2, resume=True), {"llm": fake_llm()}), run_dir)
    assert metrics.episodes == 2 and metrics.resumes == 1
