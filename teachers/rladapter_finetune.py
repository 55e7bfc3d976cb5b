"""The RLAdapter's adapter LM and its stage-wise LoRA fine-tuning.

Exports `AdapterLM`, `load_base_model`, `base_model_dir`, `LORA_TARGETS` (from
`llmguide.teachers.lora_tuning`, the LoRA loop every tuned method shares) and
RLAdapter's own part: `sft_examples`, `finetune_stage`, `adapter_messages`,
`ADAPTER_SYSTEM`, i.e. which (prompt, analysis) pairs of the run's buffer the
adapter is trained on.

Run as a module it is the background fine-tune worker the teacher starts at
each stage boundary (the generic stage worker of `lora_tuning`, fed with
RLAdapter's examples):

    python -m llmguide.teachers.rladapter_finetune --buffer RUN/rladapter_buffer.jsonl \\
        --records 120 --out RUN/adapter/stage_1 [--init RUN/adapter/stage_0]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmguide.teachers.lora_tuning import (
    LORA_TARGETS,
    AdapterLM,
    _offline_torch,
    _resolve,
    base_model_dir,
    load_base_model,
    read_jsonl,
    run_worker,
    tune_stage,
)

from llmguide.errors import ConfigError

__all__ = [
    "ADAPTER_SYSTEM",
    "LORA_TARGETS",
    "AdapterLM",
    "adapter_messages",
    "base_model_dir",
    "finetune_stage",
    "load_base_model",
    "sft_examples",
]

ADAPTER_SYSTEM = (
    "You are the adapter of a Crafter agent. Read the agent's situation, what it did "
    "recently and how well that matched its last subgoal (comprehension score 0-1), and "
    "write one or two sentences for the planner: what the agent understands, what it lacks "
    "and what it should focus on next."
)
#: the buffer reader's old private name (the RLAdapter teacher imports it)
_read_records = read_jsonl
_ = (_offline_torch, _resolve)  # kept importable from here


def adapter_messages(state: str, behaviour: str, last_subgoal: str | None, score: float | None) -> list[dict[str, str]]:
    """The adapter's chat prompt: fixed system text first (prefix-stable), then the step's facts."""
    sub = last_subgoal or "none yet"
    sc = "n/a" if score is None else f"{score:.2f}"
    user = (
        f"Situation: {state}\n"
        f"Recent behaviour: {behaviour}\n"
        f"Last subgoal: {sub} (comprehension score {sc})\n"
        "Analysis:"
    )
    return [{"role": "system", "content": ADAPTER_SYSTEM}, {"role": "user", "content": user}]


def sft_examples(records: Sequence[dict[str, Any]], keep: float = 0.5) -> list[tuple[list[dict[str, str]], str]]:
    """Filtered SFT pairs: the adapter analyses whose subgoal the agent then followed best.

    A record's outcome is the comprehension score of the behaviour that
    followed its subgoal, plus 1 when the subgoal's achievement was unlocked;
    the top `keep` fraction (ties kept) becomes (prompt, analysis) pairs, so
    the adapter is pulled towards analyses that led to guidance the agent
    could act on.
    """
    usable = [r for r in records if r.get("analysis") and r.get("outcome") is not None]
    if not usable:
        return []

    def value(r: dict[str, Any]) -> float:
        o = r["outcome"]
        return float(o.get("score") or 0.0) + float(bool(o.get("subgoal_achieved")))

    values = sorted((value(r) for r in usable), reverse=True)
    k = max(1, math.ceil(len(values) * min(max(keep, 0.0), 1.0)))
    cut = values[k - 1]
    chosen = [r for r in usable if value(r) >= cut]
    return [
        (adapter_messages(r["state"], r["behaviour"], r.get("last_subgoal"), r.get("score")), r["analysis"])
        for r in chosen
    ]


def finetune_stage(
    buffer: str | Path,
    out: str | Path,
    *,
    records: int | None = None,
    init: str | Path | None = None,
    spec: str = "smollm2",
    lora_r: int = 8,
    steps: int = 20,
    lr: float = 2e-4,
    batch_size: int = 4,
    keep: float = 0.5,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """One stage: SFT from the buffer (continuing from `init`), save LoRA + stats.json."""
    t0 = time.perf_counter()
    rows = read_jsonl(Path(buffer), records)
    examples = sft_examples(rows, keep)
    if not examples:
        raise ConfigError("No SFT examples: the buffer holds no complete records yet.")
    stats = tune_stage(examples, out, init=init, spec=spec, lora_r=lora_r, steps=steps, lr=lr,
                       batch_size=batch_size, seed=seed, progress=progress)
    stats = {"records": len(rows), **stats, "seconds": time.perf_counter() - t0}
    Path(out, "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _main(argv: Sequence[str] | None = None) -> int:
    def add(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--buffer", required=True)
        ap.add_argument("--keep", type=float, default=0.5)

    def examples(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
        rows = read_jsonl(Path(args.buffer), args.records)
        found = sft_examples(rows, args.keep)
        if not found:
            raise ConfigError("No SFT examples: the buffer holds no complete records yet.")
        return found, {"records": len(rows)}

    return run_worker("RLAdapter background fine-tune worker (one stage).", add, examples, argv)


if __name__ == "__main__":
    sys.exit(_main())
