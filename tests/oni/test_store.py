"""The SQLite label store: dedup, cursors, persistence, a clear error on a damaged file."""

from __future__ import annotations

import pytest
from llmguide.teachers.oni.store import LabelStore, caption_hash

from llmguide.errors import CorruptStoreError


def test_seen_dedup_and_normalisation(tmp_path) -> None:
    store = LabelStore(tmp_path / "l.sqlite")
    assert store.add_seen(["You kill the newt!", "It's a wall."]) == ["You kill the newt!", "It's a wall."]
    assert store.add_seen(["You  kill the   newt!", "New one."]) == ["New one."]
    assert caption_hash("a  b") == caption_hash(" a b ")
    assert store.counts()["seen"] == 3 and store.counts()["pending"] == 3


def test_labels_since_cursor_never_repeats_or_misses(tmp_path) -> None:
    store = LabelStore(tmp_path / "l.sqlite")
    store.add_seen([f"m{i}" for i in range(5)])
    store.add_labels([("m0", True), ("m1", False)])
    first = store.labels_since(0)
    assert [x["text"] for x in first["labels"]] == ["m0", "m1"] and first["cursor"] == 2
    store.add_labels([("m2", True), ("m0", False)])  # m0 relabel ignored: labels are immutable
    second = store.labels_since(first["cursor"])
    assert [x["text"] for x in second["labels"]] == ["m2"]
    assert store.labels_since(second["cursor"])["labels"] == []
    store.add_prefs([("m0", "m1", True)])
    assert store.labels_since(0, prefs_cursor=0)["prefs"][0] == {"id": 1, "a": "m0", "b": "m1", "a_wins": True}
    assert store.pending(10) == ["m3", "m4"]


def test_persists_across_reopen_and_skips(tmp_path) -> None:
    path = tmp_path / "l.sqlite"
    store = LabelStore(path)
    store.add_seen(["a", "b", "c"])
    store.add_labels([("a", True)])
    store.mark_skipped(["b"])
    store.close()
    again = LabelStore(path)
    assert again.counts() == {"seen": 3, "pending": 1, "labeled": 1, "skipped": 1, "labels": 1, "helpful": 1, "prefs": 0}
    assert again.pending(10) == ["c"]
    assert caption_hash("a") in again.all_hashes()


def test_corrupt_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorruptStoreError, match="ONI label store .* is unreadable.*delete the file"):
        LabelStore(path)



def test_a_second_opener_of_a_fresh_store_racing_ours_does_not_fail(tmp_path, monkeypatch) -> None:
    """The annotator and a reader may open a new store together: the other one writes the version
    row between this one's look and its write (forced here). A plain INSERT then failed with a
    UNIQUE error, reported as a damaged store, and the annotator exited at start."""
    from llmguide.teachers.oni import store as store_module

    db = tmp_path / "labels.sqlite"
    real_connect = store_module.connect_shared
    raced: list[str] = []

    class RacedConnection:
        """A whole second ``LabelStore(db)`` runs after this one's first look at ``meta``
        (or before its first write)."""

        def __init__(self, conn):
            self._conn = conn

        def __getattr__(self, name):
            return getattr(self._conn, name)

        def __enter__(self):
            return self._conn.__enter__()

        def __exit__(self, *exc):
            return self._conn.__exit__(*exc)

        def execute(self, sql, *args):
            if "meta" not in sql or raced:
                return self._conn.execute(sql, *args)
            raced.append(sql)
            looked = self._conn.execute(sql, *args) if sql.lstrip().upper().startswith("SELECT") else None
            monkeypatch.setattr(store_module, "connect_shared", real_connect)
            LabelStore(db)  # the other opener, start to end: after this one's look, before its write
            return looked if looked is not None else self._conn.execute(sql, *args)

    monkeypatch.setattr(store_module, "connect_shared", lambda *a, **k: RacedConnection(real_connect(*a, **k)))
    store = LabelStore(db)
    assert raced, "the race was not forced"
    store.add_labels([("You see here a gold piece.", True)])
    assert store.counts()["labels"] == 1
