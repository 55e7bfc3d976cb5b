"""A teacher that learns to teach (issue 16): the self-taught teacher against its controls.

Two phases, each resumable from its per-item JSON under --work:

``--phase stages`` (cheap, the most telling figure): the teacher's accuracy,
i.e. agreement with the oracle's next subgoal on a fixed probe set (situations
of expert-driven episodes on held-out seeds 100000+; the oracle only scores),
before any tuning and after each LoRA stage, with each stage's examples and
seconds. The hindsight comes from episodes of a uniformly random policy
through the same `HindsightRecorder` a training run uses (what a learner's
first episodes look like), successful ones only; no oracle label is trained
on. Stages are cumulative (stage k trains on the first n_k examples,
continuing stage k-1's LoRA), as in a run. Controls on the same probe: a
uniformly random choice (1/number of options) and the majority answer of
the training examples.

``--phase arms``: PPO sample efficiency, arms ``plain, oracle, random,
frozen, self_taught`` (frozen = the same model and scorer, never tuned) on
DoorKey-8x8 and MultiRoom-N4-S5, >= 5 seeds, IQM [95% bootstrap CI] of steps to
0.9 and success at 25/50/100% of the budget (`arm_statistics` of
`minigrid_teachers.py`), with the self-taught runs' stage records, throughput
(steps/s) and teacher agreement.

    .venv/bin/python benchmarks/self_taught_teacher.py --phase stages --seeds 0,1,2,3,4
    .venv/bin/python benchmarks/self_taught_teacher.py --phase arms --seeds 0,1,2,3,4   # hours on CPU
    .venv/bin/python benchmarks/self_taught_teacher.py --phase arms --quick             # smoke

``--phase throughput`` (timing: run it on a quiet machine): env steps/s of
PPO guided by the untuned teacher against plain PPO, interleaved
(plain, guided, plain, guided, ...) in one process after an untimed warm-up
(the process's one-off imports), each run starting with an empty answer cache
and loading its model as a real run does, so the figure includes the
questions of new layouts (MultiRoom's change every episode). The ratio is the median
of the guided rates over the median of the plain rates.

    .venv/bin/python benchmarks/self_taught_teacher.py --phase throughput --envs MiniGrid-MultiRoom-N4-S5-v0

Every phase writes its key of benchmarks/results/self_taught_teacher.json (the
other phases' last summaries are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
ENVS = {"MiniGrid-DoorKey-8x8-v0": 300_000, "MiniGrid-MultiRoom-N4-S5-v0": 300_000}
ARMS = ("plain", "oracle", "random", "frozen", "self_taught")
CONTROLS = ("plain", "oracle", "random")  # arms whose runs minigrid_teachers.py makes identically
PROBE_SEEDS = 100_000


def _machine() -> dict[str, Any]:
    return {"machine": f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU (shared with other jobs)",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# -- phase 1: accuracy before/after each stage --------------------------------------------------------
def random_hindsight(env_id: str, episodes: int, seed: int, max_examples: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Hindsight rows from a uniformly random policy's successful episodes (seeds seed*10^6 + i)."""
    import numpy as np
    from llmguide.agents.hindsight import HindsightRecorder
    from llmguide.envs.minigrid import make_minigrid

    env = HindsightRecorder(make_minigrid(env_id))
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    successes, steps, t0 = 0, 0, time.perf_counter()
    played = 0
    for i in range(episodes):
        env.reset(seed=seed * 1_000_000 + i)
        played += 1
        done = False
        while not done:
            _, reward, term, trunc, _ = env.step(int(rng.integers(6)))
            steps += 1
            done = term or trunc
        if term and float(reward) > 0:
            successes += 1
            rows.extend(env.examples())
        if len(rows) >= max_examples:
            break
    env.close()
    return rows, {"episodes": played, "successes": successes, "env_steps": steps,
                  "collect_s": round(time.perf_counter() - t0, 1)}


def stages_job(env_id: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One seed: collect random-policy hindsight, then cumulative stages scored on the probe."""
    import torch

    torch.set_num_threads(1)
    from llmguide.agents.hindsight import build_probe
    from llmguide.teachers.lora_tuning import AdapterLM, choice_accuracy

    probe = build_probe(env_id, range(PROBE_SEEDS, PROBE_SEEDS + args.probe_episodes))
    rows, collect = random_hindsight(env_id, args.episodes, seed, max(args.stage_sizes))
    out: dict[str, Any] = {"env": env_id, "seed": seed, "probe_n": len(probe), "collect": collect,
                           "examples": len(rows)}
    out["random_choice"] = sum(1 / len(r["options"]) for r in probe) / len(probe) if probe else None
    if rows:
        majority = Counter(r["answer"] for r in rows).most_common(1)[0][0]
        out["majority_answer"] = majority
        out["majority_choice"] = sum(r["answer"] == majority for r in probe) / len(probe) if probe else None
    elif not args.frozen_without_hindsight:
        out["stages"] = []
        out["note"] = "no successful random-policy episode: no hindsight, no stage"
        return out
    else:
        out["note"] = "no successful random-policy episode: no hindsight; the frozen model scored only"
    t0 = time.perf_counter()
    lm = AdapterLM(args.adapter, lora_r=args.lora_r, trainable=True, seed=seed)
    out["load_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    first = choice_accuracy(lm, probe)
    stages = [{"stage": 0, "examples": 0, "probe": first, "score_s": round(time.perf_counter() - t0, 1)}]
    examples = [(r["messages"], r["answer"]) for r in rows]
    for k, n in enumerate([] if not examples else sorted({min(s, len(examples)) for s in args.stage_sizes}), start=1):
        t0 = time.perf_counter()
        losses = lm.train_steps(examples[:n], args.stage_steps, lr=args.stage_lr, batch_size=args.batch_size,
                                seed=seed + k)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        acc = choice_accuracy(lm, probe)
        stages.append({"stage": k, "examples": n, "probe": acc, "train_s": round(train_s, 1),
                       "loss_first": losses[0], "loss_last": losses[-1], "score_s": round(time.perf_counter() - t0, 1)})
        print(f"  {env_id} seed {seed} stage {k}: {n} examples, probe accuracy "
              f"{stages[-2]['probe']['accuracy']:.2f} -> {acc['accuracy']:.2f} ({train_s:.0f} s tuning)", flush=True)
    out["stages"] = stages
    return out


def stages_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per env: probe accuracy per stage (mean and IQM [95% CI] over seeds) beside the controls."""
    from llmguide.stats import iqm_interval

    out: dict[str, Any] = {}
    for env in sorted({r["env"] for r in rows}):
        mine = [r for r in rows if r["env"] == env]
        tuned = [r for r in mine if r["examples"]]
        per_stage: dict[int, list[float]] = {}
        for r in mine:
            for s in r["stages"]:
                per_stage.setdefault(s["stage"], []).append(s["probe"]["accuracy"])

        def ci(values: list[float]) -> dict[str, Any]:
            found = iqm_interval(values)
            return {"iqm": found.value, "low": found.low, "high": found.high, "n": found.n,
                    "mean": sum(values) / len(values)}

        out[env] = {
            "seeds": [r["seed"] for r in mine],
            "seeds_with_hindsight": [r["seed"] for r in tuned],
            "probe_n": mine[0]["probe_n"],
            "accuracy_by_stage": {str(k): ci(v) for k, v in sorted(per_stage.items())},
            "random_choice": mine[0]["random_choice"],
            "majority_choice": ci([r["majority_choice"] for r in tuned]) if tuned else None,
            "examples": [r["examples"] for r in mine],
            "train_s_per_stage": [s.get("train_s") for r in tuned for s in r["stages"] if s["stage"] > 0],
            "collect": [r["collect"] for r in mine],
        }
    return out


# -- phase 2: PPO arms --------------------------------------------------------------------------------
def arm_teacher(arm: str, args: argparse.Namespace) -> Any:
    if arm == "plain":
        return None
    if arm in ("oracle", "random"):
        return {"type": arm, "kind": "object"}
    tuning = {"stage_examples": args.stage_examples, "stage_steps": args.stage_steps, "stage_lr": args.stage_lr,
              "batch_size": args.batch_size, "lora_r": args.lora_r, "adapter": args.adapter,
              "probe_episodes": args.probe_episodes, "finetune_nice": args.finetune_nice,
              "wait_for_stages": args.wait_for_stages}
    if arm == "frozen":
        tuning["max_stages"] = 0
    elif args.max_stages is not None:
        tuning["max_stages"] = args.max_stages
    return {"type": "self_taught", "kind": "object", "tuning": tuning}


def arm_job(job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One PPO run (the subgoal method through `Experiment`)."""
    import torch

    torch.set_num_threads(1)
    from llmguide.experiment import Experiment

    exp = Experiment(
        env=job["env"], method="subgoal", teacher=arm_teacher(job["arm"], args), learner="PPO",
        total_steps=job["cap"], seed=job["seed"], n_envs=8,
        eval={"every": args.eval_every, "episodes": args.eval_episodes, "stop_at_target": True, "gate": 0.2},
        checkpoint_every=0, run_dir=Path(args.work) / f"{job['env']}__{job['arm']}__{job['seed']}",
    )
    start = time.perf_counter()
    m = exp.run().metrics
    tm = m["extras"].get("teacher_metrics") or {}
    return {
        "env": job["env"], "teacher": job["arm"], "seed": job["seed"], "cap": job["cap"],
        "steps_to_0.9": m["steps_to_target"], "steps_trained": m["steps"], "final_success_rate": m["success"],
        "steps_per_s": m["steps_per_s"], "wall_s": time.perf_counter() - start,
        "oracle_agreement": tm.get("teacher_oracle_agreement"), "llm_calls": tm.get("teacher_calls", 0),
        "cache_hit_rate": tm.get("teacher_cache_hit_rate"), "late_answers": tm.get("teacher_late_answers"),
        "deferred": tm.get("teacher_deferred"), "steps_waiting": tm.get("teacher_steps_waiting"),
        "self_taught": m["extras"].get("self_taught"),
        "evals": [(e["steps"], e["success"], e.get("evaluated", True)) for e in m["curve"]],
        "status": "finished",
    }


def arms_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from minigrid_teachers import arm_statistics

    out: dict[str, Any] = {}
    for env in sorted({r["env"] for r in rows}):
        cap = max(r["cap"] for r in rows if r["env"] == env)
        arms = {}
        for arm in ARMS:
            crashed = [r["seed"] for r in rows if r["env"] == env and r["teacher"] == arm and r["status"] != "finished"]
            mine = [r for r in rows if r["env"] == env and r["teacher"] == arm and r["status"] == "finished"]
            if crashed:
                arms.setdefault(f"{arm} (crashed)", {"seeds": crashed})
            if mine:
                loop = [r.get("in_the_loop") or {} for r in mine]
                arms[arm] = {**arm_statistics(mine, cap),
                             "steps_per_s_mean": sum(r["steps_per_s"] for r in mine) / len(mine),
                             "stages_done": [((r.get("self_taught") or {}).get("stages_done")) for r in mine],
                             "queries_in_last_quarter": [x.get("queries_in_last_quarter") for x in loop],
                             "questions_in_last_quarter": [x.get("questions_in_last_quarter") for x in loop],
                             "budget_skips": [x.get("budget_skips") for x in loop],
                             "share_of_steps_waiting": [x.get("share_of_steps_waiting") for x in loop],
                             "subgoals_reached_per_episode": [x.get("subgoals_reached_per_episode") for x in loop]}
        out[env] = {"cap": cap, "arms": arms}
    return out


def in_the_loop(run_dir: Path, cap: int) -> dict[str, Any] | None:
    """Whether the teacher was still guiding at the end of a run, from its run record and
    progress.csv: the step of its last LLM question, the subgoal queries it answered (from the
    model or its cache) and the LLM questions it asked in the last quarter of the budget, and
    the questions skipped for an exhausted budget (0: the teacher never dropped out)."""
    import csv

    record, progress = run_dir / "metrics.json", run_dir / "progress.csv"
    if not record.is_file() or not progress.is_file():
        return None
    tm = json.loads(record.read_text()).get("extras", {}).get("teacher_metrics") or {}
    with progress.open() as fh:
        rows = [(int(float(r["time/total_timesteps"])), float(r.get("teacher/queries") or 0),
                 float(r.get("teacher/calls") or 0)) for r in csv.DictReader(fh) if r.get("time/total_timesteps")]
    if not rows:
        return None
    steps, queries, calls = rows[-1]
    last_call = next((s for s, _, c in rows if c == calls), 0)
    before = [r for r in rows if r[0] <= 0.75 * cap]
    q0, c0 = (before[-1][1], before[-1][2]) if before else (0.0, 0.0)
    late = steps >= 0.75 * cap  # the run lasted into its last quarter (runs stop early at the target)
    return {"last_question_at_step": last_call, "steps_trained": steps,
            "queries_in_last_quarter": int(queries - q0) if late else None,
            "questions_in_last_quarter": int(calls - c0) if late else None,
            "budget_skips": tm.get("teacher_budget_skips", 0), "cache_hit_rate": tm.get("teacher_cache_hit_rate"),
            "steps_waiting": tm.get("teacher_steps_waiting"),
            # env steps taken while a question was open (its answer not yet there to replace the subgoal)
            "share_of_steps_waiting": (tm.get("teacher_steps_waiting") or 0) / max(1, steps),
            "subgoals_reached_per_episode": tm.get("teacher_subgoals_per_episode")}


# -- phase 3: throughput, guided vs plain ------------------------------------------------------------
def throughput(env: str, steps: int, repeats: int, args: argparse.Namespace) -> dict[str, Any]:
    """PPO env steps/s, plain vs guided by the untuned (frozen) self-taught teacher, interleaved in
    one process; every guided run starts with an empty answer cache."""
    import statistics
    import tempfile

    import torch

    torch.set_num_threads(1)
    from llmguide.experiment import Experiment

    rates: dict[str, list[float]] = {"plain": [], "guided": []}
    teacher_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up, not timed: the process's one-off imports (llama.cpp, transformers), which a
        # long run pays once; the measured guided runs still start with an empty answer cache
        Experiment(env=env, method="subgoal", teacher=arm_teacher("frozen", args), learner="PPO", total_steps=1024,
                   seed=99, n_envs=8, eval={"every": 0, "episodes": 1}, checkpoint_every=0,
                   run_dir=Path(tmp) / "warm").run()
        for r in range(repeats):
            for arm in ("plain", "frozen"):
                exp = Experiment(env=env, method="subgoal", teacher=arm_teacher(arm, args), learner="PPO",
                                 total_steps=steps, seed=r, n_envs=8, eval={"every": 0, "episodes": 1},
                                 checkpoint_every=0, run_dir=Path(tmp) / f"{arm}{r}")
                m = exp.run().metrics
                rates["plain" if arm == "plain" else "guided"].append(m["steps_per_s"])
                if arm == "frozen":
                    tm = m["extras"].get("teacher_metrics") or {}
                    teacher_runs.append({k: tm.get(f"teacher_{k}") for k in
                                         ("calls", "queries", "cache_hit_rate", "deferred", "late_answers",
                                          "steps_waiting", "budget_skips")})
                print(f"throughput {env} {arm} repeat {r}: {m['steps_per_s']:.0f} steps/s", flush=True)
    plain, guided = statistics.median(rates["plain"]), statistics.median(rates["guided"])
    return {"env": env, "steps": steps, "repeats": repeats, "plain_steps_per_s": plain,
            "guided_steps_per_s": guided, "ratio": guided / plain, "samples": rates, "teacher": teacher_runs}


# -- main ---------------------------------------------------------------------------------------------
def kept_row(done: Path, label: str, make: Callable[[], dict[str, Any]], report: bool,
             crashed: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """An item's row: from its JSON if it finished before (resumable), else made now and kept;
    None under ``--report`` when it never ran, or while another process is making it (several
    processes may share one work dir: each item is claimed by a ``.running`` file holding its
    pid, and a claim whose process is gone is taken over). With ``crashed``, a failure returns
    that row marked crashed (no file is written, so a re-run retries it) and the other items go on."""
    if done.exists():
        return json.loads(done.read_text())
    if report:
        return None
    claim = done.with_suffix(".running")
    if not _claim(claim):
        print(f"{label}: running in process {claim.read_text().strip()}, skipped", flush=True)
        return None
    print(label, flush=True)
    try:
        row = make()
    except Exception as err:  # reported in the JSON, never dropped
        if crashed is None:
            raise
        print(f"CRASHED {label}: {err!r}", flush=True)
        return {**crashed, "status": "crashed", "error": repr(err)}
    finally:
        claim.unlink(missing_ok=True)
    done.write_text(json.dumps(row, indent=1))
    return row


def _claim(path: Path) -> bool:
    """Claim an item for this process (atomic create); False while a live process holds it."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(path.read_text().strip() or 0), 0)
                return False  # its process is alive
            except (ProcessLookupError, ValueError, FileNotFoundError):
                path.unlink(missing_ok=True)  # a stale claim (its process died): take it over
                continue
            except PermissionError:
                return False
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=("stages", "arms", "throughput"), required=True)
    ap.add_argument("--envs", default=",".join(ENVS))
    ap.add_argument("--caps", default=None, help="arms: comma-separated step caps, one per env")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--adapter", default="smollm2")
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--stage-steps", type=int, default=30)
    ap.add_argument("--stage-lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--stage-examples", type=int, default=32, help="arms: new examples per stage")
    ap.add_argument("--finetune-nice", type=int, default=10, help="arms: niceness added to the stage worker")
    ap.add_argument("--max-stages", type=int, default=None, help="arms: stages at most per self-taught run")
    ap.add_argument("--wait-for-stages", action="store_true",
                    help="arms: the learner waits for each running stage (sample efficiency whatever the tuning speed)")
    ap.add_argument("--stage-sizes", default="16,32,64", help="stages: cumulative examples per stage")
    ap.add_argument("--episodes", type=int, default=600, help="stages: random-policy episodes at most per seed")
    ap.add_argument("--probe-episodes", type=int, default=6)
    ap.add_argument("--frozen-without-hindsight", action="store_true",
                    help="stages: score the untuned model on the probe even when no hindsight came in")
    ap.add_argument("--eval-every", type=int, default=10_000)
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--controls-from", default=None,
                    help="arms: a minigrid_teachers.py --work dir; its plain/oracle/random runs of the same env, "
                         "seed and cap are used instead of running them again (same PPO, same evaluation)")
    ap.add_argument("--work", default="runs/benchmarks/self_taught_teacher")
    ap.add_argument("--out", type=Path, default=None,
                    help="default benchmarks/results/self_taught_teacher.json (--quick: WORK/quick.json)")
    ap.add_argument("--throughput-steps", default="49152",
                    help="throughput: env steps per run (comma-separated: one measure per length)")
    ap.add_argument("--repeats", type=int, default=3, help="throughput: runs per arm, interleaved")
    ap.add_argument("--quick", action="store_true", help="smoke: DoorKey-5x5, 1 seed, tiny budgets")
    ap.add_argument("--report", action="store_true", help="only summarise the finished items (run nothing)")
    args = ap.parse_args(argv)
    args.stage_sizes = [int(s) for s in args.stage_sizes.split(",")]
    args.throughput_steps = [int(s) for s in str(args.throughput_steps).split(",")]
    envs = args.envs.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    caps = [int(c) for c in args.caps.split(",")] if args.caps else [ENVS.get(e, 300_000) for e in envs]
    if args.quick:
        envs, caps, seeds = ["MiniGrid-DoorKey-5x5-v0"], [4096], [0]
        args.eval_every, args.eval_episodes, args.episodes, args.stage_sizes = 2048, 4, 60, [4]
        args.stage_steps, args.probe_episodes, args.stage_examples = 2, 2, 4
        args.throughput_steps, args.repeats = [2048], 1
    if args.out is None:
        args.out = Path(args.work) / "quick.json" if args.quick else ROOT / "results" / "self_taught_teacher.json"
    work = Path(args.work) / args.phase
    work.mkdir(parents=True, exist_ok=True)
    from llmguide.rundir import write_json

    command = "python benchmarks/self_taught_teacher.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load_start = os.getloadavg()
    rows = []
    if args.phase == "stages":
        for env in envs:
            for seed in seeds:
                done = work / f"{env}__{seed}__steps{args.stage_steps}.json"
                row = kept_row(done, f"stages: {env} seed {seed}", partial(stages_job, env, seed, args), args.report)
                rows += [row] if row else []
        summary = {"rows": rows, "by_env": stages_summary(rows),
                   "not_run": [f"{e} seed {s}" for e in envs for s in seeds
                               if not (work / f"{e}__{s}__steps{args.stage_steps}.json").exists()]}
    elif args.phase == "throughput":
        rows = [kept_row(work / f"{env}__{steps}x{args.repeats}.json", f"throughput: {env}, {steps} steps",
                         partial(throughput, env, steps, args.repeats, args), args.report)
                for env in envs for steps in args.throughput_steps]
        summary = {"rows": [r for r in rows if r],
                   "by_env": {f"{r['env']} ({r['steps']} steps)": round(r["ratio"], 3) for r in rows if r}}
    else:
        arms = args.arms.split(",")
        for env, cap in zip(envs, caps):
            for seed in seeds:
                for arm in arms:
                    done = work / f"{env}__{arm}__{seed}__cap{cap}.json"
                    shared = Path(args.controls_from) / done.name if args.controls_from else None
                    if arm in CONTROLS and shared is not None and shared.exists() and not done.exists():
                        done = shared  # the same PPO run, already made by minigrid_teachers.py
                    job = {"env": env, "arm": arm, "seed": seed, "cap": cap}
                    row = kept_row(done, f"arms: {env} {arm} seed {seed} cap {cap}", partial(arm_job, job, args),
                                   args.report, crashed={"env": env, "teacher": arm, "seed": seed, "cap": cap})
                    if row and arm in ("frozen", "self_taught"):
                        row["in_the_loop"] = in_the_loop(Path(args.work) / f"{env}__{arm}__{seed}", cap)
                    rows += [row] if row else []
        summary = {"rows": rows, "by_env": arms_summary(rows)}
        sys.path.insert(0, str(ROOT))
        from minigrid_teachers import plot_results

        finished = [r for r in rows if r.get("status") == "finished"]
        summary["plots"] = plot_results(finished, args.out.parent, prefix="self_taught_teacher", teachers=ARMS)
    previous = json.loads(args.out.read_text()) if args.out.exists() and not args.quick else {}
    previous[args.phase] = {
        "command": command, "seeds": seeds, **_machine(),
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}, **summary,
    }
    write_json(args.out, previous)
    print(json.dumps(summary["by_env"], indent=1, default=str)[:4000])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
