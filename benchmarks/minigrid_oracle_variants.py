"""Does a different oracle make PPO much faster on DoorKey-8x8? (ablation of the guidance signal)

The default oracle names the next object (key, door, goal) and pays 0.1 per reached subgoal,
capped at 0.3 per episode. Variants, all evaluated without the teacher like the main benchmark:

- ``default``: the benchmark's oracle (object subgoals, bonus 0.1, cap 0.3);
- ``bonus0.2``: the same with bonus 0.2, cap 0.6;
- ``positional``: the oracle's cell next to the object instead of the object;
- ``waypoints3`` / ``waypoints5``: short-range cells every 3 (5) steps along the oracle's BFS
  path, then the object itself (pick up the key, open the door); bonus 0.03 (0.05), cap 0.3.

    .venv/bin/python benchmarks/minigrid_oracle_variants.py --seeds 0,1 --jobs 2

Prints a steps-to-0.9 table and writes benchmarks/results/minigrid_oracle_variants.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
ENV = "MiniGrid-DoorKey-8x8-v0"
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {"kind": "object"},
    "bonus0.2": {"kind": "object", "bonus": 0.2, "max_bonus": 0.6},
    "positional": {"kind": "positional"},
    "waypoints3": {"horizon": 3, "bonus": 0.03, "max_bonus": 0.3},
    "waypoints5": {"horizon": 5, "bonus": 0.05, "max_bonus": 0.3},
}


def waypoint_oracle(horizon: int) -> Any:
    """The oracle's plan, handed out `horizon` cells at a time (then the object to act on)."""
    from llmguide.teachers.base import Proposal, Subgoal
    from llmguide.teachers.minigrid_planning import agent_cell, minigrid_base, plan_next, relative_text, shortest_path
    from llmguide.teachers.oracle import OracleTeacher

    def is_open(door: Any) -> bool:
        """Waypoints cross open doors only: opening a closed one is a subgoal of its own."""
        return bool(door.is_open)

    class WaypointOracle(OracleTeacher):
        def __repr__(self) -> str:
            return f"WaypointOracle(horizon={horizon})"

        def _query(self, env: Any, info: dict[str, Any], achieved: list[Subgoal]) -> Proposal:
            target = plan_next(env)
            if target is None:
                return Proposal(None)
            base = minigrid_base(env)
            pos = agent_cell(base)
            dest = target.approach or target.cell
            path = shortest_path(base, pos, dest, is_open) or shortest_path(base, pos, dest, is_open, True)
            if path is None or (target.type != "goal" and len(path) <= 1):
                return Proposal(target.as_subgoal("object", pos))  # at the object: act on it
            cell = path[min(horizon, len(path) - 1)]
            return Proposal(Subgoal("positional", relative_text(cell, pos), cell=cell))

    return WaypointOracle("object")


def run_one(job: tuple[str, int, int, str]) -> dict[str, Any]:
    name, seed, cap, work = job
    import torch

    torch.set_num_threads(1)
    from llmguide.experiment import Experiment

    spec = dict(VARIANTS[name])
    bonus = {k: spec.pop(k) for k in ("bonus", "max_bonus") if k in spec}
    teacher = waypoint_oracle(spec["horizon"]) if "horizon" in spec else {"type": "oracle", "kind": spec["kind"]}
    start = time.perf_counter()
    m = Experiment(ENV, method="subgoal", teacher=teacher, learner="PPO", total_steps=cap, seed=seed, n_envs=8,
                   eval={"every": 10_000, "episodes": 20, "stop_at_target": True, "gate": 0.2}, checkpoint_every=0,
                   guidance=bonus, run_dir=Path(work) / f"{name}__{seed}").run().metrics
    return {"variant": name, "seed": seed, "cap": cap, "steps_to_0.9": m["steps_to_target"],
            "final_success_rate": m["success"], "wall_s": time.perf_counter() - start,
            "evals": [(e["steps"], e["success"], e.get("evaluated", True)) for e in m["curve"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--cap", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", default="runs/benchmarks/minigrid_oracle_variants")
    parser.add_argument("--out", default=str(ROOT / "results" / "minigrid_oracle_variants.json"))
    args = parser.parse_args(argv)
    names, seeds = args.variants.split(","), [int(s) for s in args.seeds.split(",")]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; choose from {list(VARIANTS)}")
    jobs = [(n, s, args.cap, args.work) for n in names for s in seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_one, jobs))
    shown = lambda r: f"{r['steps_to_0.9'] // 1000}k" if r["steps_to_0.9"] else f">{r['cap'] // 1000}k"
    print(f"{'variant':<12}" + "".join(f"{'seed ' + str(s):>10}" for s in seeds))
    for n in names:
        print(f"{n:<12}" + "".join(f"{shown(r):>10}" for r in rows if r["variant"] == n))
    command = "python benchmarks/minigrid_oracle_variants.py " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(args.out).write_text(json.dumps({"command": command.strip(), "env": ENV, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
