"""DiLu on highway-env: does success rise with memory size, read against noise? And which decision
does a reflection blame?

Phases (each result is written to the JSON as soon as it exists, so a run cut
short keeps what it measured):
0. baselines without an LLM on the evaluation seeds: always-IDLE and a random available action;
1. build: the DiLu agent (reasoning on) drives build seeds (--build-seed...) with learning and
   reflection on until the memory holds max(--sizes) experiences (growth and reflections recorded);
2. sweep: for each memory size N (--sizes, default 0/5/20/40), a frozen memory with the first N
   experiences (insertion order), on --episodes seeded evaluation episodes (seeds --eval-seed...,
   disjoint from the build seeds) of --decisions decisions, round-robin over the arms seed by seed
   (a budget cut leaves every arm with the same seeds); success (no collision) with its Wilson
   95% interval, decisions survived, seconds per decision (reasoning on) and the agent's choice
   figures (first-option rate and fallback rate of its `choose` calls);
3. reflection: on the crash traces of the build phase (as they happen) and of the memory-0 arm
   (after the sweep, budget permitting), the same traces for both, the reflection
   as it was before issue 13 (the window's scenes and actions, "decision 1..n" chosen directly)
   against the agent's (each step with the env's gap/TTC figures before and after, reasoning, then
   the step): how often each blames the episode's first decision, and how often it picks the step
   the figures point at (`DiLuAgent.figures_pick`);
4. optionally the cells of --gen-sizes at density 3 and with 5 lanes, and an SB3 DQN (--dqn-steps).
Cells past --budget-min are recorded as skipped, not run.

Speed (--profile N, before phase 1): on N first-decision scenes (seeds 2000...), without and with the
retrieved experiences, the decision's three parts timed apart — the prompt's evaluation (a 1-token
generation), the reasoning's generation (--cot-tokens tokens on the now-evaluated prompt: seconds per
generated token) and the scored `choose` — with their token counts, so the gap to 1 s per decision
has a measured cause.

A cheaper build (--memory-from FILE): the build memory starts from an earlier build's JSONL export
(same agent, earlier build seeds) and phase 1 only adds the rest, from --build-seed on;
--no-build-pairing skips asking the pre-issue reflection about each build crash (phase 3's
comparison on build traces was already run).

Example:
    python benchmarks/dilu_highway.py --episodes 20 --decisions 10 --sizes 0,5,20,40 --budget-min 40
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
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


def wilson(successes: int, n: int, z: float = 1.959964) -> list[float]:
    """Wilson score interval of a binomial proportion (95% by default); sound at 0/n and n/n."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)]


def sweep_row(spec: str, size: int, arm: dict[str, Any]) -> dict[str, Any]:
    """One memory arm of the sweep: success with its Wilson interval, cost, and the agent's choices."""
    records, agent = arm["records"], arm["agent"]
    n, wins = len(records), sum(bool(r.success) for r in records)
    steps = sum(r.length for r in records)
    seconds = sorted(agent.decision_seconds)
    return {
        "model": spec, "memory_size": size, "setting": "default", "episodes": n,
        "seeds": [r.seed for r in records], "successes": wins, "success_rate": wins / n if n else None,
        "success_wilson95": wilson(wins, n),
        "decisions_survived_mean": sum(r.extra["decisions_survived"] for r in records) / max(n, 1),
        "mean_speed": sum(r.extra["mean_speed"] for r in records) / max(n, 1),
        "decisions": steps,
        "llm_calls_per_decision": arm["calls"] / max(steps, 1),
        "seconds_per_decision": arm["seconds"] / max(steps, 1),
        "cpu_seconds_per_decision": arm.get("cpu", 0.0) / max(steps, 1),
        "agent_seconds_per_decision": {
            "mean": sum(seconds) / len(seconds) if seconds else None,
            "median": seconds[len(seconds) // 2] if seconds else None,
            "p90": seconds[int(0.9 * (len(seconds) - 1))] if seconds else None,
            "share_within_1s": sum(x <= 1.0 for x in seconds) / len(seconds) if seconds else None,
        },
        "choices": {site: c.as_dict() for site, c in agent.choice_stats.items()},
        "per_episode_success": [bool(r.success) for r in records],
    }


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def evaluate(agent: Any, setting: str, args: argparse.Namespace, desc: str,
             traces: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Success (no collision) with its Wilson interval, decisions survived, speed, LLM cost.

    ``traces`` (for a DiLuAgent) receives each crashed episode's decisions."""
    from llmguide.agents.dilu import DiLuAgent, DrivingLog, make_dilu_env, no_collision
    from llmguide.agents.loop import run_episodes

    from llmguide.llm import METER

    env = make_dilu_env(env_config={"duration": args.decisions, **SETTINGS[setting]})
    log = DrivingLog()
    is_dilu = isinstance(agent, DiLuAgent)
    if is_dilu:
        agent.choice_stats, agent.decision_seconds = {}, []
        inner = agent

        class Keep:  # the crash traces, for the reflection comparison
            def act(self, obs: Any, info: dict[str, Any]) -> int:
                return inner.act(obs, info)

            def reset(self, info: dict[str, Any]) -> None:
                inner.reset(info)

            def end_episode(self, record: Any) -> None:
                if traces is not None and record.extra.get("crashed"):
                    traces.append({"seed": record.seed, "trace": list(inner.trace)})
                inner.end_episode(record)

        agent = Keep()
    before, start = METER.snapshot(), time.perf_counter()
    records = run_episodes(log.wrap(agent), env, args.episodes, seed=args.eval_seed, max_steps=args.decisions,
                           success_fn=no_collision, extra_fn=log.extra, progress=True, desc=desc)
    env.close()
    after = METER.snapshot()
    steps = sum(r.length for r in records)
    n, wins = len(records), sum(bool(r.success) for r in records)
    row: dict[str, Any] = {
        "setting": setting,
        "episodes": n,
        "seeds": [r.seed for r in records],
        "successes": wins,
        "success_rate": wins / n,
        "success_wilson95": wilson(wins, n),
        "decisions_survived_mean": sum(r.extra["decisions_survived"] for r in records) / n,
        "mean_speed": sum(r.extra["mean_speed"] for r in records) / n,
        "decisions": steps,
        "llm_calls_per_decision": (after.calls - before.calls) / max(steps, 1),
        "cache_hits": after.cache_hits - before.cache_hits,
        "seconds_per_decision": (time.perf_counter() - start) / max(steps, 1),
        "per_episode_success": [bool(r.success) for r in records],
    }
    if is_dilu:
        row["choices"] = {site: s.as_dict() for site, s in inner.choice_stats.items()}
        seconds = sorted(inner.decision_seconds)
        row["agent_seconds_per_decision"] = {
            "mean": sum(seconds) / len(seconds) if seconds else None,
            "median": seconds[len(seconds) // 2] if seconds else None,
            "p90": seconds[int(0.9 * (len(seconds) - 1))] if seconds else None,
            "share_within_1s": sum(x <= 1.0 for x in seconds) / len(seconds) if seconds else None,
        }
    return row


def legacy_reflection_pick(agent: Any, trace: list[Any]) -> int:
    """The reflection as it was before issue 13: the window's scenes and actions, no figures and
    no reasoning, "decision 1..n" chosen directly. Returns the picked step."""
    from langchain_core.messages import HumanMessage, SystemMessage

    window = list(trace[-agent.reflection_window:])
    lines = ["The episode ended in a collision. The last decisions before the crash were:"]
    for i, s in enumerate(window, 1):
        lines.append(f"Decision {i}. Scene: {s.scene}\nAction: {s.decision}.")
    lines.append("Which decision was wrong and caused the collision?")
    labels = [f"decision {i}" for i in range(1, len(window) + 1)]
    picked, _ = agent._choose("legacy_reflection_step", [SystemMessage(content=agent.rules),
                                                          HumanMessage(content="\n".join(lines))],
                              labels, labels[-1])
    return window[labels.index(picked)].step


def compare_reflections(agent: Any, traces: list[dict[str, Any]]) -> dict[str, Any]:
    """Before/after reflection on the same crash traces: which decision each blames."""
    rows = []
    for item in traces:
        trace = item["trace"]
        before = legacy_reflection_pick(agent, trace)
        start = time.perf_counter()
        found = agent.reflect_on(trace)
        assert found is not None
        experience, wrong, pick = found
        rows.append({"seed": item["seed"], "length": len(trace), "window": pick["window"], "before_step": before,
                     "after_step": pick["picked_step"], "figures_step": pick["figures_step"],
                     "after_reason": pick["reason"], "corrected": experience.decision,
                     "wrong_decision": wrong.decision, "reflection_s": round(time.perf_counter() - start, 2)})
    return {**blame_table(rows), "rows": rows}


def blame_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Before/after shares (with Wilson 95% intervals) of blaming the episode's first decision, the
    window's first, and the step the figures point at."""
    n = len(rows)

    def share(key: str, test: Any) -> dict[str, Any]:
        k = sum(bool(test(r[key], r)) for r in rows)
        return {"count": k, "n": n, "share": k / n if n else None, "wilson95": wilson(k, n)}

    return {
        "traces": n,
        "only_one_decision": sum(len(r["window"]) == 1 for r in rows),
        "before_first_of_episode": share("before_step", lambda s, r: s == 0),
        "after_first_of_episode": share("after_step", lambda s, r: s == 0),
        "before_first_of_window": share("before_step", lambda s, r: s == r["window"][0]),
        "after_first_of_window": share("after_step", lambda s, r: s == r["window"][0]),
        "before_agrees_with_figures": share("before_step", lambda s, r: s == r["figures_step"]),
        "after_agrees_with_figures": share("after_step", lambda s, r: s == r["figures_step"]),
    }


def _code_state() -> dict[str, Any]:
    """The commit the run used, and the files that differed from it (the tree is shared)."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=20, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "modified": git("diff", "--name-only", "HEAD").splitlines()}


def speed_profile(agent: Any, scenes: int, cot_tokens: int, seed: int = 2000) -> dict[str, Any]:
    """Where a decision's seconds go: prompt evaluation, reasoning generation, scored choice, timed apart.

    Each scene is a fresh first-decision scene, asked without and with the agent's retrieved experiences."""
    from langchain_core.messages import AIMessage, HumanMessage
    from llmguide.agents.dilu import _text, lanes_scene, make_dilu_env

    from llmguide.llm import METER

    env = make_dilu_env(env_config={"duration": 1})
    agent.llm.invoke([HumanMessage(content="Warm-up: say yes.")], max_tokens=1)  # the model loads on first use
    rows = []
    for i in range(scenes):
        _, info = env.reset(seed=seed + i)
        available = list(info["valid_actions"])
        scene = lanes_scene(info["figures"], available)
        found = agent._shots(scene)
        for shots in [[], found] if found else [[]]:
            messages = agent.prompt(scene, shots)
            m0, t0, c0 = METER.snapshot(), time.perf_counter(), time.process_time()
            agent.llm.invoke(messages, max_tokens=1)  # evaluates the prompt (its unseen part)
            m1, t1, c1 = METER.snapshot(), time.perf_counter(), time.process_time()
            reasoning = _text(agent.llm.invoke(messages, max_tokens=cot_tokens))  # the prompt is held: generation
            m2, t2, c2 = METER.snapshot(), time.perf_counter(), time.process_time()
            default = "IDLE" if "IDLE" in available else available[0]
            agent._choose("profile", [*messages, AIMessage(content=reasoning or "(no reasoning)"),
                                      HumanMessage(content="So the final decision is:")], available, default)
            t3, c3 = time.perf_counter(), time.process_time()
            generated = m2.completion_tokens - m1.completion_tokens
            rows.append({"scene_seed": seed + i, "shots": len(shots), "prompt_tokens": m1.prompt_tokens - m0.prompt_tokens,
                         "prompt_eval_s": round(t1 - t0, 3), "generated_tokens": generated,
                         "generation_s": round(t2 - t1, 3),
                         "ms_per_generated_token": round(1000 * (t2 - t1) / generated, 1) if generated else None,
                         "choose_s": round(t3 - t2, 3), "options": len(available),
                         # CPU seconds of this process (all its threads): what the parts cost without the load
                         "prompt_eval_cpu_s": round(c1 - c0, 3), "generation_cpu_s": round(c2 - c1, 3),
                         "cpu_ms_per_generated_token": round(1000 * (c2 - c1) / generated, 1) if generated else None,
                         "choose_cpu_s": round(c3 - c2, 3),
                         "cache_hits": m2.cache_hits - m0.cache_hits})
    env.close()

    def mean(key: str, with_shots: bool) -> float | None:
        xs = [r[key] for r in rows if (r["shots"] > 0) == with_shots and r[key] is not None]
        return round(sum(xs) / len(xs), 3) if xs else None

    keys = ("prompt_tokens", "prompt_eval_s", "generated_tokens", "generation_s", "ms_per_generated_token", "choose_s",
            "prompt_eval_cpu_s", "generation_cpu_s", "cpu_ms_per_generated_token", "choose_cpu_s")
    return {"rows": rows, "load_average": [round(x, 2) for x in os.getloadavg()],
            "mean_without_shots": {k: mean(k, False) for k in keys}, "mean_with_shots": {k: mean(k, True) for k in keys}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="smollm2", help="Model spec (smollm2, gguf:PATH, openai:...).")
    parser.add_argument("--n-threads", type=int, default=None, help="llama.cpp threads (default: llama.cpp's).")
    parser.add_argument("--sizes", default="0,5,20,40", help="Memory sizes to evaluate.")
    parser.add_argument("--gen-sizes", default="", help="Sizes also evaluated at density 3 and with 5 lanes.")
    parser.add_argument("--episodes", type=int, default=20, help="Evaluation episodes per cell (seeds eval-seed...).")
    parser.add_argument("--decisions", type=int, default=10, help="Decisions per episode (DiLu: 20).")
    parser.add_argument("--eval-seed", type=int, default=0)
    parser.add_argument("--build-seed", type=int, default=1000, help="First seed of the memory-building episodes.")
    parser.add_argument("--build-episodes", type=int, default=30, help="At most this many building episodes.")
    parser.add_argument("--build-decisions", type=int, default=None,
                        help="Decisions per building episode (default --decisions; longer = more safe experiences each).")
    parser.add_argument("--k", type=int, default=2, help="Retrieved experiences per decision.")
    parser.add_argument("--cot-tokens", type=int, default=24, help="Chain-of-thought token cap (DiLu reasons: > 0).")
    parser.add_argument("--scene", default="lanes", choices=("lanes", "full"), help="The agent's scene text.")
    parser.add_argument("--no-reflection-compare", action="store_true", help="Skip phase 3.")
    parser.add_argument("--reflection-traces", type=int, default=20, help="At most this many crash traces in phase 3.")
    parser.add_argument("--dqn-steps", type=int, default=0, help="DQN training steps on highway-fast-v0 (0 = skip).")
    parser.add_argument("--dqn-model", default=None, help="Evaluate this saved DQN (.zip) instead of training one.")
    parser.add_argument("--no-baselines", action="store_true", help="Skip the always-IDLE and random baselines.")
    parser.add_argument("--budget-min", type=float, default=40.0, help="Wall-clock budget for the LLM cells.")
    parser.add_argument("--build-budget-min", type=float, default=8.0, help="Wall-clock budget for building the memory.")
    parser.add_argument("--memory-from", default=None, help="Start the build memory from this JSONL export.")
    parser.add_argument("--no-build-pairing", action="store_true",
                        help="Build without asking the pre-issue reflection about each crash (saves a call a crash).")
    parser.add_argument("--profile", type=int, default=0, help="Scenes in the speed profile (0 = skip).")
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "bench_dilu"), help="Memories and the DQN model.")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dilu_highway.json"))
    args = parser.parse_args(argv)
    if args.cot_tokens <= 0:
        print("note: --cot-tokens 0 turns DiLu's reasoning off", file=sys.stderr)

    from llmguide.agents.dilu import DiLuAgent, DrivingLog, make_dilu_env, no_collision
    from llmguide.agents.loop import RandomAgent, run_episodes
    from llmguide.memory import ExperienceMemory

    from llmguide.llm import METER, load
    from llmguide.rundir import write_json

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sizes, gen_sizes = _ints(args.sizes), _ints(args.gen_sizes)
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    out: dict[str, Any] = {
        "benchmark": "dilu_highway",
        "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU (shared with other jobs)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/dilu_highway.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": vars(args),
        "load_average_start": [round(x, 2) for x in load_start],
        "baselines": [],
        "memory_growth": {},
        "results": [],
        "reflection": None,
        "reflection_build": None,
        "skipped": [],
        "code": _code_state(),
    }

    def save() -> None:
        out["elapsed_s"] = round(time.perf_counter() - t0, 1)
        out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        write_json(args.out, out)

    def over_budget() -> bool:
        return time.perf_counter() - t0 > args.budget_min * 60

    # -- 0. baselines without an LLM (cheap) -------------------------------------
    class Idle:
        def act(self, obs: Any, info: dict[str, Any]) -> int:
            return 1

    probe = make_dilu_env()
    cheap = () if args.no_baselines else (("always_idle", Idle()), ("random", RandomAgent(probe.action_space, seed=0)))
    for name, agent in cheap:
        for setting in ["default", *(s for s in SETTINGS if s != "default" and gen_sizes)]:
            out["baselines"].append({"agent": name, **evaluate(agent, setting, args, f"{name}/{setting}")})
    probe.close()
    save()

    spec = args.llm
    llm = load(spec, n_ctx=4096, **({"n_threads": args.n_threads} if args.n_threads else {}))
    tag = spec.replace(":", "_").replace("/", "_")

    def agent_for(memory: Any, learn: bool) -> DiLuAgent:
        return DiLuAgent(llm=llm, memory=memory, k=args.k, cot_tokens=args.cot_tokens, scene=args.scene,
                         reflect=learn, learn=learn)

    # -- 1. build the memory with reflection -------------------------------------
    build_dir = work / f"memory_{tag}"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    memory = ExperienceMemory(build_dir)
    if args.memory_from:
        out["memory_seeded_from"] = {"path": args.memory_from, "experiences": memory.import_jsonl(args.memory_from)}
        save()
    if args.profile > 0:
        out["speed_profile"] = speed_profile(agent_for(memory, learn=False), args.profile, args.cot_tokens)
        save()
    builder = agent_for(memory, learn=True)
    target = max(sizes)
    build_decisions = args.build_decisions or args.decisions
    env = make_dilu_env(env_config={"duration": build_decisions})
    log = DrivingLog()
    built, build_start = 0, time.perf_counter()
    before_picks: list[int | None] = []  # the pre-issue-13 reflection's pick on each crash trace the builder reflects on

    class Paired:
        """The builder, with the old reflection asked about the very trace the new one reflects on."""

        def act(self, obs: Any, info: dict[str, Any]) -> int:
            return builder.act(obs, info)

        def reset(self, info: dict[str, Any]) -> None:
            builder.reset(info)

        def end_episode(self, record: Any) -> None:
            if record.extra.get("crashed") and builder.trace and not args.no_build_pairing:
                before_picks.append(legacy_reflection_pick(builder, builder.trace))
            builder.end_episode(record)

    while (len(memory) < target and built < args.build_episodes
           and time.perf_counter() - build_start < args.build_budget_min * 60):
        run_episodes(log.wrap(Paired()), env, 1, seed=args.build_seed + built, max_steps=build_decisions,
                     success_fn=no_collision, extra_fn=log.extra, progress=False)
        built += 1
        out["memory_growth"] = {"model": spec, "episodes": built, "seeds": [args.build_seed, args.build_seed + built - 1],
                                "sizes": builder.memory_sizes, "reflections": builder.reflections,
                                "blame": builder.blame_counts(), "stats": memory.stats(),
                                "choices": {s: c.as_dict() for s, c in builder.choice_stats.items()},
                                "seconds": round(time.perf_counter() - build_start, 1),
                                "decision_seconds": builder.decision_seconds}
        if not args.no_build_pairing:
            out["reflection_build"] = blame_table(
                [{"before_step": b, "after_step": r["wrong_step"], "figures_step": r["figures_step"],
                  "window": r["window"]} for b, r in zip(before_picks, builder.reflections)])
        save()
    env.close()
    export = work / f"memory_{tag}.jsonl"
    memory.export_jsonl(export)

    # -- 2. the memory sweep: frozen memories of each size, round-robin over seeds ----
    # Each round drives every arm on the same next seed, so when the budget ends the sweep
    # every arm has the same episodes (all arms stop after a round, never mid-way).
    arms: dict[int, dict[str, Any]] = {}
    for n in sorted(sizes):
        if n > len(memory):
            out["skipped"].append({"memory_size": n, "setting": "default",
                                   "reason": f"memory reached only {len(memory)} experiences"})
            continue
        cell_dir = work / f"memory_{tag}_{n}"
        if cell_dir.exists():
            shutil.rmtree(cell_dir)
        frozen = ExperienceMemory(cell_dir, embeddings=memory.embeddings, near_duplicate=None)
        frozen.import_jsonl(export, limit=n)
        arms[n] = {"memory": frozen, "agent": agent_for(frozen, learn=False), "records": [], "calls": 0,
                   "seconds": 0.0}
    env = make_dilu_env(env_config={"duration": args.decisions})
    crash_traces: list[dict[str, Any]] = []
    rounds = 0
    for i in range(args.episodes):
        if over_budget():
            out["skipped"].append({"phase": "sweep", "reason": f"time budget after {rounds} rounds"})
            break
        for n, arm in arms.items():
            agent, log = arm["agent"], DrivingLog()
            calls0, start, cpu0 = METER.snapshot().calls, time.perf_counter(), time.process_time()
            (record,) = run_episodes(log.wrap(agent), env, 1, seed=args.eval_seed + i, max_steps=args.decisions,
                                     success_fn=no_collision, extra_fn=log.extra, progress=False)
            arm["seconds"] += time.perf_counter() - start
            arm["cpu"] = arm.get("cpu", 0.0) + time.process_time() - cpu0
            arm["calls"] += METER.snapshot().calls - calls0
            arm["records"].append(record)
            if n == 0 and record.extra.get("crashed"):
                crash_traces.append({"seed": record.seed, "trace": list(agent.trace)})
        rounds += 1
        out["results"] = [sweep_row(spec, len(arm["memory"]), arm) for arm in arms.values()]
        print(f"round {rounds}: " + ", ".join(f"mem{len(a['memory'])} {sum(r.success for r in a['records'])}/"
                                             f"{len(a['records'])}" for a in arms.values()), flush=True)
        save()
    env.close()
    for n in sorted(gen_sizes, reverse=True):  # generalization cells, if asked
        for setting in (s for s in SETTINGS if s != "default"):
            if n not in arms or over_budget():
                out["skipped"].append({"memory_size": n, "setting": setting, "reason": "time budget or size"})
                continue
            row = evaluate(agent_for(arms[n]["memory"], learn=False), setting, args, f"{spec}/mem{n}/{setting}")
            out["results"].append({"model": spec, "memory_size": n, **row})
            save()

    # -- 3. which decision does a reflection blame: before vs after, same traces ----
    if not args.no_reflection_compare and crash_traces:
        if over_budget():
            out["skipped"].append({"phase": "reflection", "reason": "time budget"})
        else:
            agent = agent_for(None, learn=False)
            out["reflection"] = {"source": "crash traces of the memory-0 arm (eval seeds)",
                                 **compare_reflections(agent, crash_traces[: args.reflection_traces]),
                                 "choices": {s: c.as_dict() for s, c in agent.choice_stats.items()}}
            save()

    # -- 4. DQN on highway-fast-v0 --------------------------------------------------
    if args.dqn_steps > 0 or args.dqn_model:
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
        for setting in ["default", *(s for s in SETTINGS if s != "default" and gen_sizes)]:
            row = evaluate(PolicyAgent(model), setting, args, f"dqn/{setting}")
            out["baselines"].append({"agent": f"dqn_{args.dqn_steps}_steps_highway-fast-v0",
                                     "train_seconds": train_s, **row})
            save()
    save()
    print(f"wrote {args.out} in {out['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
