"""Keep a run's annotator process alive: ``AnnotatorSupervisor``.

Exports ``AnnotatorSupervisor``.

Why: the annotator is a separate process, so it can die on its own (OOM
killer, ``kill -9``, a crash in llama.cpp). Without a watcher the learner
would go on with extrinsic reward only, nobody would notice, and the dead
child would stay a zombie until the run ends. The supervisor is one daemon
thread in the learner's process that, every ``check_every_s``:

* polls the child (``Popen.poll``, which also reaps it: no zombie is left);
* on a death, logs one warning for the outage and restarts the annotator
  with ``restart_annotator`` after an exponential backoff (same LLM, label
  store, settings, CPUs and niceness; the same port, else a fresh one);
* once it is up, tells the client (``reconnect_now``), which re-sends every
  caption still waiting for a label; the new process re-queues those its
  store holds as seen but unlabelled. Labels flow again;
* after ``max_restarts`` restart attempts in a run it gives up with one
  logged error; the learner goes on with the reward model it has (no new
  labels), and the outage is counted until the run ends.

``stats()`` gives ``restarts`` (successful), ``restart_failures``,
``deaths``, ``downtime_s`` (detection to healthy restart, the current
outage included) and ``gave_up``; the ``oni`` method puts them in
``RunMetrics.extras`` as ``annotator_*``. The learner's path never touches
the supervisor: it runs on its own thread, outside ``step()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from llmguide.teachers.oni.process import AnnotatorProcess, restart_annotator

from llmguide.errors import BackendUnavailableError
from llmguide.net import free_port

__all__ = ["AnnotatorSupervisor"]

log = logging.getLogger("llmguide.oni.supervisor")


class AnnotatorSupervisor:
    """Watch ``proc`` on a thread; restart it with backoff when it dies (at most ``max_restarts`` attempts).

    ``on_restart(new_proc)`` runs after each successful restart (the run points its client at it).

    >>> sup = AnnotatorSupervisor(start_annotator("fake:rule"), on_restart=lambda p: client.reconnect_now(p.url))  # doctest: +SKIP
    """

    def __init__(
        self,
        proc: AnnotatorProcess,
        *,
        max_restarts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        check_every_s: float = 0.5,
        startup_timeout: float = 120.0,
        on_restart: Callable[[AnnotatorProcess], None] | None = None,
        start: bool = True,
    ) -> None:
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0 (0: never restart), not {max_restarts}")
        self.proc = proc
        self.max_restarts, self.backoff_s, self.backoff_max_s = max_restarts, backoff_s, backoff_max_s
        self.check_every_s, self.startup_timeout, self.on_restart = check_every_s, startup_timeout, on_restart
        self.restarts = 0  # successful restarts
        self.attempts = 0  # restart attempts (successful or not): bounded by max_restarts
        self.restart_failures = 0
        self.deaths = 0
        self.exit_codes: list[int] = []
        self.pids = [proc.pid]  # every annotator process of the run, in start order
        self.gave_up = False
        self._downtime_s = 0.0
        self._down_since: float | None = None  # monotonic time the current outage was detected
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="oni-supervisor", daemon=True)
        if start:
            self._thread.start()

    # -- figures -----------------------------------------------------------------------------
    @property
    def down(self) -> bool:
        """True from the detection of a death until a restarted annotator answers (or for good after giving up)."""
        return self._down_since is not None

    def downtime_s(self) -> float:
        """Seconds without an annotator so far, the outage in progress included."""
        since = self._down_since
        return self._downtime_s + (time.monotonic() - since if since is not None else 0.0)

    def stats(self) -> dict[str, Any]:
        return {"restarts": self.restarts, "restart_failures": self.restart_failures, "deaths": self.deaths,
                "downtime_s": self.downtime_s(), "gave_up": self.gave_up, "down": self.down, "pid": self.proc.pid,
                "pids": list(self.pids), "exit_codes": list(self.exit_codes)}

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Stop watching (the caller stops ``self.proc``, the current process); the outage clock stops too."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._down_since is not None:  # freeze the clock: the outage lasted until the end of the run
            self._downtime_s += time.monotonic() - self._down_since
            self._down_since = None
        self.proc.proc.poll()  # reap a child that died after the last check

    def check(self) -> bool:
        """One round of watching (the thread's body; tests call it directly): True if the annotator is up."""
        if self.gave_up:
            return False
        code = self.proc.proc.poll()  # reaps a dead child: no zombie
        if code is None:
            return True
        self.deaths += 1
        self.exit_codes.append(code)
        self._down_since = time.monotonic()
        log.warning("The ONI annotator (pid %d) died (exit code %d); restarting it. The learner goes on meanwhile "
                    "with the labels it has; see the annotator log %s.", self.proc.pid, code, self.proc.log_path)
        while not self._stop.is_set():
            if self.attempts >= self.max_restarts:
                self.gave_up = True
                log.error("The ONI annotator could not be kept alive: %d restart attempts used (max_restarts=%d). "
                          "The run goes on with extrinsic reward and the reward model as it is (no new labels); "
                          "the outage is counted in annotator_downtime_s. Last log lines: %s", self.attempts,
                          self.max_restarts, self.proc.log_tail(300).strip().replace("\n", " | "))
                return False
            if self._stop.wait(min(self.backoff_max_s, self.backoff_s * 2 ** self.attempts)):
                return False
            self.attempts += 1
            # the same port first (a client keeps its URL), a fresh one if that attempt failed
            port = None if self.restart_failures == 0 else free_port()
            try:
                new = restart_annotator(self.proc, port=port, startup_timeout=self.startup_timeout)
            except BackendUnavailableError as err:
                self.restart_failures += 1
                log.debug("annotator restart %d failed: %s", self.attempts, err)
                continue
            if self._stop.is_set():  # closed while it was starting: the run is over, do not leave it behind
                new.stop(5)
                return False
            self.proc = new
            self.pids.append(new.pid)
            self.restarts += 1
            outage = time.monotonic() - self._down_since
            self._downtime_s += outage
            self._down_since = None
            log.info("The ONI annotator is back (pid %d, %s) after %.1f s; unlabelled captions are re-queued.",
                     new.pid, new.url, outage)
            if self.on_restart is not None:
                self.on_restart(new)
            return True
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.check_every_s):
            try:
                self.check()
            except Exception:  # never let the watcher die silently
                log.exception("the ONI annotator supervisor failed; the annotator is no longer watched")
                return
