"""The run keeps its annotator alive: kill -9 mid-run, one warning, restart with backoff, labels flow again,
no zombie, downtime and restarts in the run's metrics; bounded restarts end in one clear error."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from llmguide.teachers.oni.process import start_annotator
from llmguide.teachers.oni.store import LabelStore
from llmguide.teachers.oni.supervisor import AnnotatorSupervisor

from llmguide.core import prepare, run

#: a short run whose annotator LLM is slow (0.2 s per 4-caption batch): captions wait for labels when it dies
RUN = {"method": "oni", "n_envs": 2, "max_episode_steps": 40, "llm": "fake:rule:0.2", "batch_size": 4,
       "annotator_nice": 0, "total_steps": 4096, "learner_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
       "eval": {"every": 0, "episodes": 1}}


def _gone(pid: int) -> bool:
    """True when `pid` is neither running nor a zombie (it was reaped)."""
    return not Path(f"/proc/{pid}").exists()


def _annotator_child() -> psutil.Process | None:
    for child in psutil.Process().children():
        try:
            if "llmguide.teachers.oni.server" in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


@pytest.mark.slow
def test_run_survives_kill_9_of_its_annotator(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="llmguide.oni")
    killed: dict[str, int] = {}

    def killer() -> None:
        """Kill the run's annotator by pid with SIGKILL once it has stored its first labels."""
        db = tmp_path / "oni_labels.sqlite"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            child = _annotator_child()
            if child is not None and db.exists() and LabelStore(db).counts()["labels"] >= 1:
                killed["labels"] = LabelStore(db).counts()["labels"]
                os.kill(child.pid, signal.SIGKILL)
                killed["pid"] = child.pid
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    metrics = run(prepare(RUN), tmp_path)
    thread.join(5)
    extras = metrics.extras
    assert "pid" in killed, "the annotator never labelled anything before the deadline"
    assert metrics.steps >= 4096  # training went on through the outage
    assert extras["annotator_deaths"] == 1 and extras["annotator_restarts"] == 1 and not extras["annotator_gave_up"]
    assert 0 < extras["annotator_downtime_s"] < metrics.wall_s
    assert extras["annotator_pids"][0] == killed["pid"] and extras["annotator_pid"] != killed["pid"]
    # labels kept flowing after the kill: the restarted process labelled captions, the store grew
    assert extras["annotator"]["labels"] > 0 and extras["labels"] > killed["labels"]
    assert extras["oni"]["labels_applied"] > killed["labels"]
    assert _gone(killed["pid"])  # the killed child was reaped, not left a zombie
    assert _gone(extras["annotator_pid"])  # and the restarted one was stopped at the end
    warnings = [r for r in caplog.records if r.name == "llmguide.oni.supervisor" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(killed["pid"]) in warnings[0].getMessage()  # warned once
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_supervisor_gives_up_after_max_restarts(tmp_path: Path, caplog: pytest.LogCaptureFixture, wait_until) -> None:
    caplog.set_level(logging.WARNING, logger="llmguide.oni")
    db = tmp_path / "labels.sqlite"
    proc = start_annotator("fake:rule", db)
    restarted: list[object] = []
    sup = AnnotatorSupervisor(proc, max_restarts=2, backoff_s=0.05, check_every_s=0.05, startup_timeout=30,
                              on_restart=restarted.append)
    try:
        assert sup.check() and sup.stats()["downtime_s"] == 0.0
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)
        db.write_bytes(b"not a database " * 400)  # every restart now fails at start: a real, lasting fault
        os.kill(proc.pid, signal.SIGKILL)
        assert wait_until(lambda: sup.gave_up, 90), sup.stats()
        stats = sup.stats()
        assert stats["deaths"] == 1 and stats["restarts"] == 0 and stats["restart_failures"] == 2 and not restarted
        assert stats["exit_codes"] == [-signal.SIGKILL] and stats["down"]
        down = sup.downtime_s()
        time.sleep(0.2)
        assert sup.downtime_s() > down  # the outage is counted until the run ends
        assert _gone(proc.pid)  # reaped
        errors = [r for r in caplog.records if r.name == "llmguide.oni.supervisor" and r.levelno >= logging.ERROR]
        warnings = [r for r in caplog.records if r.name == "llmguide.oni.supervisor" and r.levelno == logging.WARNING]
        assert len(errors) == 1 and "max_restarts=2" in errors[0].getMessage() and "extrinsic" in errors[0].getMessage()
        assert len(warnings) == 1
    finally:
        sup.close()
        sup.proc.stop()
    assert sup.stats()["downtime_s"] == pytest.approx(sup.downtime_s())  # frozen once closed


def test_supervisor_rejects_a_negative_bound(tmp_path: Path) -> None:
    class NotStarted:
        pid = 0

    with pytest.raises(ValueError, match="max_restarts must be >= 0"):
        AnnotatorSupervisor(NotStarted(), max_restarts=-1, start=False)  # type: ignore[arg-type]
