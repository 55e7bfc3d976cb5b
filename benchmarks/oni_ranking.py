"""ONI's ranking model on held-out labelled NetHack messages: does it rank them better than chance?

What: the issue item "Ranking model: Bradley–Terry on pairwise preferences, as
in the paper; check it ranks held-out labelled messages better than chance".
ONI's reward models only matter for captions the LLM has *not* labelled yet
(a labelled caption could just be looked up, as the hash model does), so the
question is whether a model fitted on some labels orders unseen messages the
way the LLM would.

How:
1. Captions: distinct non-empty NetHack messages from NetHackScore-v0 under a
   uniformly random policy, several seeds (``make_nle_env`` + ``caption_of``,
   the env and caption the ``oni`` method uses), until ``--captions`` distinct
   ones or ``--max-steps``.
2. Labels: ONI's annotator (``teachers.oni.server.Annotator``, the class the
   annotation server wraps: dedup, queue, batch worker, the same prompts and
   constrained-JSON LLM call, the same pairwise preferences per batch) on the
   embedded model (``smollm2``, llama.cpp, ``--threads`` threads), in process
   rather than behind HTTP; labels and preferences are read from its store.
3. Stratified K-fold over captions: each model is fitted on the training
   folds' labels (and the preferences whose two captions are both in the
   training folds) with the real MiniLM embedder, then scores the held-out
   captions. ROC AUC of score vs the LLM's label (helpful = positive) over the
   pooled out-of-fold scores; chance = 0.5. Models: ``RankingReward``
   (Bradley–Terry on LLM preferences + label-implied pairs, its default),
   ``RankingReward`` on the LLM's preferences only (``label_pairs=0``, the
   paper's setting), ``ClassifierReward``; controls: the ranking and
   classifier models fitted on labels permuted within the training folds (and
   preference outcomes drawn at random), which should give ~0.5.
4. A 95% percentile-bootstrap interval over held-out captions (resampled
   within each class), n captions, positives, seconds; writes
   benchmarks/results/oni_ranking.json and prints a Markdown table.

    .venv/bin/python benchmarks/oni_ranking.py                    # 260 captions, ~7 min on 2 loaded cores
    .venv/bin/python benchmarks/oni_ranking.py --captions 80      # smoke
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "oni_ranking.json"


# -- 1. captions -------------------------------------------------------------------------------------
def collect_captions(n: int, max_steps: int, env_id: str = "NetHackScore-v0", seed: int = 0,
                     episode_steps: int = 1000) -> tuple[list[str], int]:
    """Distinct normalised non-empty messages from uniformly random play (a new seed every episode)."""
    from llmguide.agents.oni import make_nle_env
    from llmguide.teachers.oni.store import normalize_caption
    from llmguide.teachers.oni.wrapper import caption_of

    env = make_nle_env(env_id, max_episode_steps=episode_steps)
    rng = np.random.default_rng(seed)
    seen: dict[str, None] = {}  # insertion-ordered set
    steps, episode = 0, 0
    env.reset(seed=seed)
    while len(seen) < n and steps < max_steps:
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        steps += 1
        text = normalize_caption(caption_of(info))
        if text:
            seen.setdefault(text)
        if terminated or truncated:
            episode += 1
            env.reset(seed=seed + episode)
    env.close()
    return list(seen)[:n], steps


# -- 2. labels ---------------------------------------------------------------------------------------
def label_captions(captions: Sequence[str], llm: str, threads: int, batch_size: int, prefs_per_batch: int,
                   db: Path, timeout_s: float) -> tuple[dict[str, bool], list[dict[str, Any]], dict[str, Any]]:
    """ONI's annotator worker over ``captions``: ``{text: helpful}``, preferences, the annotator's stats."""
    from llmguide.teachers.oni.server import Annotator, AnnotatorSettings

    settings = AnnotatorSettings(llm=llm, db=str(db), threads=threads, batch_size=batch_size,
                                 prefs_per_batch=prefs_per_batch)
    annotator = Annotator(settings)
    annotator.submit(list(captions))
    annotator.start()
    deadline, shown = time.monotonic() + timeout_s, -1
    try:
        while time.monotonic() < deadline:
            done = annotator.counters["labels"] + annotator.counters["skipped"]
            if done != shown:
                print(f"\r  labelled {done}/{len(captions)}", end="", file=sys.stderr, flush=True)
                shown = done
            if done >= len(captions):
                break
            time.sleep(1.0)
    finally:
        annotator.stop(timeout=120)
        print(file=sys.stderr)
    counts = annotator.store.counts()
    out = annotator.store.labels_since(0, limit=1_000_000, prefs_cursor=0)
    stats = annotator.stats()
    stats["store_counts"] = counts
    annotator.store.close()
    return {x["text"]: x["helpful"] for x in out["labels"]}, out["prefs"], stats


# -- 3. held-out scores ------------------------------------------------------------------------------
class CachedEmbedder:
    """Memoise an embedder by text, so K folds x models embed each caption once (same vectors)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.cache = inner, {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            self.cache.update(zip(todo, self.inner.encode(todo)))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def stratified_folds(y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold id per item, each class spread evenly over the ``k`` folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % k
    return fold


def heldout_scores(texts: Sequence[str], y: np.ndarray, make_model: Callable[[], Any],
                   prefs: Sequence[dict[str, Any]] = (), k: int = 5, seed: int = 0,
                   shuffle: bool = False) -> np.ndarray:
    """Out-of-fold scores: for each fold, fit a fresh model on the other folds only, score this fold.

    ``shuffle`` is the control: labels permuted within the training folds and preference outcomes
    drawn at random, so the fit has the same amounts of data but no signal.
    """
    y = np.asarray(y, dtype=bool)
    fold = stratified_folds(y, k, seed)
    rng = np.random.default_rng(seed + 1)
    scores = np.zeros(len(texts), dtype=np.float64)
    for f in range(k):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        train_y = rng.permutation(y[train]) if shuffle else y[train]
        train_text = {texts[i] for i in train}
        train_prefs = [dict(p, a_wins=bool(rng.random() < 0.5)) if shuffle else p
                       for p in prefs if p["a"] in train_text and p["b"] in train_text]
        model = make_model()
        model.update([{"text": texts[i], "helpful": bool(v)} for i, v in zip(train, train_y)], train_prefs)
        model.step()  # embed the training captions and fit
        held = [texts[i] for i in test]
        model.reward(held)  # queues the unseen held-out captions
        model.step()  # embed and score them with the fitted weights
        scores[test] = model.reward(held)
        model.close()
    return scores


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC = P(score of a random positive > a random negative), ties counted half (Mann–Whitney)."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_interval(scores: np.ndarray, y: np.ndarray, reps: int = 2000, seed: int = 0) -> Any:
    """AUC with a 95% percentile-bootstrap interval over captions (resampled within each class)."""
    from llmguide.stats import Interval

    y = np.asarray(y, dtype=bool)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(reps):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        boot.append(auc(scores[idx], y[idx]))
    low, high = np.percentile(boot, [2.5, 97.5])
    return Interval(auc(scores, y), float(low), float(high), len(y))


def kfold_auc(texts: Sequence[str], y: np.ndarray, make_model: Callable[[], Any], **kwargs: Any) -> Any:
    """Held-out AUC (with its interval) of the model ``make_model`` builds: the figure this benchmark reports."""
    return auc_interval(heldout_scores(texts, y, make_model, **kwargs), y)


# -- 4. run and report ----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=260, help="distinct captions to collect and label")
    parser.add_argument("--max-steps", type=int, default=100_000, help="cap on random-policy env steps")
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (the oni method's default is 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="captions per LLM call (oni default)")
    parser.add_argument("--prefs-per-batch", type=int, default=2, help="pairwise preferences per batch (oni default)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-timeout", type=float, default=330.0, help="stop labelling after this many seconds")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # a shared 2-core box; the fits are small
    from llmguide.teachers.oni.reward import ClassifierReward, MiniLMEmbedder, RankingReward

    from llmguide.rundir import write_json

    load_start, t_start = os.getloadavg(), time.perf_counter()
    t0 = time.perf_counter()
    captions, steps = collect_captions(args.captions, args.max_steps, seed=args.seed)
    collect_s = time.perf_counter() - t0
    print(f"collected {len(captions)} distinct captions in {steps} random steps ({collect_s:.1f}s)", file=sys.stderr)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="oni-ranking-") as tmp:
        labels, prefs, ann_stats = label_captions(captions, args.llm, args.threads, args.batch_size,
                                                  args.prefs_per_batch, Path(tmp) / "labels.sqlite", args.label_timeout)
    label_s = time.perf_counter() - t0
    texts = [c for c in captions if c in labels]  # skipped (no valid LLM answer) or timed out: left out
    y = np.array([labels[c] for c in texts], dtype=bool)
    print(f"labelled {len(texts)} ({int(y.sum())} helpful), {len(prefs)} preferences ({label_s:.1f}s)", file=sys.stderr)

    embedder = CachedEmbedder(MiniLMEmbedder())
    models: dict[str, tuple[Callable[[], Any], bool]] = {
        "ranking (LLM prefs + label pairs; default)": (lambda: RankingReward(embedder=embedder, background=False), False),
        "ranking (LLM prefs only)": (lambda: RankingReward(embedder=embedder, background=False, label_pairs=0,
                                                           min_labels=1), False),
        "classifier": (lambda: ClassifierReward(embedder=embedder, background=False), False),
        "ranking, shuffled labels (control)": (lambda: RankingReward(embedder=embedder, background=False), True),
        "classifier, shuffled labels (control)": (lambda: ClassifierReward(embedder=embedder, background=False), True),
    }
    results = {}
    for name, (make, shuffle) in models.items():
        t0 = time.perf_counter()
        iv = kfold_auc(texts, y, make, prefs=prefs, k=args.folds, seed=args.seed, shuffle=shuffle)
        results[name] = {"auc": iv.value, "low": iv.low, "high": iv.high, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}: AUC {iv}", file=sys.stderr)

    n, pos = len(texts), int(y.sum())
    record = {
        "what": "held-out ROC AUC of ONI reward-model scores vs the LLM annotator's helpful label (chance 0.5)",
        "command": "python " + " ".join(["benchmarks/oni_ranking.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU (shared with other jobs)",
        "python": platform.python_version(),
        "load_average_1m": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "env": "NetHackScore-v0", "policy": "uniform random",
        "env_steps": steps, "captions_collected": len(captions), "captions_labelled": n, "positives": pos,
        "helpful_fraction": round(pos / n, 3) if n else None, "preferences": len(prefs),
        "prefs_helpful_side_wins": _pref_agreement(prefs, labels),
        "annotator": {k: ann_stats.get(k) for k in ("llm", "llm_calls", "llm_fallbacks", "llm_errors", "skipped",
                                                     "labels", "prefs", "llm_latency_ms_mean", "labels_per_s")},
        "seconds": {"collect": round(collect_s, 1), "label": round(label_s, 1),
                    "total": round(time.perf_counter() - t_start, 1)},
        "folds": args.folds, "bootstrap": "95% percentile, 2000 resamples of held-out captions within each class",
        "results": results,
        "examples": {"helpful": [t for t in texts if labels[t]][:12], "unhelpful": [t for t in texts if not labels[t]][:12]},
    }
    write_json(args.out, record)
    print(f"\n{n} captions, {pos} helpful ({pos / max(n, 1):.0%}), {len(prefs)} LLM preferences, "
          f"{args.folds}-fold; AUC over held-out captions, 95% bootstrap interval; chance = 0.5\n")
    print("| model | held-out AUC [95% CI] | fit+score s |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['auc']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {r['seconds']} |")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return record


def _pref_agreement(prefs: Sequence[dict[str, Any]], labels: dict[str, bool]) -> dict[str, Any]:
    """Of the preferences between a helpful and an unhelpful caption, how often the helpful one won."""
    mixed = [p for p in prefs if p["a"] in labels and p["b"] in labels and labels[p["a"]] != labels[p["b"]]]
    wins = sum((p["a_wins"] == labels[p["a"]]) for p in mixed)
    return {"mixed_pairs": len(mixed), "helpful_won": wins}


if __name__ == "__main__":
    main()
