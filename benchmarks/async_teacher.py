"""Does the learner wait on the LLM? PPO steps/s with an LLM subgoal teacher asked synchronously
vs asynchronously (`guidance.asynchronous`), beside plain PPO, on the same seeds.

MultiRoom lays out new rooms every episode, so the teacher's cache misses all
the time: the case where a synchronous teacher stalls the learner. The LLM
response cache is off, so every question costs a real generation in every arm. Arms run
interleaved (plain, sync, async for each repeat) so a loaded machine slows
them alike; the figure is each arm's steps/s over plain's.

    python benchmarks/async_teacher.py                      # MultiRoom-N4-S5, 8k steps, 2 repeats
    python benchmarks/async_teacher.py --steps 2048 --repeats 1 --out /tmp/async.json   # smoke

Writes ``benchmarks/results/async_teacher.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
ARMS = {
    "plain": None,
    "llm-sync": {"asynchronous": False},
    "llm-async": {"asynchronous": True},
}


def run_arm(env: str, arm: str, steps: int, seed: int, work: Path, max_queries: int) -> dict[str, Any]:
    """One short PPO run; returns its throughput and the teacher's figures."""
    from llmguide import Experiment

    guidance = ARMS[arm]
    # the response cache off: an arm run after another must not be answered from its cached answers
    teacher = None if guidance is None else {"type": "llm", "kind": "object", "max_queries": max_queries,
                                             "llm_kwargs": {"n_threads": 1, "cache": False}}
    result = Experiment(env=env, teacher=teacher, learner="PPO", total_steps=steps, seed=seed, n_envs=4,
                        guidance=guidance or {}, eval={"every": 0, "episodes": 1}, checkpoint_every=0,
                        run_dir=work / f"{arm}__{seed}").run()
    m = result.metrics
    t = m["extras"].get("teacher_metrics") or {}
    return {"arm": arm, "seed": seed, "steps": m["steps"], "steps_per_s": m["steps_per_s"],
            "teacher_calls": t.get("teacher_calls", 0), "deferred": t.get("teacher_deferred", 0),
            "steps_waiting": t.get("teacher_steps_waiting", 0), "late_answers": t.get("teacher_late_answers", 0),
            "budget_skips": t.get("teacher_budget_skips", 0), "fallbacks": m["fallbacks"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MiniGrid-MultiRoom-N4-S5-v0")
    parser.add_argument("--steps", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-queries", type=int, default=2000, help="the teacher's question budget per run")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "async_teacher.json")
    args = parser.parse_args(argv)

    from llmguide.rundir import write_json

    began, load_start = time.time(), os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.repeats):
            for arm in ARMS:
                row = run_arm(args.env, arm, args.steps, seed, Path(tmp), args.max_queries)
                rows.append(row)
                print(row, flush=True)
    rate = {arm: statistics.median(r["steps_per_s"] for r in rows if r["arm"] == arm) for arm in ARMS}
    summary = {
        "command": "python benchmarks/async_teacher.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU (shared with other jobs)",
        "load_average_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "env": args.env, "steps": args.steps, "repeats": args.repeats,
        "steps_per_s_median": rate,
        "ratio_vs_plain": {arm: rate[arm] / rate["plain"] for arm in ARMS},
        "runs": rows,
        "wall_s": round(time.time() - began, 1),
    }
    write_json(args.out, summary)
    print({k: summary[k] for k in ("steps_per_s_median", "ratio_vs_plain")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
