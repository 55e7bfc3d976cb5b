"""ONI's embedding reward models in a trainer process of their own: ``RemoteReward``.

Exports ``RemoteReward``.

Why a process: the classifier and ranking models embed captions with MiniLM
and refit with LBFGS. In a thread of the learner's process that work takes
the learner's CPU and GIL (measured on NetHackScore: 0.3-0.5 of the
learner's speed without ONI). Here it runs in a child process (its own
interpreter, GIL and torch threads), pinned to the CPUs given (the
annotator's, in a run) at a lower priority; the learner only looks scores up.

Protocol: the child is ``python -m llmguide.teachers.oni.trainer`` (a plain
subprocess, so no ``if __name__ == "__main__"`` guard is needed in the
learner's script, as ``multiprocessing``'s spawn would need), talking over two
OS pipes wrapped in ``multiprocessing.connection.Connection`` (pickled
messages):

* learner -> trainer: ``update()`` and ``reward()`` collect new labels,
  preferences and not-yet-scored captions in lists and hand them over at
  most every ``send_every_s`` to a ``SimpleQueue``; a feeder thread pickles
  and writes them, so a full pipe can never block the learner.
* trainer -> learner: the trainer embeds new captions in
  batches, refits at most every ``refit_every_s`` when labels changed, and
  sends the scores that changed (``{hash: score}``), its stats, and any
  error. ``reward()`` reads what has arrived with ``poll()`` (no timeout),
  merges it into a local dict and answers from it: the learner never waits
  for an embedding or a fit. A caption not scored yet gets its exact label,
  else 0, as with the in-process models; each caption is sent once and its
  score is cached.

Failures are surfaced, not swallowed: an error in the trainer is logged once
per distinct message and counted (``stats()["error"]``, ``["errors"]``). A
trainer process that dies is reaped, logged as an error, and started again
after a backoff (1 s, doubling, up to ``max_restarts`` times) with every label,
preference and pending caption it had been sent, so scores keep flowing; the
learner meanwhile goes on with the last scores it received. Restarts and
downtime are in ``stats()``. The trainer exits when its parent does.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from llmguide.teachers.oni.reward import REWARD_MODELS, IntrinsicReward
from llmguide.teachers.oni.store import caption_hash, normalize_caption

from llmguide.processes import stop_process

__all__ = ["RemoteReward"]

log = logging.getLogger("llmguide.oni.trainer")


class RemoteReward(IntrinsicReward):
    """A classifier or ranking reward model trained in a child process; ``reward()`` is a local lookup.

    >>> model = RemoteReward("classifier", cpus=[1], nice=5)                 # doctest: +SKIP
    >>> model.update([{"text": "You kill the newt!", "helpful": True}])     # returns at once
    >>> model.reward(["You kill the newt!"])                                 # exact label until scored
    array([1.], dtype=float32)
    """

    def __init__(
        self,
        kind: str,
        *,
        cpus: Sequence[int] | None = None,
        nice: int = 0,
        threads: int | None = None,
        send_every_s: float = 0.05,
        check_every_s: float = 1.0,
        max_asked: int = 500_000,
        max_restarts: int = 5,
        restart_backoff_s: float = 1.0,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        cls = REWARD_MODELS.get(kind)
        if cls is None or kind == "hash":
            raise ValueError(f"RemoteReward runs an embedding model (classifier or ranking), not {kind!r}")
        self.name = kind
        self.send_every_s, self.check_every_s, self.max_asked = send_every_s, check_every_s, max_asked
        self.max_restarts, self.restart_backoff_s = int(max_restarts), float(restart_backoff_s)
        self.cpus = sorted({int(c) for c in cpus}) if cpus else None
        self.nice, self.threads, self.model_kwargs = nice, threads, dict(model_kwargs or {})
        self.scores: dict[str, float] = {}  # hash -> the trainer's latest score
        self.labels: dict[str, float] = {}  # hash -> exact label (used until the trainer scores it)
        self._asked: dict[str, str] = {}  # hash -> caption sent to be scored (kept to re-send after a restart)
        self._history_labels: list[dict[str, Any]] = []  # everything sent, for a restarted trainer
        self._history_prefs: list[dict[str, Any]] = []
        self._out_labels: list[dict[str, Any]] = []
        self._out_prefs: list[dict[str, Any]] = []
        self._out_texts: list[str] = []
        self._last_send = 0.0
        self._last_check = time.monotonic()
        self.remote: dict[str, Any] = {}  # the trainer's last stats
        self.error: str | None = None
        self.errors = 0
        self.dead = False
        self.restarts = 0
        self._died_at: float | None = None
        self._restart_at: float | None = None
        self._downtime_s = 0.0
        self.sent = {"messages": 0, "labels": 0, "prefs": 0, "captions": 0}
        self.received = {"messages": 0, "scores": 0}
        self._start()

    def _start(self) -> None:
        """Start the trainer process, its pipes and the feeder thread, and send it its config."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()

        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "llmguide.teachers.oni.trainer", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        # placed from here (no preexec_fn in a threaded process): the child only starts Python meanwhile,
        # its work (torch, MiniLM) begins after it reads its config below
        if self.cpus:
            os.sched_setaffinity(self._proc.pid, self.cpus)
        if self.nice:
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, os.getpriority(os.PRIO_PROCESS, 0) + self.nice)
        self._tx = Connection(to_child_w, readable=False)
        self._results = Connection(from_child_r, writable=False)
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._outbox.put(("config", self.name, self.model_kwargs, self.threads))
        self._feeder = threading.Thread(target=self._feed, args=(self._outbox, self._tx), name=f"oni-{self.name}-feeder",
                                        daemon=True)
        self._feeder.start()
        self.dead = False

    # -- learner side: no waiting -----------------------------------------------------------------
    def update(self, labels: Sequence[dict[str, Any]], prefs: Sequence[dict[str, Any]] = ()) -> None:
        for item in labels:
            self.labels[caption_hash(item["text"])] = 1.0 if item["helpful"] else 0.0
        self._out_labels.extend(labels)
        self._out_prefs.extend(prefs)
        self._history_labels.extend(labels)
        self._history_prefs.extend(prefs)
        self._send()

    def reward(self, captions: Sequence[str]) -> np.ndarray:
        self._receive()
        out = np.zeros(len(captions), dtype=np.float32)
        scores, labels, asked = self.scores, self.labels, self._asked
        for i, text in enumerate(captions):
            if not text:
                continue
            key = caption_hash(text)
            score = scores.get(key)
            if score is None:
                score = labels.get(key, 0.0)
                if key not in asked:
                    if len(asked) >= self.max_asked:
                        asked.clear()  # bounded: a caption asked again is only embedded again if the trainer forgot it
                    asked[key] = normalize_caption(text)
                    self._out_texts.append(asked[key])
            out[i] = score
        self._send()
        return out

    def _send(self, force: bool = False) -> None:
        """Hand what was collected to the trainer, at most once per ``send_every_s`` (``put`` never blocks)."""
        if not (self._out_labels or self._out_prefs or self._out_texts) or self.dead:
            return
        now = time.monotonic()
        if not force and now - self._last_send < self.send_every_s:
            return
        self._outbox.put(("data", self._out_labels, self._out_prefs, self._out_texts))
        self.sent["messages"] += 1
        self.sent["labels"] += len(self._out_labels)
        self.sent["prefs"] += len(self._out_prefs)
        self.sent["captions"] += len(self._out_texts)
        self._out_labels, self._out_prefs, self._out_texts = [], [], []
        self._last_send = now

    def _receive(self) -> None:
        """Merge what the trainer has sent; check now and then that it is alive."""
        try:
            while self._results.poll():
                kind, body = self._results.recv()
                self.received["messages"] += 1
                if kind == "scores":
                    self.scores.update(body)
                    self.received["scores"] += len(body)
                elif kind == "stats":
                    self.remote = body
                elif kind == "error":
                    self._record_error(body, count=1)
        except (EOFError, OSError):
            pass  # the trainer is gone: found below
        now = time.monotonic()
        if self.dead:
            if self._restart_at is not None and now >= self._restart_at:
                self._restart(now)
        elif now - self._last_check >= self.check_every_s:
            self._last_check = now
            code = self._proc.poll()  # also reaps it
            if code is not None:
                self.dead, self._died_at = True, now
                self._outbox.put(None)  # ends the old feeder
                if self.restarts < self.max_restarts:
                    backoff = self.restart_backoff_s * 2**self.restarts
                    self._restart_at = now + backoff
                    then = f"restarting it in {backoff:g} s (restart {self.restarts + 1} of {self.max_restarts})"
                else:
                    self._restart_at = None
                    then = f"not restarted: {self.max_restarts} restarts used"
                self._record_error(f"the reward trainer process (pid {self._proc.pid}) died with exit code {code}; "
                                   f"rewards stay at its last scores; {then}", count=1)

    def _restart(self, now: float) -> None:
        """A new trainer, sent every label, preference and caption the dead one had been sent."""
        for conn in (self._tx, self._results):
            conn.close()
        self.restarts += 1
        self._restart_at = None
        self._out_labels, self._out_prefs, self._out_texts = [], [], []  # in the history re-sent below
        self._start()
        self._downtime_s += time.monotonic() - (self._died_at or now)
        self._died_at = None
        self._outbox.put(("data", list(self._history_labels), list(self._history_prefs), list(self._asked.values())))
        log.warning("ONI %s reward model: trainer restarted (pid %d), %d labels and %d captions re-sent.",
                    self.name, self._proc.pid, len(self._history_labels), len(self._asked))

    @staticmethod
    def _feed(outbox: queue.SimpleQueue[Any], tx: Connection) -> None:
        """Feeder thread: write queued messages to the trainer (the only place a full pipe can wait)."""
        while True:
            message = outbox.get()
            if message is None:
                return
            try:
                tx.send(message)
            except OSError:  # the trainer is gone; _receive reports it
                return

    def _record_error(self, message: str, count: int) -> None:
        self.errors += count
        if message != self.error:
            log.error("ONI %s reward model: %s. Captions keep their last score, exact label or 0; counted in "
                      "the run's metrics (reward_model_errors).", self.name, message)
        self.error = message

    def wait_until_scored(self, captions: Sequence[str], timeout: float = 60.0) -> bool:
        """Block until every caption has a score from the trainer (tests, notebooks; never the env loop)."""
        keys = [caption_hash(c) for c in captions if c]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.reward(captions)
            self._send(force=True)
            if all(k in self.scores for k in keys):
                return True
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, Any]:
        remote = self.remote
        return {"labels": len(self.labels), "scored": len(self.scores), "remote": True, "pid": self._proc.pid, "cpus": self.cpus,
                "alive": not self.dead, "embedded": remote.get("embedded", 0), "fits": remote.get("fits", 0),
                "fit_s": remote.get("fit_s", 0.0), "embed_s": remote.get("embed_s", 0.0),
                "fitted": remote.get("fitted", False), "prefs": remote.get("prefs", 0),
                "sent_messages": self.sent["messages"], "sent_captions": self.sent["captions"],
                "received_scores": self.received["scores"], "error": self.error, "errors": self.errors,
                "restarts": self.restarts, "downtime_s": round(self.downtime_s, 3)}

    @property
    def downtime_s(self) -> float:
        """Seconds without a live trainer (the current outage included)."""
        return self._downtime_s + (time.monotonic() - self._died_at if self._died_at is not None else 0.0)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the trainer and reap it (asked to stop, then SIGKILL if it has not exited within ``timeout``)."""
        self._outbox.put(("stop",))
        self._outbox.put(None)
        self._feeder.join(timeout)
        stop_process(self._proc, timeout, terminate=False)
        for conn in (self._tx, self._results):
            conn.close()


# -- the trainer process ------------------------------------------------------------------------------
def _trainer_main(rx: Connection, tx: Connection) -> None:
    """Embed, refit, rescore; send changed scores back. Runs until told to stop or its parent's pipe closes."""
    _, kind, model_kwargs, threads = rx.recv()
    import torch

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    model = REWARD_MODELS[kind](background=False, **model_kwargs)
    sent: dict[str, float] = {}
    last_fit = last_stats = 0.0
    stats: dict[str, Any] = {}
    while True:
        messages = []
        try:
            if rx.poll(0.2):
                messages.append(rx.recv())
                while rx.poll(0):
                    messages.append(rx.recv())
        except (EOFError, OSError):
            return  # the learner is gone
        for message in messages:
            if message[0] == "stop":
                return
            _, labels, prefs, texts = message
            model.update(labels, prefs)
            for text in texts:
                key = caption_hash(text)
                if key not in model.emb:
                    model._todo[key] = text
        now = time.monotonic()
        due = now - last_fit >= model.refit_every_s
        try:
            if model._todo or (model._dirty and due):
                fits = model.fits
                model.step(refit=due)
                if model.fits != fits:
                    last_fit = now
        except Exception as err:  # reported to the learner, which logs and counts it
            tx.send(("error", f"{type(err).__name__}: {err}"))
            time.sleep(0.5)
        new = {k: v for k, v in model.scores.items() if sent.get(k) != v}
        if new:
            tx.send(("scores", new))
            sent.update(new)
        current = {k: v for k, v in model.stats().items() if k != "error"}
        if current != stats and now - last_stats >= 0.5:
            tx.send(("stats", current))
            stats, last_stats = current, now


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m llmguide.teachers.oni.trainer READ_FD WRITE_FD`` (started by ``RemoteReward``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    rx, tx = Connection(int(args[0]), writable=False), Connection(int(args[1]), readable=False)
    try:
        _trainer_main(rx, tx)
    except (BrokenPipeError, EOFError):
        pass  # the learner went away first


if __name__ == "__main__":
    main()
