"""Open a SQLite file that several processes share (WAL), safely at the same moment.

The response cache, the teacher cache and the ONI label store are each opened by
several processes at once (SubprocVecEnv workers, the annotator server). When two
of them open a *new* file together, switching it to WAL needs an exclusive lock
and SQLite answers "database is locked" at once instead of waiting on its busy
timeout. `connect_shared` retries that step, bounded, so the race is harmless.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

from llmguide.errors import CorruptStoreError, LLMGuideError, StoreLockedError

#: how long `connect_shared` keeps retrying a locked set-up before giving up
SETUP_TIMEOUT_S = 30.0


def _is_lock(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


def store_error(what: str, path: str | Path, err: sqlite3.DatabaseError, fix: str) -> LLMGuideError:
    """One readable error for a shared store that failed: still locked by another
    process after the wait (`StoreLockedError`), or damaged (`CorruptStoreError`, with `fix`)."""
    if isinstance(err, sqlite3.OperationalError) and _is_lock(err):
        return StoreLockedError(
            f"{what} {path} stayed locked by another process for over {SETUP_TIMEOUT_S:.0f} s ({err}). "
            "Wait for or stop the other run that holds it, or give this run its own file."
        )
    return CorruptStoreError(f"{what} {path} is unreadable ({err}). {fix}")


def connect_shared(path: str | Path, schema: str = "", timeout: float | None = None) -> sqlite3.Connection:
    """Connect to `path` in WAL mode and run `schema` (idempotent DDL), retrying lock races
    for `timeout` seconds (default `SETUP_TIMEOUT_S`).

    Other `sqlite3.DatabaseError`s (a corrupt or foreign file) are raised unchanged
    for the caller to turn into its own readable message (see `store_error`).
    """
    timeout = SETUP_TIMEOUT_S if timeout is None else timeout
    memory = str(path) == ":memory:"
    if not memory:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            if not memory:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if schema:
                conn.executescript(schema)
            conn.commit()
            return conn
        except sqlite3.OperationalError as err:
            conn.close()
            if not _is_lock(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)
        except BaseException:
            conn.close()
            raise
