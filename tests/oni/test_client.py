"""The learner-side client: the caller's path takes no lock of the client thread; dedup, bounds, labels, wake-up."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlparse

import pytest
from llmguide.teachers.oni.client import AnnotatorClient
from llmguide.net import free_port


class FakeAnnotator:
    """A tiny stdlib HTTP server speaking the annotator's protocol: every new caption gets a label at once."""

    def __init__(self) -> None:
        self.received: list[str] = []  # every caption POSTed, duplicates included
        self.labels: list[dict] = []
        self.fail_posts = 0  # answer the next N POST /captions with 503
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/health":
                    return self._json(200, {"status": "ok"})
                if url.path == "/labels":
                    since = int(parse_qs(url.query).get("since", ["0"])[0])
                    new = owner.labels[since:]
                    return self._json(200, {"labels": new, "cursor": since + len(new), "prefs": [], "prefs_cursor": 0})
                return self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if owner.fail_posts:
                    owner.fail_posts -= 1
                    return self._json(503, {"error": "busy"})
                caps = body["captions"]
                owner.received.extend(caps)
                known = {x["text"] for x in owner.labels}
                fresh = [c for c in dict.fromkeys(caps) if c not in known]
                owner.labels.extend({"text": c, "helpful": "kill" in c} for c in fresh)
                return self._json(200, {"accepted": len(fresh), "duplicates": len(caps) - len(fresh), "dropped": 0})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _with_client_lock_held(client: AnnotatorClient, calls, guard_s: float = 3.0) -> bool:
    """Hold the client thread's lock on this thread and run ``calls`` here; True if they all returned.

    ``threading.Lock`` is not re-entrant: a call that tried to take it would hang forever on this thread.
    A watchdog thread releases the lock after ``guard_s`` (a plain Lock may be released by any thread),
    so a regression fails the test instead of hanging it.
    """
    done, rescued = threading.Event(), threading.Event()

    def watchdog() -> None:
        if not done.wait(guard_s):
            rescued.set()
            client._lock.release()

    client._lock.acquire()
    guard = threading.Thread(target=watchdog, daemon=True)
    guard.start()
    try:
        calls()
    finally:
        done.set()
        guard.join()
        if not rescued.is_set():
            client._lock.release()
    return not rescued.is_set()


@pytest.mark.parametrize("start", [True, False], ids=["client-thread-running", "no-client-thread"])
def test_caller_path_never_takes_the_client_lock(start: bool, wait_until) -> None:
    # running: the server is down, so the client thread backs off and keeps taking captions in
    client = AnnotatorClient(f"http://127.0.0.1:{free_port()}", backoff_max=0.2, send_batch=8, start=start)
    got: dict = {}

    def calls() -> None:
        t0 = time.perf_counter()
        for i in range(500):
            client.submit([f"It's wall {i % 50}.", "You kill the newt!"])
            got.setdefault("drained", []).append(client.drain())
        got["stats"] = client.stats()
        got["elapsed"] = time.perf_counter() - t0

    try:
        assert _with_client_lock_held(client, calls), "submit/drain/stats waited for the client thread's lock"
        assert got["elapsed"] < 1.0
        assert got["stats"]["wait_s"] < 0.05 and got["stats"]["client_overhead_s"] <= got["elapsed"]
        assert all(d == ([], []) for d in got["drained"])
        if start:  # once the lock is free, the client thread takes everything in and deduplicates
            assert wait_until(lambda: client.stats()["incoming"] == 0, 5), client.stats()
            stats = client.stats()
            assert stats["submitted"] == 1000 and stats["new"] == 51 and stats["pending"] == 51
    finally:
        client.close()


def test_labels_arrive_dedup_and_flush_consumes_incoming() -> None:
    with FakeAnnotator() as server, AnnotatorClient(server.url, poll_interval=0.05, send_batch=16) as client:
        caps = ["You kill the newt!", "  You kill   the newt! ", "It's a wall.", "", "It's a wall."]
        for _ in range(20):
            client.submit(caps)
        assert client.flush(10)  # waits for the incoming deque too: every caption was taken in and sent
        assert client.stats()["incoming"] == 0
        assert sorted(server.received) == ["It's a wall.", "You kill the newt!"]  # sent once each, normalised
        assert client.wait_for_labels(2, timeout=10)
        labels, prefs = client.drain()
        assert {x["text"]: x["helpful"] for x in labels} == {"You kill the newt!": True, "It's a wall.": False}
        assert prefs == [] and client.drain() == ([], [])
        stats = client.stats()
        assert stats["submitted"] == 80 and stats["new"] == 2 and stats["pending"] == 0 and stats["labels"] == 2
        assert stats["wait_s"] < 0.05 and stats["connected"]


def test_client_thread_wakes_when_a_batch_is_ready(wait_until) -> None:
    with FakeAnnotator() as server, AnnotatorClient(server.url, poll_interval=10.0, send_batch=4) as client:
        assert wait_until(lambda: client.stats()["polls"] >= 1, 5)  # connected, now idle for poll_interval
        time.sleep(0.1)
        t0 = time.monotonic()
        client.submit([f"You see here {i} gold pieces." for i in range(4)])  # = send_batch: wakes it
        assert wait_until(lambda: len(server.received) == 4, 3)
        assert time.monotonic() - t0 < 3.0 < client.poll_interval


def test_server_error_keeps_captions_pending_and_resends(wait_until) -> None:
    with FakeAnnotator() as server, AnnotatorClient(server.url, poll_interval=0.05, backoff_max=0.2) as client:
        assert wait_until(lambda: client.stats()["connected"], 5)
        server.fail_posts = 1
        client.submit(["You kill the newt!", "It's a wall."])
        assert wait_until(lambda: client.stats()["labels"] == 2, 10), client.stats()
        stats = client.stats()
        assert stats["errors"] >= 1 and stats["reconnects"] >= 1 and stats["resent"] >= 2 and stats["pending"] == 0
        assert sorted(x["text"] for x in client.drain()[0]) == ["It's a wall.", "You kill the newt!"]


def test_incoming_backlog_is_bounded_and_counted() -> None:
    client = AnnotatorClient(f"http://127.0.0.1:{free_port()}", max_incoming=10, start=False)
    for i in range(5):
        client.submit([f"m{i}-{j}" for j in range(5)])
    stats = client.stats()
    assert stats["incoming"] == 10 and stats["incoming_drops"] == 15  # refused and counted, not silently dropped
    assert client._ingest() == 10 and client.stats()["incoming"] == 0
    client.submit(["again"])  # room again once the client thread took the backlog
    assert client.stats()["incoming"] == 1 and client.stats()["incoming_drops"] == 15


def test_pending_is_bounded() -> None:
    client = AnnotatorClient(f"http://127.0.0.1:{free_port()}", max_pending=5, start=False)
    client.submit([f"m{i}" for i in range(8)])
    client._ingest()
    stats = client.stats()
    assert stats["pending"] == 5 and stats["pending_evicted"] == 3 and stats["new"] == 8


@pytest.mark.parametrize("bad", [[""], ["   "], []])
def test_empty_captions_are_ignored(bad) -> None:
    client = AnnotatorClient(f"http://127.0.0.1:{free_port()}", start=False)
    client.submit(bad)
    client._ingest()
    assert client.stats()["submitted"] == 0 and client.stats()["pending"] == 0


def test_wait_is_measured_and_zero_without_a_wake_up() -> None:
    client = AnnotatorClient(f"http://127.0.0.1:{free_port()}", send_batch=50, start=False)
    client.submit([f"m{i}" for i in range(49)])  # below a batch: the client thread's own poll will take it
    assert client.stats()["wait_s"] == 0.0 and not client._wake.is_set()
    assert client.stats()["client_overhead_s"] > 0.0
    client.submit(["one more"])  # a full batch waits: the caller wakes the client thread (its only lock)
    assert client._wake.is_set() and client.stats()["wait_s"] > 0.0


def test_known_caption_set_is_bounded_lru() -> None:
    client = AnnotatorClient(f"http://127.0.0.1:{free_port()}", max_known=3, start=False)
    client.submit(["a", "b", "c", "a", "d"])  # "a" seen again before "d": "b" is the least recently seen
    client._ingest()
    stats = client.stats()
    assert stats["known"] == 3 and stats["known_evicted"] == 1 and stats["new"] == 4
    client.submit(["a", "b"])  # "a" is still known; "b" was forgotten: new again (the server dedups it)
    client._ingest()
    stats = client.stats()
    assert stats["new"] == 5 and stats["known"] == 3 and stats["known_evicted"] == 2
    with pytest.raises(ValueError, match="max_known must be >= 1"):
        AnnotatorClient("http://127.0.0.1:1", max_known=0, start=False)


def test_reconnect_now_ends_the_backoff_and_moves_to_a_new_url(wait_until) -> None:
    client = AnnotatorClient(f"http://127.0.0.1:{free_port()}", backoff_max=60.0, poll_interval=0.05)
    try:
        client.submit(["You kill the newt!"])
        assert wait_until(lambda: client.stats()["errors"] >= 5, 10)  # the next retry is 0.1 * 2**5 = 3.2 s away
        with FakeAnnotator() as server:
            client.reconnect_now(server.url + "/")
            assert wait_until(lambda: client.stats()["labels"] == 1, 1.5), client.stats()  # well before that retry
            assert client.url == server.url and server.received == ["You kill the newt!"]
    finally:
        client.close()
