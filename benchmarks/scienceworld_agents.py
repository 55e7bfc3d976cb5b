"""ScienceWorld benchmark: random-valid-action vs the LLM agent without / with injected knowledge.

Arms (after Chhikara et al., 2023): random, llm, llm+memory, llm+affordances, llm+memory+affordances,
each over the same tasks and test variations with a small step cap. Each arm is a
normal run dir made by `llmguide.core.run` (config.yaml + metrics.json + episodes.jsonl + logs/), so
`llmguide report RUNS_DIR/*` compares them; this script also writes that report
and benchmarks/results/scienceworld.json.

CPU budget: about 25 minutes on a shared 2-core machine with the defaults
(3 tasks x 1 variation x 5 steps per LLM arm, ~20 s per LLM step under
load; the random arm over 3 seeds).

    .venv/bin/python benchmarks/scienceworld_agents.py --out benchmarks/results/scienceworld.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

# This file is named like the `scienceworld` package: keep its folder off the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

ARMS = {
    "random": {"agent": "random"},
    # the controls that isolate the LLM: the same pre-filter's top candidate, without and with memory
    "ranker": {"agent": "ranker", "memory": False, "affordances": False},
    "ranker+memory": {"agent": "ranker", "memory": True, "affordances": False},
    "llm": {"agent": "llm", "memory": False, "affordances": False},
    "llm+memory": {"agent": "llm", "memory": True, "affordances": False},
    "llm+affordances": {"agent": "llm", "memory": False, "affordances": True},
    "llm+memory+affordances": {"agent": "llm", "memory": True, "affordances": True},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="find-living-thing,boil,melt")
    parser.add_argument("--variations", type=int, default=1, help="first N test variations per task")
    parser.add_argument("--max-steps", type=int, default=5)
    parser.add_argument("--seed-gold", type=int, default=2, help="training variations whose gold paths fill the memory")
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/bench-scienceworld"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scienceworld.json"))
    parser.add_argument("--report", type=Path, default=Path("benchmarks/results/scienceworld_report"))
    args = parser.parse_args(argv)

    from llmguide.core import prepare, run
    from llmguide.rundir import make_run_dir, write_json

    tasks = [t for t in args.tasks.split(",") if t]
    base = {
        "method": "scienceworld", "env": "llmguide/ScienceWorld-v0", "llm": args.llm, "tasks": tasks,
        "variations": args.variations, "split": "test", "max_steps": args.max_steps, "seed_gold": args.seed_gold,
    }
    rows, run_dirs, start = [], [], time.perf_counter()
    for arm in [a for a in args.arms.split(",") if a]:
        seeds = range(args.random_seeds) if arm == "random" else range(1)
        for seed in seeds:
            cfg = {**base, **ARMS[arm], "name": arm, "seed": seed}
            run_dir = make_run_dir("ScienceWorld", f"scienceworld-{arm}", seed, root=args.runs_dir)
            t0 = time.perf_counter()
            m = run(prepare(cfg), run_dir)  # writes config.yaml, episodes.jsonl, logs/ and metrics.json
            run_dirs.append(run_dir)
            row = {
                "arm": arm, "seed": seed, "score_mean": m.score, "success_rate": m.success,
                "failure_rate": m.extras["failure_rate"], "per_task_score": m.extras["per_task_score"],
                "llm_calls_per_step": m.llm_calls_per_1k_steps / 1000.0, "seconds_per_step": m.extras["seconds_per_step"],
                "memory_size": m.extras["memory_size"], "wall_s": time.perf_counter() - t0, "run_dir": str(run_dir),
                "llm_differs_from_ranker": m.extras.get("llm_differs_from_ranker"),
                "first_option_rate": m.first_option_rate, "fallbacks": m.fallbacks,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = None
    try:
        from llmguide.report import build_report

        report = str(build_report(run_dirs, args.report))
    except Exception as err:  # the table in the JSON stands on its own
        print(f"report skipped: {type(err).__name__}: {err}", file=sys.stderr)
    out = {
        "benchmark": "scienceworld", "date": time.strftime("%Y-%m-%d"), "machine": "2-core CPU, no GPU (shared)",
        "python": platform.python_version(), "command": "python benchmarks/scienceworld_agents.py " + " ".join(argv or sys.argv[1:]),
        "config": base, "total_wall_s": time.perf_counter() - start, "rows": rows, "report": report,
    }
    write_json(args.out, out)
    print(f"wrote {args.out} ({out['total_wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
