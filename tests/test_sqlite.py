"""Shared SQLite stores: several processes opening one new file at once must all succeed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llmguide.sqlite import connect_shared

_OPEN_AND_WRITE = """
import os, sys
from llmguide.sqlite import connect_shared
conn = connect_shared(sys.argv[1], "CREATE TABLE IF NOT EXISTS t (pid INTEGER PRIMARY KEY);")
conn.execute("INSERT INTO t VALUES (?)", (os.getpid(),))
conn.commit()
"""


def test_eight_processes_open_a_new_file_together(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "store.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AND_WRITE, str(path)], stderr=subprocess.PIPE) for _ in range(8)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    conn = connect_shared(path)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 8
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_foreign_file_is_not_retried(tmp_path: Path) -> None:
    path = tmp_path / "not_a_db.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        connect_shared(path, "CREATE TABLE IF NOT EXISTS t (x);", timeout=1.0)


def test_memory_database_works() -> None:
    conn = connect_shared(":memory:", "CREATE TABLE t (x);")
    conn.execute("INSERT INTO t VALUES (1)")
    assert conn.execute("SELECT x FROM t").fetchone() == (1,)


def _stores(path: Path) -> dict[str, object]:
    from llmguide.llm.cache import ResponseCache
    from llmguide.teachers.base import TeacherCache
    from llmguide.teachers.oni.store import LabelStore

    return {
        "LLM response cache": lambda: ResponseCache(path).lookup("prompt", "model"),
        "Teacher cache": lambda: TeacherCache(path).get("key"),
        "ONI label store": lambda: LabelStore(path).counts(),
    }


@pytest.mark.parametrize("name", ["LLM response cache", "Teacher cache", "ONI label store"])
def test_a_store_locked_by_another_process_says_so(tmp_path: Path, monkeypatch, name: str) -> None:
    import llmguide.sqlite
    from llmguide.errors import StoreLockedError

    monkeypatch.setattr(llmguide.sqlite, "SETUP_TIMEOUT_S", 0.3)
    path = tmp_path / "held.sqlite"
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")  # another run in the middle of a write, for longer than we wait
    try:
        with pytest.raises(StoreLockedError, match=f"{name} .* locked by another process.*its own file"):
            _stores(path)[name]()
    finally:
        holder.rollback()
        holder.close()
    _stores(path)[name]()  # lock released: the same store opens fine


@pytest.mark.parametrize("name", ["LLM response cache", "Teacher cache", "ONI label store"])
def test_a_damaged_store_file_says_what_to_delete(tmp_path: Path, name: str) -> None:
    from llmguide.errors import CorruptStoreError

    path = tmp_path / "damaged.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptStoreError, match=f"{name} .* is unreadable"):
        _stores(path)[name]()
