"""Ctrl-C at a safe point: exports `interrupt_after`.

A run must be able to stop on Ctrl-C and leave what a resume needs; some
blocks must not be cut in half (writing an episode record and the state that
counts it; a call into ScienceWorld's JVM, which py4j turns into an
AttributeError when interrupted).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["interrupt_after"]


@contextmanager
def interrupt_after() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block has finished, then raise it as usual.

    Only the main thread receives signals; elsewhere the block runs unguarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
