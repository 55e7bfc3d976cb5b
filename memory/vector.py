"""The persistent experience memory: exports `Experience`, `ExperienceMemory`, `SCHEMA_VERSION`.

DiLu's memory (and later methods') as a LangChain vector store: each record
is a scene description (the embedded text) with the decision taken in it,
the reasoning behind it, its outcome and where it came from
(``reasoning``: a decision of a safe episode; ``reflection``: a decision
corrected after a crash). The default store is Chroma persisted in a
directory, with the offline all-MiniLM-L6-v2 embeddings; both are swappable
(`embeddings=` any LangChain `Embeddings`; `memory.store` is the LangChain
`VectorStore`, e.g. for `memory.store.as_retriever()`).

On disk a memory directory holds Chroma's files plus ``llmguide-memory.json``
(schema version, collection, embedding name). A directory written by a newer
schema, one that is damaged, or one that is not a memory at all raises
`CorruptStoreError` with the fix. Records are added one batch (one episode)
per upsert, so an interrupted run loses at most the episode in progress.

Server mode (``url="http://host:port"``): the memory is a collection on a
Chroma server (``chroma run --path DIR --port N``) that learners on several
nodes read and write at once; the schema record lives in the collection's
metadata instead of a file. Records keep content ids, so two nodes storing
the same experience store it once. Embeddings are computed on each client,
so every client must use the same embeddings (checked against the record).

Example:
    >>> mem = ExperienceMemory("runs/mem")                      # doctest: +SKIP
    >>> mem.add([Experience("You drive in the second lane ...", "IDLE", "keep distance")])  # doctest: +SKIP
    1
    >>> mem.search("You drive in the second lane ...", k=1)[0].decision  # doctest: +SKIP
    'IDLE'
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.embeddings import Embeddings

from llmguide.errors import ConfigError, CorruptStoreError

__all__ = ["SCHEMA_FILE", "SCHEMA_VERSION", "Experience", "ExperienceMemory", "Source"]

#: Bump when the record layout changes; older readers refuse newer directories.
SCHEMA_VERSION = 1
SCHEMA_FILE = "llmguide-memory.json"
_KIND = "llmguide.experience_memory"
_SQLITE = "chroma.sqlite3"
_SQLITE_MAGIC = b"SQLite format 3\x00"
Source = Literal["reasoning", "reflection"]
_SOURCES = ("reasoning", "reflection")


@dataclass
class Experience:
    """One remembered decision. ``scene`` is what gets embedded and retrieved by similarity."""

    scene: str
    decision: str
    reasoning: str = ""
    outcome: str = ""
    source: str = "reasoning"
    episode: str = ""
    step: int = -1
    created: float = field(default_factory=time.time)
    seq: int = -1  # insertion order, set by the memory
    score: float | None = None  # similarity to the query, set by search()

    def __post_init__(self) -> None:
        if not isinstance(self.scene, str) or not self.scene.strip():
            raise ConfigError("An experience needs a non-empty scene text.")
        if not isinstance(self.decision, str) or not self.decision.strip():
            raise ConfigError("An experience needs a non-empty decision.")
        if self.source not in _SOURCES:
            raise ConfigError(f"Experience source must be one of {_SOURCES}, got {self.source!r}.")

    @property
    def key(self) -> str:
        """Content id: the same scene with the same decision is stored once."""
        return hashlib.sha1(f"{self.scene}\x1f{self.decision}".encode()).hexdigest()[:20]

    def metadata(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reasoning": self.reasoning,
            "outcome": self.outcome,
            "source": self.source,
            "episode": self.episode,
            "step": int(self.step),
            "created": float(self.created),
            "seq": int(self.seq),
        }

    @classmethod
    def from_stored(cls, scene: str, meta: dict[str, Any], score: float | None = None) -> Experience:
        return cls(
            scene=scene,
            decision=str(meta.get("decision", "")),
            reasoning=str(meta.get("reasoning", "")),
            outcome=str(meta.get("outcome", "")),
            source=str(meta.get("source", "reasoning")),
            episode=str(meta.get("episode", "")),
            step=int(meta.get("step", -1)),
            created=float(meta.get("created", 0.0)),
            seq=int(meta.get("seq", -1)),
            score=score,
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("score")
        return data


def _embedding_name(embeddings: Embeddings) -> str:
    return str(getattr(embeddings, "name", type(embeddings).__name__))


def _check_dir(path: Path) -> dict[str, Any] | None:
    """Validate an existing directory; return its schema record (None for a new/empty dir)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"Memory path {path} is a file; give a directory (it is created if missing).")
    if not path.exists() or not any(path.iterdir()):
        return None
    schema_path = path / SCHEMA_FILE
    sqlite = path / _SQLITE
    if not schema_path.is_file():
        if sqlite.exists():
            raise CorruptStoreError(
                f"{path} holds Chroma data but no {SCHEMA_FILE}: it was not written by llmguide or is damaged. "
                f"Use another directory, or delete this one (`llmguide memory clear` cannot vouch for it)."
            )
        raise CorruptStoreError(f"{path} is not an llmguide memory directory (no {SCHEMA_FILE}); use an empty or new directory.")
    try:
        record = json.loads(schema_path.read_text())
        version = int(record["schema_version"])
        if record.get("kind") != _KIND:
            raise ValueError(f"kind {record.get('kind')!r}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CorruptStoreError(
            f"The memory schema file {schema_path} is damaged ({err}); restore it from a JSONL export "
            f"(`llmguide memory import`) into a new directory."
        ) from None
    if version > SCHEMA_VERSION:
        raise CorruptStoreError(
            f"The memory at {path} was written by a newer llmguide (schema {version}, this one reads up to "
            f"{SCHEMA_VERSION}); upgrade llmguide, or export it there and import it here."
        )
    if not sqlite.is_file():
        raise CorruptStoreError(f"The memory at {path} is damaged: {_SQLITE} is missing; restore it from a JSONL export.")
    with sqlite.open("rb") as fh:
        if fh.read(16) != _SQLITE_MAGIC:
            raise CorruptStoreError(
                f"The memory at {path} is damaged: {_SQLITE} is not an SQLite database; restore it from a JSONL export."
            )
    return record


class ExperienceMemory:
    """A persistent, deduplicated vector memory of experiences (Chroma + local embeddings).

    ``path`` None keeps the memory in this process only; ``url`` (instead of a
    path) opens it on a Chroma server shared by many processes and nodes. ``near_duplicate``:
    an experience whose scene is at least this cosine-similar to a stored one
    with the same decision is not stored again (None = exact duplicates only).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        url: str | None = None,
        embeddings: Embeddings | None = None,
        collection: str = "experiences",
        near_duplicate: float | None = 0.995,
    ) -> None:
        if path is not None and url is not None:
            raise ConfigError(f"Give a memory directory or a Chroma server URL, not both (path={path}, url={url}).")
        self.path = Path(path).expanduser() if path is not None else None
        self.url = _server_url(url) if url is not None else None
        self.collection = collection
        self.near_duplicate = near_duplicate
        record = _check_dir(self.path) if self.path is not None else None
        if embeddings is None:
            from llmguide.memory.embeddings import default_embeddings

            embeddings = default_embeddings()
        self.embeddings = embeddings
        if record is not None:
            stored = record.get("embedding")
            if stored and stored != _embedding_name(embeddings):
                raise ConfigError(
                    f"The memory at {self.path} was embedded with {stored!r}, not {_embedding_name(embeddings)!r}; "
                    f"open it with the same embeddings, or export it and import into a new directory to re-embed."
                )
            if record.get("collection"):
                self.collection = str(record["collection"])
        self.store = self._open_store()
        if self.url is not None:
            self._check_server_record()
        if self.path is not None and record is None:
            self._write_schema()
        self._next_seq = self._max_seq() + 1

    # -- store ---------------------------------------------------------------
    def _open_store(self) -> Any:
        try:
            from chromadb.config import Settings
            from langchain_chroma import Chroma
        except ImportError as err:  # pragma: no cover - pinned dependency
            from llmguide.errors import MissingDependencyError

            raise MissingDependencyError(f"The vector memory needs chromadb and langchain-chroma ({err}).") from err
        settings = Settings(anonymized_telemetry=False, allow_reset=True)
        if self.url is not None:
            return self._open_server_store(Chroma, settings)
        # In-process Chroma clients share one database per process: keep each in-memory store apart.
        name = self.collection if self.path is not None else f"{self.collection}-{uuid.uuid4().hex[:8]}"
        try:
            return Chroma(
                collection_name=name,
                embedding_function=self.embeddings,
                persist_directory=str(self.path) if self.path is not None else None,
                client_settings=settings,
                collection_metadata={"hnsw:space": "cosine"},
            )
        except Exception as err:  # chromadb raises its own InternalError/sqlite errors for a bad dir
            where = self.path if self.path is not None else "memory"
            raise CorruptStoreError(
                f"Cannot open the memory at {where}: {type(err).__name__}: {err}. "
                f"Restore it from a JSONL export into a new directory."
            ) from err

    def _schema_record(self) -> dict[str, Any]:
        return {"kind": _KIND, "schema_version": SCHEMA_VERSION, "collection": self.collection,
                "embedding": _embedding_name(self.embeddings)}

    def _open_server_store(self, chroma: Any, settings: Any) -> Any:
        """The collection on the Chroma server at ``self.url``; unreachable -> one error naming it and the fix."""
        from urllib.parse import urlsplit

        import chromadb

        from llmguide.errors import BackendUnavailableError

        parts = urlsplit(self.url)
        try:
            client = chromadb.HttpClient(host=parts.hostname or "localhost", port=parts.port or 8000,
                                         ssl=parts.scheme == "https", settings=settings)
            client.heartbeat()
        except Exception as err:  # chromadb raises ValueError / httpx errors for a server that is not there
            raise BackendUnavailableError(
                f"The Chroma server {self.url} of the experience memory is unreachable ({type(err).__name__}: {err}). "
                f"Start it with `chroma run --path DIR --host 0.0.0.0 --port {parts.port or 8000}` (DIR on that "
                f"node's local disk, not a network filesystem), or fix `memory.url`."
            ) from err
        meta = {"hnsw:space": "cosine", **{f"llmguide_{k}": v for k, v in self._schema_record().items()}}
        return chroma(collection_name=self.collection, embedding_function=self.embeddings, client=client,
                      collection_metadata=meta)

    def _check_server_record(self) -> None:
        """A server collection written by a newer schema, another kind or other embeddings is refused."""
        meta = dict(self.store._collection.metadata or {})
        kind, version = meta.get("llmguide_kind"), int(meta.get("llmguide_schema_version", SCHEMA_VERSION))
        where = f"collection {self.collection!r} on {self.url}"
        if kind is not None and kind != _KIND:
            raise CorruptStoreError(f"The {where} is not an llmguide memory ({kind!r}); use another collection name.")
        if kind is None and len(self):
            raise CorruptStoreError(f"The {where} holds records not written by llmguide; use another collection name.")
        if version > SCHEMA_VERSION:
            raise CorruptStoreError(
                f"The {where} was written by a newer llmguide (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade llmguide on this node."
            )
        stored = meta.get("llmguide_embedding")
        if stored and stored != _embedding_name(self.embeddings):
            raise ConfigError(
                f"The {where} was embedded with {stored!r}, not {_embedding_name(self.embeddings)!r}; "
                f"open it with the same embeddings on every node."
            )

    def _write_schema(self) -> None:
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        data = {
            "kind": _KIND,
            "schema_version": SCHEMA_VERSION,
            "collection": self.collection,
            "embedding": _embedding_name(self.embeddings),
            "created": time.time(),
        }
        tmp = self.path / (SCHEMA_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path / SCHEMA_FILE)

    def _get(self, **kwargs: Any) -> dict[str, Any]:
        return self.store.get(include=["metadatas", "documents"], **kwargs)

    def _max_seq(self) -> int:
        metas = self._get()["metadatas"] or []
        return max((int(m.get("seq", -1)) for m in metas if m), default=-1)

    # -- API -----------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.store._collection.count())

    def add(self, experiences: Iterable[Experience]) -> int:
        """Store new experiences in one batch (exact and near duplicates skipped); returns how many were added."""
        batch = list(experiences)
        if not batch:
            return 0
        existing = set(self._get(ids=list(dict.fromkeys(e.key for e in batch)))["ids"])
        vectors = self._embed([e.scene for e in batch])
        accepted: list[tuple[Experience, list[float]]] = []
        for exp, vec in zip(batch, vectors):
            if exp.key in existing or any(exp.key == a.key for a, _ in accepted):
                continue
            if self.near_duplicate is not None and self._is_near_duplicate(exp, vec, accepted):
                continue
            accepted.append((exp, vec))
        if not accepted:
            return 0
        for exp, _ in accepted:
            exp.seq, self._next_seq = self._next_seq, self._next_seq + 1
        self.store._collection.upsert(
            ids=[e.key for e, _ in accepted],
            embeddings=[v for _, v in accepted],
            documents=[e.scene for e, _ in accepted],
            metadatas=[e.metadata() for e, _ in accepted],
        )
        return len(accepted)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self.embeddings.embed_documents(texts)]

    def _is_near_duplicate(self, exp: Experience, vec: list[float], accepted: list[tuple[Experience, list[float]]]) -> bool:
        threshold = float(self.near_duplicate or 0.0)
        for other, other_vec in accepted:
            if other.decision == exp.decision and _cosine(vec, other_vec) >= threshold:
                return True
        if len(self) == 0:
            return False
        hits = self.store.similarity_search_by_vector_with_relevance_scores(vec, k=1, filter={"decision": exp.decision})
        return bool(hits) and 1.0 - float(hits[0][1]) >= threshold

    def search(self, scene: str, k: int = 3) -> list[Experience]:
        """The ``k`` stored experiences whose scenes are most similar to ``scene`` (most similar first)."""
        if k <= 0 or len(self) == 0:
            return []
        try:
            hits = self.store.similarity_search_with_score(scene, k=min(k, len(self)))
        except Exception as err:
            if "dimension" in str(err).lower():
                raise ConfigError(f"The memory's embeddings do not match the query embeddings ({err}).") from err
            raise
        return [Experience.from_stored(doc.page_content, doc.metadata, score=1.0 - float(dist)) for doc, dist in hits]

    def all(self) -> list[Experience]:
        """Every stored experience, in insertion order."""
        got = self._get()
        items = [Experience.from_stored(doc, meta or {}) for doc, meta in zip(got["documents"] or [], got["metadatas"] or [])]
        return sorted(items, key=lambda e: (e.seq, e.created))

    def stats(self) -> dict[str, Any]:
        """Count, counts by source / outcome / decision, schema and embedding."""
        items = self.all()
        return {
            "path": str(self.path) if self.path is not None else None,
            "url": self.url,
            "schema_version": SCHEMA_VERSION,
            "collection": self.collection,
            "embedding": _embedding_name(self.embeddings),
            "count": len(items),
            "by_source": dict(Counter(e.source for e in items)),
            "by_outcome": dict(Counter(e.outcome for e in items)),
            "by_decision": dict(Counter(e.decision for e in items)),
        }

    def clear(self) -> int:
        """Remove every record (the directory stays a valid, empty memory); returns how many were removed."""
        n = len(self)
        if self.url is not None:  # other clients hold the collection's id: empty it, never drop it
            ids = self.store.get(include=[])["ids"]
            for start in range(0, len(ids), 1000):
                self.store._collection.delete(ids=ids[start : start + 1000])
        else:
            self.store.reset_collection()
        self._next_seq = 0
        return n

    def export_jsonl(self, path: str | Path) -> int:
        """Write every record as one JSON object per line (insertion order); atomic; returns the count."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        items = self.all()
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w") as fh:
            for exp in items:
                fh.write(json.dumps({"schema_version": SCHEMA_VERSION, **exp.as_dict()}, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return len(items)

    def import_jsonl(self, path: str | Path, limit: int | None = None) -> int:
        """Add the records of a JSONL export (re-embedded here, deduplicated); returns how many were added."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"No JSONL file at {path}; give a file written by `llmguide memory export`.")
        if limit is not None and limit <= 0:
            return 0
        batch: list[Experience] = []
        with path.open() as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    if int(data.pop("schema_version", SCHEMA_VERSION)) > SCHEMA_VERSION:
                        raise CorruptStoreError(f"{path}:{lineno} was written by a newer llmguide schema; upgrade llmguide.")
                    data.pop("seq", None)
                    data.pop("score", None)
                    batch.append(Experience(**data))
                except (json.JSONDecodeError, TypeError, ValueError) as err:
                    raise ConfigError(f"{path}:{lineno} is not a memory record ({err}); fix or drop that line.") from None
                if limit is not None and len(batch) >= limit:
                    break
        return self.add(batch)

    def __repr__(self) -> str:
        where = f"url={self.url!r}" if self.url else f"path={str(self.path) if self.path else None!r}"
        return f"ExperienceMemory({where}, count={len(self)})"


def _server_url(url: str) -> str:
    """``http(s)://host[:port]`` (port 8000 when absent), or a ConfigError saying what is wrong."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(url).strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.path.strip("/"):
        raise ConfigError(f"Memory server URL {url!r} is not http(s)://HOST:PORT (e.g. http://10.0.0.5:8000).")
    return f"{parts.scheme}://{parts.hostname}:{port or 8000}"


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0
