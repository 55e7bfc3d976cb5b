"""The annotator's persistent label store: one SQLite file in WAL mode.

Exports ``LabelStore``, ``caption_hash`` and ``normalize_caption``.

Why SQLite: labels must outlive the annotator process (a crash or restart
loses nothing that was committed), many readers may poll while one worker
writes (WAL), and the file is a plain artefact of the run. Captions are keyed
by a hash of their normalised text, so "seen" is a primary-key lookup.

Status of a caption: 0 = seen, waiting for a label; 1 = labelled;
2 = skipped (the LLM gave no valid answer after retries). On restart the
server re-queues every status-0 caption.

Cursors are row ids: ``labels_since(c)`` returns labels with ``id > c`` and
the last id as the next cursor, so a client that polls with the cursor it was
given never misses or repeats a label.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from llmguide.errors import CorruptStoreError, LLMGuideError
from llmguide.sqlite import connect_shared, store_error

__all__ = ["LABELED", "PENDING", "SKIPPED", "LabelStore", "caption_hash", "normalize_caption"]

PENDING, LABELED, SKIPPED = 0, 1, 2
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS captions (
    hash TEXT PRIMARY KEY, text TEXT NOT NULL, status INTEGER NOT NULL DEFAULT 0, seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS captions_status ON captions(status);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL UNIQUE, text TEXT NOT NULL,
    helpful INTEGER NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS prefs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, a_text TEXT NOT NULL, b_text TEXT NOT NULL,
    a_wins INTEGER NOT NULL, created REAL NOT NULL
);
"""


#: a caption's final status (labelled / skipped), recorded even if `add_seen` has not run yet
_SET_STATUS = (
    "INSERT INTO captions(hash, text, status, seen_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(hash) DO UPDATE SET status=excluded.status"
)


def normalize_caption(text: str) -> str:
    """Collapse whitespace so trivially different renderings of a message share a hash."""
    return " ".join(str(text).split())


def caption_hash(text: str) -> str:
    """Stable key of a caption (SHA-1 of its normalised UTF-8 text, 20 hex chars)."""
    return hashlib.sha1(normalize_caption(text).encode("utf-8")).hexdigest()[:20]


def _corrupt(path: Path, err: sqlite3.DatabaseError) -> LLMGuideError:
    return store_error(
        "ONI label store", path, err,
        "Move or delete the file to start a fresh store "
        "(labels in it are lost; the annotator relabels captions as they arrive).",
    )


class LabelStore:
    """Thread-safe SQLite store of seen captions, labels and pairwise preferences.

    >>> store = LabelStore(":memory:")
    >>> store.add_seen(["You see here a gold piece."])
    ['You see here a gold piece.']
    >>> store.add_labels([("You see here a gold piece.", True)])
    1
    >>> store.labels_since(0)["labels"][0]["helpful"]
    True
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path) if str(path) != ":memory:" else Path(":memory:")
        self._lock = threading.Lock()
        try:
            self._conn = connect_shared(self.path, _SCHEMA)
            # OR IGNORE: two processes opening a fresh store at once (the annotator and a reader) both
            # find no version row; a plain INSERT then failed in the second with a UNIQUE error.
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._conn.commit()
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if int(row[0]) > SCHEMA_VERSION:
                raise CorruptStoreError(
                    f"ONI label store {self.path} has schema version {row[0]}, newer than this llmguide "
                    f"({SCHEMA_VERSION}). Upgrade llmguide or use another --db path."
                )
        except sqlite3.DatabaseError as err:
            raise _corrupt(self.path, err) from None

    # -- writes ------------------------------------------------------------
    def add_seen(self, captions: Iterable[str]) -> list[str]:
        """Record captions as seen; return the (normalised) ones that were new."""
        now = time.time()
        new: list[str] = []
        with self._lock, self._conn:
            for text in captions:
                text = normalize_caption(text)
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO captions(hash, text, status, seen_at) VALUES (?, ?, 0, ?)",
                    (caption_hash(text), text, now),
                )
                if cur.rowcount:
                    new.append(text)
        return new

    def add_labels(self, labelled: Iterable[tuple[str, bool]]) -> int:
        """Store (caption, helpful) labels and mark the captions labelled; returns how many were new."""
        now = time.time()
        added = 0
        with self._lock, self._conn:
            for text, helpful in labelled:
                text = normalize_caption(text)
                key = caption_hash(text)
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO labels(hash, text, helpful, created) VALUES (?, ?, ?, ?)",
                    (key, text, int(bool(helpful)), now),
                )
                added += cur.rowcount
                self._conn.execute(_SET_STATUS, (key, text, LABELED, now))
        return added

    def add_prefs(self, prefs: Iterable[tuple[str, str, bool]]) -> int:
        """Store pairwise preferences (a, b, a_wins)."""
        rows = [(normalize_caption(a), normalize_caption(b), int(bool(w)), time.time()) for a, b, w in prefs]
        with self._lock, self._conn:
            self._conn.executemany("INSERT INTO prefs(a_text, b_text, a_wins, created) VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def mark_skipped(self, captions: Iterable[str]) -> None:
        """Captions the LLM could not label: kept as seen, never re-queued."""
        now = time.time()
        rows = [(caption_hash(t), normalize_caption(t), SKIPPED, now) for t in captions]
        with self._lock, self._conn:  # an upsert: the worker may get here before submit's add_seen
            self._conn.executemany(_SET_STATUS, rows)

    # -- reads -------------------------------------------------------------
    def pending(self, limit: int, exclude: set[str] | None = None) -> list[str]:
        """Seen-but-unlabelled captions, oldest first (what a restart must re-queue)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT hash, text FROM captions WHERE status=0 ORDER BY seen_at LIMIT ?",
                (limit + len(exclude or ()),),
            ).fetchall()
        return [text for key, text in rows if not exclude or key not in exclude][:limit]

    def labels_since(self, cursor: int = 0, limit: int = 1000, prefs_cursor: int = 0) -> dict:
        """Labels with id > cursor (and preferences with id > prefs_cursor), plus the next cursors."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, text, helpful FROM labels WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit)
            ).fetchall()
            prefs = self._conn.execute(
                "SELECT id, a_text, b_text, a_wins FROM prefs WHERE id > ? ORDER BY id LIMIT ?",
                (prefs_cursor, limit),
            ).fetchall()
        return {
            "labels": [{"id": i, "text": t, "helpful": bool(h)} for i, t, h in rows],
            "cursor": rows[-1][0] if rows else cursor,
            "prefs": [{"id": i, "a": a, "b": b, "a_wins": bool(w)} for i, a, b, w in prefs],
            "prefs_cursor": prefs[-1][0] if prefs else prefs_cursor,
        }

    def all_hashes(self) -> set[str]:
        """Hashes of every caption ever seen (the server's dedup set after a restart)."""
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT hash FROM captions")}

    def is_seen(self, text: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM captions WHERE hash=?", (caption_hash(text),)).fetchone()
        return row is not None

    def counts(self) -> dict[str, int]:
        """Captions by status, labels (helpful / total) and preferences."""
        with self._lock:
            by_status = dict(self._conn.execute("SELECT status, COUNT(*) FROM captions GROUP BY status").fetchall())
            labels, helpful = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(helpful), 0) FROM labels").fetchone()
            prefs = self._conn.execute("SELECT COUNT(*) FROM prefs").fetchone()[0]
        return {
            "seen": sum(by_status.values()),
            "pending": by_status.get(PENDING, 0),
            "labeled": by_status.get(LABELED, 0),
            "skipped": by_status.get(SKIPPED, 0),
            "labels": labels,
            "helpful": int(helpful),
            "prefs": prefs,
        }

    def close(self) -> None:
        with self._lock:
            self._conn.close()
