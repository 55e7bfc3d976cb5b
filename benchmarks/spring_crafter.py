"""SPRING on Crafter vs. a random agent and SB3 PPO: Crafter score, reward, cost per step.

Every agent runs through the shared episode loop on the same seeds and the
same step cap, so the figures are comparable: SPRING as the ``spring`` method
(``llmguide.core``), the random and PPO baselines through ``evaluate_crafter``,
which computes the same Crafter figures. The Crafter score is the paper's
geometric mean over the 22 achievements.

    python benchmarks/spring_crafter.py                       # everything, CPU budget
    python benchmarks/spring_crafter.py --agents random ppo   # only some agents
    python benchmarks/spring_crafter.py --large-llm gguf:/models/qwen2.5-7b-instruct-q4_k_m.gguf
    python benchmarks/spring_crafter.py --agents random spring spring_fast --rl-episodes 2 --llm-episodes 2

``spring`` asks the full question DAG every step (the game-context answers
are computed once per game and reused); ``spring_fast`` (or ``--fast``, which
turns ``spring`` into it) asks only the DAG's ``fast`` node(s) before the
scored action choice. Timing is reported as the loop's mean seconds per
step and as warm seconds per step (every step but the first of a run, which
also answers the per-game context questions and fills llama.cpp's caches).

Results are merged into ``benchmarks/results/spring_crafter.json`` (one entry
per agent, so agents can run in separate processes). An agent that cannot run
(no larger model given) is recorded with ``status: "not run"`` and the reason.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

# Threads that sleep instead of spinning: on a shared CPU llama.cpp's OpenMP
# workers otherwise burn the cores other processes need (measured: 25 s -> 1 s
# per prefix-cached call under load). Must be set before llama_cpp is loaded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "spring_crafter.json"
REFERENCE = {
    "spring_gpt4_paper": {"crafter_score": 27.3, "reward": 12.3, "note": "SPRING paper, GPT-4, full episodes"},
    "ppo_1m_paper": {"crafter_score": 4.6, "note": "Crafter/SPRING papers, PPO after 1M env steps"},
    "dreamerv3_1m_paper": {"crafter_score": 14.5, "note": "DreamerV3 after 1M env steps"},
}


def _env(size: int | None = None, text: bool = True):
    from llmguide.envs import make

    kwargs = {"size": (size, size)} if size else {}
    return make("llmguide/Crafter-v0", text=text, **kwargs)


def run_random(args: argparse.Namespace) -> dict[str, Any]:
    from llmguide.agents.loop import RandomAgent
    from llmguide.agents.spring import evaluate_crafter

    env = _env()
    _, metrics = evaluate_crafter(RandomAgent(env.action_space, seed=args.seed), env, args.rl_episodes,
                                  seed=args.seed, max_steps=args.max_steps, desc="random")
    env.close()
    return metrics


def run_ppo(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from llmguide.agents.loop import PolicyAgent
    from llmguide.agents.spring import evaluate_crafter
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    train_env = _env(args.ppo_size, text=False)
    model = PPO("CnnPolicy", train_env, n_steps=512, batch_size=128, n_epochs=3, learning_rate=3e-4,
                ent_coef=0.01, seed=args.seed, verbose=0, device="cpu")
    start = time.perf_counter()
    model.learn(args.ppo_steps, progress_bar=False)
    train_seconds = time.perf_counter() - start
    train_env.close()
    env = _env(args.ppo_size, text=True)
    # Stochastic actions: a deterministic Crafter policy walks into walls forever.
    _, metrics = evaluate_crafter(PolicyAgent(model, deterministic=False), env, args.rl_episodes,
                                  seed=args.seed, max_steps=args.max_steps, desc="ppo")
    env.close()
    metrics.update(train_steps=args.ppo_steps, train_seconds=round(train_seconds, 1),
                   policy=f"CnnPolicy on {args.ppo_size}x{args.ppo_size} RGB, n_steps=512, batch 128, 3 epochs")
    return metrics


_UNCACHED: dict[str, Any] = {}


def run_spring(args: argparse.Namespace, llm: str, fast: bool = False) -> dict[str, Any]:
    """SPRING as users run it (the `spring` method through `llmguide.core`), in the baselines' figures."""
    from llmguide.core import prepare, run

    tag = f"{llm.replace(':', '_').replace('/', '_')}{'-fast' if fast else ''}"
    run_dir = Path(args.log_dir) / f"{tag}-{time.strftime('%Y%m%d-%H%M%S')}"
    config = {"method": "spring", "llm": llm, "episodes": args.llm_episodes, "seed": args.seed,
              "max_steps": args.max_steps, "max_tokens": args.max_tokens, "n_ctx": 4096, "progress": True,
              "fast": fast}
    objects = {}
    if args.no_response_cache:
        # Every situational call computed, none answered from the response cache: in a stuck
        # state the same prompt recurs and a cache hit would flatter the seconds per step.
        # One model for every SPRING agent of the process: the game-context answers are held per model.
        from llmguide.llm import load

        objects["llm"] = _UNCACHED.setdefault(llm, load(llm, max_tokens=args.max_tokens, n_ctx=4096, cache=False))
    m = run(prepare(config, objects), run_dir)
    usage, steps = m.extras["llm_usage"], max(m.steps, 1)
    return {
        "fast": fast, "response_cache": not args.no_response_cache, "nodes_per_step": m.extras["nodes_per_step"],
        "warm_s_per_step_mean": m.extras["warm_s_per_step_mean"],
        "warm_s_per_step_median": m.extras["warm_s_per_step_median"],
        "warm_choice_s_per_step": m.extras["warm_choice_s_per_step"], "first_step_s": m.extras["first_step_s"],
        "first_option_rate": m.first_option_rate, "choices": m.choices,
        "cache_hits_per_step": usage.get("cache_hits", 0) / steps,
        "cache_dir": os.environ.get("LLMGUIDE_CACHE_DIR", "~/.cache/llmguide (default)"),
        "crafter_score": m.score, "reward": m.return_mean, "episodes": m.episodes, "steps": m.steps,
        "max_steps": args.max_steps, "llm_calls_per_step": m.llm_calls_per_1k_steps / 1000,
        "prompt_tokens_per_step": usage.get("prompt_tokens", 0) / steps,
        "completion_tokens_per_step": usage.get("completion_tokens", 0) / steps,
        "seconds_per_step": m.extras["seconds_per_step"], "llm_fallbacks": m.fallbacks,
        "invalid_actions": m.invalid_actions, "success_rates": m.extras["success_rates"],
        "achievements_unlocked": m.extras["achievements_unlocked"], "llm": llm, "dag_nodes": m.extras["dag_nodes"],
        "logs": m.extras["logs"], "latency_ms_p50": usage.get("latency_ms_p50"),
        "fallback_reasons": usage.get("fallback_reasons"),
    }


def merge_result(out: Path, name: str, metrics: dict[str, Any], args: argparse.Namespace) -> None:
    from llmguide.rundir import read_json, write_json

    data = read_json(out) if out.is_file() else {}
    data.setdefault("agents", {})[name] = metrics
    data["reference"] = REFERENCE
    data["machine"] = f"{os.cpu_count()}-core CPU, no GPU ({platform.machine()})"
    data["date"] = time.strftime("%Y-%m-%d")
    data.setdefault("commands", {})[name] = "python " + " ".join(sys.argv)
    data["settings"] = {
        "env": "llmguide/Crafter-v0", "max_steps": args.max_steps, "seed": args.seed,
        "rl_episodes": args.rl_episodes, "llm_episodes": args.llm_episodes, "ppo_steps": args.ppo_steps,
        "spring_max_tokens": args.max_tokens, "dag": "default (packaged)",
        "context": "manual built from Crafter's own data.yaml",
    }
    write_json(out, data)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.2f}"


def table(data: dict[str, Any]) -> str:
    """The RESULTS.md table for a results file."""
    rows = ["| agent | episodes x cap | Crafter score (%) | reward | LLM calls/step | tokens/step (in/out) | s/step "
            "| warm s/step (median) | invalid actions | fallbacks | first-option rate |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in data.get("agents", {}).items():
        if m.get("status") == "not run":
            rows.append(f"| {name} | not run: {m['reason']} | | | | | | | | | |")
            continue
        rows.append(
            f"| {name} | {m['episodes']} x {m['max_steps']} | {m['crafter_score']:.2f} | {m['reward']:.2f} | "
            f"{m['llm_calls_per_step']:.1f} | {m['prompt_tokens_per_step']:.0f} / {m['completion_tokens_per_step']:.0f} | "
            f"{m['seconds_per_step']:.2f} | {_fmt(m.get('warm_s_per_step_median'))} | {m['invalid_actions']} | "
            f"{m.get('llm_fallbacks', '')} | {_fmt(m.get('first_option_rate'))} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", nargs="+", default=["random", "ppo", "spring", "spring_large"],
                   choices=["random", "ppo", "spring", "spring_fast", "spring_large"])
    p.add_argument("--fast", action="store_true", help="run `spring` as the fast variant (the DAG's fast nodes only)")
    p.add_argument("--no-response-cache", action="store_true",
                   help="SPRING's model without the persistent response cache (every call computed; honest s/step)")
    p.add_argument("--max-steps", type=int, default=20, help="step cap per episode, same for every agent")
    p.add_argument("--rl-episodes", type=int, default=5, help="episodes for random and PPO")
    p.add_argument("--llm-episodes", type=int, default=1, help="episodes for SPRING")
    p.add_argument("--ppo-steps", type=int, default=5_000)
    p.add_argument("--ppo-size", type=int, default=36, help="PPO image side (Crafter renders at this size)")
    p.add_argument("--llm", default="smollm2")
    p.add_argument("--large-llm", default=os.environ.get("LLMGUIDE_LARGE_LLM"),
                   help="a larger model spec (gguf:PATH or openai:MODEL@URL); skipped when absent")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-dir", default=str(ROOT / "runs" / "spring_crafter_bench"), help="where SPRING's run dirs go")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    for name in args.agents:
        if name == "random":
            metrics = run_random(args)
        elif name == "ppo":
            metrics = run_ppo(args)
        elif name in ("spring", "spring_fast"):
            fast = args.fast or name == "spring_fast"
            metrics = run_spring(args, args.llm, fast=fast)
            name = f"spring_{args.llm.split(':')[0]}{'_fast' if fast else ''}"
        elif args.large_llm:
            metrics = run_spring(args, args.large_llm)
        else:
            metrics = {"status": "not run", "reason": "no larger model on this machine (pass --large-llm gguf:PATH or openai:MODEL@URL)"}
        merge_result(args.out, name, metrics, args)
        print(f"{name}: " + ", ".join(f"{k}={metrics[k]}" for k in ("crafter_score", "reward", "invalid_actions") if k in metrics), flush=True)
    from llmguide.rundir import read_json

    print(table(read_json(args.out)))


if __name__ == "__main__":
    main()
