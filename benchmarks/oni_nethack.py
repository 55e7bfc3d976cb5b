"""ONI on NetHack benchmark: does the learner ever wait, and what do the three reward models give?

Part 1 (systems): PPO env steps/s on NetHackScore-v0 with ONI on (annotator
process running the LLM, hash reward) vs off (extrinsic only), same seed,
alternating off/on ``--repeats`` times; learner wait time; annotator labels/s
and dedup rate.
Part 2 (learning): a fixed PPO budget on NetHackScore-v0 and a sparse task
(NetHackStaircase-v0) for extrinsic-only and each reward model, 2 seeds:
mean training-episode return and evaluation return (stochastic policy,
``run_episodes`` loop).

    .venv/bin/python benchmarks/oni_nethack.py                  # full (~25 min on 2 cores)
    .venv/bin/python benchmarks/oni_nethack.py --quick          # smoke (~2 min)

Writes benchmarks/results/oni_nethack.json (updated after every run).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from llmguide.teachers.oni.runner import ONIConfig, train_oni
from tqdm.auto import tqdm

from llmguide.rundir import write_json

OUT = Path(__file__).parent / "results" / "oni_nethack.json"


def throughput(steps: int, repeats: int, llm: str, base: dict[str, Any]) -> dict[str, Any]:
    """Alternate off/on runs with the same seed; ratio of mean steps/s."""
    on, off, waits, annot, e2e_dedup, overhead = [], [], [], [], [], []
    base = {k: v for k, v in base.items() if k != "eval_episodes"}
    for _ in tqdm(range(repeats), desc="throughput off/on"):
        m_off = train_oni(ONIConfig(**base, reward_model="none", timesteps=steps, seed=0, eval_episodes=0))
        off.append(m_off["steps_per_s"])
        m_on = train_oni(ONIConfig(**base, reward_model="hash", timesteps=steps, seed=0, eval_episodes=0, llm=llm))
        on.append(m_on["steps_per_s"])
        waits.append(m_on["learner_wait_s"])
        annot.append(m_on["annotator"])
        client = m_on["client"]
        e2e_dedup.append(1.0 - m_on["annotator"].get("accepted", 0) / max(client["submitted"], 1))
        overhead.append(m_on["oni"]["overhead_s"] / m_on["train_s"])
    return {
        "steps": steps,
        "repeats": repeats,
        "steps_per_s_off": off,
        "steps_per_s_on": on,
        "throughput_ratio_on_vs_off": float(np.mean(on) / np.mean(off)),
        "learner_wait_s": float(np.max(waits)),
        "learner_wait_s_per_run": waits,
        "labels_per_s": float(np.mean([a.get("labels_per_s", 0.0) for a in annot])),
        "labels_per_s_wall": float(np.mean([a.get("labels_per_s_wall", 0.0) for a in annot])),
        "labels": [a.get("labels", 0) for a in annot],
        "dedup_rate": float(np.mean(e2e_dedup)),
        "server_dedup_rate": float(np.mean([a.get("dedup_rate", 0.0) for a in annot])),
        "wrapper_overhead_frac": float(np.mean(overhead)),
        "llm_latency_ms_p50": float(np.mean([a.get("llm_latency_ms_p50", 0.0) for a in annot])),
        "llm_fallbacks": int(sum(a.get("llm_fallbacks", 0) for a in annot)),
    }


def learning(tasks: list[str], models: list[str], seeds: list[int], steps: int, llm: str, base: dict[str, Any],
             results: dict[str, Any]) -> None:
    grid = [(t, m, s) for t in tasks for m in models for s in seeds]
    table = results.setdefault("returns", {})
    for task, model, seed in tqdm(grid, desc="learning runs"):
        m = train_oni(ONIConfig(**base, env=task, reward_model=model, timesteps=steps, seed=seed, llm=llm))
        row = table.setdefault(task, {}).setdefault(model, {"seeds": [], "train_return": [], "eval_return": [],
                                                            "steps_per_s": [], "labels": [], "learner_wait_s": []})
        row["seeds"].append(seed)
        row["train_return"].append(m["train_return_mean"])
        row["eval_return"].append(m.get("eval", {}).get("return_mean", float("nan")))
        row["steps_per_s"].append(m["steps_per_s"])
        row["labels"].append(m.get("annotator", {}).get("labels", 0))
        row["learner_wait_s"].append(m.get("learner_wait_s", 0.0))
        row["train_return_mean"] = float(np.mean(row["train_return"]))
        row["eval_return_mean"] = float(np.mean(row["eval_return"]))
        write_json(results["_out"], {k: v for k, v in results.items() if k != "_out"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--tp-steps", type=int, default=8192, help="PPO steps per throughput run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nice", type=int, default=19, help="annotator CPU niceness in the throughput part")
    parser.add_argument("--learn-nice", type=int, default=0, help="annotator niceness in the learning part (labels must flow)")
    parser.add_argument("--reuse-throughput", action="store_true", help="keep part 1 from --out, run part 2 only")
    parser.add_argument("--steps", type=int, default=10240, help="PPO steps per learning run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--tasks", nargs="+", default=["NetHackScore-v0", "NetHackStaircase-v0"])
    parser.add_argument("--models", nargs="+", default=["none", "hash", "classifier", "ranking"])
    parser.add_argument("--eval-episodes", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.tp_steps, args.repeats, args.steps, args.seeds = 1024, 1, 1024, [0]
    base = {"n_envs": 4, "max_episode_steps": 1000, "annotator_nice": args.nice, "annotator_threads": 1,
            "eval_episodes": args.eval_episodes}
    started = time.time()
    results: dict[str, Any] = {
        "_out": args.out,
        "machine": f"{platform.machine()} CPU, {__import__('os').cpu_count()} cores, no GPU (shared with other jobs)",
        "date": time.strftime("%Y-%m-%d"),
        "llm": args.llm,
        "budgets": {"annotator_nice": args.nice, "annotator_nice_learning": args.learn_nice, "throughput_steps": args.tp_steps, "repeats": args.repeats, "learning_steps": args.steps,
                    "seeds": args.seeds, "tasks": args.tasks, "models": args.models, "n_envs": 4,
                    "max_episode_steps": 1000, "eval_episodes": args.eval_episodes},
    }
    if args.reuse_throughput:
        import json

        tp = json.loads(args.out.read_text())["throughput"]
    else:
        tp = throughput(args.tp_steps, args.repeats, args.llm, base)
    results.update(throughput=tp, throughput_ratio_on_vs_off=tp["throughput_ratio_on_vs_off"],
                   learner_wait_s=tp["learner_wait_s"], labels_per_s=tp["labels_per_s"], dedup_rate=tp["dedup_rate"])
    write_json(args.out, {k: v for k, v in results.items() if k != "_out"})
    learning(args.tasks, args.models, args.seeds, args.steps, args.llm, {**base, "annotator_nice": args.learn_nice}, results)
    results["wall_s"] = time.time() - started
    write_json(args.out, {k: v for k, v in results.items() if k != "_out"})
    print(f"wrote {args.out} in {results['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
