"""Throughput of the language views: steps/s raw vs with the text view.

For each env the same random policy (same seeds) runs on the bare env and on
the text view, in alternating rounds so load changes hit both alike; the
median round of each is kept. Writes `{env_id: ratio}` (text/raw) to
benchmarks/results/envs.json and prints a table (also the RESULTS.md rows).

    python benchmarks/envs.py --steps 2000 --out benchmarks/results/envs.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from llmguide.envs import make

# env id -> (fraction of --steps to run, make kwargs). Slow simulators run fewer steps.
ENVS: dict[str, tuple[float, dict[str, Any]]] = {
    "MiniGrid-DoorKey-8x8-v0": (1.0, {}),
    "MiniGrid-KeyCorridorS3R3-v0": (1.0, {}),
    "BabyAI-GoToLocal-v0": (1.0, {}),
    "llmguide/Crafter-v0": (0.25, {}),
    "NetHackScore-v0": (10.0, {}),  # ~50 µs steps: long rounds, or timer noise and resets dominate
    "NetHackChallenge-v0": (10.0, {}),
    "highway-fast-v0": (0.05, {}),
    "highway-v0": (0.01, {}),
    "merge-v0": (0.05, {}),
    "intersection-v0": (0.02, {}),
    "llmguide/ScienceWorld-v0": (0.005, {}),
}
TARGET = {"minigrid": 0.8, "crafter": 0.8, "nethack": 0.8, "highway": 0.8}


def _run(env: Any, steps: int, seed: int) -> float:
    """Steps per second of a seeded random policy (resets included)."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n = env.action_space.n
    actions = rng.integers(0, n, steps).tolist()
    sw = hasattr(env.unwrapped, "valid_actions")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # BabyAI prints rejected samples
        _loop(env, actions, sw)
    return steps / (time.perf_counter() - start)


def _loop(env: Any, actions: list[int], sw: bool) -> None:
    for a in actions:
        if sw:  # stay inside the current valid list
            a %= max(len(env.unwrapped.valid_actions), 1)
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()


def bench(env_id: str, steps: int, rounds: int, kwargs: dict[str, Any]) -> dict[str, float]:
    from llmguide.envs import family_of

    raw = make(env_id, text=False, **kwargs)
    view = raw if family_of(env_id) == "scienceworld" else make(env_id, **kwargs)
    if view is raw:  # one JVM: the view wraps the same adapter
        from llmguide.envs.scienceworld import ScienceWorldText

        view = ScienceWorldText(raw)
    raw_sps, view_sps = [], []
    for r in range(rounds):
        raw_sps.append(_run(raw, steps, seed=r))
        view_sps.append(_run(view, steps, seed=r))
    raw.close()
    view.close()
    a, b = statistics.median(raw_sps), statistics.median(view_sps)
    return {"steps": steps, "raw_sps": a, "text_sps": b, "ratio": b / a}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per round for fast envs")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw/text rounds")
    parser.add_argument("--out", default="benchmarks/results/envs.json")
    parser.add_argument("--only", nargs="*", help="subset of env ids")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    results: dict[str, dict[str, float]] = {}
    for env_id, (frac, kwargs) in ENVS.items():
        if args.only and env_id not in args.only:
            continue
        steps = max(10, int(args.steps * frac))
        results[env_id] = bench(env_id, steps, args.rounds, kwargs)
        r = results[env_id]
        print(f"{env_id:32s} {r['steps']:6d} {r['raw_sps']:10.1f} {r['text_sps']:10.1f} {r['ratio']:6.3f}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({k: round(v["ratio"], 3) for k, v in results.items()}, indent=2) + "\n")
    print("\n| env | steps/round | raw steps/s | text steps/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for k, v in results.items():
        print(f"| {k} | {v['steps']} | {v['raw_sps']:.1f} | {v['text_sps']:.1f} | {v['ratio']:.3f} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
