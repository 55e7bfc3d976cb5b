"""Choices not won by position: likelihood scoring vs generation on probes with known answers.

The probes come from the envs' own text views, and their right answers from
the envs themselves:

* DoorKey (MiniGrid): the next subgoal by the scripted oracle (`plan_next`,
  what `OracleTeacher` proposes) at three stages of a seeded layout: at the
  start, carrying the key, with the door open. 3 options.
* Crafter: situations reached by a seeded random walk in which exactly one
  action unlocks a new achievement this step, found by stepping copies of
  the real env with every action that can (by Crafter's rules, moving,
  `noop` and `sleep` never unlock one in a single step; facing grass before
  `collect_sapling` is skipped: `do` there unlocks it with probability 0.1;
  states holding nothing and facing grass, sand or path are not checked:
  nothing can unlock there). 17 options
  (all actions, as SPRING lists them), the game manual first in the prompt.
* highway-fast-v0: scenes in which exactly one available action ends in a
  collision (the action, then two IDLE steps, on a copy of the env); the
  question asks which action is unsafe. 3-5 options.

Every probe is asked under every rotation of its options, the prompt listing
them in that order as the project's callers do, for each `choose` mode
(`score`: calibrated likelihood, the default on llama.cpp; `generate`:
constrained generation as listed; `shuffle`: the same, listing shuffled) and
`score_raw` (the uncalibrated mean log-probability, for comparison). Figures:
permutation consistency (share of probes with one answer under all
rotations), accuracy vs chance, first-option rate vs 1/N, and the latency of
one 17-way Crafter choice with the ~1k-token prompt cached (and cold).

    python benchmarks/choice.py --out benchmarks/results/choice.json
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

MODES = ("score", "score_raw", "generate", "shuffle")
DOORKEY_SYSTEM = (
    "You advise an agent in a grid world. It can turn, move forward, pick up one object, drop it, "
    "and open a door in front of it; a locked door opens only while the agent carries the key of "
    "its colour. Name the single next subgoal that brings the agent closer to its mission."
)
HIGHWAY_SYSTEM = "You supervise the driver of the ego car on a multi-lane highway; vehicles keep their lanes."
#: Crafter actions that can unlock an achievement in one step (see the module docstring).
CRAFTER_ACTING = ("do", "place_stone", "place_table", "place_furnace", "place_plant", "make_wood_pickaxe",
                  "make_stone_pickaxe", "make_iron_pickaxe", "make_wood_sword", "make_stone_sword", "make_iron_sword")


@dataclass(frozen=True)
class Probe:
    """One question with a known right answer; `options` in the env's own order."""

    family: str
    name: str
    system: str
    situation: str
    label: str
    question: str
    options: tuple[str, ...]
    answer: str

    def messages(self, listing: list[str]) -> list[BaseMessage]:
        body = f"{self.situation}\n{self.label}: {'; '.join(listing)}.\n{self.question}"
        return [SystemMessage(content=self.system), HumanMessage(content=body)]

    def rotations(self) -> list[list[str]]:
        opts = list(self.options)
        return [opts[k:] + opts[:k] for k in range(len(opts))]


# -- probe sets ----------------------------------------------------------------------------
def doorkey_probes(seeds: list[int]) -> list[Probe]:
    """Start / carrying the key / door open, on seeded DoorKey-6x6 layouts; answers from the oracle."""
    from llmguide.envs import make
    from llmguide.teachers.minigrid_planning import plan_next, symbolic_state

    probes = []
    for seed in seeds:
        env = make("MiniGrid-DoorKey-6x6-v0")
        _, info = env.reset(seed=seed)
        base = env.unwrapped
        cells = {obj.type: (x, y, obj) for x in range(base.grid.width) for y in range(base.grid.height)
                 if (obj := base.grid.get(x, y)) is not None}
        kx, ky, key = cells["key"]
        door = cells["door"][2]
        options = (f"pick up the {key.color} key", f"open the {door.color} door", "go to the goal")
        for stage in ("start", "carrying key", "door open"):
            if stage == "carrying key":
                base.grid.set(kx, ky, None)
                key.cur_pos = (-1, -1)
                base.carrying = key
                _, _, _, _, info = env.step(base.actions.done)  # 'done' changes nothing; refreshes the view
            elif stage == "door open":
                door.is_locked, door.is_open = False, True
                _, _, _, _, info = env.step(base.actions.done)
            answer = plan_next(env).instruction
            state = symbolic_state(env)
            situation = (f"Mission: {state['mission']}.\nObjects: {', '.join(state['objects'])}.\n"
                         f"The agent carries: {state['carrying'] or 'nothing'}.\nWhat the agent sees: {info['text']}")
            probes.append(Probe("doorkey", f"seed {seed}, {stage}", DOORKEY_SYSTEM, situation, "Possible subgoals",
                                "Which subgoal should the agent pursue next?", options, answer))
    return probes


def _crafter_progress(env: Any, info: dict[str, Any], names: list[str]) -> list[tuple[str, list[str]]]:
    """(action, achievements it unlocks now) for each action that unlocks one, on copies of the env."""
    have = set(info["achievements"])
    found = []
    for name in CRAFTER_ACTING:
        _, _, _, _, after = copy.deepcopy(env).step(names.index(name))
        new = sorted(set(after["achievements"]) - have)
        if new:
            found.append((name, new))
    return found


def crafter_probes(n: int, manual: str, seeds: list[int], steps: int) -> list[Probe]:
    """Up to `n` situations where exactly one action unlocks an achievement, each with a different answer."""
    from llmguide.envs import make

    env = make("llmguide/Crafter-v0")
    probes: list[Probe] = []
    answers: set[str] = set()
    for seed in seeds:
        _, info = env.reset(seed=seed)
        names = list(info["action_names"])
        walk = [names.index(a) for a in ("do", "do", "do", "move_left", "move_right", "move_up", "move_down",
                                          "place_table", "place_plant", "place_stone", "make_wood_pickaxe")]
        rng = random.Random(seed)
        for t in range(steps):
            front = info["text"].split("in front of you: ", 1)[-1].split(".", 1)[0]
            holding = any(info["inventory"][item] for item in ("wood", "stone", "sapling"))
            chance = front == "grass" and "collect_sapling" not in info["achievements"]
            if (holding or front not in ("grass", "sand", "path")) and not chance:
                progress = _crafter_progress(env, info, names)
                if len(progress) == 1 and progress[0][0] not in answers:
                    action, new = progress[0]
                    answers.add(action)
                    probes.append(Probe(
                        "crafter", f"seed {seed}, step {t}: {action} -> {new[0]}", manual,
                        f"What you see: {info['text']}", "Actions",
                        "Which one action unlocks a new achievement right now?", tuple(names), action))
                    if len(probes) >= n:
                        return probes
            _, _, terminated, truncated, info = env.step(rng.choice(walk))
            if terminated or truncated:
                break
    return probes


def highway_probes(n: int, seeds: list[int], horizon: int = 2) -> list[Probe]:
    """Scenes where exactly one available action ends in a collision within `horizon` IDLE steps."""
    from llmguide.envs import make

    env = make("highway-fast-v0")
    probes: list[Probe] = []
    for seed in seeds:
        _, info = env.reset(seed=seed)
        idle = info["action_names"].index("IDLE")
        rng = random.Random(seed)
        for t in range(30):
            crashed = []
            for action in info["available_actions"]:
                sim = copy.deepcopy(env)
                _, _, terminated, truncated, after = sim.step(action)
                for _ in range(horizon):
                    if after["crashed"] or terminated or truncated:
                        break
                    _, _, terminated, truncated, after = sim.step(idle)
                crashed.append(bool(after["crashed"]))
            if sum(crashed) == 1 and len(crashed) >= 3:
                scene = info["text"].split(" Available actions:", 1)[0]
                probes.append(Probe(
                    "highway", f"seed {seed}, step {t}", HIGHWAY_SYSTEM, scene, "Available actions",
                    "Which one of these actions would cause a collision?", tuple(info["valid_actions"]),
                    info["valid_actions"][crashed.index(True)]))
                break
            safe = [a for a, c in zip(info["available_actions"], crashed) if not c] or info["available_actions"]
            _, _, terminated, truncated, info = env.step(rng.choice(safe))
            if terminated or truncated:
                break
        if len(probes) >= n:
            break
    return probes


# -- asking ---------------------------------------------------------------------------------
def ask_all(llm: Any, probes: list[Probe], mode: str) -> list[dict[str, Any]]:
    """Every probe under every rotation; one row per question."""
    from llmguide.llm import choose
    from llmguide.llm.structured import SCORE_HINT

    rows = []
    for i, probe in enumerate(probes):
        for k, listing in enumerate(probe.rotations()):
            start = time.perf_counter()
            if mode == "score_raw":  # the uncalibrated rule: mean log-prob per token, no prior subtracted
                scores, _ = llm.score_options([*probe.messages(listing), HumanMessage(content=SCORE_HINT)], listing)
                answer = max(zip(scores, listing))[1]
            else:
                answer = choose(llm, probe.messages(listing), listing, mode=mode,
                                site=f"benchmarks.choice.{probe.family}")
            rows.append({"probe": i, "family": probe.family, "rotation": k, "n": len(listing), "answer": answer,
                         "rank": listing.index(answer), "correct": answer == probe.answer,
                         "s": time.perf_counter() - start})
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Consistency, accuracy vs chance, first-option rate vs 1/N and latency of one set of answers."""
    by_probe: dict[int, list[str]] = {}
    for row in rows:
        by_probe.setdefault(row["probe"], []).append(row["answer"])
    n = len(rows)
    return {
        "probes": len(by_probe),
        "questions": n,
        "consistency": sum(len(set(a)) == 1 for a in by_probe.values()) / len(by_probe),
        "agreement": statistics.mean(Counter(a).most_common(1)[0][1] / len(a) for a in by_probe.values()),
        "accuracy": sum(r["correct"] for r in rows) / n,
        "chance": sum(1 / r["n"] for r in rows) / n,
        "first_option_rate": sum(r["rank"] == 0 for r in rows) / n,
        "one_over_n": sum(1 / r["n"] for r in rows) / n,
        "latency_s_mean": sum(r["s"] for r in rows) / n,
    }


def latency(llm: Any, probe: Probe, other: Probe, reps: int) -> dict[str, Any]:
    """One 17-way Crafter choice: cold, with its whole prompt cached, and the next step
    (same manual, new situation), in scoring mode; one constrained generation for reference."""
    from llmguide.llm import choose
    from llmguide.llm.llamacpp import _to_openai_messages, chat_prompt_tokens
    from llmguide.llm.structured import SCORE_HINT

    listing = list(probe.options)
    messages = probe.messages(listing)
    llama, _ = llm._llama()
    scored = [*messages, HumanMessage(content=SCORE_HINT)]
    prompt_tokens = len(chat_prompt_tokens(llama, _to_openai_messages(scored)))

    def timed(msgs: list[BaseMessage], mode: str = "score") -> float:
        start = time.perf_counter()
        choose(llm, msgs, listing, mode=mode, site="benchmarks.choice.latency")
        return time.perf_counter() - start

    from llmguide.llm.llamacpp import _scorer

    cold, cached, step = [], [], []
    for _ in range(reps):
        llama.reset()
        _scorer(llama).reset()  # scoring holds its prompt in a context of its own
        cold.append(timed(messages))
        cached.append(timed(messages))
        timed(other.messages(listing))
        step.append(timed(messages))
    _, evaluated_cached = llm.score_options(scored, listing)
    timed(messages, "generate")
    generate = [timed(messages, "generate") for _ in range(max(1, reps // 2))]
    return {
        "options": len(listing),
        "prompt_tokens": prompt_tokens,
        # one llama.cpp eval per token: the prompt's last, then each option-trie node but the leaves
        "tokens_evaluated_cached": evaluated_cached,
        "score_cached_s_median": statistics.median(cached),
        "score_next_step_s_median": statistics.median(step),
        "score_cold_s_median": statistics.median(cold),
        "generate_cached_s_median": statistics.median(generate),
        "reps": reps,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doorkey-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--crafter-probes", type=int, default=3)
    parser.add_argument("--crafter-seeds", type=int, default=8, help="walks tried (seeds 0..N-1)")
    parser.add_argument("--crafter-steps", type=int, default=120, help="steps per walk")
    parser.add_argument("--highway-probes", type=int, default=4)
    parser.add_argument("--highway-seeds", type=int, default=12, help="scenes tried (seeds 0..N-1)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--latency-reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--latency-only", action="store_true",
                        help="only the 17-way latency (two Crafter probes), written to results/choice_latency.json")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path("benchmarks/results/choice_latency.json" if args.latency_only else "benchmarks/results/choice.json")
    if args.latency_only:
        args.modes, args.doorkey_seeds, args.highway_probes, args.crafter_probes = [], [], 0, max(2, args.crafter_probes)

    from llmguide.llm import METER, load  # first: sets OMP_WAIT_POLICY
    from llmguide.rundir import write_json
    from llmguide.teachers.spring import crafter_manual

    began = time.time()
    load_before = os.getloadavg()
    manual = crafter_manual()
    probes = doorkey_probes(args.doorkey_seeds)
    probes += crafter_probes(args.crafter_probes, manual, list(range(args.crafter_seeds)), args.crafter_steps)
    if args.highway_probes:
        probes += highway_probes(args.highway_probes, list(range(args.highway_seeds)))
    built_s = time.time() - began
    print(f"{len(probes)} probes in {built_s:.0f} s: {dict(Counter(p.family for p in probes))}", flush=True)

    llm = load("smollm2", cache=False, n_ctx=2048, n_threads=args.threads)
    METER.reset()
    results: dict[str, Any] = {}
    rows_by_mode: dict[str, list[dict[str, Any]]] = {}
    for mode in args.modes:
        rows = ask_all(llm, probes, mode)
        rows_by_mode[mode] = rows
        families = sorted({r["family"] for r in rows})
        results[mode] = {"all": summarise(rows), **{f: summarise([r for r in rows if r["family"] == f]) for f in families}}
        print(mode, {k: round(v, 3) for k, v in results[mode]["all"].items()}, flush=True)
    crafter = [p for p in probes if p.family == "crafter"]
    timing = latency(llm, crafter[0], crafter[-1], args.latency_reps) if len(crafter) >= 2 else None
    print("latency", timing, flush=True)

    write_json(args.out, {
        "command": "python benchmarks/choice.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU (shared with other jobs)",
        "load_average_1m": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        "model": "smollm2 (SmolLM2-135M-Instruct Q4_1, llama.cpp)",
        "threads": args.threads,
        "seeds": {"doorkey": args.doorkey_seeds, "crafter_walks": list(range(args.crafter_seeds)),
                  "highway_scenes": list(range(args.highway_seeds))},
        "targets": {"consistency_score": ">= 0.9", "first_option_rate": "within 0.05 of 1/N",
                    "latency_17way_cached_s": "<= 0.3"},
        "probes": [asdict(p) | {"system": p.system[:60] + ("..." if len(p.system) > 60 else "")} for p in probes],
        "results": results,
        "latency": timing,
        "answers": rows_by_mode,
        "meter_choices": METER.snapshot().choices,
        "build_s": round(built_s, 1),
        "wall_s": round(time.time() - began, 1),
    })
    print(f"wrote {args.out} in {time.time() - began:.0f} s")


if __name__ == "__main__":
    main()
