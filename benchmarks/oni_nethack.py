"""ONI on NetHack benchmark: does the learner ever wait, and what do the three reward models give?

Part 1 (systems): PPO env steps/s on NetHackScore-v0 with ONI on (annotator
process running the LLM) vs off (extrinsic only), for each reward model
(hash, classifier, ranking; ``--tp-models``), same seed, ``--repeats``
off-then-on pairs per model; the learner's blocked time inside ``step()``
(wall minus its thread's CPU time in ONI's part of the step), learner wait
on the client and client overhead (time inside submit/drain); annotator
labels/s and dedup rate; the reward model's fits and embedded captions (the
classifier and ranking models train in a process of their own on the
annotator's CPUs).
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
    models = tp.get("models") or {"hash": tp}
    print("\nPart 1 - throughput, ONI on vs off (paired runs, same seed and pinning)")
    print(f"  learner CPUs (torch threads) {_cpus(pl.get('learner_cpus'))} ({pl.get('torch_threads', 1)}); "
          f"annotator + reward trainer CPUs {_cpus(pl.get('annotator_cpus'))} (nice {pl.get('annotator_nice', '?')})")
    rows = [
        ("steps/s off", lambda m: ", ".join(f"{x:.0f}" for x in m["steps_per_s_off"])),
        ("steps/s on", lambda m: ", ".join(f"{x:.0f}" for x in m["steps_per_s_on"])),
        ("ratio on/off (means)", lambda m: f"{m['throughput_ratio_on_vs_off']:.3f}"),
        ("ratio on/off (pairs)", lambda m: ", ".join(f"{x:.3f}" for x in m.get("pair_ratios", []))),
        ("steps/CPU-s off", lambda m: ", ".join(f"{x:.0f}" for x in m.get("steps_per_cpu_s_off", []))),
        ("steps/CPU-s on", lambda m: ", ".join(f"{x:.0f}" for x in m.get("steps_per_cpu_s_on", []))),
        ("ratio per learner CPU-s", lambda m: f"{m.get('cpu_ratio_on_vs_off', float('nan')):.3f}"),
        ("learner CPU share off", lambda m: ", ".join(f"{x:.2f}" for x in m.get("learner_cpu_share_off", []))),
        ("learner CPU share on", lambda m: ", ".join(f"{x:.2f}" for x in m.get("learner_cpu_share_on", []))),
        ("learner blocked s in step()", lambda m: f"{m.get('learner_blocked_s', float('nan')):.4f}"),
        ("blocked / train time", lambda m: f"{m.get('learner_blocked_frac', float('nan')):.3%}"),
        ("learner wait s (client)", lambda m: f"{m['learner_wait_s']:.6f}"),
        ("wrapper overhead / train", lambda m: f"{m['wrapper_overhead_frac']:.2%}"),
        ("labels per run", lambda m: ", ".join(map(str, m["labels"]))),
        ("model fits / embedded", lambda m: ", ".join(f"{f}/{e}" for f, e in zip(m.get("model_fits", []), m.get("model_embedded", [])))),
        ("reward model errors", lambda m: str(m.get("reward_model_errors", 0))),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"  {'':<{width}}  " + "  ".join(f"{name:>24}" for name in models))
    for key, cell in rows:
        print(f"  {key:<{width}}  " + "  ".join(f"{cell(m):>24}" for m in models.values()))


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


def _summary(off: list[dict[str, Any]], on: list[dict[str, Any]]) -> dict[str, Any]:
    """On/off figures of one reward model from its paired runs (RunMetrics dicts)."""
    sps_off, sps_on = [m["steps_per_s"] for m in off], [m["steps_per_s"] for m in on]
    # steps per CPU second of the learner's process (all its threads) in learn(): what ONI costs the learner,
    # robust to other jobs taking its CPU away (on a shared machine, wall-clock steps/s measures their load too)
    cpu_off = [m["steps"] / m["extras"]["learn_cpu_s"] for m in off]
    cpu_on = [m["steps"] / m["extras"]["learn_cpu_s"] for m in on]
    extras = [m["extras"] for m in on]
    annot = [e.get("annotator", {}) for e in extras]
    clients = [e.get("client", {}) for e in extras]
    models = [e.get("reward_model_stats") or {} for e in extras]
    return {
        "steps_per_s_off": sps_off,
        "steps_per_s_on": sps_on,
        "throughput_ratio_on_vs_off": float(np.mean(sps_on) / np.mean(sps_off)),
        "pair_ratios": [b / a for a, b in zip(sps_off, sps_on)],
        "steps_per_cpu_s_off": cpu_off,
        "steps_per_cpu_s_on": cpu_on,
        "cpu_ratio_on_vs_off": float(np.mean(cpu_on) / np.mean(cpu_off)),
        "learner_cpu_share_off": [m["extras"]["learn_cpu_s"] / m["extras"]["learn_s"] for m in off],
        "learner_cpu_share_on": [m["extras"]["learn_cpu_s"] / m["extras"]["learn_s"] for m in on],
        "learner_blocked_s": float(np.max([e.get("learner_blocked_s", 0.0) for e in extras])),
        "learner_blocked_s_per_run": [e.get("learner_blocked_s", 0.0) for e in extras],
        "learner_blocked_frac": float(np.mean([e.get("learner_blocked_frac", 0.0) for e in extras])),
        "learner_wait_s": float(np.max([e["learner_wait_s"] for e in extras])),
        "learner_wait_s_per_run": [e["learner_wait_s"] for e in extras],
        "client_overhead_s": float(np.max([e["client_overhead_s"] for e in extras])),
        "client_overhead_frac": float(np.mean([e["client_overhead_frac"] for e in extras])),
        "wrapper_overhead_frac": float(np.mean([e["wrapper_overhead_frac"] for e in extras])),
        "client_incoming_drops": int(sum(c.get("incoming_drops", 0) for c in clients)),
        "labels_per_s": float(np.mean([a.get("labels_per_s", 0.0) for a in annot])),
        "labels_per_s_wall": float(np.mean([a.get("labels_per_s_wall", 0.0) for a in annot])),
        "labels": [a.get("labels", 0) for a in annot],
        "dedup_rate": float(np.mean([1.0 - a.get("accepted", 0) / max(c.get("submitted", 0), 1) for a, c in zip(annot, clients)])),
        "server_dedup_rate": float(np.mean([a.get("dedup_rate", 0.0) for a in annot])),
        "llm_latency_ms_p50": float(np.mean([a.get("llm_latency_ms_p50", 0.0) for a in annot])),
        "llm_fallbacks": int(sum(a.get("llm_fallbacks", 0) for a in annot)),
        "model_remote": [bool(m.get("remote", False)) for m in models],
        "model_fits": [int(m.get("fits", 0)) for m in models],
        "model_embedded": [int(m.get("embedded", 0)) for m in models],
        "model_scored": [int(m.get("scored", 0)) for m in models],
        "reward_model_errors": int(sum(e.get("reward_model_errors", 0) for e in extras)),
        "annotator_restarts": int(sum(e.get("annotator_restarts", 0) for e in extras)),
    }


def throughput(steps: int, repeats: int, llm: str, base: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """For each reward model, ``repeats`` pairs of runs (off, then on) with the same seed and learner pinning.

    Pairs, rather than one off run shared by every model, because the machine is shared: a pair's two runs
    are minutes apart at most, so load that drifts over the benchmark touches both arms alike.
    """
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {m: {"off": [], "on": []} for m in models}
    grid = [(r, m) for r in range(repeats) for m in models]
    for _, spec in tqdm(grid, desc="throughput off/on"):
        model, _, trainer = spec.partition(":")  # "classifier:thread": the model trained in a learner thread
        runs[spec]["off"].append(run_oni(base, 0, reward_model="none", total_steps=steps, seed=0))
        runs[spec]["on"].append(run_oni(base, 0, reward_model=model, reward_trainer=trainer or "process",
                                        total_steps=steps, seed=0, llm=llm))
    out: dict[str, Any] = {"steps": steps, "repeats": repeats,
                           "models": {m: _summary(runs[m]["off"], runs[m]["on"]) for m in models}}
    if "hash" in out["models"]:  # the keys earlier versions of this file had at the top (hash reward model)
        out.update({k: v for k, v in out["models"]["hash"].items() if not k.startswith("model_")})
    return out


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
    parser.add_argument("--repeats", type=int, default=2, help="off/on pairs per reward model in part 1")
    parser.add_argument("--tp-models", nargs="+", default=["hash", "classifier", "ranking"],
                        help="reward models measured on/off in part 1; MODEL:thread trains classifier/ranking "
                        "in a learner thread (the old placement) instead of a process of its own")
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
        "budgets": {"annotator_nice": args.nice, "annotator_nice_learning": args.learn_nice, "throughput_steps": args.tp_steps,
                    "repeats": args.repeats, "throughput_models": args.tp_models, "learning_steps": args.steps,
                    "seeds": args.seeds, "tasks": args.tasks, "models": args.models, "n_envs": 4,
                    "max_episode_steps": 1000, "eval_episodes": args.eval_episodes},
        "placement": placement,
    }
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}  # read before part 1 rewrites it
    if args.reuse_throughput:
        tp = previous["throughput"]
    else:
        tp = throughput(args.tp_steps, args.repeats, args.llm, base, args.tp_models)
        tp["placement"] = placement
    print_throughput(tp)
    ratios = {m: row["throughput_ratio_on_vs_off"] for m, row in (tp.get("models") or {"hash": tp}).items()}
    results.update(throughput=tp, throughput_ratio_on_vs_off=ratios.get("hash", min(ratios.values())),
                   throughput_ratios=ratios, learner_wait_s=tp.get("learner_wait_s"),
                   labels_per_s=tp.get("labels_per_s"), dedup_rate=tp.get("dedup_rate"))
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
