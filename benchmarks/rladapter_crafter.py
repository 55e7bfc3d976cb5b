"""RLAdapter on Crafter with the adapter tuned *during* the run: plain PPO vs PPO + guide
subgoals (no adapter) vs PPO + guide + the frozen base adapter vs PPO + RLAdapter (adapter
LoRA-tuned in background stages, each hot-swapped in while PPO trains), same seeds.

    .venv/bin/python benchmarks/rladapter_crafter.py --steps 24000 --seeds 0 \\
        --out benchmarks/results/rladapter_crafter_online.json

Each (variant, seed) is one `llmguide.core` run (`method: rladapter`) in its own process
(`--parallel` at a time), its run folder under `--runs`. A stage starts once the buffer gives
`--min-examples` SFT examples after the `--keep` filter and `--min-new-records` records came
in since the last stage. Per RLAdapter run the JSON keeps the stage table (start and swap-in
steps, records, examples, SFT steps and loss, fine-tune seconds, queries served, online
comprehension), and per run the training curve (episode end step, return). Scores over seeds
are IQMs with 95% stratified-bootstrap intervals (`llmguide.stats`). The JSON is rewritten as
each run finishes; ``--from-runs DIR...`` re-aggregates finished run folders (their
metrics.json) without training. Writes the plot (training return, rolling mean of 10
episodes, tuned stages marked) next to the JSON and prints Markdown for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

VARIANTS = ("plain", "guide", "frozen", "rladapter")


def row_from_metrics(m: Any, run_dir: str) -> dict[str, Any]:
    """The figures `aggregate` reads, from a run's `RunMetrics`."""
    extras = m.extras
    row: dict[str, Any] = {
        "variant": extras["variant"], "seed": m.seed, "timesteps": m.steps, "status": m.status,
        "train_seconds": m.wall_s, "final_wait_seconds": extras.get("final_wait_s", 0.0),
        "steps_per_second": m.steps_per_s, "llm_calls": m.llm_calls, "fallbacks": m.fallbacks,
        "first_option_rate": m.first_option_rate, **extras.get("train_crafter", {}), "eval_crafter_score": m.score,
        "train_curve": extras.get("train_curve", {"steps": [], "returns": []}), "run_dir": run_dir,
    }
    if "teacher" in extras:
        t = extras["teacher"]
        row["teacher"] = {k: t[k] for k in ("queries", "buffer_records", "stages_done", "stages_failed", "stages_serving",
                                             "comprehension_mean", "comprehension_by_stage", "comprehension_n_by_stage",
                                             "adapter_ms_mean", "guide_ms_mean", "adapter_batch_mean", "subgoal_counts",
                                             "subgoal_top_share", "guide_fallbacks") if k in t}
        row["stages"] = t.get("stages", [])
    return row


def row_from_checkpoint(run_dir: str) -> dict[str, Any]:
    """The same figures from a run stopped by Ctrl-C (no metrics.json): its checkpoint's
    state.json holds the callback's episodes and the teacher's stages and counters."""
    import yaml
    from llmguide.teachers.rladapter import RLAdapterTeacher

    from llmguide.metrics import achievement_success_rates, crafter_score

    folder = Path(run_dir)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    state = json.loads((folder / "checkpoints" / "state.json").read_text())
    ms, variant = state.get("method_state") or {}, config.get("variant", "rladapter")
    cb = ms.get("callback") or {}
    episodes, returns = cb.get("episodes", []), [float(x) for x in cb.get("returns", [])]
    row: dict[str, Any] = {
        "variant": variant, "seed": int(config.get("seed", 0)), "timesteps": int(state["num_timesteps"]),
        "status": "interrupted", "train_seconds": float(state.get("train_s", 0.0)), "final_wait_seconds": 0.0,
        "steps_per_second": state["num_timesteps"] / max(float(state.get("train_s", 0.0)), 1e-9),
        "llm_calls": int((state.get("llm_usage") or {}).get("calls", 0)), "fallbacks": 0,
        "crafter_score": crafter_score(achievement_success_rates(episodes)) if episodes else 0.0,
        "episodes": len(episodes), "reward_mean": statistics.fmean(returns) if returns else 0.0,
        "eval_crafter_score": None,
        "train_curve": {"steps": cb.get("episode_steps", []), "returns": returns}, "run_dir": run_dir,
    }
    if ms.get("teacher"):
        teacher = RLAdapterTeacher(adapter="smollm2" if variant in ("frozen", "rladapter") else None)
        teacher.load_state_dict(ms["teacher"])
        t = teacher.summary()
        buffer = folder / "rladapter_buffer.jsonl"
        t["buffer_records"] = buffer.read_text().count("\n") if buffer.is_file() else 0
        row["teacher"] = {k: t[k] for k in ("queries", "buffer_records", "stages_done", "stages_failed", "stages_serving",
                                             "comprehension_mean", "comprehension_by_stage", "comprehension_n_by_stage",
                                             "adapter_ms_mean", "guide_ms_mean", "adapter_batch_mean", "subgoal_counts",
                                             "subgoal_top_share", "guide_fallbacks")}
        row["stages"] = t["stages"]
    row["_episodes"] = episodes
    return row


def _row_from_dir(run_dir: str) -> dict[str, Any]:
    """A finished run from metrics.json, an interrupted one from its checkpoint; both keep the
    per-episode achievements (from the checkpoint) for scoring at a common step budget."""
    from llmguide.record import RunMetrics

    folder = Path(run_dir)
    ckpt = row_from_checkpoint(run_dir) if (folder / "checkpoints" / "state.json").is_file() else None
    if (folder / "metrics.json").is_file():
        row = row_from_metrics(RunMetrics.model_validate_json((folder / "metrics.json").read_text()), run_dir)
        row["_episodes"] = ckpt["_episodes"] if ckpt else None
        return row
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} has neither metrics.json nor checkpoints/state.json")
    return ckpt


def at_common_budget(runs: list[dict[str, Any]]) -> int:
    """Score every run on its training episodes that ended by the smallest step count any run
    reached (interrupted runs stop at different steps); returns that step count."""
    from llmguide.metrics import achievement_success_rates, crafter_score

    common = min(r["timesteps"] for r in runs)
    for r in runs:
        eps = r.pop("_episodes", None)
        steps, returns = r["train_curve"]["steps"], r["train_curve"]["returns"]
        if eps is None or len(eps) != len(steps):
            continue
        keep = [i for i, s in enumerate(steps) if s <= common]
        r["common_steps"] = common
        r["crafter_score_common"] = crafter_score(achievement_success_rates([eps[i] for i in keep])) if keep else 0.0
        r["reward_common"] = statistics.fmean(returns[i] for i in keep) if keep else 0.0
        r["episodes_common"] = len(keep)
    return common


def run_one(config: dict[str, Any], run_dir: str, nice: int = 0) -> dict[str, Any]:
    """One run through the core (lowered priority by `nice`)."""
    if nice:
        os.nice(nice)
    from llmguide.core import prepare, run

    t0 = time.perf_counter()
    m = run(prepare(config), Path(run_dir))
    row = row_from_metrics(m, run_dir)
    row["wall_seconds"] = time.perf_counter() - t0
    return row


def guidance_outcomes(run_dir: str) -> list[tuple[int, float, bool]]:
    """(step, comprehension, subgoal reached) of every guidance whose outcome was scored, from the
    run's buffer: the same online measure for every arm, the guide-only one included."""
    path = Path(run_dir) / "rladapter_buffer.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        record = json.loads(line)
        outcome = record.get("outcome") or {}
        if outcome.get("score") is not None:
            rows.append((int(record["step"]), float(outcome["score"]), bool(outcome.get("subgoal_achieved"))))
    return rows


def by_window(runs: list[dict[str, Any]]) -> int | None:
    """Per run, comprehension and subgoal-reached rate before and from the first step at which
    any RLAdapter run served a tuned stage: the frozen arm over the same steps is the control
    that isolates tuning (comprehension also moves as the policy learns). Returns that step."""
    tuned = [s["ready_step"] for r in runs if r["variant"] == "rladapter" for s in r.get("stages", [])[1:]
             if s.get("ready_step")]
    if not tuned:
        return None
    window = min(tuned)
    for r in runs:
        outcomes = guidance_outcomes(r["run_dir"])
        for part, keep in (("before", lambda step: step < window), ("from", lambda step: step >= window)):
            chosen = [(c, a) for step, c, a in outcomes if keep(step)]
            r[f"comprehension_{part}_window"] = statistics.fmean(c for c, _ in chosen) if chosen else None
            r[f"reached_{part}_window"] = statistics.fmean(float(a) for _, a in chosen) if chosen else None
    return window


def _interval(xs: list[float]) -> dict[str, Any]:
    from llmguide.stats import iqm_interval

    iv = iqm_interval([float(x) for x in xs])
    return {"iqm": iv.value, "low": iv.low, "high": iv.high, "n": iv.n, "values": [float(x) for x in xs]}


def aggregate(runs: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Per variant: IQM [95% CI] over seeds of the training Crafter score, the training return
    and the policy-alone eval score; per RLAdapter run: the stage table."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["variant"], []).append(r)
    variants: dict[str, Any] = {}
    for name in VARIANTS:
        rs = sorted(by.get(name, []), key=lambda r: r["seed"])
        if not rs:
            continue
        entry: dict[str, Any] = {
            "seeds": [r["seed"] for r in rs],
            "crafter_score": _interval([r["crafter_score"] for r in rs]),
            "status": [r.get("status", "finished") for r in rs],
            "timesteps": [r["timesteps"] for r in rs],
            "reward": _interval([r["reward_mean"] for r in rs]),
            "eval_crafter_score": _interval([r["eval_crafter_score"] for r in rs if r["eval_crafter_score"] is not None] or [0.0]),
            "episodes": sum(r["episodes"] for r in rs),
            "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in rs),
        }
        teach = [r["teacher"] for r in rs if "teacher" in r]
        if all("crafter_score_common" in r for r in rs):
            entry["common_steps"] = rs[0]["common_steps"]
            entry["crafter_score_common"] = _interval([r["crafter_score_common"] for r in rs])
            entry["reward_common"] = _interval([r["reward_common"] for r in rs])
            entry["episodes_common"] = sum(r["episodes_common"] for r in rs)
        for key in ("comprehension_before_window", "comprehension_from_window", "reached_before_window",
                    "reached_from_window"):
            values = [r[key] for r in rs if r.get(key) is not None]
            if values:
                entry[key] = _interval(values)
        rates = [r["first_option_rate"] for r in rs if r.get("first_option_rate") is not None]
        if rates:
            entry["first_option_rate"] = statistics.fmean(rates)
        entry["fallbacks"] = sum(r.get("fallbacks", 0) for r in rs)
        if teach:
            entry["queries_per_run"] = statistics.fmean(t["queries"] for t in teach)
            entry["guide_ms_mean"] = statistics.fmean(t["guide_ms_mean"] for t in teach)
            entry["comprehension_mean"] = statistics.fmean(t["comprehension_mean"] or 0.0 for t in teach)
            entry["subgoal_top_share"] = statistics.fmean(t["subgoal_top_share"] for t in teach)
        if name in ("frozen", "rladapter"):
            entry["adapter_ms_mean"] = statistics.fmean(t["adapter_ms_mean"] for t in teach)
        if name == "rladapter":
            entry["stages_serving"] = [t.get("stages_serving", 0) for t in teach]
            entry["stages"] = {str(r["seed"]): r.get("stages", []) for r in rs}
        variants[name] = entry
    return {
        "benchmark": "rladapter_crafter_online",
        **meta,
        "variants": variants,
        "runs": runs,
        "reference": "RLAdapter paper: ~28% Crafter score at 1M steps (GPT-4 guide + Llama-2-7B adapter)",
    }


def plot(result: dict[str, Any], path: Path) -> Path:
    """One curve per run (variant, seed), tuned stages of RLAdapter runs marked where they began serving."""
    from llmguide.agents.rladapter import plot_stage_curve, rolling_curve

    curves, stages = {}, {}
    for r in sorted(result["runs"], key=lambda r: (VARIANTS.index(r["variant"]), r["seed"])):
        c = r["train_curve"]
        if not c["steps"]:
            continue
        label = f"{r['variant']} s{r['seed']}"
        curves[label] = rolling_curve(c["steps"], c["returns"])
        stages[label] = [s["ready_step"] for s in r.get("stages", [])[1:] if s.get("ready_step")]
    return plot_stage_curve(curves, stages, path, title="Crafter training return; S1.. = tuned adapter stage begins serving")


def markdown(result: dict[str, Any]) -> str:
    def iv(d: dict[str, Any]) -> str:
        return f"{d['iqm']:.2f} [{d['low']:.2f}, {d['high']:.2f}]" if d["n"] > 1 else f"{d['iqm']:.2f}"

    rows = [("| variant | seeds | steps reached | Crafter score % (train episodes) | return | score % at common steps"
             " | return at common steps | eval score % (policy alone) | queries/run | train s/run |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in result["variants"].items():
        q = f"{v['queries_per_run']:.0f}" if "queries_per_run" in v else "0"
        common = (f"{iv(v['crafter_score_common'])} | {iv(v['reward_common'])}" if "crafter_score_common" in v
                  else "– | –")
        rows.append(f"| {name} | {v['seeds']} | {v['timesteps']} | {iv(v['crafter_score'])} | {iv(v['reward'])} | {common}"
                    f" | {iv(v['eval_crafter_score'])} | {q} | {v['train_seconds_mean']:.0f} |")
    window = result.get("window_step")
    if window:
        rows += ["", (f"| variant | queries/run | fallbacks | first-option rate (22 options) | top subgoal share"
                      f" | comprehension, steps < {window} | comprehension, steps ≥ {window}"
                      f" | subgoal reached, < {window} | subgoal reached, ≥ {window} |"),
                 "|---|---|---|---|---|---|---|---|---|"]
        for name, v in result["variants"].items():
            if "queries_per_run" not in v:
                continue
            cells = [iv(v[k]) if k in v else "–" for k in ("comprehension_before_window", "comprehension_from_window",
                                                            "reached_before_window", "reached_from_window")]
            rate = f"{v['first_option_rate']:.2f}" if v.get("first_option_rate") is not None else "–"
            rows.append(f"| {name} | {v['queries_per_run']:.0f} | {v['fallbacks']} | {rate}"
                        f" | {v['subgoal_top_share']:.2f} | {' | '.join(cells)} |")
    rl = result["variants"].get("rladapter")
    if rl:
        rows += ["", ("| seed | stage | started step | serving from step | records | examples | SFT steps | loss first→last"
                      " | fine-tune s | queries served | comprehension (n) |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
        for seed, table in rl["stages"].items():
            for s in table:
                loss = "–" if s["loss_first"] is None else f"{s['loss_first']:.2f}→{s['loss_last']:.2f}"
                comp = "–" if s["comprehension"] is None else f"{s['comprehension']:.3f} ({s['comprehension_n']})"
                rows.append(f"| {seed} | {s['stage']} | {s['started_step'] if s['started_step'] is not None else '–'}"
                            f" | {s['ready_step'] if s['ready_step'] is not None else 'never (after training)'}"
                            f" | {s['records'] if s['records'] is not None else '–'} | {s['examples'] if s['examples'] is not None else '–'}"
                            f" | {s['sft_steps'] if s['sft_steps'] is not None else '–'} | {loss}"
                            f" | {s['finetune_s'] if s['finetune_s'] is not None else '–'} | {s['queries_served']} | {comp} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=24000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--plain-seeds", type=int, nargs="*", default=None, help="seeds of the plain arm (default: --seeds)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--n-envs", type=int, default=8)
    ap.add_argument("--every", type=int, default=80, help="env steps per env between guidance queries")
    ap.add_argument("--stage-every", type=int, default=512, help="least env steps between two stage starts")
    ap.add_argument("--min-examples", type=int, default=64)
    ap.add_argument("--min-new-records", type=int, default=16)
    ap.add_argument("--keep", type=float, default=0.75)
    ap.add_argument("--stage-sft-steps", type=int, default=16)
    ap.add_argument("--adapter-batch-size", type=int, default=4, help="SFT batch of the stage worker")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--finetune-nice", type=int, default=10, help="niceness added to the fine-tune worker")
    ap.add_argument("--area", type=int, default=32, help="Crafter world size (64 = standard; 32 is ~3x cheaper on CPU)")
    ap.add_argument("--llm", default="smollm2")
    ap.add_argument("--adapter", default="smollm2")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--plain-nice", type=int, default=5, help="lower priority of plain runs (they need no LLM)")
    ap.add_argument("--runs", default="runs/bench_rladapter_online")
    ap.add_argument("--out", default="benchmarks/results/rladapter_crafter_online.json")
    ap.add_argument("--from-runs", nargs="+", default=None, help="aggregate these finished run dirs instead of training")
    args = ap.parse_args()

    base = {
        "method": "rladapter", "total_steps": args.steps, "n_envs": args.n_envs, "every": args.every,
        "stage_every": args.stage_every, "min_examples": args.min_examples, "min_new_records": args.min_new_records,
        "min_records": 1, "keep": args.keep, "stage_sft_steps": args.stage_sft_steps,
        "adapter_batch_size": args.adapter_batch_size, "max_new_tokens": args.max_new_tokens,
        "finetune_nice": args.finetune_nice,
        "env_kwargs": {"area": [args.area, args.area]}, "llm": args.llm, "adapter": args.adapter,
        "wait_final_s": 600, "checkpoint_every": 0, "eval": {"every": 0, "episodes": 8},
    }
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()}-core CPU, no GPU ({platform.machine()}), shared with other engineers' jobs",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": base,
        "load_average_1m": {"start": round(os.getloadavg()[0], 2)},
    }
    out = Path(args.out)
    from llmguide.rundir import write_json

    def save(runs: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        meta["load_average_1m"]["last"] = round(os.getloadavg()[0], 2)
        meta["window_step"] = by_window(runs)
        result = aggregate(runs, {**meta, "complete": done})
        write_json(out, result)
        if any(r["train_curve"]["steps"] for r in runs):
            result["plot"] = str(plot(result, out.with_suffix(".png")))
        return result

    if args.from_runs:
        runs = [_row_from_dir(d) for d in args.from_runs]
        import yaml

        meta["config"] = {d: yaml.safe_load((Path(d) / "config.yaml").read_text()) for d in args.from_runs}
        meta["common_steps"] = at_common_budget(runs)
        meta["command"] += "  (aggregated from the run dirs: finished ones from metrics.json, interrupted ones from their checkpoint)"
        print(markdown(save(runs, True)))
        return 0

    stamp = time.strftime("%Y%m%d-%H%M%S")
    jobs = []
    for variant in args.variants:
        seeds = args.plain_seeds if variant == "plain" and args.plain_seeds is not None else args.seeds
        for seed in seeds:
            cfg = dict(base, variant=variant, seed=seed)
            jobs.append((cfg, str(Path(args.runs) / f"{stamp}__{variant}__{seed}"),
                         args.plain_nice if variant == "plain" else 0))
    jobs.sort(key=lambda j: VARIANTS.index(j[0]["variant"]), reverse=True)  # the longest (rladapter) first
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    crashed: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=mp.get_context("spawn")) as pool:
        pending = {pool.submit(run_one, cfg, rd, nice): (cfg, rd) for cfg, rd, nice in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                cfg, rd = pending.pop(fut)
                try:
                    m = fut.result()
                except Exception as err:  # noqa: BLE001 - a crashed arm is reported, the others finish
                    crashed.append({"variant": cfg["variant"], "seed": cfg["seed"], "run_dir": rd,
                                    "error": f"{type(err).__name__}: {err}"})
                    print(f"{cfg['variant']:>9} seed {cfg['seed']}: CRASHED {err}", flush=True)
                    continue
                runs.append(m)
                print(f"{cfg['variant']:>9} seed {cfg['seed']}: score {m['crafter_score']:.2f} return {m['reward_mean']:.2f} "
                      f"episodes {m['episodes']} ({m['wall_seconds']:.0f}s)", flush=True)
                meta["crashed"] = crashed
                save(runs, not pending)
    meta["crashed"] = crashed
    meta["wall_seconds"] = time.perf_counter() - t0
    result = save(runs, True)
    print(markdown(result))
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
