"""RLAdapter on Crafter at a fixed, CPU-sized step budget: plain PPO vs PPO + guide
subgoals (no adapter) vs PPO + RLAdapter (adapter LM, LoRA-tuned in stages).

    .venv/bin/python benchmarks/rladapter_crafter.py --steps 15000 --seeds 0 1 \\
        --out benchmarks/results/rladapter_crafter.json

Each (variant, seed) is one `llmguide.core` run (`method: rladapter`) in its own
process (`--parallel` at a time), with its run folder under `--runs`. The
Crafter score and reward are over the episodes finished during training
(Crafter's protocol; `extras.train_crafter` of the run's metrics.json); the
score of the final evaluation of the policy alone (no LLM, zero subgoal) is
kept beside it as `eval_crafter_score`. Writes the JSON (`crafter_score` per
variant, `finetune_s_per_stage`, `comprehension_by_stage`, per-run figures)
and prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

VARIANTS = ("plain", "guide", "rladapter")


def run_one(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """One run through the core; the row keeps the figures `aggregate` reads."""
    from llmguide.core import prepare, run

    t0 = time.perf_counter()
    m = run(prepare(config), Path(run_dir))
    extras = m.extras
    row: dict[str, Any] = {
        "method": m.method, "variant": extras["variant"], "seed": m.seed, "timesteps": m.steps,
        "n_envs": config["n_envs"], "bonus": extras["bonus"], "train_seconds": m.wall_s,
        "final_wait_seconds": extras.get("final_wait_s", 0.0), "steps_per_second": m.steps_per_s,
        "llm": extras["llm_usage"], **extras["train_crafter"], "eval_crafter_score": m.score,
        "wall_seconds": time.perf_counter() - t0,
    }
    if "teacher" in extras:
        row.update(teacher=extras["teacher"], every=extras["every"], finetune_s_per_stage=extras["finetune_s_per_stage"],
                   comprehension_by_stage=extras["comprehension_by_stage"])
    return row


def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [float(x) for x in xs]
    if not xs:
        return 0.0, 0.0
    return statistics.fmean(xs), statistics.pstdev(xs) if len(xs) > 1 else 0.0


def aggregate(runs: list[dict[str, Any]], args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["variant"], []).append(r)
    variants: dict[str, Any] = {}
    for name, rs in by.items():
        score = _mean_std([r["crafter_score"] for r in rs])
        reward = _mean_std([r["reward_mean"] for r in rs])
        entry: dict[str, Any] = {
            "crafter_score": score[0],
            "crafter_score_std": score[1],
            "reward": reward[0],
            "reward_std": reward[1],
            "episodes": sum(r["episodes"] for r in rs),
            "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in rs),
            "seeds": [r["seed"] for r in rs],
        }
        if name != "plain":
            teach = [r["teacher"] for r in rs]
            entry["queries_per_run"] = statistics.fmean(t["queries"] for t in teach)
            entry["guide_ms_mean"] = statistics.fmean(t["guide_ms_mean"] for t in teach)
            entry["comprehension_mean"] = statistics.fmean(t["comprehension_mean"] or 0.0 for t in teach)
            entry["subgoal_counts"] = [t["subgoal_counts"] for t in teach]
        if name == "rladapter":
            teach = [r["teacher"] for r in rs]
            entry["adapter_ms_mean"] = statistics.fmean(t["adapter_ms_mean"] for t in teach)
            entry["finetune_s_per_stage"] = [t["finetune_s_per_stage"] for t in teach]
            entry["comprehension_by_stage"] = [t["comprehension_by_stage"] for t in teach]
            entry["comprehension_n_by_stage"] = [t["comprehension_n_by_stage"] for t in teach]
            stages: dict[str, list[float]] = {}
            for t in teach:
                for k, v in t["comprehension_by_stage"].items():
                    stages.setdefault(k, []).append(v)
            entry["comprehension_by_stage_mean"] = {k: statistics.fmean(v) for k, v in sorted(stages.items())}
            all_ft = [s for t in teach for s in t["finetune_s_per_stage"]]
            entry["finetune_s_per_stage_mean"] = statistics.fmean(all_ft) if all_ft else None
        variants[name] = entry
    rl = variants.get("rladapter", {})
    return {
        "benchmark": "rladapter_crafter",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"2-core CPU, no GPU ({platform.machine()}, shared with other jobs)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "budget": {"total_steps": args.steps, "seeds": args.seeds, "n_envs": base["n_envs"],
                   "every": base["every"], "stage_every": base["stage_every"], "env_kwargs": base["env_kwargs"]},
        "bonus": base["bonus"],
        "guide": base["llm"],
        "adapter": base["adapter"],
        "crafter_score": {k: v["crafter_score"] for k, v in variants.items()},
        "reward": {k: v["reward"] for k, v in variants.items()},
        "finetune_s_per_stage": rl.get("finetune_s_per_stage"),
        "comprehension_by_stage": rl.get("comprehension_by_stage_mean"),
        "variants": variants,
        "runs": runs,
        "reference": "RLAdapter paper: ~28% Crafter score at 1M steps (GPT-4 guide + Llama-2-7B adapter)",
    }


def markdown(result: dict[str, Any]) -> str:
    rows = ["| variant | Crafter score (%) | reward | episodes | LLM queries/run | train s/run |",
            "|---|---|---|---|---|---|"]
    for name in VARIANTS:
        v = result["variants"].get(name)
        if v is None:
            continue
        q = f"{v['queries_per_run']:.0f}" if "queries_per_run" in v else "0"
        rows.append(
            f"| {name} | {v['crafter_score']:.2f} ± {v['crafter_score_std']:.2f} | {v['reward']:.2f} ± {v['reward_std']:.2f}"
            f" | {v['episodes']} | {q} | {v['train_seconds_mean']:.0f} |"
        )
    rl = result["variants"].get("rladapter")
    if rl:
        rows.append("")
        rows.append(f"Fine-tune seconds per stage (per seed): {rl['finetune_s_per_stage']}")
        rows.append(f"Comprehension by adapter stage (mean over seeds): {rl['comprehension_by_stage_mean']}")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--n-envs", type=int, default=4)
    ap.add_argument("--every", type=int, default=500, help="env steps per env between guidance queries")
    ap.add_argument("--stage-every", type=int, default=4000)
    ap.add_argument("--min-records", type=int, default=4)
    ap.add_argument("--stage-sft-steps", type=int, default=10)
    ap.add_argument("--area", type=int, default=32, help="Crafter world size (64 = standard; 32 is ~3x cheaper on CPU)")
    ap.add_argument("--bonus", type=float, default=0.0)
    ap.add_argument("--llm", default="smollm2")
    ap.add_argument("--adapter", default="smollm2")
    ap.add_argument("--parallel", type=int, default=6)
    ap.add_argument("--runs", default="runs/bench_rladapter")
    ap.add_argument("--out", default="benchmarks/results/rladapter_crafter.json")
    args = ap.parse_args()

    base = {
        "method": "rladapter", "total_steps": args.steps, "n_envs": args.n_envs, "every": args.every,
        "stage_every": args.stage_every, "min_records": args.min_records, "stage_sft_steps": args.stage_sft_steps,
        "env_kwargs": {"area": [args.area, args.area]}, "bonus": args.bonus, "llm": args.llm,
        "adapter": args.adapter, "wait_final_s": 600, "eval": {"every": 0, "episodes": 8},
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    jobs = []
    for seed in args.seeds:
        for variant in args.variants:
            cfg = dict(base, variant=variant, seed=seed)
            jobs.append((cfg, str(Path(args.runs) / f"{stamp}__{variant}__{seed}")))
    t0 = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, cfg, rd) for cfg, rd in jobs]
        for (cfg, rd), fut in zip(jobs, futures):
            m = fut.result()
            m["run_dir"] = rd
            runs.append(m)
            print(f"{cfg['variant']:>9} seed {cfg['seed']}: score {m['crafter_score']:.2f} reward {m['reward_mean']:.2f} "
                  f"episodes {m['episodes']} ({m['wall_seconds']:.0f}s)", flush=True)
    result = aggregate(runs, args, base)
    result["wall_seconds"] = time.perf_counter() - t0
    from llmguide.rundir import write_json

    write_json(args.out, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
