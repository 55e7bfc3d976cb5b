"""RLAdapter's fine-tuning stages, measured by replay on logged Crafter data.

Question: does each fine-tuning stage make the adapter steer the guide towards
subgoals the agent then actually pursues (the comprehension score)? On a CPU an
online stage outlasts a short RL run, so this script replays logged data instead
of waiting for the RL run to reach several stages.

Data: adapter buffers written by `llmguide run` / `benchmarks/rladapter_crafter.py`
(`rladapter_buffer.jsonl`): each record holds the state, the adapter's analysis,
the guide's subgoal and the behaviour the agent showed next. The ones in
`benchmarks/data/rladapter/` come from the 15k-step runs of that benchmark.

Protocol (the policy's behaviour is held fixed; only the language side changes):
- train records: one run's buffer; held-out records: other runs' buffers.
- stage 0 = the untuned adapter (zero-initialised LoRA = the base model).
- stage 1: SFT on the train records' logged analyses, top half by outcome
  (comprehension + 1 if the subgoal's achievement unlocked): RLAdapter's own rule.
- stage k >= 2: the stage k-1 adapter rewrites the train analyses (sampled,
  T = 0.7), the guide picks a subgoal from each, the outcome is replayed against
  the logged behaviour, top half -> SFT, continuing from stage k-1.
- every stage (and the guide without adapter) is evaluated on the held-out
  records, greedy: mean comprehension sigmoid(cos(behaviour, subgoal)), the rate
  at which the subgoal's achievement was in fact unlocked next, distinct subgoals.

    .venv/bin/python benchmarks/rladapter_stages.py --stages 2 --sft-steps 6 --eval-n 24
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "rladapter"


def read_buffer(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("outcome") and r["outcome"].get("behaviour")]


def spread(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """n records evenly spaced over the list (deterministic)."""
    if n >= len(rows):
        return list(rows)
    return [rows[math.floor(i * len(rows) / n)] for i in range(n)]


class Replay:
    """The guide, the embeddings and the scoring shared by every stage."""

    def __init__(self, llm: str, threads: int) -> None:
        from llmguide.teachers.rladapter import RLAdapterTeacher

        self.teacher = RLAdapterTeacher(adapter=None, llm=llm, n_threads=threads)

    def subgoal(self, record: dict[str, Any], analysis: str | None) -> str:
        from llmguide.llm import choose
        from llmguide.teachers.rladapter import SUBGOALS

        messages = self.teacher.guide_messages(record["state"], analysis, record.get("last_subgoal"))
        return choose(self.teacher.llm, messages, list(SUBGOALS.values()))

    def outcome(self, record: dict[str, Any], subgoal: str) -> dict[str, Any]:
        from llmguide.teachers.rladapter import comprehension_score, subgoal_achievement

        o = record["outcome"]
        score = comprehension_score(self.teacher.embed(o["behaviour"]), self.teacher.embed(subgoal))
        return {"score": score, "behaviour": o["behaviour"], "unlocked": o.get("unlocked", []),
                "subgoal_achieved": subgoal_achievement(subgoal) in o.get("unlocked", [])}


def analyse(lm: Any, record: dict[str, Any], temperature: float, tokens: int) -> str:
    from llmguide.teachers.rladapter_finetune import adapter_messages

    msgs = adapter_messages(record["state"], record["behaviour"], record.get("last_subgoal"), record.get("score"))
    return lm.generate(msgs, max_new_tokens=tokens, temperature=temperature)


def evaluate(replay: Replay, lm: Any, held_out: list[dict[str, Any]], tokens: int, label: str) -> dict[str, Any]:
    from tqdm import tqdm

    scores, hits, subgoals = [], 0, Counter()
    t0 = time.perf_counter()
    for rec in tqdm(held_out, desc=f"eval {label}", leave=False):
        analysis = None if lm is None else analyse(lm, rec, 0.0, tokens)
        sub = replay.subgoal(rec, analysis)
        out = replay.outcome(rec, sub)
        scores.append(out["score"])
        hits += int(out["subgoal_achieved"])
        subgoals[sub] += 1
    return {
        "stage": label,
        "n": len(held_out),
        "comprehension_mean": statistics.fmean(scores),
        "comprehension_std": statistics.pstdev(scores),
        "achieved_rate": hits / len(held_out),
        "distinct_subgoals": len(subgoals),
        "top_subgoals": subgoals.most_common(3),
        "eval_s": time.perf_counter() - t0,
    }


def stage_records(replay: Replay, lm: Any, train: list[dict[str, Any]], tokens: int, seed: int) -> list[dict[str, Any]]:
    """The train records as the current adapter would have written them, outcomes replayed."""
    from tqdm import tqdm

    lm._gen.manual_seed(seed)
    rows = []
    for rec in tqdm(train, desc="rewrite", leave=False):
        analysis = analyse(lm, rec, 0.7, tokens)
        sub = replay.subgoal(rec, analysis)
        rows.append({**rec, "analysis": analysis, "subgoal": sub, "outcome": replay.outcome(rec, sub)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", nargs="+", default=[str(DATA / "rladapter_seed0.jsonl")])
    p.add_argument("--held-out", nargs="+", default=[str(DATA / "rladapter_seed1.jsonl"), str(DATA / "guide_seed1.jsonl")])
    p.add_argument("--stages", type=int, default=2, help="fine-tuning stages after stage 0")
    p.add_argument("--sft-steps", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--keep", type=float, default=0.5)
    p.add_argument("--eval-n", type=int, default=24)
    p.add_argument("--train-n", type=int, default=32, help="train records used (evenly spaced)")
    p.add_argument("--tokens", type=int, default=40, help="adapter analysis length")
    p.add_argument("--llm", default="smollm2", help="the guide")
    p.add_argument("--adapter", default="smollm2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="runs/benchmarks/rladapter_stages")
    p.add_argument("--out", default=str(ROOT / "results" / "rladapter_stages.json"))
    args = p.parse_args(argv)

    from llmguide.rundir import write_json
    from llmguide.teachers.rladapter_finetune import AdapterLM, sft_examples

    train = spread([r for f in args.train for r in read_buffer(Path(f)) if r.get("analysis")], args.train_n)
    held = spread([r for f in args.held_out for r in read_buffer(Path(f))], args.eval_n)
    print(f"train records {len(train)}, held-out {len(held)}", flush=True)
    replay = Replay(args.llm, args.threads)
    t0 = time.perf_counter()
    lm = AdapterLM(args.adapter, trainable=True, threads=args.threads, seed=0)
    load_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "benchmark": "rladapter_stages",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/rladapter_stages.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": vars(args),
        "adapter_load_s": load_s,
        "no_adapter": None,
        "stages": [],
    }
    out["no_adapter"] = evaluate(replay, None, held, args.tokens, "no adapter")
    print(json.dumps(out["no_adapter"]), flush=True)
    stage0 = evaluate(replay, lm, held, args.tokens, "0")
    out["stages"].append({**stage0, "sft": None})
    print(json.dumps(stage0), flush=True)
    write_json(args.out, out)
    records = train
    for k in range(1, args.stages + 1):
        if k >= 2:
            t1 = time.perf_counter()
            records = stage_records(replay, lm, train, args.tokens, seed=k)
            rewrite_s = time.perf_counter() - t1
        else:
            rewrite_s = 0.0
        examples = sft_examples(records, args.keep)
        t1 = time.perf_counter()
        losses = lm.train_steps(examples, args.sft_steps, lr=args.lr, batch_size=args.batch_size, seed=k, progress=True)
        sft_s = time.perf_counter() - t1
        lm.save(Path(args.work) / f"stage_{k}")
        row = evaluate(replay, lm, held, args.tokens, str(k))
        row["sft"] = {"examples": len(examples), "steps": len(losses), "loss_first": losses[0], "loss_last": losses[-1],
                      "sft_s": sft_s, "rewrite_s": rewrite_s, "stage_s": sft_s + rewrite_s}
        out["stages"].append(row)
        print(json.dumps(row), flush=True)
        write_json(args.out, out)
    out["comprehension_by_stage"] = {r["stage"]: round(r["comprehension_mean"], 4) for r in out["stages"]}
    out["finetune_s_per_stage"] = [round(r["sft"]["stage_s"], 1) for r in out["stages"] if r["sft"]]
    write_json(args.out, out)
    print("\n| stage | comprehension (mean ± std) | subgoal achieved next | distinct subgoals | top subgoals | stage s |")
    print("|---|---|---|---|---|---|")
    for r in [out["no_adapter"], *out["stages"]]:
        sft = r.get("sft") or {}
        top = ", ".join(f"{s} {n}" for s, n in r["top_subgoals"])
        print(f"| {r['stage']} | {r['comprehension_mean']:.3f} ± {r['comprehension_std']:.3f} | {r['achieved_rate']:.2f} | "
              f"{r['distinct_subgoals']} | {top} | {sft.get('stage_s', 0):.0f} |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
