"""ScienceWorld benchmark: the LLM agent with injected knowledge against its controls.

Arms (after Chhikara et al., 2023): random (uniform valid action), ranker (no LLM: the MiniLM
pre-filter's top candidate), ranker+memory (no LLM: memory hits first, the memory-only control), llm,
llm+memory, llm+affordances, llm+memory+affordances, each over the same tasks, test variations and
seeds (--seeds, the same list for every arm). The ranker and LLM arms are deterministic (temperature-0
choices, no sampling): their seeds only renumber the episodes; the random arm's seed drives its draws.
Each arm is a normal run dir made by `llmguide.core.run` (config.yaml + metrics.json + episodes.jsonl +
logs/), so `llmguide report RUNS_DIR/*` compares them; this script also writes that report and
benchmarks/results/scienceworld.json. Rows are merged into that JSON (a row with the same arm, seed,
step cap, variations, tasks and LLM replaces the old one), so the cheap controls and the slow LLM arms
can run as separate invocations; each invocation is listed with its command, date and load average.

Per row: mean score and its IQM with a stratified (per task) bootstrap 95% interval over episodes,
per-task scores, failure rate, LLM calls and seconds per step, and the LLM's choice figures: the share
of decisions where it overruled the ranker's top candidate, its first-option rate and fallback rate.

    .venv/bin/python benchmarks/scienceworld_agents.py --arms random,ranker,ranker+memory --variations 10
    .venv/bin/python benchmarks/scienceworld_agents.py --arms llm,llm+memory --variations 10 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
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


def _key_config(base: dict, episodes: int) -> dict:
    return {"tasks": base["tasks"], "variations": base["variations"], "max_steps": base["max_steps"],
            "llm": base["llm"], "seed_gold": base["seed_gold"], "episodes": episodes}


def _row_key(row: dict) -> str:
    return json.dumps([row["arm"], row["seed"], row["config"]], sort_keys=True)


def _row(m, run_dir: Path) -> dict:
    """One run's figures: scores (mean; IQM with a per-task bootstrap interval), cost, choice figures."""
    from llmguide.stats import iqm_interval

    episodes = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines() if line.strip()]
    by_task: dict[str, list[float]] = {}
    for e in episodes:
        by_task.setdefault(str(e["extra"]["task"]), []).append(float(e["extra"]["score"]))
    ci = iqm_interval(by_task)
    steps = sum(int(e["length"]) for e in episodes)
    decisions = m.extras.get("decisions") or 0
    return {
        "episodes": len(episodes), "steps": steps, "score_mean": m.score, "score_iqm95": [ci.value, ci.low, ci.high],
        "success_rate": m.success, "failure_rate": m.extras["failure_rate"], "per_task_score": m.extras["per_task_score"],
        "episode_scores": by_task,
        "llm_calls_per_step": m.llm_calls_per_1k_steps / 1000.0, "seconds_per_step": m.extras["seconds_per_step"],
        "memory_size": m.extras["memory_size"], "decisions": decisions,
        "llm_differs_from_ranker": m.extras.get("llm_differs_from_ranker"),
        "first_option_rate": m.first_option_rate, "fallbacks": m.fallbacks,
        "fallback_rate": m.fallbacks / decisions if decisions and m.llm_calls_per_1k_steps else None,
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Per arm and setting, over seeds: mean score (min-max over seeds) and the pooled episodes' IQM interval."""
    from llmguide.stats import iqm_interval

    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(json.dumps([r["arm"], r["config"]], sort_keys=True), []).append(r)
    out = []
    for key, rs in groups.items():
        arm, config = json.loads(key)
        pooled: dict[str, list[float]] = {}
        for r in rs:
            for task, scores in r["episode_scores"].items():
                pooled.setdefault(task, []).extend(scores)
        ci = iqm_interval(pooled)
        means = [r["score_mean"] for r in rs]
        out.append({"arm": arm, "config": config, "seeds": sorted(r["seed"] for r in rs),
                    "episodes": sum(r["episodes"] for r in rs), "score_mean": sum(means) / len(means),
                    "score_mean_range": [min(means), max(means)], "score_iqm95": [ci.value, ci.low, ci.high],
                    "per_task_score": {t: sum(v) / len(v) for t, v in pooled.items()},
                    "failure_rate": sum(r["failure_rate"] for r in rs) / len(rs),
                    "seconds_per_step": sum(r["seconds_per_step"] for r in rs) / len(rs),
                    "llm_calls_per_step": sum(r["llm_calls_per_step"] for r in rs) / len(rs),
                    "llm_differs_from_ranker": rs[0].get("llm_differs_from_ranker"),
                    "first_option_rate": rs[0].get("first_option_rate"), "fallback_rate": rs[0].get("fallback_rate")})
    return out


def save(args: argparse.Namespace, base: dict, seeds: list[int], rows: list[dict], run_dirs: list[Path], start: float,
         report: bool) -> dict:
    """Merge this invocation's rows into --out (replacing rows with the same arm, seed and config) and
    rewrite its summary; with ``report`` also build the report over every merged row's run."""
    from llmguide.rundir import write_json

    command = "python benchmarks/scienceworld_agents.py " + " ".join(args.argv)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    mine = {_row_key(r) for r in rows}
    kept = [r for r in old.get("rows", []) if "config" in r and _row_key(r) not in mine]  # pre-merge rows dropped
    built = None
    if report:
        try:  # over every row's run, this invocation's and the earlier ones'
            from llmguide.report import build_report

            every = [Path(r["run_dir"]) for r in kept if Path(r["run_dir"]).is_dir()] + run_dirs
            built = str(build_report(every, args.report))
        except Exception as err:  # the table in the JSON stands on its own
            print(f"report skipped: {type(err).__name__}: {err}", file=sys.stderr)
    invocation = {"command": command, "date": args.date, "arms": args.arms, "seeds": seeds, "config": base,
                  "wall_s": round(time.perf_counter() - start, 1), "finished": report,
                  "load_average_end": [round(x, 2) for x in os.getloadavg()], "report": built}
    earlier = [i for i in old.get("invocations", []) if "command" in i and i.get("id") != args.date_id]
    out = {
        "benchmark": "scienceworld", "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU (shared)",
        "python": platform.python_version(),
        "invocations": earlier + [{"id": args.date_id, **invocation}],
        "rows": kept + rows,
    }
    out["summary"] = summarize(out["rows"])
    write_json(args.out, out)
    return invocation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="find-living-thing,boil,melt")
    parser.add_argument("--variations", type=int, default=1, help="first N test variations per task")
    parser.add_argument("--max-steps", type=int, default=5)
    parser.add_argument("--seed-gold", type=int, default=2, help="training variations whose gold paths fill the memory")
    parser.add_argument("--seeds", default="0,1,2", help="Run seeds, the same for every arm.")
    parser.add_argument("--episodes", type=int, default=1, help="Rounds over every task variation per run.")
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/bench-scienceworld"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scienceworld.json"))
    parser.add_argument("--report", type=Path, default=Path("benchmarks/results/scienceworld_report"))
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.date_id = f"{time.time_ns()}-{os.getpid()}"

    from llmguide.core import prepare, run
    from llmguide.rundir import make_run_dir

    tasks = [t for t in args.tasks.split(",") if t]
    base = {
        "method": "scienceworld", "env": "llmguide/ScienceWorld-v0", "llm": args.llm, "tasks": tasks,
        "variations": args.variations, "split": "test", "max_steps": args.max_steps, "seed_gold": args.seed_gold,
    }
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    rows, run_dirs, start = [], [], time.perf_counter()
    for arm in [a for a in args.arms.split(",") if a]:
        if arm not in ARMS:
            parser.error(f"unknown arm {arm!r}; known arms: {', '.join(ARMS)}")
        for seed in seeds:
            cfg = {**base, **ARMS[arm], "name": arm, "seed": seed, "episodes": args.episodes}
            run_dir = make_run_dir("ScienceWorld", f"scienceworld-{arm}", seed, root=args.runs_dir)
            t0, load0 = time.perf_counter(), os.getloadavg()[0]
            m = run(prepare(cfg), run_dir)  # writes config.yaml, episodes.jsonl, logs/ and metrics.json
            run_dirs.append(run_dir)
            row = {"arm": arm, "seed": seed, "config": _key_config(base, args.episodes), **_row(m, run_dir),
                   "wall_s": time.perf_counter() - t0, "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
                   "run_dir": str(run_dir)}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("episode_scores", "config")}), flush=True)
            save(args, base, seeds, rows, run_dirs, start, report=False)  # a run cut short keeps the finished rows
    invocation = save(args, base, seeds, rows, run_dirs, start, report=True)
    print(f"wrote {args.out} ({invocation['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
