"""RLAdapter for Crafter: exports `RLAdapterTeacher`, `Advice`, `AdapterBuffer`,
`comprehension_score`, `behaviour_text`, `unlocked_since`, `subgoal_achievement`,
`SUBGOALS`, `GUIDE_SYSTEM`.

The loop (RLAdapter, Zhang et al., 2023): every `every` env steps
per env, a small *adapter* LM reads the agent's state text, what it did since
the last guidance and its *comprehension score* — how well that behaviour
matched the last subgoal, ``sigmoid(scale * cos(embed(behaviour),
embed(subgoal)))`` with the shared offline MiniLM — and writes an analysis.
The *guide* LLM reads the state plus that analysis and names the next
subgoal. Each exchange becomes a buffer record (state text, score, adapter
analysis, guide output, then the outcome: the comprehension and achievements
that followed), appended to ``run_dir/rladapter_buffer.jsonl``. A stage starts once the buffer
yields `min_examples` SFT examples after filtering (the top `keep` by outcome)
and `min_new_records` records came in since the last stage: a separate
process (`llmguide.teachers.rladapter_finetune`) SFT-tunes the adapter's LoRA
on them and saves it to ``run_dir/adapter/stage_K``; the learner only polls
the process and swaps the new weights in when they are ready, so it never
waits for fine-tuning. Each stage's examples, seconds, start and swap-in
steps, queries served and online comprehension are in `summary()["stages"]`.
Queries due at the same step for several envs are answered together
(`advise_batch`): one batched adapter generation instead of one per env.

``adapter=None`` turns the adapter off: the guide reads the raw state (the
"guide-only" ablation). The guide answers by constrained choice among the 22
achievement subgoals (``mode="choice"``, valid by construction, the only way
a 135M model gives usable subgoals) or by free text (``mode="free"``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from llmguide.errors import ConfigError
from llmguide.processes import stop_process

__all__ = [
    "GUIDE_SYSTEM",
    "SUBGOALS",
    "AdapterBuffer",
    "Advice",
    "RLAdapterTeacher",
    "StageResult",
    "behaviour_text",
    "comprehension_score",
    "generate_batch",
    "subgoal_achievement",
    "unlocked_since",
]

#: Achievement -> the subgoal instruction the guide can give (Crafter's 22).
SUBGOALS: dict[str, str] = {
    "collect_wood": "collect wood",
    "place_table": "place table",
    "make_wood_pickaxe": "make wood pickaxe",
    "make_wood_sword": "make wood sword",
    "collect_sapling": "collect sapling",
    "place_plant": "place plant",
    "eat_plant": "eat plant",
    "collect_drink": "drink water",
    "eat_cow": "eat cow",
    "wake_up": "sleep and wake up",
    "collect_stone": "collect stone",
    "place_stone": "place stone",
    "make_stone_pickaxe": "make stone pickaxe",
    "make_stone_sword": "make stone sword",
    "place_furnace": "place furnace",
    "collect_coal": "collect coal",
    "collect_iron": "collect iron",
    "make_iron_pickaxe": "make iron pickaxe",
    "make_iron_sword": "make iron sword",
    "collect_diamond": "collect diamond",
    "defeat_zombie": "defeat zombie",
    "defeat_skeleton": "defeat skeleton",
}

GUIDE_SYSTEM = (
    "You guide an agent in Crafter, a 2D survival game. Goal: unlock as many achievements "
    "as possible (collect wood, place a table, make pickaxes and swords, collect stone, coal, "
    "iron and diamond, eat, drink, sleep, defeat monsters). Tables need wood; wood tools need "
    "a nearby table; stone tools need stone and a table; iron tools need a furnace, coal and "
    "iron. Name the single next subgoal the agent should pursue."
)


def behaviour_text(events: Sequence[str]) -> str:
    """The agent's recent behaviour in words, from the text view's events (repeats counted)."""
    counts = Counter(e for e in events if e)
    if not counts:
        return "nothing notable happened"
    return ", ".join(f"{e} x{n}" if n > 1 else e for e, n in counts.items())


def unlocked_since(before: Mapping[str, int] | None, now: Mapping[str, int]) -> list[str]:
    """Achievements whose count rose between two `achievement_counts` (a drop = new episode)."""
    before = before or {}
    reset = any(now.get(k, 0) < v for k, v in before.items())
    base = {} if reset else before
    return [k for k, v in now.items() if v > base.get(k, 0)]


def subgoal_achievement(text: str | None) -> str | None:
    """The Crafter achievement a subgoal names ('collect wood' -> 'collect_wood'), if any."""
    if not text:
        return None
    low = " ".join(text.lower().replace("_", " ").split())
    for ach, phrase in SUBGOALS.items():
        if phrase in low:
            return ach
    words = set(low.split())
    for ach in SUBGOALS:  # loose match: every word of the achievement name appears
        if set(ach.split("_")) <= words:
            return ach
    return None


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def comprehension_score(
    behaviour: str | Sequence[float],
    subgoal: str | Sequence[float],
    embeddings: Any = None,
    scale: float = 1.0,
) -> float:
    """How well behaviour matched a subgoal: ``sigmoid(scale * cosine)`` of their embeddings.

    Texts are embedded with `embeddings` (a LangChain `Embeddings`; default the
    shared offline MiniLM); vectors are used as given.
    """
    vecs = []
    for item in (behaviour, subgoal):
        if isinstance(item, str):
            if embeddings is None:
                from llmguide.memory.embeddings import default_embeddings

                embeddings = default_embeddings()
            item = embeddings.embed_query(item)
        vecs.append(np.asarray(item, dtype=np.float64))
    a, b = vecs
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cos = float(a @ b) / denom if denom > 0 else 0.0
    return _sigmoid(scale * cos)


class AdapterBuffer:
    """Append-only JSONL of complete records, one line each, flushed per record.

    The fine-tune worker reads the first N lines (N counted at the stage
    boundary), so lines appended while it runs never reach a half-read state.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._rows: list[dict[str, Any]] = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file():
                from llmguide.teachers.rladapter_finetune import _read_records

                self._rows = _read_records(self.path, None)

    def append(self, record: dict[str, Any]) -> None:
        self._rows.append(record)
        if self.path is not None:
            with self.path.open("a") as fh:
                fh.write(json.dumps(record, default=_jsonable) + "\n")

    def records(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def generate_batch(lm: Any, prompts: Sequence[Sequence[dict[str, str]]], max_new_tokens: int = 40,
                   temperature: float = 0.0) -> list[str]:
    """One answer per chat prompt: one batched generation on an `AdapterLM`
    (``AdapterLM.generate_batch``); any other object with ``generate(messages, ...)``
    (a test double) is asked one prompt at a time."""
    if hasattr(lm, "generate_batch"):
        return list(lm.generate_batch(prompts, max_new_tokens, temperature))
    return [lm.generate(list(p), max_new_tokens=max_new_tokens, temperature=temperature) for p in prompts]


@dataclass
class Advice:
    """One guidance exchange's result for one env."""

    subgoal: str
    achievement: str | None
    embedding: np.ndarray
    analysis: str | None
    score: float | None
    stage: int
    adapter_ms: float = 0.0
    guide_ms: float = 0.0


@dataclass
class StageResult:
    """A finished background fine-tune."""

    stage: int
    ok: bool
    seconds: float
    started_step: int
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    #: env step at which the stage's weights were swapped into the guide (None: never served)
    ready_step: int | None = None
    #: buffer records when the stage started (the worker read the first this many)
    records: int = 0


class _FreeSubgoal(BaseModel):
    subgoal: str = Field(min_length=3, max_length=80, description="the next subgoal, a short imperative")


@dataclass
class _Slot:
    last_subgoal: str | None = None
    last_achievement: str | None = None
    counts: dict[str, int] | None = None
    pending: dict[str, Any] | None = None


class RLAdapterTeacher:
    """Adapter LM + guide LLM giving Crafter subgoals; the adapter is LoRA-tuned in stages.

    Args:
        adapter: adapter spec (`smollm2`, `gguf:PATH`, `hf:DIR`), an `AdapterLM`, or None
            (no adapter: the guide reads the raw state).
        llm: the guide: a model spec or a LangChain chat model.
        every: env steps per env between guidance queries (read by the callback).
        min_examples, min_new_records: a stage starts once the buffer gives this many SFT
            examples after the `keep` filter, and this many records came in since the last stage.
        worker_nice: niceness added to the fine-tune worker (0 on a machine loaded by
            other jobs, where a niced worker can starve and its stage never serves).
        run_dir: where the buffer and the per-stage LoRA weights go (None: memory only,
            no fine-tuning).
        mode: "choice" (constrained among `SUBGOALS`) or "free" (a structured free-text subgoal).

    Example:
        >>> from llmguide.envs import make                                          # doctest: +SKIP
        >>> env = make("llmguide/Crafter-v0"); _, info = env.reset(seed=0)         # doctest: +SKIP
        >>> t = RLAdapterTeacher(adapter="smollm2", llm="smollm2", run_dir="runs/x")  # doctest: +SKIP
        >>> t.advise(0, info, events=[]).subgoal                                    # doctest: +SKIP
        'collect wood'
    """

    def __init__(
        self,
        adapter: Any = "smollm2",
        llm: str | BaseChatModel = "smollm2",
        every: int = 100,
        *,
        run_dir: str | Path | None = None,
        mode: str = "choice",
        embeddings: Any = None,
        lora_r: int = 8,
        max_new_tokens: int = 40,
        temperature: float = 0.7,
        score_scale: float = 1.0,
        stage_steps: int = 20,
        lr: float = 2e-4,
        batch_size: int = 4,
        keep: float = 0.5,
        min_records: int = 8,
        min_examples: int = 64,
        min_new_records: int = 16,
        worker_nice: int = 10,
        seed: int = 0,
        n_ctx: int = 2048,
        n_threads: int | None = 1,
    ) -> None:
        if every < 1:
            raise ConfigError(f"every must be >= 1 env step, got {every}.")
        if mode not in ("choice", "free"):
            raise ConfigError(f"Unknown guide mode {mode!r}: use 'choice' or 'free'.")
        self.every = int(every)
        self.mode = mode
        self.adapter_spec = adapter
        self._adapter: Any = None if isinstance(adapter, (str, type(None))) else adapter
        if isinstance(adapter, str):
            from llmguide.teachers.rladapter_finetune import _resolve

            _resolve(adapter)  # fail fast on a malformed spec
        self._llm_spec = llm
        self._llm: BaseChatModel | None = llm if isinstance(llm, BaseChatModel) else None
        self.n_ctx, self.n_threads = n_ctx, n_threads
        self._embeddings = embeddings
        self.lora_r, self.max_new_tokens, self.temperature = int(lora_r), int(max_new_tokens), float(temperature)
        self.score_scale = float(score_scale)
        self.stage_steps, self.lr, self.batch_size, self.keep = int(stage_steps), float(lr), int(batch_size), float(keep)
        if min_examples < 1 or min_new_records < 0:
            raise ConfigError(f"min_examples must be >= 1 and min_new_records >= 0, got {min_examples}, {min_new_records}.")
        self.min_records, self.seed = int(min_records), int(seed)
        self.min_examples, self.min_new_records = int(min_examples), int(min_new_records)
        self.worker_nice = int(worker_nice)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.buffer = AdapterBuffer(None if self.run_dir is None else self.run_dir / "rladapter_buffer.jsonl")
        self.stage = 0
        self.stages: list[StageResult] = []
        self._job: tuple[int, subprocess.Popen, Path, float, int, Any] | None = None
        self._job_records = 0
        self._slots: dict[int, _Slot] = {}
        self._emb_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.queries = 0
        self.queries_by_stage: Counter[int] = Counter()
        self.adapter_batches: list[int] = []
        self._examples_at: tuple[int, int] = (-1, 0)
        self.fallbacks = 0
        self.subgoal_counts: Counter[str] = Counter()
        self.scores_by_stage: dict[int, list[float]] = {}
        self.adapter_ms: list[float] = []
        self.guide_ms: list[float] = []

    # -- components (lazy: constructing a teacher loads nothing) -------------
    @property
    def has_adapter(self) -> bool:
        return self.adapter_spec is not None

    @property
    def adapter(self) -> Any:
        """The in-process `AdapterLM` used for generation (loaded on first use)."""
        if self._adapter is None and self.adapter_spec is not None:
            from llmguide.teachers.rladapter_finetune import AdapterLM

            self._adapter = AdapterLM(self.adapter_spec, lora_r=self.lora_r, seed=self.seed)
            self._adapter.stage = 0
            if self.run_dir is not None:
                # a resumed run continues from the stage it had reached; only a new run writes stage 0
                folder = self._stage_dir(self.stage)
                if self.stage > 0 or (folder / "adapter_model.safetensors").is_file():
                    self._adapter.load_stage(folder, self.stage)
                else:
                    self._adapter.save(folder)
        return self._adapter

    @property
    def llm(self) -> BaseChatModel:
        if self._llm is None:
            from llmguide.llm import load

            kwargs: dict[str, Any] = {"n_ctx": self.n_ctx, "max_tokens": 48, "seed": self.seed}
            if self.n_threads and not str(self._llm_spec).startswith("openai:"):
                kwargs["n_threads"] = self.n_threads  # one thread: two spin against each other on a busy 2-core box
            self._llm = load(self._llm_spec, **kwargs)
        return self._llm

    @property
    def embeddings(self) -> Any:
        if self._embeddings is None:
            from llmguide.memory.embeddings import default_embeddings

            self._embeddings = default_embeddings()
        return self._embeddings

    def embed(self, text: str) -> np.ndarray:
        """Unit-norm float32 embedding of a text (LRU-cached; subgoals repeat a lot)."""
        hit = self._emb_cache.get(text)
        if hit is not None:
            self._emb_cache.move_to_end(text)
            return hit
        vec = np.asarray(self.embeddings.embed_query(text), dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        vec = vec / norm if norm > 0 else vec
        self._emb_cache[text] = vec
        if len(self._emb_cache) > 4096:
            self._emb_cache.popitem(last=False)
        return vec

    @property
    def embedding_dim(self) -> int:
        return int(self.embed("collect wood").shape[0])

    # -- guidance ---------------------------------------------------------------
    def advise(self, env_index: int, info: Mapping[str, Any], events: Sequence[str] = (), reward: float = 0.0, step: int = 0) -> Advice:
        """Score the behaviour since the last advice, close that record, ask for the next subgoal.

        `events` and `reward` cover the env steps since the previous call for
        this env; `info` is the current step's text-view info.
        """
        return self._answer([self._open(env_index, info, events, reward)], step)[0]

    def advise_batch(
        self, requests: Sequence[tuple[int, Mapping[str, Any], Sequence[str], float]], step: int = 0
    ) -> list[Advice]:
        """`advise` for several envs due at the same step: (env_index, info, events, reward) each;
        their adapter analyses come from one batched generation. Without an adapter (or for one
        env) this is `advise` per env."""
        if not self.has_adapter or len(requests) < 2:
            return [self.advise(i, info, ev, r, step=step) for i, info, ev, r in requests]
        return self._answer([self._open(i, info, ev, r) for i, info, ev, r in requests], step)

    def _open(self, env_index: int, info: Mapping[str, Any], events: Sequence[str], reward: float) -> dict[str, Any]:
        slot = self._slots.setdefault(env_index, _Slot())
        score, behaviour, counts = self._close(slot, info, events, reward)
        return {"env": int(env_index), "slot": slot, "state": str(info.get("text") or ""), "score": score,
                "behaviour": behaviour, "counts": counts}

    def _answer(self, opened: list[dict[str, Any]], step: int) -> list[Advice]:
        analyses: list[str | None] = [None] * len(opened)
        adapter_ms = 0.0
        if self.has_adapter:
            from llmguide.teachers.rladapter_finetune import adapter_messages

            prompts = [adapter_messages(o["state"], o["behaviour"], o["slot"].last_subgoal, o["score"]) for o in opened]
            t0 = time.perf_counter()
            analyses = list(generate_batch(self.adapter, prompts, self.max_new_tokens, self.temperature))
            adapter_ms = 1000 * (time.perf_counter() - t0) / len(opened)  # per query, batch shared
            self.adapter_ms.extend([adapter_ms] * len(opened))
            self.adapter_batches.append(len(opened))
        stage = self.stage if self.has_adapter else 0
        out = []
        for o, analysis in zip(opened, analyses):
            slot = o["slot"]
            t0 = time.perf_counter()
            subgoal = self._ask_guide(o["state"], analysis, slot.last_subgoal)
            guide_ms = 1000 * (time.perf_counter() - t0)
            self.guide_ms.append(guide_ms)
            achievement = subgoal_achievement(subgoal)
            slot.pending = {
                "step": int(step),
                "env": o["env"],
                "stage": stage,
                "state": o["state"],
                "behaviour": o["behaviour"],
                "last_subgoal": slot.last_subgoal,
                "score": o["score"],
                "analysis": analysis,
                "subgoal": subgoal,
                "achievement": achievement,
                "outcome": None,
            }
            slot.last_subgoal, slot.last_achievement, slot.counts = subgoal, achievement, o["counts"]
            self.queries += 1
            self.queries_by_stage[stage] += 1
            self.subgoal_counts[subgoal] += 1
            out.append(Advice(subgoal, achievement, self.embed(subgoal), analysis, o["score"], stage, adapter_ms, guide_ms))
        return out

    def close_pending(self, env_index: int, info: Mapping[str, Any], events: Sequence[str] = (), reward: float = 0.0) -> float | None:
        """Score the behaviour since the last advice and write that record, asking nothing new
        (end of training, so the last subgoal's outcome is not lost). Returns the score."""
        slot = self._slots.get(env_index)
        if slot is None or slot.pending is None:
            return None
        score, _, counts = self._close(slot, info, events, reward)
        slot.pending, slot.counts = None, counts
        return score

    def _close(self, slot: _Slot, info: Mapping[str, Any], events: Sequence[str], reward: float) -> tuple[float | None, str, dict[str, int]]:
        counts = dict(info.get("achievement_counts") or {})
        unlocked = unlocked_since(slot.counts, counts) if slot.counts is not None else []
        behaviour = behaviour_text(events)
        score = None
        if slot.last_subgoal is not None:
            score = comprehension_score(self.embed(behaviour), self.embed(slot.last_subgoal), scale=self.score_scale)
        if slot.pending is not None:
            rec = slot.pending
            rec["outcome"] = {
                "score": score,
                "behaviour": behaviour,
                "unlocked": unlocked,
                "subgoal_achieved": rec.get("achievement") in unlocked,
                "reward": float(reward),
            }
            self.buffer.append(rec)
            if score is not None:
                self.scores_by_stage.setdefault(int(rec["stage"]), []).append(score)
        return score, behaviour, counts

    def guide_messages(self, state: str, analysis: str | None, last_subgoal: str | None) -> list:
        """The guide's prompt: fixed system text, then the state and the adapter's analysis."""
        lines = [f"Situation: {state}"]
        if analysis:
            lines.append(f"Adapter analysis: {analysis}")
        if last_subgoal:
            lines.append(f"Previous subgoal: {last_subgoal}")
        lines.append("Which subgoal should the agent pursue next?")
        return [SystemMessage(content=GUIDE_SYSTEM), HumanMessage(content="\n".join(lines))]

    def _ask_guide(self, state: str, analysis: str | None, last_subgoal: str | None) -> str:
        messages = self.guide_messages(state, analysis, last_subgoal)
        if self.mode == "choice":
            from llmguide.llm import choose

            return choose(self.llm, messages, list(SUBGOALS.values()))
        from llmguide.llm import structured

        answer = structured(self.llm, _FreeSubgoal, messages)
        if answer is None:
            self.fallbacks += 1
            return last_subgoal or SUBGOALS["collect_wood"]
        return " ".join(answer.subgoal.split())

    # -- stage-wise fine-tuning (background process) ----------------------------
    def _stage_dir(self, stage: int) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "adapter" / f"stage_{stage}"

    @property
    def finetune_running(self) -> bool:
        return self._job is not None

    def usable_examples(self) -> int:
        """SFT examples the buffer gives now, after the worker's filter (the top `keep` by outcome)."""
        n = len(self.buffer)
        if self._examples_at[0] != n:  # recount only when records came in
            from llmguide.teachers.rladapter_finetune import sft_examples

            self._examples_at = (n, len(sft_examples(self.buffer.records(), self.keep)))
        return self._examples_at[1]

    def stage_blocker(self) -> str | None:
        """Why a stage cannot start now (None: it can)."""
        if not self.has_adapter or self.run_dir is None:
            return "no adapter or no run dir"
        if self._job is not None:
            return "a stage is still fine-tuning"
        n = len(self.buffer)
        if n < self.min_records:
            return f"{n} of {self.min_records} records"
        since = self.stages[-1].records if self.stages else 0
        if self.stages and n - since < self.min_new_records:
            return f"{n - since} of {self.min_new_records} new records since the last stage"
        examples = self.usable_examples()
        if examples < self.min_examples:
            return f"{examples} of {self.min_examples} usable examples"
        return None

    def start_stage(self, step: int = 0) -> bool:
        """Launch the next stage's SFT in a background process; False when it cannot start
        (see `stage_blocker`: no adapter or run dir, a stage still running, too few records
        or usable examples)."""
        if self.stage_blocker() is not None:
            return False
        n = len(self.buffer)
        prev = self._stage_dir(self.stage)
        if not (prev / "adapter_model.safetensors").is_file():
            self.adapter.save(prev)
        k = len(self.stages) + 1
        out = self._stage_dir(k)
        out.mkdir(parents=True, exist_ok=True)
        spec = self.adapter_spec if isinstance(self.adapter_spec, str) else getattr(self._adapter, "spec", "smollm2")
        cmd = [
            sys.executable, "-m", "llmguide.teachers.rladapter_finetune",
            "--buffer", str(self.buffer.path), "--records", str(n), "--out", str(out),
            "--init", str(prev), "--adapter", spec, "--lora-r", str(self.lora_r),
            "--steps", str(self.stage_steps), "--lr", str(self.lr), "--batch-size", str(self.batch_size),
            "--keep", str(self.keep), "--seed", str(self.seed + k), "--nice", str(self.worker_nice),
        ]
        self._job_records = n
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        log = (out / "finetune.log").open("w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._job = (k, proc, out, time.perf_counter(), int(step), log)
        return True

    def poll(self, step: int | None = None) -> StageResult | None:
        """Non-blocking: if the running stage finished, load its weights (from env step `step`
        on) and return its result."""
        if self._job is None or self._job[1].poll() is None:
            return None
        return self._finish(step)

    def wait(self, timeout: float | None = None) -> StageResult | None:
        """Block until the running stage ends (end of training only: it serves no query, so its
        `ready_step` stays None); None if none or timed out."""
        if self._job is None:
            return None
        try:
            self._job[1].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self._finish(None)

    def _finish(self, ready_step: int | None = None) -> StageResult:
        assert self._job is not None
        k, proc, out, t0, step, log = self._job
        self._job = None
        log.close()
        seconds = time.perf_counter() - t0
        stats: dict[str, Any] = {}
        if (out / "stats.json").is_file():
            stats = json.loads((out / "stats.json").read_text())
        error = None
        ok = proc.returncode == 0 and (out / "adapter_model.safetensors").is_file()
        if ok:
            self.adapter.load_stage(out, k)
            self.stage = k
        else:
            err = out / "error.txt"
            error = err.read_text().strip() if err.is_file() else f"worker exited with {proc.returncode}"
        result = StageResult(k, ok, seconds, step, stats, error, ready_step if ok else None,
                             self._job_records)
        self.stages.append(result)
        return result

    def close(self) -> None:
        """Stop a still-running fine-tune (the process this teacher started)."""
        if self._job is not None:
            proc, log = self._job[1], self._job[5]
            stop_process(proc, 10)
            log.close()
            self._job = None

    # -- resume -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue where this one stopped (JSON-able): the adapter
        stage in use, the finished stages (so the next one gets a new folder) and the counters.
        The buffer is its own file, reread and appended to by a new teacher on the same run dir."""
        return {
            "stage": self.stage,
            "stages": [asdict(s) for s in self.stages],
            "queries": self.queries,
            "queries_by_stage": {str(k): v for k, v in self.queries_by_stage.items()},
            "adapter_batches": self.adapter_batches,
            "fallbacks": self.fallbacks,
            "subgoal_counts": dict(self.subgoal_counts),
            "scores_by_stage": {str(k): v for k, v in self.scores_by_stage.items()},
            "adapter_ms": self.adapter_ms,
            "guide_ms": self.guide_ms,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict`; the adapter (loaded now or on first use) takes that stage's weights."""
        self.stage = int(state.get("stage", 0))
        self.stages = [StageResult(**s) for s in state.get("stages", [])]
        self.queries = int(state.get("queries", 0))
        self.queries_by_stage = Counter({int(k): int(v) for k, v in state.get("queries_by_stage", {}).items()})
        self.adapter_batches = [int(x) for x in state.get("adapter_batches", [])]
        self.fallbacks = int(state.get("fallbacks", 0))
        self.subgoal_counts = Counter(state.get("subgoal_counts", {}))
        self.scores_by_stage = {int(k): list(v) for k, v in state.get("scores_by_stage", {}).items()}
        self.adapter_ms = list(state.get("adapter_ms", []))
        self.guide_ms = list(state.get("guide_ms", []))
        if self._adapter is not None and self.run_dir is not None and self.stage > 0:
            self._adapter.load_stage(self._stage_dir(self.stage), self.stage)

    # -- reporting ------------------------------------------------------------------
    def stage_table(self) -> list[dict[str, Any]]:
        """One row per adapter stage in use (stage 0 = the untuned base adapter): when it was
        started and swapped in, its SFT examples and seconds, the queries it served and the
        comprehension of the behaviour that followed its subgoals (measured online)."""
        rows = []
        ok = [s for s in self.stages if s.ok]
        for stage in [None, *ok]:
            k = 0 if stage is None else stage.stage
            scores = self.scores_by_stage.get(k, [])
            stats = {} if stage is None else stage.stats
            rows.append({
                "stage": k,
                "started_step": None if stage is None else stage.started_step,
                "ready_step": 0 if stage is None else stage.ready_step,
                "records": None if stage is None else stats.get("records", stage.records),
                "examples": None if stage is None else stats.get("examples"),
                "sft_steps": None if stage is None else stats.get("steps"),
                "loss_first": None if stage is None else stats.get("loss_first"),
                "loss_last": None if stage is None else stats.get("loss_last"),
                "finetune_s": None if stage is None else round(stage.seconds, 2),
                "worker_load_s": None if stage is None else stats.get("load_s"),
                "sft_s": None if stage is None else stats.get("train_s"),
                "queries_served": int(self.queries_by_stage.get(k, 0)),
                "comprehension": float(np.mean(scores)) if scores else None,
                "comprehension_n": len(scores),
            })
        return rows

    def summary(self) -> dict[str, Any]:
        """Figures for the run's metrics."""
        ok = [s for s in self.stages if s.ok]
        top = self.subgoal_counts.most_common(1)
        table = self.stage_table() if self.has_adapter else []
        return {
            "queries": self.queries,
            "stages": table,
            "stages_serving": sum(1 for r in table if r["stage"] > 0 and r["queries_served"] > 0),
            "adapter_batch_mean": float(np.mean(self.adapter_batches)) if self.adapter_batches else 0.0,
            "guide_fallbacks": self.fallbacks,
            "buffer_records": len(self.buffer),
            "stages_done": len(ok),
            "stages_failed": len(self.stages) - len(ok),
            "finetune_s_per_stage": [round(s.seconds, 2) for s in ok],
            "finetune_stats": [dict(s.stats, stage=s.stage, started_step=s.started_step) for s in ok],
            "comprehension_by_stage": {
                str(k): float(np.mean(v)) for k, v in sorted(self.scores_by_stage.items()) if v
            },
            "comprehension_n_by_stage": {str(k): len(v) for k, v in sorted(self.scores_by_stage.items())},
            "comprehension_mean": float(np.mean([x for v in self.scores_by_stage.values() for x in v]))
            if self.scores_by_stage else None,
            "adapter_ms_mean": float(np.mean(self.adapter_ms)) if self.adapter_ms else 0.0,
            "guide_ms_mean": float(np.mean(self.guide_ms)) if self.guide_ms else 0.0,
            "subgoal_counts": dict(self.subgoal_counts.most_common()),
            "subgoal_top_share": top[0][1] / self.queries if top and self.queries else 0.0,
        }
