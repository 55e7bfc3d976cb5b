"""The learner-side annotator client: ``AnnotatorClient``.

Exports ``AnnotatorClient``.

The env loop calls ``submit(captions)`` and ``drain()``; both only touch
in-memory structures under a lock held for microseconds, so the learner never
waits for the network or the LLM (``stats()["wait_s"]`` measures the time the
caller spent inside them). A background thread does all I/O:

* sends new captions in batches from a bounded outbox (overflow is counted;
  the caption stays pending and is sent later);
* polls ``/labels`` since its cursor and hands labels and preferences to the
  caller through ``drain()``;
* when the server is unreachable, retries with exponential backoff, and after
  reconnecting re-sends every caption it submitted that has no label yet
  (the server deduplicates, so re-sending is safe);
* also re-sends pending captions older than ``resend_after_s`` (a server that
  dropped them under overload gets another chance).
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
        start: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.send_batch, self.poll_interval, self.timeout = send_batch, poll_interval, timeout
        self.backoff_max, self.max_pending, self.resend_after_s = backoff_max, max_pending, resend_after_s
        self.max_caption_chars = max_caption_chars
        self._outbox: deque[str] = deque()
        self._outbox_size = outbox_size
        self._pending: OrderedDict[str, tuple[str, float]] = OrderedDict()  # hash -> (text, last sent)
        self._known: set[str] = set()
        self._inbox_labels: list[dict[str, Any]] = []
        self._inbox_prefs: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.cursor = 0
        self.prefs_cursor = 0
        self.connected = False
        self._ever_connected = False
        self.counters: dict[str, float] = dict.fromkeys(
            ["submitted", "new", "sent", "resent", "outbox_drops", "pending_evicted", "server_dropped",
             "server_duplicates", "rejected", "labels", "prefs", "reconnects", "errors", "polls"], 0,
        )
        self.wait_s = 0.0
        self._thread = threading.Thread(target=self._run, name="oni-client", daemon=True)
        if start:
            self._thread.start()

    # -- caller side (never blocks) ------------------------------------------------
    def submit(self, captions: Iterable[str]) -> None:
        """Queue captions for labelling; returns immediately."""
        t0 = time.perf_counter()
        woke = False
        with self._lock:
            for raw in captions:
                text = normalize_caption(raw)[: self.max_caption_chars]
                if not text:
                    continue
                self.counters["submitted"] += 1
                key = caption_hash(text)
                if key in self._known:
                    continue
                self._known.add(key)
                self.counters["new"] += 1
                self._pending[key] = (text, 0.0)
                if len(self._pending) > self.max_pending:
                    self._pending.popitem(last=False)
                    self.counters["pending_evicted"] += 1
                if len(self._outbox) >= self._outbox_size:
                    self.counters["outbox_drops"] += 1  # still pending: re-sent later
                else:
                    self._outbox.append(text)
                    woke = True
        if woke and len(self._outbox) >= self.send_batch:
            self._wake.set()
        self.wait_s += time.perf_counter() - t0

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Labels (``{"text", "helpful"}``) and preferences (``{"a", "b", "a_wins"}``) received since the last drain."""
        t0 = time.perf_counter()
        with self._lock:
            labels, self._inbox_labels = self._inbox_labels, []
            prefs, self._inbox_prefs = self._inbox_prefs, []
        self.wait_s += time.perf_counter() - t0
        return labels, prefs

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.counters,
                "wait_s": self.wait_s,
                "pending": len(self._pending),
                "outbox": len(self._outbox),
                "connected": self.connected,
                "cursor": self.cursor,
            }

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (off the hot path: tests, end of run) until the outbox is sent; True if it emptied."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            if not self._outbox and self.connected:
                return True
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
        with httpx.Client(timeout=self.timeout) as http:
            while not self._stop.is_set():
                try:
                    if not self.connected:
                        http.get(f"{self.url}/health").raise_for_status()
                        self._on_connect()
                    self._send(http)
                    self._poll(http)
                    failures = 0
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
                except (httpx.TransportError, httpx.HTTPStatusError) as err:
                    if self.connected:
                        self.connected = False
                    self.counters["errors"] += 1
                    failures += 1
                    self._last_error = f"{type(err).__name__}: {err}"
                    self._stop.wait(min(self.backoff_max, 0.1 * 2 ** min(failures, 10)))

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
            batch = [self._outbox.popleft() for _ in range(min(self.send_batch, len(self._outbox)))]
            for text in batch:
                key = caption_hash(text)
                if key in self._pending:
                    self._pending[key] = (text, now)
        return batch

    def _send(self, http: httpx.Client) -> None:
        while True:
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
            reply.raise_for_status()
            body = reply.json()
            self.counters["sent"] += len(batch)
            self.counters["server_dropped"] += body.get("dropped", 0)
            self.counters["server_duplicates"] += body.get("duplicates", 0)

    def _poll(self, http: httpx.Client) -> None:
        while True:
            reply = http.get(f"{self.url}/labels", params={"since": self.cursor, "prefs_since": self.prefs_cursor})
            reply.raise_for_status()
            body = reply.json()
            self.counters["polls"] += 1
            labels, prefs = body.get("labels", []), body.get("prefs", [])
            with self._lock:
                for item in labels:
                    self._pending.pop(caption_hash(item["text"]), None)
                self._inbox_labels.extend(labels)
                self._inbox_prefs.extend(prefs)
                self.cursor = int(body.get("cursor", self.cursor))
                self.prefs_cursor = int(body.get("prefs_cursor", self.prefs_cursor))
                self.counters["labels"] += len(labels)
                self.counters["prefs"] += len(prefs)
            if not labels and not prefs:
                return
