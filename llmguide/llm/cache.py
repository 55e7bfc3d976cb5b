"""Persistent LLM response cache: a LangChain ``BaseCache`` on one SQLite file.

Why our own: LangChain's SQLite cache lives in langchain-community (heavy, and
deprecated in parts); ours is ~100 lines, uses WAL so several processes (SB3
``SubprocVecEnv`` workers, the annotator server) share it safely, counts hits
and misses, and turns a damaged file into one clear error.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation

from llmguide.errors import LLMGuideError
from llmguide.sqlite import connect_shared, store_error

__all__ = ["ResponseCache", "default_cache_path", "CACHE_HIT_KEY"]

#: set in ``response_metadata`` of messages served from the cache
CACHE_HIT_KEY = "llmguide_cache_hit"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    prompt TEXT NOT NULL,
    llm TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (prompt, llm)
);
"""


def default_cache_path() -> Path:
    """``$LLMGUIDE_CACHE_DIR/responses.sqlite`` (default ``~/.cache/llmguide``)."""
    root = os.environ.get("LLMGUIDE_CACHE_DIR") or Path.home() / ".cache" / "llmguide"
    return Path(root) / "responses.sqlite"


def _encode(gen: Generation) -> dict[str, Any]:
    message = getattr(gen, "message", None)
    if message is None:
        return {"text": gen.text, "info": gen.generation_info}
    return {
        "content": message.content,
        "usage": message.usage_metadata,
        "meta": message.response_metadata,
        "info": gen.generation_info,
    }


def _decode(item: dict[str, Any]) -> Generation:
    """Rebuild a generation, marked as served from the cache (plain JSON: no code runs on load)."""
    if "content" not in item:
        return Generation(text=item["text"], generation_info=item.get("info"))
    message = AIMessage(
        content=item["content"],
        usage_metadata=item.get("usage"),
        response_metadata={**(item.get("meta") or {}), CACHE_HIT_KEY: True},
    )
    return ChatGeneration(message=message, generation_info=item.get("info"))


#: file states (path, inode, size, mtime) this process has already quick-checked
_CHECKED: set[tuple[str, int, int, int]] = set()
_CHECKED_LOCK = threading.Lock()


def _corrupt(path: Path, err: sqlite3.DatabaseError) -> LLMGuideError:
    return store_error(
        "LLM response cache", path, err,
        f"Delete it with `llmguide cache clear --path {path}` (or remove the file); "
        "it only holds cached answers and is rebuilt on the next run.",
    )


class ResponseCache(BaseCache):
    """SQLite-backed cache keyed on (serialized messages, model identity + params).

    >>> cache = ResponseCache(":memory:")
    >>> cache.lookup("p", "m") is None
    True
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    # -- connection -------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross a fork: reopen in each process.
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            conn = connect_shared(self.path, _SCHEMA)
        except sqlite3.DatabaseError as err:
            raise _corrupt(self.path, err) from err
        try:
            conn.execute("SELECT count(*) FROM responses").fetchone()
            self._check_once(conn)
        except sqlite3.DatabaseError as err:
            conn.close()
            raise _corrupt(self.path, err) from err
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _check_once(self, conn: sqlite3.Connection) -> None:
        """``PRAGMA quick_check`` the first time this process opens the file as it is now.

        A file with an intact header but damaged pages opens and counts fine;
        without this, new answers would be written into it until a lookup
        happens to read a bad page. Checking once per process and file state
        (a file changed on disk since is checked again) keeps it cheap.
        """
        if str(self.path) == ":memory:":
            return
        st = self.path.stat()
        key = (str(self.path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
        with _CHECKED_LOCK:
            if key in _CHECKED:
                return
        rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            # One line for the CLI: the first problem, and how many more.
            problems = [line for row in rows for line in row.splitlines() if line and not line.startswith("***")]
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise sqlite3.DatabaseError(f"integrity check failed: {problems[0] if problems else rows[0]}{more}")
        with _CHECKED_LOCK:
            _CHECKED.add(key)

    # -- BaseCache --------------------------------------------------------
    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        with self._lock:
            try:
                row = self._connect().execute(
                    "SELECT value FROM responses WHERE prompt=? AND llm=?", (prompt, llm_string)
                ).fetchone()
            except sqlite3.DatabaseError as err:
                raise _corrupt(self.path, err) from err
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return [_decode(item) for item in json.loads(row[0])]

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        value = json.dumps([_encode(gen) for gen in return_val])
        with self._lock:
            try:
                conn = self._connect()
                with conn:
                    conn.execute(
                        "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                        (prompt, llm_string, value, time.time()),
                    )
            except sqlite3.DatabaseError as err:
                raise _corrupt(self.path, err) from err

    def clear(self, **kwargs: Any) -> None:
        with self._lock:
            conn = self._connect()
            with conn:
                conn.execute("DELETE FROM responses")

    # -- extras -----------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Entries on disk, file size and this process's hit/miss counters.

        A missing file is reported (``exists: False``, no entries), not created:
        looking at a cache must not leave one behind.
        """
        exists = str(self.path) == ":memory:" or self.path.exists()
        entries = 0
        if exists:
            with self._lock:
                try:
                    entries = self._connect().execute("SELECT count(*) FROM responses").fetchone()[0]
                except sqlite3.DatabaseError as err:
                    raise _corrupt(self.path, err) from err
        size = self.path.stat().st_size if self.path.exists() else 0
        total = self.hits + self.misses
        return {
            "path": str(self.path),
            "exists": exists,
            "entries": entries,
            "bytes": size,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hits / total if total else 0.0,
        }

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __getstate__(self) -> dict[str, Any]:
        # Picklable for SubprocVecEnv: each process opens its own connection.
        state = self.__dict__.copy()
        state["_conn"], state["_pid"], state["_lock"] = None, -1, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def remove_cache_file(path: Path) -> list[Path]:
    """Delete a cache file and its WAL side files; returns what was removed."""
    removed = []
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()
            removed.append(p)
    return removed


