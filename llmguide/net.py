"""Loopback networking helpers shared by the processes a run starts: exports `free_port`, `wait_for_http`.

Why a module of its own: `llmguide serve` (the LLM server), the ONI
annotator process and the tests and benchmarks that start either need the
same two things — a free port to bind and a way to wait until the child
answers — and none of them should import another one's module to get them.
"""

from __future__ import annotations

import socket
import time
from typing import Protocol

import httpx

__all__ = ["free_port", "wait_for_http"]


class _Process(Protocol):
    """What `wait_for_http` needs of a child process (`subprocess.Popen` has it)."""

    def poll(self) -> int | None: ...


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for servers started by runs and tests)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, proc: _Process, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``url`` until it answers 200 (True); False when ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    return False
