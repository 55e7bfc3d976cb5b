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
