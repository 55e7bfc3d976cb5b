"""Child-process shutdown shared by every component that starts one: exports `stop_process`.

Fine-tune workers, reward trainers, annotator servers and test servers all stop
the same way: ask (SIGTERM, or the caller's own stop message), give the child
`timeout` seconds, then SIGKILL, and always wait, so no zombie is left behind.
"""

from __future__ import annotations

import subprocess

__all__ = ["stop_process"]


def stop_process(proc: subprocess.Popen, timeout: float = 10.0, *, terminate: bool = True) -> int | None:
    """Stop ``proc`` and reap it; returns its exit code.

    ``terminate=False`` skips the SIGTERM, for a child already asked to exit
    another way (a stop message on its pipe): it still gets ``timeout``
    seconds, then SIGKILL.
    """
    if proc.poll() is None:
        if terminate:
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
