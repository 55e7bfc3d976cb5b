"""ONI on NetHack benchmark: does the learner ever wait, and what do the three reward models give?

Part 1 (systems): PPO env steps/s on NetHackScore-v0 with ONI on (annotator
process running the LLM, hash reward) vs off (extrinsic only), same seed,
alternating off/on ``--repeats`` times; learner wait time (time blocked on the
annotator) and client overhead (time inside submit/drain); annotator labels/s
and dedup rate.
Part 2 (learning): a fixed PPO budget on NetHackScore-v0 and a sparse task
(NetHackStaircase-v0) for extrinsic-only and each reward model, 2 seeds:
mean training-episode return and evaluation return (stochastic policy on the
plain env, the core's final evaluation).

Every run is one ``method: oni`` run of the core (``llmguide.core.prepare/run``)
in a temporary run dir; its figures come from ``RunMetrics`` and its ``extras``.

    .venv/bin/python benchmarks/oni_nethack.py                  # full (~25 min on 2 cores)
    .venv/bin/python benchmarks/oni_nethack.py --quick          # smoke (~2 min)
    .venv/bin/python benchmarks/oni_nethack.py --learner-cpus 0 --annotator-cpus 1

CPU placement: ``--learner-cpus`` pins this process (PPO, the NLE envs and the
client thread; every thread, before torch starts its own; torch threads = the
number of learner CPUs) and ``--annotator-cpus`` pins the annotator process
(the LLM). Both arms (off and on) run under the same learner pinning, so the
on/off ratio isolates the cost of ONI itself rather than the LLM competing
for the learner's cores (the ONI paper runs the annotator on other hardware).
Unset = no pinning (an annotator started by a pinned learner is given the
CPUs this process had before pinning, not the learner's). ``--nice`` still
applies on top.

Writes benchmarks/results/oni_nethack.json (updated after every run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llmguide.core import prepare, run
from llmguide.rundir import write_json

OUT = Path(__file__).parent / "results" / "oni_nethack.json"


def run_oni(base: dict[str, Any], eval_episodes: int, **config: Any) -> dict[str, Any]:
    """One core run of ``method: oni`` in a temporary run dir: its RunMetrics as a dict.

    The core always ends with an evaluation; ``eval_episodes=0`` (throughput runs) keeps it to one episode.
    ``steps_per_s`` is taken over ``learn()`` alone (``extras.learn_s``; ``eval.every=0`` keeps every
    evaluation out of it), the measure this benchmark has always used.
    """
    raw = {"method": "oni", **base, **config, "eval": {"every": 0, "episodes": max(1, eval_episodes)}}
    with tempfile.TemporaryDirectory(prefix="oni-bench-") as run_dir:
        metrics = run(prepare(raw), Path(run_dir)).model_dump(mode="json")
    metrics["steps_per_s"] = metrics["steps"] / metrics["extras"]["learn_s"]
    return metrics


def parse_cpus(text: str | None) -> list[int] | None:
    """``"0,2-3"`` -> ``[0, 2, 3]``; None or "" -> None (no pinning)."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.update(range(int(lo), int(hi) + 1))
        elif part:
            cpus.add(int(part))
    online = os.sched_getaffinity(0)
    if not cpus or not cpus <= online:
        raise SystemExit(f"CPU ids {sorted(cpus)} are not all available to this process (have {sorted(online)})")
    return sorted(cpus)


def pin_this_process(cpus: list[int]) -> list[int]:
    """Pin every thread of this process (those started at import too) to ``cpus``; returns the new affinity."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that ended meanwhile
    os.sched_setaffinity(0, cpus)
    return sorted(os.sched_getaffinity(0))


def place(learner: list[int] | None, annotator: list[int] | None, nice: int, learn_nice: int) -> dict[str, Any]:
    """Apply the learner pinning now (before torch starts threads); the annotator's is applied when it starts.

    With a pinned learner and no ``--annotator-cpus``, the annotator gets the CPUs this process had before
    pinning (otherwise it would inherit the learner's pinning).
    """
    before = sorted(os.sched_getaffinity(0))
    after = pin_this_process(learner) if learner else before
    annotator_affinity = annotator if annotator else (before if learner else None)
    return {
        "learner_cpus": learner,
        "annotator_cpus": annotator,
        "learner_affinity": after,
        "annotator_affinity": annotator_affinity,  # None: inherits this process's (unpinned) affinity
        "torch_threads": len(learner) if learner else 1,
        "annotator_nice": nice,
        "annotator_nice_learning": learn_nice,
        "cpus_online": before,
    }


def _cpus(cpus: list[int] | None) -> str:
    return ",".join(map(str, cpus)) if cpus else "any"


def print_throughput(tp: dict[str, Any]) -> None:
    pl = tp.get("placement", {})
    rows = [
        ("learner CPUs (torch threads)", f"{_cpus(pl.get('learner_cpus'))} ({pl.get('torch_threads', 1)})"),
        ("annotator CPUs (nice)", f"{_cpus(pl.get('annotator_cpus'))} ({pl.get('annotator_nice', '?')})"),
        ("steps/s off", ", ".join(f"{x:.0f}" for x in tp["steps_per_s_off"])),
        ("steps/s on", ", ".join(f"{x:.0f}" for x in tp["steps_per_s_on"])),
        ("throughput ratio on/off", f"{tp['throughput_ratio_on_vs_off']:.3f}"),
        ("learner wait s (max run)", f"{tp['learner_wait_s']:.6f}"),
        ("client overhead s (max run)", f"{tp.get('client_overhead_s', float('nan')):.4f}"),
        ("client overhead / train time", f"{tp.get('client_overhead_frac', float('nan')):.2%}"),
        ("wrapper overhead / train time", f"{tp['wrapper_overhead_frac']:.2%}"),
        ("labels per run", ", ".join(map(str, tp["labels"]))),
        ("labels/s", f"{tp['labels_per_s']:.2f}"),
        ("dedup rate", f"{tp['dedup_rate']:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nPart 1 - throughput, ONI on vs off")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def print_learning(returns: dict[str, Any]) -> None:
    if not returns:
        return
    print("\nPart 2 - returns (mean over seeds)")
    print(f"  {'task':<22} {'reward':<11} {'train':>8} {'eval':>8} {'steps/s':>8} {'labels':>7} {'wait s':>9} {'overhead s':>10}")
    for task, models in returns.items():
        for model, row in models.items():
            print(f"  {task:<22} {model:<11} {row['train_return_mean']:>8.1f} {row['eval_return_mean']:>8.1f} "
                  f"{np.mean(row['steps_per_s']):>8.0f} {np.mean(row['labels']):>7.0f} "
                  f"{max(row['learner_wait_s']):>9.6f} {max(row.get('client_overhead_s', [0.0])):>10.4f}")


def throughput(steps: int, repeats: int, llm: str, base: dict[str, Any]) -> dict[str, Any]:
    """Alternate off/on runs with the same seed (same learner pinning); ratio of mean steps/s."""
    on, off, waits, annot, e2e_dedup, overhead, client_oh, client_frac, drops = [], [], [], [], [], [], [], [], []
    for _ in tqdm(range(repeats), desc="throughput off/on"):
        m_off = run_oni(base, 0, reward_model="none", total_steps=steps, seed=0)
        off.append(m_off["steps_per_s"])
        m_on = run_oni(base, 0, reward_model="hash", total_steps=steps, seed=0, llm=llm)
        on.append(m_on["steps_per_s"])
        extras = m_on["extras"]
        waits.append(extras["learner_wait_s"])
        annot.append(extras["annotator"])
        client = extras["client"]
        e2e_dedup.append(1.0 - extras["annotator"].get("accepted", 0) / max(client["submitted"], 1))
        overhead.append(extras["wrapper_overhead_frac"])
        client_oh.append(extras["client_overhead_s"])
        client_frac.append(extras["client_overhead_frac"])
        drops.append(client.get("incoming_drops", 0))
    return {
        "steps": steps,
        "repeats": repeats,
        "steps_per_s_off": off,
        "steps_per_s_on": on,
        "throughput_ratio_on_vs_off": float(np.mean(on) / np.mean(off)),
        "learner_wait_s": float(np.max(waits)),
        "learner_wait_s_per_run": waits,
        "client_overhead_s": float(np.max(client_oh)),
        "client_overhead_s_per_run": client_oh,
        "client_overhead_frac": float(np.mean(client_frac)),
        "client_incoming_drops": int(sum(drops)),
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
             eval_episodes: int, results: dict[str, Any]) -> None:
    grid = [(t, m, s) for t in tasks for m in models for s in seeds]
    table = results.setdefault("returns", {})
    for task, model, seed in tqdm(grid, desc="learning runs"):
        m = run_oni(base, eval_episodes, env=task, reward_model=model, total_steps=steps, seed=seed, llm=llm)
        extras = m["extras"]
        row = table.setdefault(task, {}).setdefault(model, {"seeds": [], "train_return": [], "eval_return": [],
                                                            "steps_per_s": [], "labels": [], "learner_wait_s": [],
                                                            "client_overhead_s": []})
        row["seeds"].append(seed)
        row["train_return"].append(extras["train_return_mean"] or 0.0)
        row["eval_return"].append(m["return_mean"] if m["return_mean"] is not None else float("nan"))
        row["steps_per_s"].append(m["steps_per_s"])
        row["labels"].append(extras.get("annotator", {}).get("labels", 0))
        row["learner_wait_s"].append(extras.get("learner_wait_s", 0.0))
        row["client_overhead_s"].append(extras.get("client_overhead_s", 0.0))
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
    parser.add_argument("--skip-learning", action="store_true", help="run part 1 only; keep part 2 from --out")
    parser.add_argument("--steps", type=int, default=10240, help="PPO steps per learning run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--tasks", nargs="+", default=["NetHackScore-v0", "NetHackStaircase-v0"])
    parser.add_argument("--models", nargs="+", default=["none", "hash", "classifier", "ranking"])
    parser.add_argument("--eval-episodes", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run")
    parser.add_argument("--learner-cpus", default=None,
                        help="pin this process (PPO, envs, client thread) to these CPU ids, e.g. 0 or 0,1; default: no pinning")
    parser.add_argument("--annotator-cpus", default=None,
                        help="pin the annotator process (the LLM) to these CPU ids, e.g. 1; default: no pinning")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.tp_steps, args.repeats, args.steps, args.seeds = 1024, 1, 1024, [0]
    placement = place(parse_cpus(args.learner_cpus), parse_cpus(args.annotator_cpus), args.nice, args.learn_nice)
    base = {"n_envs": 4, "max_episode_steps": 1000, "annotator_nice": args.nice, "annotator_threads": 1,
            "annotator_cpus": placement["annotator_affinity"], "torch_threads": placement["torch_threads"]}
    started = time.time()
    results: dict[str, Any] = {
        "_out": args.out,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU (shared with other jobs)",
        "date": time.strftime("%Y-%m-%d"),
        "llm": args.llm,
        "budgets": {"annotator_nice": args.nice, "annotator_nice_learning": args.learn_nice, "throughput_steps": args.tp_steps, "repeats": args.repeats, "learning_steps": args.steps,
                    "seeds": args.seeds, "tasks": args.tasks, "models": args.models, "n_envs": 4,
                    "max_episode_steps": 1000, "eval_episodes": args.eval_episodes},
        "placement": placement,
    }
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}  # read before part 1 rewrites it
    if args.reuse_throughput:
        tp = previous["throughput"]
    else:
        tp = throughput(args.tp_steps, args.repeats, args.llm, base)
        tp["placement"] = placement
    print_throughput(tp)
    results.update(throughput=tp, throughput_ratio_on_vs_off=tp["throughput_ratio_on_vs_off"],
                   learner_wait_s=tp["learner_wait_s"], labels_per_s=tp["labels_per_s"], dedup_rate=tp["dedup_rate"])
    write_json(args.out, {k: v for k, v in results.items() if k != "_out"})
    if args.skip_learning:  # part 2 as measured by an earlier invocation, with its budgets
        results["returns"] = previous.get("returns", {})
        budgets = previous.get("budgets") or {}
        results["budgets"]["learning"] = budgets.get("learning") or {
            k: budgets.get(k) for k in ("learning_steps", "seeds", "tasks", "models", "annotator_nice_learning")}
    else:
        learning(args.tasks, args.models, args.seeds, args.steps, args.llm, {**base, "annotator_nice": args.learn_nice},
                 args.eval_episodes, results)
    results["wall_s"] = time.time() - started
    write_json(args.out, {k: v for k, v in results.items() if k != "_out"})
    print_learning(results.get("returns", {}))
    print(f"wrote {args.out} in {results['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
