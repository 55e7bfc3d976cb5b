"""DiLu as a method on the core: config errors, memory kept across runs and resumes, logs appended, the real CLI."""

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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # llama.cpp threads sleep instead of spinning on a shared CPU

from llmguide.memory import ExperienceMemory

from llmguide.core import evaluate, load_run_config, prepare, run
from llmguide.errors import ConfigError
from llmguide.record import RunMetrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "memory"))
from fakes import BagOfWords

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "dilu_highway.yaml"
LLMGUIDE = str(Path(sys.executable).with_name("llmguide"))


@pytest.fixture
def bag_of_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memories embedded without torch: the method opens its memory with these embeddings."""
    monkeypatch.setattr("llmguide.memory.embeddings.default_embeddings", BagOfWords)


def dilu(**keys: object) -> dict[str, object]:
    return {"method": "dilu", "episodes": 2, "decisions": 2, "cot_tokens": 0, "k": 1,
            "env_config": {"vehicles_count": 5}, **keys}


def fake_llm() -> FakeListChatModel:
    return FakeListChatModel(responses=['{"choice": "IDLE"}'])


def test_config_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="unknown key 'decisons' for method 'dilu'. Did you mean 'decisions'"):
        prepare({"method": "dilu", "decisons": 5})
    for bad in (0, -1):  # used to reach a ZeroDivisionError after the run
        with pytest.raises(ConfigError, match=r"episodes: Input should be greater than 0.*method 'dilu'"):
            prepare({"method": "dilu", "episodes": bad})
    with pytest.raises(ConfigError, match="decisions: Input should be greater than 0"):
        prepare({"method": "dilu", "decisions": 0})
    with pytest.raises(ConfigError, match="max_steps: dilu's per-episode cap is `decisions`"):
        prepare({"method": "dilu", "max_steps": 5})
    with pytest.raises(ConfigError, match="not a highway-env id"):
        prepare({"method": "dilu", "env": "llmguide/Crafter-v0"})


def test_shipped_config_decisions_is_the_one_step_cap(tmp_path: Path) -> None:
    prepared = prepare(load_run_config(CONFIG))
    assert prepared.settings.episodes == 5 and prepared.config.decisions == prepared.config.max_steps == 20
    assert prepared.config.memory is None
    dumped = prepared.to_dict()  # what the run's config.yaml holds, read again by --resume and eval
    assert "max_steps" not in dumped and dumped["decisions"] == 20
    assert prepare(dumped).config.max_steps == 20
    relative = prepare({"method": "dilu", "memory": "mem"}).config.memory
    assert relative is not None and relative.is_absolute()


def test_run_learns_into_the_memory_and_logs_decisions(tmp_path: Path, bag_of_words: None) -> None:
    run_dir = tmp_path / "run"
    metrics = run(prepare(dilu(), {"llm": fake_llm()}), run_dir)
    assert (metrics.method, metrics.kind, metrics.episodes) == ("dilu", "agent", 2)
    assert 2 <= metrics.steps <= 4 and metrics.score is None
    extras = metrics.extras
    assert extras["memory_path"] == str(run_dir / "memory") and extras["memory_size_before"] == 0
    assert extras["memory_size_after"] == len(ExperienceMemory(run_dir / "memory")) >= 1
    assert extras["memory_sizes"][0] == 0 and len(extras["memory_sizes"]) == 3 and extras["mean_speed"] > 0
    # the agent's own choices are in the run's metrics: every decision counted, none a fallback
    decisions = extras["choices"]["decision"]
    assert decisions["calls"] == metrics.steps and decisions["fallbacks"] == 0 and decisions["fallback_rate"] == 0.0
    assert 0.0 <= decisions["first_option_rate"] <= 1.0
    blame = extras["reflection_blame"]
    assert blame["reflections"] == extras["reflections"] == len(
        (run_dir / "reflections.jsonl").read_text().splitlines() if (run_dir / "reflections.jsonl").exists() else [])
    if blame["reflections"]:  # the fake's '{"choice": "IDLE"}' is no step label: choose fell back to the last step
        assert extras["choices"]["reflection_step"]["fallback_rate"] == 1.0 and blame["later"] + blame["first_of_window"] == blame["reflections"]
    records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert [r["success"] for r in records] == [not r["extra"]["crashed"] for r in records]
    for episode in (0, 1):
        rows = [json.loads(ln) for ln in (run_dir / "decisions" / f"episode_{episode:03d}.jsonl").read_text().splitlines()]
        assert rows[-1]["end"] and all(r["decision"] in r["available"] for r in rows[:-1])


def test_resume_keeps_the_memory_and_continues_the_logs(tmp_path: Path, bag_of_words: None) -> None:
    run_dir = tmp_path / "run"
    first = run(prepare(dilu(episodes=1), {"llm": fake_llm()}), run_dir)
    first_log = (run_dir / "decisions" / "episode_000.jsonl").read_text()
    learned = first.extras["memory_size_after"]
    assert learned >= 1
    metrics = run(prepare(dilu(episodes=2, resume=True), {"llm": fake_llm()}), run_dir)
    assert metrics.resumes == 1 and metrics.episodes == 2
    assert metrics.extras["choices"]["decision"]["calls"] == metrics.steps  # counters carried across the resume
    assert metrics.extras["memory_size_before"] == 0 and metrics.extras["memory_sizes"][:2] == [0, learned]
    assert metrics.extras["memory_size_after"] >= learned  # nothing learned before the resume was lost
    assert (run_dir / "decisions" / "episode_000.jsonl").read_text() == first_log
    assert (run_dir / "decisions" / "episode_001.jsonl").is_file()


def test_a_shared_memory_dir_keeps_learning_across_runs(tmp_path: Path, bag_of_words: None) -> None:
    shared = tmp_path / "shared-mem"
    first = run(prepare(dilu(episodes=1, memory=str(shared)), {"llm": fake_llm()}), tmp_path / "run1")
    second = run(prepare(dilu(episodes=1, memory=str(shared), seed=7), {"llm": fake_llm()}), tmp_path / "run2")
    assert first.extras["memory_size_after"] >= 1 and not (tmp_path / "run1" / "memory").exists()
    assert second.extras["memory_size_before"] == first.extras["memory_size_after"]


def test_eval_drives_with_a_frozen_memory_and_logs_apart(tmp_path: Path, bag_of_words: None) -> None:
    from llmguide.agents.dilu import DiLuMethod

    prepared = prepare(dilu(), {"llm": fake_llm()})
    method = DiLuMethod(prepared.config, prepared.settings, tmp_path, prepared.objects)
    method.build(for_eval=True)
    assert method.agent.learn is False and method.agent.reflections_path is None
    assert method.agent.log_dir == tmp_path / "eval_decisions"
    method.build()
    assert method.agent.learn is True and method.agent.reflections_path == tmp_path / "reflections.jsonl"
    method.close()


def test_evaluation_drives_with_the_memory_frozen(tmp_path: Path, bag_of_words: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    run(prepare(dilu(episodes=1), {"llm": fake_llm()}), run_dir)
    size, log = len(ExperienceMemory(run_dir / "memory")), (run_dir / "decisions" / "episode_000.jsonl").read_text()
    monkeypatch.setattr("llmguide.agents.dilu.load", lambda *args, **kwargs: fake_llm())
    assert evaluate(run_dir, episodes=2)["episodes"] == 2
    assert len(ExperienceMemory(run_dir / "memory")) == size  # `llmguide eval` measures, it does not learn
    assert (run_dir / "decisions" / "episode_000.jsonl").read_text() == log


# -- the real CLI, with the embedded model and MiniLM embeddings ----------------------------------
def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LLMGUIDE, *args], check=False, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          stdin=subprocess.DEVNULL)


TINY = ["--set", "decisions=1", "--set", "cot_tokens=0", "--set", "n_ctx=2048", "--set", "env_config.vehicles_count=5"]


def test_cli_bad_budget_and_misspelled_key_exit_2(tmp_path: Path) -> None:
    for sets, expected in ((["episodes=0"], "episodes: Input should be greater than 0"),
                           (["reflection_windw=2"], "unknown key 'reflection_windw' for method 'dilu'")):
        done = _cli("run", str(CONFIG), *[a for s in sets for a in ("--set", s)], "--runs-dir", str(tmp_path),
                    "--no-progress", timeout=300)
        assert done.returncode == 2, done.stdout + done.stderr
        error = done.stderr.strip()
        assert len(error.splitlines()) == 1 and error.startswith("error:") and expected in error
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_run_with_memory_and_approve_flags_then_eval(tmp_path: Path) -> None:
    memory = tmp_path / "mem"
    done = _cli("run", str(CONFIG), "--set", "episodes=1", *TINY, "--memory", str(memory), "--approve",
                "--runs-dir", str(tmp_path / "runs"), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1].removeprefix("run dir: ").strip())
    metrics = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
    assert (metrics.method, metrics.kind, metrics.episodes, metrics.steps) == ("dilu", "agent", 1, 1)
    assert metrics.extras["memory_path"] == str(memory.resolve()) and (memory / "llmguide-memory.json").is_file()
    (record,) = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    if record["extra"]["crashed"]:  # --approve with no one at the terminal: the correction is not stored
        (row,) = [json.loads(line) for line in (run_dir / "reflections.jsonl").read_text().splitlines()]
        assert row["approved"] is False and len(ExperienceMemory(memory)) == 0
    else:
        assert len(ExperienceMemory(memory)) >= 1
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["approve"] is True and saved["memory"] == str(memory.resolve()) and "max_steps" not in saved
    evaluated = _cli("eval", str(run_dir), "--episodes", "1")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert json.loads((run_dir / "eval.json").read_text())["episodes"] == 1


@pytest.mark.slow
def test_cli_ctrl_c_then_resume_keeps_memory(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # a response cache of its own: answers cached by earlier runs would finish all 3 one-decision
    # episodes before the Ctrl-C lands
    fresh = {**os.environ, "LLMGUIDE_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([LLMGUIDE, "run", str(CONFIG), "--set", "episodes=3", *TINY, "--runs-dir", str(runs),
                             "--no-progress"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=fresh)
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
    assert f"--resume {run_dir}" in err.replace("\n", "")
    first = (run_dir / "episodes.jsonl").read_text()
    learned = len(ExperienceMemory(run_dir / "memory"))
    resumed = _cli("run", "--resume", str(run_dir), "--no-progress")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    metrics = RunMetrics.model_validate_json((run_dir / "metrics.json").read_text())
    assert metrics.resumes == 1 and metrics.episodes == 3 and metrics.status == "finished"
    assert (run_dir / "episodes.jsonl").read_text().startswith(first)
    assert metrics.extras["memory_size_after"] >= learned >= 1 and metrics.extras["memory_size_before"] == 0
    assert sorted(p.name for p in (run_dir / "decisions").glob("episode_*.jsonl")) == [f"episode_{i:03d}.jsonl" for i in range(3)]
