"""Sample efficiency of subgoal teachers on MiniGrid (Words as Beacons).

For each (env, teacher, seed): PPO trains until the rolling success rate,
evaluated on the plain env without the teacher, reaches the target (0.9), or
until the step cap. Teachers: plain (none), oracle, random, and the LLM
teacher (SubgoalTeacher, each kind). Also the teacher's cost: LLM questions
per 1k env steps (after a warm-up) and guided/plain env steps per second
with a warm cache.

    .venv/bin/python benchmarks/minigrid_teachers.py --jobs 2            # full (long on CPU)
    .venv/bin/python benchmarks/minigrid_teachers.py --quick             # smoke: tiny budget

Each finished run is saved under --work as JSON, so an interrupted benchmark
continues where it stopped; the summary goes to
benchmarks/results/minigrid_teachers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DEFAULT_ENVS = {"MiniGrid-DoorKey-8x8-v0": 200_000, "MiniGrid-KeyCorridorS3R3-v0": 200_000}
TEACHERS = ("plain", "oracle", "random", "first-option", "llm-object", "llm-object-free", "llm-language",
            "llm-positional", "llm-object-ordered")
#: The arms that isolate what the LLM itself contributes on DoorKey (issue: subgoal teachers measured honestly).
CONTROLLED = "plain,oracle,random,first-option,llm-object,llm-object-free"
WARMUP_STEPS = 20_000


def teacher_spec(name: str, llm: str, positional_budget: int, max_queries: int | None = None) -> Any:
    if name == "plain":
        return None
    if name in ("oracle", "random"):
        return {"type": name, "kind": "object"}
    if name == "first-option":  # the head of the list the LLM is shown (same per-seed shuffle): pure position bias
        return {"type": "first_option", "kind": "object"}
    kind = name.split("-")[1]
    spec: dict[str, Any] = {"type": "subgoal", "llm": llm, "kind": kind, "llm_kwargs": {"n_threads": 1}}
    if name.endswith("-ordered"):  # ablation: options listed key, door, goal (the DoorKey plan order)
        spec["option_order"] = "layout"
    if name.endswith("-free"):  # no option list: the answer is parsed and validated against the env
        spec["mode"] = "free"
    if kind == "positional":
        spec["max_queries"] = positional_budget  # a cell depends on the layout: one question per layout
    elif max_queries is not None:
        spec["max_queries"] = max_queries  # past it: no subgoal (counted as budget_skips), no LLM call
    return spec


def run_file(work: Path, row: dict[str, Any]) -> Path:
    """Where a finished run's row is kept (a question budget is part of the name: it changes the run)."""
    budget = f"__q{row['max_queries']}" if row.get("max_queries") is not None else ""
    return work / f"{row['env']}__{row['teacher']}__{row['seed']}__cap{row['cap']}{budget}.json"


def load_row(path: Path) -> dict[str, Any]:
    """A stored row, its steps to 0.9 recomputed from its evaluations with the current rule
    (rows written before the rule's float fix reported some runs one evaluation late)."""
    from llmguide.training import steps_to_target

    row = json.loads(path.read_text())
    history = [{"steps": s, "success": v, "evaluated": e} for s, v, e in row["evals"]]
    row["steps_to_0.9"] = steps_to_target(history, 0.9, window=2)
    return row


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One training run in a worker process; returns its summary row."""
    import torch

    torch.set_num_threads(1)
    from llmguide.experiment import Experiment

    exp = Experiment(
        env=job["env"],
        method="subgoal",
        teacher=teacher_spec(job["teacher"], job["llm"], job["positional_budget"], job["max_queries"]),
        learner="PPO",
        total_steps=job["cap"],
        seed=job["seed"],
        n_envs=8,
        eval={"every": job["eval_every"], "episodes": job["eval_episodes"], "stop_at_target": True, "gate": 0.2},
        checkpoint_every=0,
        run_dir=Path(job["work"]) / f"{job['env']}__{job['teacher']}__{job['seed']}",
    )
    start = time.perf_counter()
    m = exp.run().metrics
    tm = m["extras"].get("teacher_metrics") or {}
    curve = tm.get("calls_curve") or []
    after = [(s, c) for s, c in curve if s >= WARMUP_STEPS]
    warm_rate = None
    if len(after) >= 2 and after[-1][0] > after[0][0]:
        warm_rate = 1000.0 * (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0])
    return {
        **{k: job[k] for k in ("env", "teacher", "seed", "cap", "max_queries")},
        "steps_to_0.9": m["steps_to_target"],
        "steps_trained": m["steps"],
        "final_success_rate": m["success"],
        "steps_per_s": m["steps_per_s"],
        "wall_s": time.perf_counter() - start,
        "llm_calls": tm.get("teacher_calls", 0),
        "llm_generations": tm.get("teacher_generations", 0),
        "llm_calls_per_1k_steps": tm.get("llm_calls_per_1k_steps", 0.0),
        "llm_calls_per_1k_steps_after_warmup": warm_rate,
        "cache_hit_rate": tm.get("teacher_cache_hit_rate"),
        "invalid": tm.get("teacher_invalid", 0),
        "budget_skips": tm.get("teacher_budget_skips", 0),
        "bonus_share": tm.get("teacher_bonus_share"),
        "oracle_agreement": tm.get("teacher_oracle_agreement"),
        "first_option_rate": m.get("first_option_rate"),
        "fallbacks": m.get("fallbacks", 0),
        "status": "finished",
        "subgoals_per_episode": tm.get("teacher_subgoals_per_episode"),
        "llm_latency_ms_p50": (m["extras"].get("llm_usage") or {}).get("latency_ms_p50"),
        "evals": [(e["steps"], e["success"], e.get("evaluated", True)) for e in m["curve"]],
    }


def throughput(env: str, llm: str, steps: int, repeats: int = 2) -> dict[str, Any]:
    """Env steps/s of PPO plain vs guided by a warm-cache LLM teacher, interleaved in one process."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    from llmguide.teachers import SubgoalTeacher

    from llmguide.experiment import Experiment

    teacher = SubgoalTeacher(llm, "object", llm_kwargs={"n_threads": 1})
    rates: dict[str, list[float]] = {"plain": [], "guided": []}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: fills the teacher cache (and the response cache) for this env
        quick = {"eval": {"every": 0, "episodes": 1}, "checkpoint_every": 0}
        Experiment(env, teacher=teacher, total_steps=steps, seed=99, run_dir=Path(tmp) / "warm", **quick).run()
        for r in range(repeats):
            for arm, t in (("plain", None), ("guided", teacher)):
                m = Experiment(env, teacher=t, total_steps=steps, seed=r, run_dir=Path(tmp) / f"{arm}{r}", **quick).run().metrics
                rates[arm].append(m["steps_per_s"])
    plain, guided = statistics.median(rates["plain"]), statistics.median(rates["guided"])
    return {"env": env, "steps": steps, "plain_steps_per_s": plain, "guided_steps_per_s": guided,
            "ratio": guided / plain, "samples": rates, "teacher_calls_during_measure": teacher.stats.llm_queries}


def summarise(rows: list[dict[str, Any]], envs: dict[str, int], thr: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """The JSON the issue asks for: per-run steps, medians, speedups, cost; crashed runs listed apart."""
    crashed = [r for r in rows if r.get("status") == "crashed"]
    rows = [r for r in rows if r.get("status", "finished") == "finished"]

    def med_steps(env: str, teacher: str) -> tuple[float | None, bool]:
        vals = [r for r in rows if r["env"] == env and r["teacher"] == teacher]
        if not vals:
            return None, False
        steps = [r["steps_to_0.9"] if r["steps_to_0.9"] is not None else r["cap"] for r in vals]
        censored = sum(r["steps_to_0.9"] is None for r in vals) > len(vals) / 2
        return statistics.median(steps), censored

    def speedup(env: str, teacher: str) -> Any:
        p, p_cens = med_steps(env, "plain")
        t, t_cens = med_steps(env, teacher)
        if p is None or t is None:
            return None
        if t_cens:
            return None if p_cens else f"<{p / t:.2f}"
        ratio = p / t
        return f">={ratio:.2f}" if p_cens else round(ratio, 2)

    per_run = {
        f"{r['env']}|{r['teacher']}|{r['seed']}": r["steps_to_0.9"] if r["steps_to_0.9"] is not None else f">{r['cap']}"
        for r in rows
    }
    llm_teachers = sorted({r["teacher"] for r in rows if r["teacher"].startswith("llm-")})
    out: dict[str, Any] = {
        "iqm": {env: {t: arm_statistics([r for r in rows if r["env"] == env and r["teacher"] == t], envs[env])
                      for t in TEACHERS if any(r["env"] == env and r["teacher"] == t for r in rows)} for env in envs},
        "crashed": crashed,
        "command": command,
        "target_success": 0.9,
        "caps": envs,
        "steps_to_0.9": per_run,
        "median_steps_to_0.9": {env: {t: _shown(*med_steps(env, t)) for t in TEACHERS} for env in envs},
        "speedup_oracle_vs_plain": {env: speedup(env, "oracle") for env in envs},
        "speedup_random_vs_plain": {env: speedup(env, "random") for env in envs},
        "speedup_llm_vs_plain": {env: {t: speedup(env, t) for t in llm_teachers} for env in envs},
        "llm_calls_per_1k_steps": {  # per env: layouts (and so cache hits) differ a lot between families
            env: {
                t: {
                    "overall": _mean([r["llm_calls_per_1k_steps"] for r in rows if r["teacher"] == t and r["env"] == env]),
                    "after_warmup": _mean([r["llm_calls_per_1k_steps_after_warmup"] for r in rows
                                           if r["teacher"] == t and r["env"] == env]),
                }
                for t in llm_teachers
                if any(r["teacher"] == t and r["env"] == env for r in rows)
            }
            for env in envs
        },
        "throughput_ratio_guided_vs_plain": _mean([t["ratio"] for t in thr]) if thr else None,
        "throughput": thr,
        "runs": rows,
    }
    return out


def arm_statistics(rows: list[dict[str, Any]], cap: int) -> dict[str, Any]:
    """One arm's figures over its seeds: IQM [95% bootstrap CI] of steps to 0.9 (a run that never
    got there counted at the cap) and of success at 25/50/100% of the budget, with the teacher's
    agreement with the oracle, its first-option rate and fallbacks (`llmguide.stats`)."""
    from llmguide.stats import iqm_interval

    def interval(values: list[float]) -> dict[str, Any] | None:
        if not values:
            return None
        found = iqm_interval(values)
        return {"iqm": found.value, "low": found.low, "high": found.high, "n": found.n}

    def success_at(row: dict[str, Any], budget: float) -> float:
        seen = [v for s, v, _ in row["evals"] if s <= budget and v is not None]
        return seen[-1] if seen else 0.0

    return {
        "seeds": sorted(r["seed"] for r in rows),
        "steps_to_0.9": interval([r["steps_to_0.9"] if r["steps_to_0.9"] is not None else r["cap"] for r in rows]),
        "reached": sum(r["steps_to_0.9"] is not None for r in rows),
        "success_at": {f"{frac:g}": interval([success_at(r, frac * cap) for r in rows]) for frac in (0.25, 0.5, 1.0)},
        "oracle_agreement": _mean([r.get("oracle_agreement") for r in rows]),
        "first_option_rate": _mean([r.get("first_option_rate") for r in rows]),
        "fallbacks": sum(r.get("fallbacks") or 0 for r in rows),
        "invalid_answers": sum(r.get("invalid") or 0 for r in rows),
    }


def plot_results(rows: list[dict[str, Any]], out_dir: Path, prefix: str = "minigrid_teachers",
                 teachers: Sequence[str] | None = None) -> dict[str, str]:
    """One PNG per env: mean success (no teacher) over seeds against env steps, per teacher
    (`teachers`, default this benchmark's). A run stopped at the target keeps its last value up to the cap."""
    from llmguide.plots import plot_curves

    paths = {}
    for env in sorted({r["env"] for r in rows}):
        curves, bands = {}, {}
        cap = max(r["cap"] for r in rows if r["env"] == env)
        for teacher in teachers or TEACHERS:
            runs = [r for r in rows if r["env"] == env and r["teacher"] == teacher]
            if not runs:
                continue
            grid = sorted({e[0] for r in runs for e in r["evals"]} | {cap})
            series = []
            for r in runs:
                pts, last, vals = {e[0]: e[1] for e in r["evals"]}, 0.0, []
                for step in grid:
                    seen = pts.get(step)
                    last = seen if seen is not None else last  # None: an evaluation skipped by the gate
                    vals.append(last)
                series.append(vals)
            cols = list(zip(*series))
            curves[f"{teacher} (n={len(runs)})"] = (grid, [sum(c) / len(c) for c in cols])
            bands[f"{teacher} (n={len(runs)})"] = ([min(c) for c in cols], [max(c) for c in cols])
        short = env.replace("MiniGrid-", "").replace("-v0", "")
        path = plot_curves(curves, out_dir / f"{prefix}_{short}.png", title=f"{env}: PPO + teachers",
                           ylabel="success rate, no teacher (mean, min-max)", bands=bands, hline=0.9, ylim=(-0.02, 1.02))
        paths[env] = str(path)
    return paths


MARK_START, MARK_END = "<!-- minigrid_teachers:start -->", "<!-- minigrid_teachers:end -->"


def results_markdown(summary: dict[str, Any]) -> str:
    """This benchmark's section of benchmarks/RESULTS.md, from the summary JSON."""
    lines = [
        MARK_START,
        "## Subgoal teachers on MiniGrid: sample efficiency (`benchmarks/minigrid_teachers.py`)",
        "",
        ("Full benchmark (resumable: finished runs are kept as JSON under `runs/benchmarks/minigrid_teachers`; "
        "`--report` rebuilds this section from them):"),
        "",
        ("    python benchmarks/minigrid_teachers.py --envs MiniGrid-DoorKey-8x8-v0 --caps 200000 "
        "--teachers plain,oracle,random,llm-object,llm-language,llm-positional --seeds 0,1,2 --jobs 2 "
        "--throughput-steps 16384"),
        ("    python benchmarks/minigrid_teachers.py --envs MiniGrid-KeyCorridorS3R3-v0 --caps 200000 "
        "--teachers plain,oracle,random --seeds 0,1,2 --jobs 2 --throughput-steps 0"),
        ("    python benchmarks/minigrid_teachers.py --envs MiniGrid-KeyCorridorS3R3-v0 --teachers llm-object "
        "--seeds 0,1,2 --jobs 3 --max-queries 100 --throughput-steps 0   # the LLM arm, 100 questions per run"),
        ("    python benchmarks/minigrid_teachers.py --envs MiniGrid-MultiRoom-N4-S5-v0 --caps 300000 "
        "--teachers llm-object,plain,oracle,random --seeds 0,1,2 --jobs 3 --max-queries 300 --throughput-steps 0"),
        ("    python benchmarks/minigrid_teachers.py --report --envs MiniGrid-DoorKey-8x8-v0,MiniGrid-KeyCorridorS3R3-v0,"
        "MiniGrid-MultiRoom-N4-S5-v0 --caps 200000,200000,300000   # rebuild JSON, plots and this section"),
        "",
        f"This section was last written by: `{summary['command']}` at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        ("Machine: 2 CPU cores, no GPU, shared with other jobs while these ran (other benchmarks; load 2-18): "
        "steps to 0.9 do not depend on load, but the per-run steps/s do; the guided/plain throughput ratio "
        "below is measured in one process, side by side, and is the meaningful speed figure."),
        ("PPO (MLP 64-64 on the 7x7x3 view, 8 envs, n_steps 128, batch 64, 10 epochs, lr 2.5e-4), bonus 0.1 per "
        "subgoal capped at 0.3/episode. Steps to 0.9 = first eval where the mean success of the last two "
        "evaluations (20 episodes each, sampled actions, plain env, **no teacher**) is >= 0.9; training stops "
        "there. `>cap`: not reached. LLM = SmolLM2-135M (`smollm2`), `choice` mode among the valid subgoals, "
        "listed in a shuffled order (`llm-object-ordered`: listed key, door, goal; see the note below)."),
        "",
    ]
    teachers = [t for t in TEACHERS if any(r["teacher"] == t for r in summary["runs"])]
    for env, caps in summary["caps"].items():
        runs = [r for r in summary["runs"] if r["env"] == env]
        if not runs:
            continue
        lines += [f"### {env} (cap {caps:,} steps)", "", ("| teacher | steps to 0.9 per seed | median | final success "
                  "(mean) | LLM calls / 1k steps (after 20k) | env steps/s |"), "|---|---|---:|---:|---:|---:|"]
        for t in teachers:
            rs = sorted((r for r in runs if r["teacher"] == t), key=lambda r: r["seed"])
            if not rs:
                continue
            per_seed = ", ".join(str(r["steps_to_0.9"]) if r["steps_to_0.9"] is not None else f">{r['cap']}" for r in rs)
            warm = [r["llm_calls_per_1k_steps_after_warmup"] for r in rs if r.get("llm_calls_per_1k_steps_after_warmup") is not None]
            calls = f"{_mean([r['llm_calls_per_1k_steps'] for r in rs])} ({_mean(warm)})" if t.startswith("llm") else "-"
            budgets = {r.get("max_queries") for r in rs} - {None}
            label = f"{t} (budget {', '.join(map(str, sorted(budgets)))} questions)" if budgets else t
            lines.append(
                f"| {label} | {per_seed} | {summary['median_steps_to_0.9'][env].get(t)} | "
                f"{_mean([r['final_success_rate'] for r in rs])} | {calls} | {_mean([r['steps_per_s'] for r in rs])} |"
            )
        lines += ["", (f"Speedup vs plain (median steps): oracle {summary['speedup_oracle_vs_plain'].get(env)}, "
                  f"random {summary['speedup_random_vs_plain'].get(env)}, "
                  f"LLM {summary['speedup_llm_vs_plain'].get(env)}."), ""]
        plot = (summary.get("plots") or {}).get(env)
        if plot:
            lines += [f"![{env}]({os.path.relpath(plot, ROOT)})", ""]
    ratio = summary.get("throughput_ratio_guided_vs_plain")
    if ratio is not None:
        t = summary["throughput"][0]
        lines += [(f"Throughput with a warm cache ({t['env']}, PPO, {t['steps']} steps x 2 interleaved): plain "
                  f"{t['plain_steps_per_s']:.0f} steps/s, guided (LLM object teacher) {t['guided_steps_per_s']:.0f} "
                  f"steps/s, ratio **{ratio:.2f}**; LLM calls during the measure: {t['teacher_calls_during_measure']}."), ""]
    lines += [
        ("Reading the LLM rows: SmolLM2-135M takes the first listed option whatever the state (SPRING runs showed "
         "the same). With the options listed key, door, goal (`llm-object-ordered`) it reproduces the oracle's "
         "DoorKey sequence exactly, so that run is step-for-step the oracle run of the same seed: it measures the "
         "option order, not the model. With shuffled options (the default) its answer is a fixed, state-hashed pick "
         "among the valid subgoals; compare it with `random`. Every answer is valid (constrained choice). On DoorKey "
         "the (layout, progress) cache keeps the LLM out of the loop after the first few situations; on KeyCorridor "
         "and MultiRoom, whose colours change with every layout, it does not, and a question budget ends the "
         "guidance early (see the reading below)."),
        "",
        ("A stronger teacher needs no code change: `--llm gguf:/path/to/model.gguf` here, `teacher.llm: gguf:PATH` "
        "in a config, or `SubgoalTeacher('gguf:PATH', kind='object')` (also `openai:MODEL@http://HOST:PORT/v1`, "
        "e.g. a `llmguide serve --model PATH --n-gpu-layers -1` server)."),
        "",
        MARK_END,
    ]
    return "\n".join(lines)


def update_results_md(summary: dict[str, Any], path: Path = ROOT / "RESULTS.md") -> None:
    """Replace (or append) only this benchmark's section; other sections are left as they are."""
    section = results_markdown(summary)
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _shown(steps: float | None, censored: bool) -> Any:
    """A median as reported: an int, '>cap' when most seeds never reached the target, None if not run."""
    if steps is None:
        return None
    return f">{int(steps)}" if censored else int(steps)


def _write(path: str, summary: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    tmp.replace(path)


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return round(sum(vals) / len(vals), 3) if vals else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default=",".join(DEFAULT_ENVS), help="comma-separated env ids")
    parser.add_argument("--caps", default=None, help="comma-separated step caps, one per env")
    parser.add_argument("--teachers", default=",".join(TEACHERS),
                        help=f"comma-separated arms; the controlled comparison is {CONTROLLED}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--llm", default="smollm2", help="smollm2, gguf:PATH or openai:MODEL@URL")
    parser.add_argument("--positional-budget", type=int, default=20, help="LLM questions per positional run")
    parser.add_argument("--max-queries", type=int, default=None,
                        help="LLM questions per object/language run (default: the teacher's own budget)")
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--throughput-steps", type=int, default=8192, help="0 = skip the throughput measure")
    parser.add_argument("--work", default="runs/benchmarks/minigrid_teachers", help="run dirs + per-run JSON (resumable)")
    parser.add_argument("--out", default=str(ROOT / "results" / "minigrid_teachers.json"))
    parser.add_argument("--quick", action="store_true", help="smoke test: DoorKey-5x5, 1 seed, 4k steps")
    parser.add_argument("--no-markdown", action="store_true", help="do not rewrite this section of RESULTS.md")
    parser.add_argument("--report", action="store_true", help="only rebuild JSON, plots and RESULTS.md from finished runs")
    args = parser.parse_args(argv)

    envs = args.envs.split(",")
    caps = [int(c) for c in args.caps.split(",")] if args.caps else [DEFAULT_ENVS.get(e, 200_000) for e in envs]
    teachers = args.teachers.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        envs, caps, seeds, args.eval_every, args.eval_episodes = ["MiniGrid-DoorKey-5x5-v0"], [4096], [0], 2048, 4
        args.throughput_steps = min(args.throughput_steps, 2048)
    env_caps = dict(zip(envs, caps))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    jobs = [
        {"env": e, "teacher": t, "seed": s, "cap": env_caps[e], "llm": args.llm, "positional_budget": args.positional_budget,
         "max_queries": args.max_queries if t.startswith("llm-") and not t.startswith("llm-positional") else None,
         "eval_every": args.eval_every, "eval_episodes": args.eval_episodes, "work": str(work)}
        for e in envs for s in seeds for t in teachers  # env-major: the first env's table fills first
    ]
    rows: list[dict[str, Any]] = []
    todo = []
    for job in jobs:
        done = run_file(work, job)
        if done.exists():
            rows.append(load_row(done))
        else:
            todo.append((job, done))
    print(f"{len(rows)} runs already done, {len(todo)} to go", flush=True)
    if args.report:
        todo = []
        args.throughput_steps = 0
    wanted = {f.name for _, f in todo} | {run_file(work, r).name for r in rows}
    for other in sorted(work.glob("*__cap*.json")):  # earlier invocations (other envs/teachers) stay in the summary
        if other.name not in wanted:
            row = load_row(other)
            rows.append(row)
            env_caps.setdefault(row["env"], row["cap"])
    command = ("python benchmarks/minigrid_teachers.py " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_job, job): (job, done) for job, done in todo}
        for fut in as_completed(futures):
            job, done = futures[fut]
            try:
                row = fut.result()
            except Exception as err:  # noqa: BLE001 - a failed run is reported, not fatal for the others
                print(f"CRASHED {job['env']} {job['teacher']} seed {job['seed']}: {err!r}", flush=True)
                row = {**{k: job[k] for k in ("env", "teacher", "seed", "cap", "max_queries")},
                       "status": "crashed", "error": repr(err)}
                rows.append(row)  # in the JSON as crashed (not in the per-run files, so a re-run retries it)
                _write(args.out, summarise(rows, env_caps, [], command))
                continue
            done.write_text(json.dumps(row, indent=1))
            rows.append(row)
            _write(args.out, summarise(rows, env_caps, [], command))  # partial results survive a stop
            print(
                f"{row['env']:<30} {row['teacher']:<15} seed {row['seed']}: steps_to_0.9={row['steps_to_0.9']} "
                f"final={row['final_success_rate']:.2f} sps={row['steps_per_s']:.0f} llm_calls={row['llm_calls']} "
                f"wall={row['wall_s']:.0f}s",
                flush=True,
            )
    thr = []
    if args.throughput_steps > 0:
        thr_file = work / f"throughput_{args.throughput_steps}.json"
        if thr_file.exists():
            thr = json.loads(thr_file.read_text())
        else:
            thr = [throughput(envs[0], args.llm, args.throughput_steps)]
            thr_file.write_text(json.dumps(thr, indent=1))
        print(f"throughput guided/plain: {thr[0]['ratio']:.3f}", flush=True)
    if not thr:  # measured by an earlier invocation
        for f in sorted(work.glob("throughput_*.json")):
            thr = json.loads(f.read_text())
    summary = summarise(rows, env_caps, thr, command)
    summary["plots"] = plot_results(rows, Path(args.out).parent, Path(args.out).stem)  # named after --out
    _write(args.out, summary)
    if not args.quick and not args.no_markdown:
        update_results_md(summary)
    print(json.dumps({k: summary[k] for k in ("median_steps_to_0.9", "speedup_oracle_vs_plain", "speedup_llm_vs_plain",
                                               "llm_calls_per_1k_steps", "throughput_ratio_guided_vs_plain")}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
