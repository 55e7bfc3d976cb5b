"""Start and stop the annotator as a real separate process on a free loopback port.

Exports ``AnnotatorProcess``, ``start_annotator`` and ``restart_annotator`` (``free_port`` and
``wait_for_http`` come from ``llmguide.net``).

A run that is given no annotator URL starts one with ``start_annotator`` and
stops it at the end (``with start_annotator(...) as proc:``). The child is
``python -m llmguide.teachers.oni.server``, so it has its own interpreter,
GIL and LLM — the learner's process never runs the LLM. A run keeps it
alive with ``supervisor.AnnotatorSupervisor``, which restarts a dead one
with ``restart_annotator``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from llmguide.errors import BackendUnavailableError
from llmguide.net import free_port, wait_for_http
from llmguide.processes import stop_process

__all__ = ["AnnotatorProcess", "restart_annotator", "start_annotator"]


class AnnotatorProcess:
    """A running annotator child process; ``url`` is its base URL."""

    def __init__(self, proc: subprocess.Popen, url: str, log_path: Path, args: list[str]) -> None:
        self.proc, self.url, self.log_path, self.args = proc, url, log_path, args
        self.cpus: list[int] | None = None  #: CPU ids the child was pinned to (None: not pinned)
        self.nice = 0  #: niceness the child was started with

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        return httpx.get(f"{self.url}/stats", timeout=timeout).json()

    def kill(self) -> None:
        """SIGKILL, no cleanup: what a crash looks like (fault tests)."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (uvicorn shuts down cleanly), then SIGKILL after ``timeout``; returns the exit code."""
        return stop_process(self.proc, timeout)

    def __enter__(self) -> AnnotatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def start_annotator(
    llm: str = "smollm2",
    db: str | Path | None = None,
    *,
    port: int | None = None,
    startup_timeout: float = 120.0,
    nice: int = 0,
    cpus: Iterable[int] | None = None,
    log_path: str | Path | None = None,
    **settings: Any,
) -> AnnotatorProcess:
    """Spawn ``python -m llmguide.teachers.oni.server`` and wait until ``/health`` answers.

    ``settings`` are ``AnnotatorSettings`` fields (``queue_size``, ``batch_size``,
    ``prefs_per_batch``, ``threads``, ...). ``nice`` lowers the child's CPU
    priority so that, on a small machine, the learner keeps its speed.
    ``cpus`` pins the child to those CPU ids (``os.sched_setaffinity`` on the
    child as soon as it is spawned, before its imports); None leaves the affinity it inherits from this
    process (a learner pinned with ``sched_setaffinity`` passes its pinning
    on, so give ``cpus`` explicitly when the learner is pinned).
    Raises ``BackendUnavailableError`` (with the child's log tail) if it does
    not come up in time.
    """
    cpu_set = sorted({int(c) for c in cpus}) if cpus is not None else None
    if cpu_set is not None and not cpu_set:
        raise ValueError("cpus must name at least one CPU id (or be None: no pinning)")
    port = port or free_port()
    db = Path(db) if db is not None else Path(tempfile.mkdtemp(prefix="oni-")) / "labels.sqlite"
    log_path = Path(log_path) if log_path is not None else Path(db).with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "llmguide.teachers.oni.server", "--llm", llm, "--db", str(db), "--port", str(port),
            "--parent-pid", str(os.getpid())]
    for key, value in settings.items():
        if value is not None:
            args += ["--" + key.replace("_", "-"), str(value)]
    return _spawn(args, port, log_path, cpu_set, nice, startup_timeout)


def restart_annotator(old: AnnotatorProcess, *, port: int | None = None, startup_timeout: float = 120.0) -> AnnotatorProcess:
    """Start the same annotator again (same LLM, label store, settings, CPUs and niceness) after ``old`` died.

    ``port``: where the new one listens (None: ``old``'s port, so a client keeps its URL). The new
    process re-queues the captions the store holds as seen but unlabelled. Raises
    ``BackendUnavailableError`` like ``start_annotator``.
    """
    if old.alive():
        raise RuntimeError(f"annotator pid {old.pid} is still running; stop it before restarting it")
    args = list(old.args)
    port = port or int(args[args.index("--port") + 1])
    args[args.index("--port") + 1] = str(port)
    return _spawn(args, port, old.log_path, old.cpus, old.nice, startup_timeout)


def _spawn(args: list[str], port: int, log_path: Path, cpu_set: list[int] | None, nice: int,
           startup_timeout: float) -> AnnotatorProcess:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # placed from here, not by a preexec_fn (unsafe in a process with threads, and a supervisor restarts the
    # annotator while the learner's threads run): the child is still starting Python when this runs, and
    # llama.cpp's threads, started much later, inherit the affinity
    try:
        if cpu_set is not None:
            os.sched_setaffinity(proc.pid, cpu_set)
        if nice:
            os.setpriority(os.PRIO_PROCESS, proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    except ProcessLookupError:
        pass  # it exited at once: reported below with its log
    handle = AnnotatorProcess(proc, f"http://127.0.0.1:{port}", log_path, args)
    handle.cpus, handle.nice = cpu_set, nice
    if wait_for_http(f"{handle.url}/health", proc, startup_timeout):
        return handle
    if proc.poll() is not None:
        raise BackendUnavailableError(
            f"The ONI annotator exited at start (code {proc.returncode}): {handle.log_tail(600).strip()}"
        )
    handle.stop(5)
    raise BackendUnavailableError(
        f"The ONI annotator did not answer /health within {startup_timeout:.0f} s; see its log {log_path}."
    )
