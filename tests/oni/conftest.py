"""Fixtures of the ONI tests (threads and processes that make conditions true later)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def _wait_until(pred: Callable[[], object], timeout: float = 20.0, interval: float = 0.02) -> bool:
    """Poll `pred` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """`wait_until(pred, timeout=20.0)`: poll a condition another thread or process makes true."""
    return _wait_until
