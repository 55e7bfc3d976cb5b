"""The learner-side annotator client: ``AnnotatorClient``.

Exports ``AnnotatorClient``.

Contract: the learner never blocks on the annotator. The env loop calls
``submit(captions)`` and ``drain()``; neither takes a lock that the client's
background thread holds, and neither does any I/O or bookkeeping:

* ``submit`` appends the raw caption batch (a tuple) to an incoming
  ``collections.deque`` (``append``/``popleft`` are atomic in CPython) and
  returns. If the backlog is over ``max_incoming`` captions (the background
  thread is starved of CPU) the batch is dropped and counted
  (``incoming_drops``) instead of growing without bound.
* ``drain`` pops whatever labels and preferences the background thread has
  appended to two deques (``popleft`` until empty).

``submit`` and ``drain`` are meant for one caller thread (the env loop):
their counters have a single writer each, which is what makes them safe
without a lock.

Everything else runs on the client thread ("oni-client"), which keeps its own
lock for its own state (never held by the caller's path):

* moves incoming captions into its structures: normalise, hash, dedup
  against the captions it has seen (the ``max_known`` most recently seen:
  least recently seen evicted and counted, ``known_evicted``; an evicted
  caption that comes back is sent again and the server, which keeps every
  hash, deduplicates it), pending set (bounded by ``max_pending``, oldest
  evicted and counted), bounded outbox (overflow is counted; the caption
  stays pending and is sent later);
* sends captions in batches and polls ``/labels`` since its cursor;
* when the server is unreachable, retries with exponential backoff, and after
  reconnecting re-sends every caption it submitted that has no label yet
  (the server deduplicates, so re-sending is safe); ``reconnect_now(url)``
  (called by the run's annotator supervisor after a restart) ends the
  backoff at once and may point the client at a new URL;
* also re-sends pending captions older than ``resend_after_s`` (a server that
  dropped them under overload gets another chance).

Caller-side figures in ``stats()``:

* ``client_overhead_s``: measured time the caller spent inside
  ``submit``/``drain`` (deque appends/pops, plus whatever the interpreter
  spends switching threads meanwhile): CPU cost, not waiting.
* ``wait_s``: measured time the caller spent in calls on that path that can
  block. The only one is ``Event.set()``, issued when a full ``send_batch``
  of captions is waiting before the client thread's next poll (so only when
  the learner makes captions faster than ``send_batch / poll_interval``);
  the event's internal lock is held by the client thread only for the
  instant it enters or leaves its idle wait, never during I/O or
  bookkeeping. So ``wait_s`` is ~0 by construction (exactly 0 when no
  wake-up was needed), but it is measured, not assumed; on a loaded
  machine a wake-up can still cost the caller a thread switch.
  ``flush()`` and ``wait_for_labels()`` block on purpose (tests, end of
  run) and are not part of the env-loop path.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

import httpx
from llmguide.teachers.oni.store import caption_hash, normalize_caption

__all__ = ["AnnotatorClient"]


def _take_all(queue: deque[Any]) -> list[Any]:
    """Pop everything now in `queue`, oldest first; safe while another thread appends
    (popleft, unlike list(queue) + clear(), never loses an item appended in between)."""
    items: list[Any] = []
    try:
        while True:
            items.append(queue.popleft())
    except IndexError:
        return items


class AnnotatorClient:
    """Non-blocking client of the ONI annotation server.

    >>> client = AnnotatorClient("http://127.0.0.1:8765")      # doctest: +SKIP
    >>> client.submit(["You see here 3 gold pieces."])          # returns at once
    >>> labels, prefs = client.drain()                          # whatever has arrived
    """

    def __init__(
        self,
        url: str,
        *,
        outbox_size: int = 10_000,
        send_batch: int = 256,
        poll_interval: float = 0.25,
        timeout: float = 2.0,
        backoff_max: float = 5.0,
        max_pending: int = 100_000,
        resend_after_s: float = 30.0,
        max_caption_chars: int = 1024,
        max_incoming: int = 100_000,
        max_known: int = 200_000,
        start: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.send_batch, self.poll_interval, self.timeout = send_batch, poll_interval, timeout
        self.backoff_max, self.max_pending, self.resend_after_s = backoff_max, max_pending, resend_after_s
        self.max_caption_chars, self.max_incoming = max_caption_chars, max_incoming
        if max_known < 1:
            raise ValueError(f"max_known must be >= 1 (captions remembered for dedup), not {max_known}")
        self.max_known = max_known
        # caller -> client thread: raw caption batches; each counter below has one writer
        self._incoming: deque[tuple[str, ...]] = deque()
        self._in_added = 0  # captions appended (caller only)
        self._in_taken = 0  # captions moved out (client thread only)
        self._in_drops = 0  # captions refused because the backlog was full (caller only)
        # client thread -> caller
        self._labels_out: deque[dict[str, Any]] = deque()
        self._prefs_out: deque[dict[str, Any]] = deque()
        # client thread's own state (under self._lock)
        self._outbox: deque[str] = deque()
        self._outbox_size = outbox_size
        self._pending: OrderedDict[str, tuple[str, float]] = OrderedDict()  # hash -> (text, last sent)
        self._known: OrderedDict[str, None] = OrderedDict()  # LRU of caption hashes, at most max_known
        self._retry_now = False  # set by reconnect_now(): end the backoff at the next loop
        self._inflight = 0  # captions in a POST now
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.cursor = 0
        self.prefs_cursor = 0
        self.connected = False
        self._ever_connected = False
        self._last_error = ""
        self.counters: dict[str, float] = dict.fromkeys(
            ["submitted", "new", "sent", "resent", "outbox_drops", "pending_evicted", "server_dropped",
             "server_duplicates", "rejected", "labels", "prefs", "reconnects", "errors", "polls", "known_evicted"], 0,
        )
        self.wait_s = 0.0  # caller time in calls that can block (see the module docstring)
        self.client_overhead_s = 0.0  # caller time inside submit/drain
        self._thread = threading.Thread(target=self._run, name="oni-client", daemon=True)
        if start:
            self._thread.start()

    # -- caller side: no lock, no I/O, no bookkeeping -----------------------------------
    def submit(self, captions: Iterable[str]) -> None:
        """Queue captions for labelling; returns immediately."""
        t0 = time.perf_counter()
        batch = tuple(captions)
        if batch:
            if self._in_added - self._in_taken + len(batch) > self.max_incoming:
                self._in_drops += len(batch)  # client thread starved: refuse, count, move on
            else:
                self._incoming.append(batch)
                self._in_added += len(batch)
                # a full batch is waiting and the client thread has not been told: wake it now rather than
                # at its next poll (Event.is_set is a plain read; set() is the path's only lock)
                if self._in_added - self._in_taken >= self.send_batch and not self._wake.is_set():
                    t1 = time.perf_counter()
                    self._wake.set()
                    self.wait_s += time.perf_counter() - t1
        self.client_overhead_s += time.perf_counter() - t0

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Labels (``{"text", "helpful"}``) and preferences (``{"a", "b", "a_wins"}``) received since the last drain."""
        t0 = time.perf_counter()
        labels, prefs = _take_all(self._labels_out), _take_all(self._prefs_out)
        self.client_overhead_s += time.perf_counter() - t0
        return labels, prefs

    def stats(self) -> dict[str, Any]:
        """Counters and sizes; lock-free reads of single values (may be a few captions out of step)."""
        return {
            **dict(self.counters),
            "incoming_drops": self._in_drops,
            "wait_s": self.wait_s,
            "client_overhead_s": self.client_overhead_s,
            "incoming": self._in_added - self._in_taken,
            "pending": len(self._pending),
            "known": len(self._known),
            "outbox": len(self._outbox),
            "connected": self.connected,
            "cursor": self.cursor,
        }

    # -- explicit waits (tests, notebooks, end of run; never the env loop) ------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted caption has been taken in and sent; True if so within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._in_taken >= self._in_added and not self._outbox and not self._inflight and self.connected:
                return True
            self._wake.set()
            time.sleep(0.02)
        return False

    def wait_for_labels(self, n: int, timeout: float = 30.0) -> bool:
        """Block until ``n`` labels have arrived in total (tests, notebooks); True on success."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.counters["labels"] >= n:
                return True
            self._wake.set()
            time.sleep(0.05)
        return False

    def reconnect_now(self, url: str | None = None) -> None:
        """Retry the server at once (its process was just restarted), at ``url`` if given; never blocks."""
        if url is not None:
            self.url = url.rstrip("/")  # one reference swap: the client thread reads it per request
        self._retry_now = True
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> AnnotatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- background thread -----------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        retry_at = 0.0
        with httpx.Client(timeout=self.timeout) as http:
            while not self._stop.is_set():
                self._wake.clear()  # before taking work: a wake-up set after this is kept
                self._ingest()
                if self._retry_now:
                    self._retry_now, retry_at, failures = False, 0.0, 0
                now = time.monotonic()
                if not self.connected and now < retry_at:  # backing off: keep taking captions in
                    self._wake.wait(min(self.poll_interval, retry_at - now))
                    continue
                try:
                    if not self.connected:
                        http.get(f"{self.url}/health").raise_for_status()
                        self._on_connect()
                    self._send(http)
                    self._poll(http)
                    failures = 0
                    self._wake.wait(self.poll_interval)
                except (httpx.TransportError, httpx.HTTPStatusError) as err:
                    self.connected = False
                    self.counters["errors"] += 1
                    failures += 1
                    self._last_error = f"{type(err).__name__}: {err}"
                    retry_at = time.monotonic() + min(self.backoff_max, 0.1 * 2 ** min(failures, 10))

    def _ingest(self) -> int:
        """Move the caller's raw batches into the client's structures (client thread); returns captions taken."""
        taken = 0
        while True:
            try:
                batch = self._incoming.popleft()
            except IndexError:
                break
            with self._lock:
                for raw in batch:
                    text = normalize_caption(raw)[: self.max_caption_chars]
                    if not text:
                        continue
                    self.counters["submitted"] += 1
                    key = caption_hash(text)
                    if key in self._known:
                        self._known.move_to_end(key)
                        continue
                    self._known[key] = None
                    if len(self._known) > self.max_known:
                        self._known.popitem(last=False)
                        self.counters["known_evicted"] += 1
                    self.counters["new"] += 1
                    self._pending[key] = (text, 0.0)
                    if len(self._pending) > self.max_pending:
                        self._pending.popitem(last=False)
                        self.counters["pending_evicted"] += 1
                    if len(self._outbox) >= self._outbox_size:
                        self.counters["outbox_drops"] += 1  # still pending: re-sent later
                    else:
                        self._outbox.append(text)
            taken += len(batch)
            self._in_taken += len(batch)
        return taken

    def _on_connect(self) -> None:
        """After a (re)connection, re-send every caption still waiting for its label."""
        with self._lock:
            if self._ever_connected:
                self.counters["reconnects"] += 1
                queued = set(map(caption_hash, self._outbox))
                resend = [text for key, (text, _) in self._pending.items() if key not in queued]
                self._outbox.extend(resend)
                self.counters["resent"] += len(resend)
            self._ever_connected = True
            self.connected = True

    def _take(self) -> list[str]:
        with self._lock:
            now = time.monotonic()
            if self.resend_after_s and not self._outbox:
                stale = [t for t, sent in self._pending.values() if sent and now - sent > self.resend_after_s]
                self._outbox.extend(stale[: self.send_batch])
                self.counters["resent"] += len(stale[: self.send_batch])
            n = min(self.send_batch, len(self._outbox))
            self._inflight = n  # before the outbox empties: flush() reads both without the lock
            batch = [self._outbox.popleft() for _ in range(n)]
            for text in batch:
                key = caption_hash(text)
                if key in self._pending:
                    self._pending[key] = (text, now)
        return batch

    def _send(self, http: httpx.Client) -> None:
        try:
            while True:
                self._ingest()
                batch = self._take()
                if not batch:
                    return
                try:
                    reply = http.post(f"{self.url}/captions", json={"captions": batch})
                except httpx.TransportError:
                    with self._lock:  # back to the front of the outbox, in order
                        self._outbox.extendleft(reversed(batch))
                    raise
                if 400 <= reply.status_code < 500:
                    self.counters["rejected"] += len(batch)  # our bug or limits: never retried
                    with self._lock:
                        for text in batch:
                            self._pending.pop(caption_hash(text), None)
                    continue
                reply.raise_for_status()  # 5xx: reconnect, then pending captions are re-sent
                body = reply.json()
                self.counters["sent"] += len(batch)
                self.counters["server_dropped"] += body.get("dropped", 0)
                self.counters["server_duplicates"] += body.get("duplicates", 0)
        finally:
            self._inflight = 0

    def _poll(self, http: httpx.Client) -> None:
        while True:
            reply = http.get(f"{self.url}/labels", params={"since": self.cursor, "prefs_since": self.prefs_cursor})
            reply.raise_for_status()
            body = reply.json()
            self.counters["polls"] += 1
            labels, prefs = body.get("labels", []), body.get("prefs", [])
            self._labels_out.extend(labels)  # data first: whoever sees `pending` drop can drain it
            self._prefs_out.extend(prefs)
            with self._lock:
                for item in labels:
                    self._pending.pop(caption_hash(item["text"]), None)
                self.cursor = int(body.get("cursor", self.cursor))
                self.prefs_cursor = int(body.get("prefs_cursor", self.prefs_cursor))
            self.counters["labels"] += len(labels)
            self.counters["prefs"] += len(prefs)
            if not labels and not prefs:
                return
