"""Sweeps on Ray: overhead of one trial through Ray, scaling 1 -> 2 worker CPUs, and the expected
wall time of the DoorKey comparison (configs/demo.yaml, 4 arms) at 10 seeds on a 16-node cluster.

- overhead: the same run as `llmguide run CONFIG` and as `llmguide sweep CONFIG` (a local Ray
  instance started by the sweep), both end to end as subprocesses; the ratio of wall times (target
  <= 1.05), the fixed seconds Ray adds, and the trial length at which those seconds are 5%;
- scaling: the same 4-trial sweep with `--num-cpus 1` and `--num-cpus 2` (target >= 1.8x);
- on paper: each demo arm measured as a sweep trial at a short budget (`--demo-steps`), scaled to
  its 100k steps and 5 evaluations, then 40 trials (4 arms x 10 seeds) placed longest first on
  16 nodes x `--cpus-per-node` trial slots, plus the measured sweep start-up.

    python benchmarks/sweep.py --out benchmarks/results/sweep.json
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def _tiny(steps: int, env: str = "MiniGrid-DoorKey-5x5-v0") -> dict[str, Any]:
    return {"method": "subgoal", "env": env, "teacher": {"type": "oracle", "kind": "object"},
            "total_steps": steps, "n_envs": 1, "learner_kwargs": {"n_steps": 128, "batch_size": 64, "n_epochs": 4},
            "policy_kwargs": {"net_arch": [32]}, "eval": {"every": 0, "episodes": 10, "n_envs": 1},
            "checkpoint_every": 0}


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return wall


def _sweep(config: Path, runs: Path, env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
    runs.mkdir(parents=True, exist_ok=True)
    before = set(runs.iterdir())
    wall = _timed([str(BIN / "llmguide"), "sweep", str(config), "--runs-dir", str(runs), "--refresh", "30", *args], env)
    (sweep_dir,) = set(runs.iterdir()) - before
    return wall, json.loads((sweep_dir / "results.json").read_text())


def _write(work: Path, name: str, cfg: dict[str, Any]) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def overhead(work: Path, env: dict[str, str], steps: int, n_rounds: int) -> dict[str, Any]:
    """`llmguide run` vs `llmguide sweep` on one identical trial, alternated `rounds` times (load on a
    shared machine changes by the minute: the median round is the figure, every round is kept)."""
    cfg = _write(work, "overhead", _tiny(steps))
    rounds = []
    for i in range(n_rounds):
        direct_runs = work / f"direct{i}"
        direct = _timed([str(BIN / "llmguide"), "run", str(cfg), "--runs-dir", str(direct_runs), "--no-progress"], env)
        direct_train = json.loads(next(direct_runs.glob("*/metrics.json")).read_text())["wall_s"]
        ray_wall, results = _sweep(cfg, work / f"ray{i}", env, "--num-cpus", "1")
        trial = results["trials"][0]
        rounds.append({"direct_s": direct, "ray_s": ray_wall, "ratio": ray_wall / direct,
                       "direct_train_s": direct_train, "ray_train_s": trial["wall_s"],
                       "ray_trial_s": trial["trial_wall_s"]})
    ratio = statistics.median(r["ratio"] for r in rounds)
    fixed = statistics.median(r["ray_s"] - r["direct_s"] for r in rounds)
    return {"steps": steps, "rounds": rounds, "ratio": ratio, "ray_fixed_s": fixed,
            "train_ratio": statistics.median(r["ray_train_s"] / r["direct_train_s"] for r in rounds),
            "direct_s_median": statistics.median(r["direct_s"] for r in rounds),
            # the part of a sweep outside its trials: CLI and Ray start, Tune's loop, report, shutdown
            "sweep_outside_trials_s": statistics.median(r["ray_s"] - r["ray_trial_s"] for r in rounds),
            "trial_s_for_1.05": max(fixed, 0.0) / 0.05, "target": 1.05, "met": ratio <= 1.05}


def scaling(work: Path, env: dict[str, str], steps: int) -> dict[str, Any]:
    cfg = _write(work, "scaling", _tiny(steps))
    walls = {}
    for cpus in (1, 2):
        wall, results = _sweep(cfg, work / f"scale{cpus}", env, "--seeds", "0-3", "--num-cpus", str(cpus))
        assert all(t["status"] == "finished" for t in results["trials"]), results
        walls[cpus] = {"wall_s": wall, "trial_s": [t["trial_wall_s"] for t in results["trials"]],
                       "train_steps_per_s": [t["steps_per_s"] for t in results["trials"]]}
    speedup = walls[1]["wall_s"] / walls[2]["wall_s"]
    return {"steps": steps, "trials": 4, "cpus_1": walls[1], "cpus_2": walls[2], "speedup": speedup,
            "target": 1.8, "met": speedup >= 1.8}


def demo_estimate(work: Path, env: dict[str, str], steps: int, nodes: int, cpus_per_node: int, seeds: int,
                  startup_s: float) -> dict[str, Any]:
    """Measure each demo arm as a trial at `steps`, scale to the demo's budget, schedule 40 trials."""
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    full_steps, evals = int(demo["total_steps"]), int(demo["total_steps"]) // int(demo["eval"]["every"])
    short = {**demo, "total_steps": steps, "eval": {**demo["eval"], "every": 0}, "checkpoint_every": 0}
    _, results = _sweep(_write(work, "demo", short), work / "demo", env, "--num-cpus", "2")
    arms = {}
    for trial in results["trials"]:
        assert trial["status"] == "finished", trial
        metrics = json.loads((Path(trial["run_dir"]) / "metrics.json").read_text())
        eval_s = float(metrics["extras"].get("eval_s") or 0.0)  # one 20-episode evaluation at the end
        fixed = trial["trial_wall_s"] - metrics["wall_s"] - eval_s  # env/learner/LLM start-up, record, copies
        full = fixed + full_steps / metrics["steps_per_s"] + evals * eval_s
        arms[trial["trial"]] = {"steps_per_s": metrics["steps_per_s"], "eval_s": eval_s, "fixed_s": fixed,
                                "trial_s_at_full_budget": full}
    durations = sorted([a["trial_s_at_full_budget"] for a in arms.values() for _ in range(seeds)], reverse=True)
    slots = [0.0] * (nodes * cpus_per_node)  # one trial per CPU: a demo trial asks for 1 CPU (dummy vec envs)
    heapq.heapify(slots)
    for d in durations:  # longest first onto the slot that frees first
        heapq.heappush(slots, heapq.heappop(slots) + d)
    makespan = max(slots)
    serial = sum(durations)
    return {"measured_steps": steps, "full_steps": full_steps, "evals_per_trial": evals, "arms": arms,
            "nodes": nodes, "cpus_per_node": cpus_per_node, "seeds": seeds, "trials": len(durations),
            "startup_s": startup_s, "expected_wall_s": startup_s + makespan, "serial_one_cpu_s": serial,
            "note": "per-trial times measured on this shared 2-core machine (2 trials at once); a node is "
                    "assumed to run one trial per CPU at the measured speed"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead-steps", type=int, default=16384, help="Env steps of the overhead trial.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternated direct/Ray rounds of the overhead trial.")
    parser.add_argument("--scaling-steps", type=int, default=4096, help="Env steps of each scaling trial.")
    parser.add_argument("--demo-steps", type=int, default=8192, help="Steps each demo arm is measured at.")
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--cpus-per-node", type=int, default=2, help="Trial slots per node (this machine: 2).")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweep.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmguide-bench-sweep-"))
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt", dir="/tmp"), "RAY_USAGE_STATS_ENABLED": "0",
           "LLMGUIDE_CACHE_DIR": str(work / "cache")}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        over = overhead(work, env, args.overhead_steps, args.rounds)
        print(f"overhead: ratio {over['ratio']:.3f}, Ray adds {over['ray_fixed_s']:.1f} s", flush=True)
        scale = scaling(work, env, args.scaling_steps)
        print(f"scaling 1 -> 2 CPUs: {scale['speedup']:.2f}x", flush=True)
        estimate = demo_estimate(work, env, args.demo_steps, args.nodes, args.cpus_per_node, args.seeds,
                                 startup_s=over["sweep_outside_trials_s"])
        print(f"demo at {args.seeds} seeds on {args.nodes} nodes: {estimate['expected_wall_s'] / 60:.1f} min", flush=True)
    finally:
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    out = {"date": started, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared (load average at the "
           f"end {load[0]:.1f})", "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
           "overhead": over, "scaling": scale, "demo_10_seeds_16_nodes": estimate}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
