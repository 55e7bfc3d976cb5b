"""DiLu on highway-env: does success rise with memory size? Against an SB3 DQN, and under shifted traffic.

Phases (each result is written to the JSON as soon as it exists, so a run cut
short keeps what it measured):
1. build: the DiLu agent drives training seeds with learning and reflection on
   until the memory holds max(--sizes) experiences (memory growth recorded);
2. evaluate: for each memory size N, a frozen memory with the first N
   experiences (insertion order), on --episodes seeded evaluation episodes of
   --decisions decisions in DiLu's setting (highway-v0, 4 lanes, 15 vehicles,
   density 2); the sizes in --gen-sizes also at density 3 and with 5 lanes;
3. baselines on the same seeds/settings: always-IDLE, random available action,
   and an SB3 DQN trained on highway-fast-v0 for --dqn-steps steps.
Cells run in that order of priority; once --budget-min is spent the remaining
LLM cells are marked skipped rather than run.

Example:
    python benchmarks/dilu_highway.py --episodes 3 --decisions 10 --sizes 0,5,20,40 --budget-min 25
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},  # DiLu's setting: llmguide.agents.dilu.DILU_ENV_CONFIG
    "density3": {"vehicles_density": 3},
    "lanes5": {"lanes_count": 5},
}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def evaluate(agent: Any, setting: str, args: argparse.Namespace, desc: str) -> dict[str, Any]:
    """Success (no collision), decisions survived, mean speed and LLM cost over the evaluation seeds."""
    from llmguide.agents.dilu import DrivingLog, make_dilu_env, no_collision
    from llmguide.agents.loop import run_episodes

    from llmguide.llm import METER

    env = make_dilu_env(env_config={"duration": args.decisions, **SETTINGS[setting]})
    log = DrivingLog()
    calls0, start = METER.snapshot().calls, time.perf_counter()
    records = run_episodes(log.wrap(agent), env, args.episodes, seed=args.eval_seed, max_steps=args.decisions,
                           success_fn=no_collision, extra_fn=log.extra, progress=True, desc=desc)
    env.close()
    steps = sum(r.length for r in records)
    n = len(records)
    return {
        "setting": setting,
        "episodes": n,
        "success_rate": sum(r.success for r in records) / n,
        "decisions_survived_mean": sum(r.extra["decisions_survived"] for r in records) / n,
        "mean_speed": sum(r.extra["mean_speed"] for r in records) / n,
        "llm_calls_per_decision": (METER.snapshot().calls - calls0) / max(steps, 1),
        "seconds_per_decision": (time.perf_counter() - start) / max(steps, 1),
        "per_episode_success": [bool(r.success) for r in records],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="smollm2", help="Comma-separated model specs (smollm2, gguf:PATH, openai:...).")
    parser.add_argument("--sizes", default="0,5,20,40", help="Memory sizes to evaluate.")
    parser.add_argument("--gen-sizes", default="0,40", help="Sizes also evaluated at density 3 and with 5 lanes.")
    parser.add_argument("--episodes", type=int, default=3, help="Evaluation episodes per cell (seeds eval-seed...).")
    parser.add_argument("--decisions", type=int, default=10, help="Decisions per episode (DiLu: 20).")
    parser.add_argument("--eval-seed", type=int, default=0)
    parser.add_argument("--build-seed", type=int, default=1000, help="First seed of the memory-building episodes.")
    parser.add_argument("--build-episodes", type=int, default=10, help="At most this many building episodes.")
    parser.add_argument("--k", type=int, default=3, help="Retrieved experiences per decision.")
    parser.add_argument("--cot-tokens", type=int, default=32, help="Chain-of-thought token cap.")
    parser.add_argument("--dqn-steps", type=int, default=5000, help="DQN training steps on highway-fast-v0 (0 = skip).")
    parser.add_argument("--dqn-model", default=None, help="Evaluate this saved DQN (.zip) instead of training one.")
    parser.add_argument("--no-baselines", action="store_true", help="Skip the always-IDLE and random baselines.")
    parser.add_argument("--budget-min", type=float, default=25.0, help="Wall-clock budget for the LLM cells.")
    parser.add_argument("--build-budget-min", type=float, default=10.0, help="Wall-clock budget for building the memory.")
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "bench_dilu"), help="Memories and the DQN model.")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dilu_highway.json"))
    args = parser.parse_args(argv)

    from llmguide.agents.dilu import DiLuAgent, make_dilu_env
    from llmguide.agents.loop import RandomAgent
    from llmguide.memory import ExperienceMemory

    from llmguide.llm import load
    from llmguide.rundir import write_json

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sizes, gen_sizes = _ints(args.sizes), _ints(args.gen_sizes)
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "dilu_highway",
        "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU (shared with other jobs)",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/dilu_highway.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": vars(args),
        "results": [],
        "memory_growth": {},
        "baselines": [],
        "skipped": [],
    }

    def save() -> None:
        out["elapsed_s"] = round(time.perf_counter() - t0, 1)
        write_json(args.out, out)

    def over_budget() -> bool:
        return time.perf_counter() - t0 > args.budget_min * 60

    # -- baselines without an LLM (cheap) -------------------------------------
    class Idle:
        def act(self, obs: Any, info: dict[str, Any]) -> int:
            return 1

    probe = make_dilu_env()
    cheap = () if args.no_baselines else (("always_idle", Idle()), ("random", RandomAgent(probe.action_space, seed=0)))
    for name, agent in cheap:
        for setting in SETTINGS:
            out["baselines"].append({"agent": name, **evaluate(agent, setting, args, f"{name}/{setting}")})
    probe.close()
    save()

    for spec in [s for s in args.llm.split(",") if s.strip()]:
        llm = load(spec, n_ctx=4096)
        tag = spec.replace(":", "_").replace("/", "_")
        # -- 1. build the memory with reflection ------------------------------
        build_dir = work / f"memory_{tag}"
        if build_dir.exists():
            import shutil

            shutil.rmtree(build_dir)
        memory = ExperienceMemory(build_dir)
        builder = DiLuAgent(llm=llm, memory=memory, k=args.k, cot_tokens=args.cot_tokens, reflect=True, learn=True)
        target = max(sizes)
        env = make_dilu_env(env_config={"duration": args.decisions})
        from llmguide.agents.dilu import DrivingLog, no_collision
        from llmguide.agents.loop import run_episodes

        log = DrivingLog()
        built = 0
        build_start = time.perf_counter()
        while (len(memory) < target and built < args.build_episodes and not over_budget()
               and time.perf_counter() - build_start < args.build_budget_min * 60):
            run_episodes(log.wrap(builder), env, 1, seed=args.build_seed + built, max_steps=args.decisions,
                         success_fn=no_collision, extra_fn=log.extra, progress=False)
            built += 1
            out["memory_growth"][spec] = {"episodes": built, "sizes": builder.memory_sizes,
                                          "reflections": builder.reflections, "stats": memory.stats()}
            save()
        env.close()
        export = work / f"memory_{tag}.jsonl"
        memory.export_jsonl(export)

        # -- 2. evaluate frozen memories of each size -------------------------
        # priority: the extremes first, so a short budget still answers "does memory help?"
        order = sorted(sizes, key=lambda n: (n not in (min(sizes), max(sizes)), n))
        cells = [(n, "default") for n in order]
        cells += [(n, s) for n in sorted(gen_sizes, reverse=True) for s in SETTINGS if s != "default"]
        frozen_by_size: dict[int, Any] = {}
        for n, setting in cells:
            if n > len(memory):
                out["skipped"].append({"model": spec, "memory_size": n, "setting": setting,
                                       "reason": f"memory reached only {len(memory)} experiences"})
                continue
            if over_budget():
                out["skipped"].append({"model": spec, "memory_size": n, "setting": setting, "reason": "time budget"})
                continue
            if n not in frozen_by_size:
                cell_dir = work / f"memory_{tag}_{n}"
                if cell_dir.exists():
                    import shutil

                    shutil.rmtree(cell_dir)
                frozen_by_size[n] = ExperienceMemory(cell_dir, embeddings=memory.embeddings, near_duplicate=None)
                frozen_by_size[n].import_jsonl(export, limit=n)
            frozen = frozen_by_size[n]
            agent = DiLuAgent(llm=llm, memory=frozen, k=args.k, cot_tokens=args.cot_tokens, learn=False)
            row = evaluate(agent, setting, args, f"{spec}/mem{n}/{setting}")
            out["results"].append({"model": spec, "memory_size": len(frozen), **row})
            save()

    # -- 3. DQN on highway-fast-v0 ----------------------------------------------
    if args.dqn_steps > 0:
        import gymnasium as gym
        import highway_env  # noqa: F401
        from llmguide.agents.loop import PolicyAgent
        from stable_baselines3 import DQN

        start = time.perf_counter()
        if args.dqn_model:
            model, train_s = DQN.load(args.dqn_model), None
        else:
            train_env = gym.make("highway-fast-v0")
            model = DQN("MlpPolicy", train_env, policy_kwargs={"net_arch": [256, 256]}, learning_rate=5e-4,
                        buffer_size=15000, learning_starts=200, batch_size=32, gamma=0.8, train_freq=1,
                        gradient_steps=1, target_update_interval=50, exploration_fraction=0.7, seed=0, verbose=0)
            model.learn(total_timesteps=args.dqn_steps, progress_bar=False)
            train_s = round(time.perf_counter() - start, 1)
            model.save(work / "dqn_highway_fast")
            train_env.close()
        for setting in SETTINGS:
            row = evaluate(PolicyAgent(model), setting, args, f"dqn/{setting}")
            out["baselines"].append({"agent": f"dqn_{args.dqn_steps}_steps_highway-fast-v0",
                                     "train_seconds": train_s, **row})
            save()
    save()
    print(f"wrote {args.out} in {out['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
