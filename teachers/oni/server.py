"""The ONI annotation server: an HTTP service that labels captions with an LLM, asynchronously.

Exports ``AnnotatorSettings``, ``Annotator`` (queue + worker + store, usable
in-process), ``create_app`` (the FastAPI app), ``load_annotator_llm``,
``run_annotator`` and ``main`` (``python -m llmguide.teachers.oni.server``).

Learners POST the captions they collected (NetHack messages) and poll the
labels; they never wait for the LLM. The server

* deduplicates every caption by hash against everything it has ever seen
  (the SQLite store survives restarts, so does the dedup set);
* queues unseen captions in a bounded queue — under overload new captions
  are dropped and counted, never buffered without limit (a dropped caption is
  not recorded as seen, so a later submission of it can still get in);
* labels queued captions in batches with one constrained-JSON LLM call
  (``helpful`` / ``unhelpful`` per caption), plus optional pairwise
  preferences (``A`` / ``B``) for the ranking reward model;
* an LLM answer that fails validation is retried (``structured``), then the
  batch is skipped and counted (``llm_fallbacks``) — never guessed;
* on restart, captions stored as seen-but-unlabelled are re-queued.

Endpoints: ``POST /captions`` ``{"captions": [str, ...]}``,
``GET /labels?since=CURSOR&prefs_since=CURSOR``, ``GET /health``,
``GET /stats``. Malformed or oversized requests get a 4xx with a one-line
``error`` message.

LLM specs are those of ``llmguide.llm.load``. For tests only, this module also
understands ``fake:rule[:DELAY_S]`` (a deterministic keyword annotator,
optionally slow) and ``fake:list:ANSWER1||ANSWER2`` (LangChain's
``FakeListChatModel`` cycling fixed answers, e.g. non-JSON ones); these are
handled here and nowhere else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from llmguide.teachers.oni.store import LabelStore, caption_hash, normalize_caption
from pydantic import BaseModel, Field, create_model

__all__ = [
    "Annotator",
    "AnnotatorSettings",
    "create_app",
    "label_prompt",
    "load_annotator_llm",
    "main",
    "run_annotator",
]

log = logging.getLogger("llmguide.oni.server")

SYSTEM_PROMPT = (
    "You are an expert NetHack player rating in-game messages for an agent that is learning to play. "
    "A message is helpful when it signals progress: finding or picking up gold or items, killing a monster, "
    "going down stairs, gaining a level or skill, discovering something new. It is unhelpful when it is "
    "neutral, a failed or cancelled action, or bad for the player (taking damage, hunger, bumping walls)."
)
PREF_SYSTEM_PROMPT = (
    "You are an expert NetHack player. For each pair of in-game messages, say which one, A or B, shows more "
    "progress in the game (gold, items, kills, stairs, levels, discoveries)."
)


class AnnotatorSettings(BaseModel):
    """Every knob of the annotator; the CLI flags and ``process.start_annotator`` map onto these."""

    llm: str = Field("smollm2", description="LLM spec (smollm2, gguf:PATH, openai:MODEL[@URL]).")
    db: str = Field("oni_labels.sqlite", description="SQLite label store path.")
    host: str = Field("127.0.0.1", description="Bind address (loopback by default).")
    port: int = Field(8765, ge=0, le=65535)
    queue_size: int = Field(4096, ge=1, description="Bounded queue of captions waiting for a label.")
    batch_size: int = Field(8, ge=1, le=64, description="Captions labelled per LLM call.")
    prefs_per_batch: int = Field(2, ge=0, le=32, description="Pairwise preferences asked per batch (0 = none).")
    retries: int = Field(2, ge=0, description="Retries of an invalid LLM answer before the batch is skipped.")
    max_tokens: int = Field(192, ge=16)
    n_ctx: int = Field(2048, ge=512)
    threads: int | None = Field(None, ge=1, description="llama.cpp threads (None = its default).")
    max_request_captions: int = Field(1024, ge=1, description="Captions per POST; more -> 413.")
    max_caption_chars: int = Field(1024, ge=1, description="Longest caption accepted; longer -> 422.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body; larger -> 413.")
    max_labels_per_poll: int = Field(2000, ge=1)
    parent_pid: int | None = Field(None, description="Exit when this process is gone (set by start_annotator).")


# -- LLM (with the test-only fakes) ----------------------------------------------------------------
_LINE = re.compile(r"^\s*(\d+)\.\s+(.*)$")
_HELPFUL_WORDS = ("gold", "kill", "destroy", "staircase", "stairs", "welcome", "level", "find", "discover", "see here", "pick")


class _RuleFakeChat(BaseChatModel):
    """Test-only annotator: answers the label/preference prompts by keyword, after ``delay_s``."""

    delay_s: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "fake-rule"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        if self.delay_s:
            time.sleep(self.delay_s)
        text = str(messages[-2].content if len(messages) > 1 and "JSON" in str(messages[-1].content) else messages[-1].content)
        answer: dict[str, str] = {}
        for line in text.splitlines():
            found = _LINE.match(line)
            if not found:
                continue
            idx, body = found.groups()
            if body.startswith("A: ") and " | B: " in body:
                a, b = body[3:].split(" | B: ", 1)
                answer[f"p{idx}"] = "A" if _score(a) >= _score(b) else "B"
            else:
                answer[f"m{idx}"] = "helpful" if _score(body) > 0 else "unhelpful"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=json.dumps(answer)))])


def _score(text: str) -> int:
    low = text.lower()
    return sum(word in low for word in _HELPFUL_WORDS)


def load_annotator_llm(spec: str | BaseChatModel, settings: AnnotatorSettings | None = None) -> BaseChatModel:
    """``llmguide.llm.load`` plus the test-only ``fake:`` specs described in the module docstring."""
    settings = settings or AnnotatorSettings()
    if isinstance(spec, str) and spec.startswith("fake:"):
        kind, _, arg = spec[5:].partition(":")
        if kind == "rule":
            return _RuleFakeChat(delay_s=float(arg or 0))
        if kind == "list":
            from langchain_core.language_models.fake_chat_models import FakeListChatModel

            return FakeListChatModel(responses=arg.split("||") if arg else ["not json"])
        from llmguide.errors import ModelSpecError

        raise ModelSpecError(f"Unknown test spec {spec!r}: use fake:rule[:DELAY] or fake:list:A||B.")
    from llmguide.llm import load

    return load(spec, max_tokens=settings.max_tokens, n_ctx=settings.n_ctx, n_threads=settings.threads)


def _choice_model(name: str, prefix: str, n: int, options: tuple[str, ...]) -> type[BaseModel]:
    kind = Literal[options]  # type: ignore[valid-type]
    return create_model(name, **{f"{prefix}{i + 1}": (kind, ...) for i in range(n)})


def label_prompt(captions: Sequence[str]) -> list[BaseMessage]:
    """Fixed system text first (prefix-stable for llama.cpp), then the numbered captions."""
    listing = "\n".join(f"{i + 1}. {c[:200]}" for i, c in enumerate(captions))
    keys = ", ".join(f"m{i + 1}" for i in range(len(captions)))
    return [
        SystemMessage(content=SYSTEM_PROMPT),
        HumanMessage(content=f"Rate each message as helpful or unhelpful.\nMessages:\n{listing}\nAnswer keys: {keys}."),
    ]


def pref_prompt(pairs: Sequence[tuple[str, str]]) -> list[BaseMessage]:
    listing = "\n".join(f"{i + 1}. A: {a[:150]} | B: {b[:150]}" for i, (a, b) in enumerate(pairs))
    keys = ", ".join(f"p{i + 1}" for i in range(len(pairs)))
    return [
        SystemMessage(content=PREF_SYSTEM_PROMPT),
        HumanMessage(content=f"Which message of each pair shows more progress?\nPairs:\n{listing}\nAnswer keys: {keys}."),
    ]


# -- the annotator: bounded queue, worker thread, store ----------------------------------------------
class Annotator:
    """Dedup + bounded queue + batch-labelling worker over a ``LabelStore``.

    Used by the HTTP app, and directly in tests. ``submit`` never calls the
    LLM; the worker thread does, one batch at a time.
    """

    def __init__(self, settings: AnnotatorSettings, llm: BaseChatModel | str | None = None) -> None:
        self.settings = settings
        self.store = LabelStore(settings.db)
        import llmguide.llm  # noqa: F401  (import cost paid at start, not inside the first batch)

        self.llm = load_annotator_llm(llm if llm is not None else settings.llm, settings)
        self.llm_name = settings.llm if llm is None or isinstance(llm, str) else type(llm).__name__
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._seen = self.store.all_hashes()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random(0)
        self._recent_labelled: deque[str] = deque(maxlen=256)
        self._latency_ms: deque[float] = deque(maxlen=500)
        self._label_times: deque[tuple[float, int]] = deque(maxlen=2000)
        self.started = time.time()
        self.counters = dict.fromkeys(
            ["requests", "submitted", "accepted", "duplicates", "dropped", "labels", "prefs", "llm_calls",
             "llm_fallbacks", "llm_errors", "skipped", "requeued"], 0,
        )
        self.busy_s = 0.0
        self.counters["requeued"] = self._requeue()

    # -- producer side -------------------------------------------------
    def _requeue(self) -> int:
        """Put stored seen-but-unlabelled captions back into the queue (restart, or backlog)."""
        with self._cond:
            room = self.settings.queue_size - len(self._queue)
            if room <= 0:
                return 0
            texts = self.store.pending(room, exclude=self._queued)
            for text in texts:
                self._queue.append(text)
                self._queued.add(caption_hash(text))
            if texts:
                self._cond.notify()
        return len(texts)

    def submit(self, captions: Sequence[str]) -> dict[str, int]:
        """Dedup and enqueue; returns counts. Never blocks on the LLM."""
        accepted: list[str] = []
        dup = dropped = 0
        with self._cond:
            self.counters["requests"] += 1
            for raw in captions:
                text = normalize_caption(raw)
                if not text:
                    continue
                self.counters["submitted"] += 1
                key = caption_hash(text)
                if key in self._seen:
                    dup += 1
                    continue
                if len(self._queue) >= self.settings.queue_size:
                    dropped += 1
                    continue
                self._seen.add(key)
                self._queued.add(key)
                self._queue.append(text)
                accepted.append(text)
            self.counters["accepted"] += len(accepted)
            self.counters["duplicates"] += dup
            self.counters["dropped"] += dropped
            if accepted:
                self._cond.notify()
        if accepted:
            self.store.add_seen(accepted)
        return {"accepted": len(accepted), "duplicates": dup, "dropped": dropped, "queue_depth": len(self._queue)}

    # -- worker side ---------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="oni-annotator", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _next_batch(self) -> list[str]:
        with self._cond:
            while not self._queue and not self._stop.is_set():
                if not self._cond.wait(timeout=1.0):
                    break  # idle: look for a stored backlog below
            batch = [self._queue.popleft() for _ in range(min(self.settings.batch_size, len(self._queue)))]
            for text in batch:
                self._queued.discard(caption_hash(text))
        if not batch and not self._stop.is_set():
            self.counters["requeued"] += self._requeue()
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            start = time.perf_counter()
            try:
                self.label_batch(batch)
            except Exception as err:  # a backend outage must not kill the worker; captions stay pending
                self.counters["llm_errors"] += 1
                log.warning("labelling failed (%s: %s); captions stay pending", type(err).__name__, err)
                self._stop.wait(1.0)
            self.busy_s += time.perf_counter() - start

    def _ask(self, model: type[BaseModel], messages: list[BaseMessage]) -> BaseModel | None:
        from llmguide.llm import structured

        start = time.perf_counter()
        try:
            return structured(self.llm, model, messages, retries=self.settings.retries)
        finally:
            self.counters["llm_calls"] += 1
            self._latency_ms.append((time.perf_counter() - start) * 1000)

    def label_batch(self, batch: Sequence[str]) -> int:
        """Label one batch (and ask its preferences); returns the number of labels stored."""
        model = _choice_model("Labels", "m", len(batch), ("helpful", "unhelpful"))
        answer = self._ask(model, label_prompt(batch))
        if answer is None:
            self.store.mark_skipped(batch)  # store first: a reader that sees the counter sees the store too
            self.counters["skipped"] += len(batch)
            self.counters["llm_fallbacks"] += 1
            return 0
        values = answer.model_dump()
        labelled = [(text, values[f"m{i + 1}"] == "helpful") for i, text in enumerate(batch)]
        added = self.store.add_labels(labelled)
        self.counters["labels"] += added
        self._label_times.append((time.time(), added))
        n_pairs = min(self.settings.prefs_per_batch, len(batch)) if self._recent_labelled else 0
        if n_pairs:
            pairs = [(batch[i], self._rng.choice(self._recent_labelled)) for i in range(n_pairs)]
            pairs = [(a, b) if self._rng.random() < 0.5 else (b, a) for a, b in pairs if a != b]
            if pairs:
                pref = self._ask(_choice_model("Prefs", "p", len(pairs), ("A", "B")), pref_prompt(pairs))
                if pref is None:
                    self.counters["llm_fallbacks"] += 1
                else:
                    won = pref.model_dump()
                    self.counters["prefs"] += self.store.add_prefs(
                        [(a, b, won[f"p{i + 1}"] == "A") for i, (a, b) in enumerate(pairs)]
                    )
        self._recent_labelled.extend(batch)
        return added

    # -- reporting -----------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Queue depth, throughput, LLM latency, dedup rate, drops, fallbacks, store counts."""
        import numpy as np

        lat = list(self._latency_ms)
        now = time.time()
        window = [n for t, n in self._label_times if now - t <= 60.0]
        c = dict(self.counters)
        return {
            **c,
            "queue_depth": len(self._queue),
            "queue_size": self.settings.queue_size,
            "uptime_s": round(now - self.started, 3),
            "busy_s": round(self.busy_s, 3),
            "labels_per_s": c["labels"] / self.busy_s if self.busy_s else 0.0,
            "labels_per_s_wall": c["labels"] / max(now - self.started, 1e-9),
            "labels_per_s_60s": sum(window) / 60.0,
            "dedup_rate": c["duplicates"] / c["submitted"] if c["submitted"] else 0.0,
            "drop_rate": c["dropped"] / c["submitted"] if c["submitted"] else 0.0,
            "llm_latency_ms_mean": float(np.mean(lat)) if lat else 0.0,
            "llm_latency_ms_p50": float(np.percentile(lat, 50)) if lat else 0.0,
            "llm_latency_ms_p95": float(np.percentile(lat, 95)) if lat else 0.0,
            "store": self.store.counts(),
            "llm": self.llm_name,
        }


# -- HTTP ---------------------------------------------------------------------------------------------
def _error(status: int, message: str) -> Any:
    return JSONResponse(status_code=status, content={"error": message})


def create_app(annotator: Annotator, *, start_worker: bool = True) -> Any:
    """The FastAPI app over an ``Annotator`` (the worker starts and stops with the app)."""
    s = annotator.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_worker:
            annotator.start()
        yield
        annotator.stop()

    app = FastAPI(title="llmguide ONI annotator", lifespan=lifespan)
    app.state.annotator = annotator

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"invalid request: {where}: {first.get('msg', 'bad value')}")

    @app.post("/captions")
    async def post_captions(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > s.max_body_bytes:
            return _error(413, f"request body of {declared} bytes is over the limit of {s.max_body_bytes}; send smaller batches")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > s.max_body_bytes:
                return _error(413, f"request body is over the limit of {s.max_body_bytes} bytes; send smaller batches")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, 'body is not JSON; send {"captions": ["...", ...]}')
        captions = payload.get("captions") if isinstance(payload, dict) else None
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            return _error(422, 'expected a JSON object {"captions": [string, ...]}')
        if len(captions) > s.max_request_captions:
            return _error(413, f"{len(captions)} captions in one request; the limit is {s.max_request_captions}")
        for i, text in enumerate(captions):
            if len(text) > s.max_caption_chars:
                return _error(422, f"caption {i} has {len(text)} characters; the limit is {s.max_caption_chars}")
        return annotator.submit(captions)

    @app.get("/labels")
    def get_labels(since: int = 0, prefs_since: int = 0, limit: int = 1000) -> Any:
        if since < 0 or prefs_since < 0 or limit < 1:
            return _error(422, "since and prefs_since must be >= 0 and limit >= 1")
        return annotator.store.labels_since(since, min(limit, s.max_labels_per_poll), prefs_since)

    @app.get("/health")
    def health() -> Any:
        return {"status": "ok", "pid": os.getpid(), "llm": annotator.llm_name, "db": str(s.db)}

    @app.get("/stats")
    def stats() -> Any:
        return annotator.stats()

    return app


def _watch_parent(pid: int) -> None:
    """An annotator started by a run must not outlive it, even if the run is killed."""
    import signal

    while True:
        time.sleep(2.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except PermissionError:
            continue


def run_annotator(settings: AnnotatorSettings) -> None:
    """Load the LLM and store, then serve until SIGINT/SIGTERM (uvicorn handles both cleanly)."""
    import uvicorn

    annotator = Annotator(settings)
    if settings.parent_pid:
        threading.Thread(target=_watch_parent, args=(settings.parent_pid,), name="oni-parent-watch", daemon=True).start()
    uvicorn.run(create_app(annotator), host=settings.host, port=settings.port, log_level="warning", access_log=False)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m llmguide.teachers.oni.server --llm SPEC --db PATH --port N [...]``."""
    parser = argparse.ArgumentParser(prog="llmguide.teachers.oni.server", description=__doc__.splitlines()[0])
    for name, field in AnnotatorSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        kind = {int: int, float: float}.get(field.annotation, str)  # type: ignore[arg-type]
        if name in ("threads", "parent_pid"):
            kind = int
        parser.add_argument(flag, type=kind, default=field.default, help=field.description)
    args = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = AnnotatorSettings(**args)
    Path(settings.db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    from llmguide.errors import LLMGuideError

    try:
        run_annotator(settings)
    except LLMGuideError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
