"""Teacher time per 1k env steps with a VecEnv's questions batched (`guidance.batched`) or asked one
call per env, 4 envs, the real embedded model, beside the no-LLM control (the oracle teacher).

Random actions on KeyCorridorS3R1 with short episodes (``max_steps`` 25), object
subgoals: colours and objects change per layout, so the teacher's cache misses at
many resets, the case where per-env calls add up. (Positional subgoals on DoorKey-5x5
were tried first: ~19 s per question on the loaded machine, new option texts, hence
new option priors, every time; too slow to run here.) The LLM response
cache is off and each arm gets a fresh teacher cache, so every question costs a real
model call in both LLM arms. Arms run interleaved per repeat (seed) so a loaded
machine slows them alike. Teacher seconds: time inside ``Teacher.propose`` plus,
batched, inside the batch call; wall seconds: the whole VecEnv loop.

    python benchmarks/batched_teacher.py                         # 400 env steps x 3 seeds
    python benchmarks/batched_teacher.py --steps 200 --repeats 1 --out /tmp/b.json   # smoke

Writes ``benchmarks/results/batched_teacher.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
ARMS = ("oracle", "llm-unbatched", "llm-batched")
N_ENVS = 4


def run_arm(arm: str, env_id: str, steps: int, seed: int, llm: str, max_steps: int) -> dict[str, Any]:
    """Step 4 envs with random actions for ``steps`` env steps in all; returns the teacher's time and calls."""
    from llmguide.agents.guidance import make_minigrid_env
    from llmguide.agents.vec_guidance import BatchedTeacherVecEnv
    from llmguide.teachers import OracleTeacher, SubgoalTeacher
    from stable_baselines3.common.vec_env import DummyVecEnv

    if arm == "oracle":
        teacher: Any = OracleTeacher("object")
    else:
        teacher = SubgoalTeacher(llm, "object", cache=True, max_queries=None, seed=seed,
                                 llm_kwargs={"n_threads": 1, "cache": False})
    batched = arm == "llm-batched"
    spent = [0.0]
    propose = teacher.propose

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return propose(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    teacher.propose = timed  # type: ignore[method-assign]
    thunk = make_minigrid_env(env_id, teacher, observe_subgoal=True, batched=batched, env_kwargs={"max_steps": max_steps})
    venv: Any = DummyVecEnv([thunk] * N_ENVS)
    if batched:
        venv = BatchedTeacherVecEnv(venv, teacher)
    venv.seed(seed)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    venv.reset()
    for _ in range(steps // N_ENVS):
        venv.step(rng.integers(0, 7, N_ENVS))
    wall = time.perf_counter() - start
    teacher_s = spent[0] + (venv.teacher_seconds if batched else 0.0)
    venv.close()
    n = (steps // N_ENVS) * N_ENVS
    stats = teacher.stats
    return {
        "arm": arm, "seed": seed, "env_steps": n,
        "teacher_s_per_1k": 1000.0 * teacher_s / n, "wall_s_per_1k": 1000.0 * wall / n,
        "queries": stats.queries, "llm_questions": stats.llm_queries, "cache_hits": stats.cache_hits,
        "batches": getattr(venv, "batches", None),
        "mean_batch_size": float(np.mean(venv.batch_sizes)) if batched and venv.batch_sizes else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MiniGrid-KeyCorridorS3R1-v0")
    parser.add_argument("--steps", type=int, default=400, help="env steps per arm and seed (all 4 envs together)")
    parser.add_argument("--repeats", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--max-steps", type=int, default=25, help="episode length cap")
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--alternate", action="store_true",
                        help="swap the LLM arms' order on odd seeds (the first arm pays new option priors)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "batched_teacher.json")
    args = parser.parse_args(argv)

    from llmguide.rundir import write_json

    began, load_start = time.time(), os.getloadavg()[0]
    run_arm("llm-unbatched", args.env, N_ENVS, 99, args.llm, args.max_steps)  # warm-up: the model loaded once
    rows: list[dict[str, Any]] = []
    for seed in range(args.repeats):
        # the LLM arms swap order every seed: the first one pays the option priors (cached per process
        # by option text, `llmguide.llm.structured`) for options no earlier question had
        order = ARMS if seed % 2 == 0 or not args.alternate else (ARMS[0], ARMS[2], ARMS[1])
        for arm in order:
            row = run_arm(arm, args.env, args.steps, seed, args.llm, args.max_steps)
            rows.append(row)
            print(row, flush=True)
        # written after every seed, so a run stopped early keeps the seeds it finished
        write_json(args.out, _summary(args, argv, rows, began, load_start, complete=seed == args.repeats - 1))
    return 0


def _summary(args: Any, argv: list[str] | None, rows: list[dict[str, Any]], began: float, load_start: float,
             complete: bool) -> dict[str, Any]:
    done = sorted({r["seed"] for r in rows})

    def med(arm: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["arm"] == arm)

    return {
        "command": "python benchmarks/batched_teacher.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU (shared with other jobs)",
        "load_average_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "env": args.env, "n_envs": N_ENVS, "steps": args.steps, "seeds": done, "complete": complete,
        "max_steps": args.max_steps, "llm": args.llm, "alternate": args.alternate,
        "teacher_s_per_1k_median": {arm: med(arm, "teacher_s_per_1k") for arm in ARMS},
        "wall_s_per_1k_median": {arm: med(arm, "wall_s_per_1k") for arm in ARMS},
        "llm_questions_median": {arm: med(arm, "llm_questions") for arm in ARMS},
        "runs": rows,
        "wall_s": round(time.time() - began, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
