"""A subgoal teacher that learns to teach from the run's own hindsight: exports
`SelfTaughtTeacher`, `SelfTaughtQuestion`, `StageRecord`, `situation_messages`,
`situation_key`, `colour_canonical`, `situation_from_env`, `target_options`, `event_instruction`,
`SELF_TAUGHT_SYSTEM`.

Why: the embedded 135M model reads a DoorKey state no better than chance
(oracle agreement 0.26, random subgoals 0.49), and no larger model ships
offline. What the run does have is its own successes: the order of events in
episodes that reached the goal (picked up the key, then opened the door,
then reached the goal). `llmguide.agents.hindsight.HindsightRecorder` turns
those into (situation -> next useful event) examples in a JSONL; every
`stage_examples` new examples a background process (the generic LoRA worker,
`llmguide.teachers.lora_tuning`) tunes the model on all of them, and this
teacher hot-swaps the new stage while the learner trains. No oracle label
is ever trained on: the oracle only scores (a fixed probe set, before/after
each stage, and the guidance wrapper's online agreement).

The situation is what the agent has seen and done in the episode so far (not
the layout), so answers and training examples transfer across layouts; the
answer space is the layout's targets as instructions ("pick up the yellow
key", "open the yellow door", "go to the goal"), scored by the LoRA model's
length-normalised likelihood and then expressed in the teacher's subgoal kind
(object, positional or language). Answers are cached per (situation, options,
stage) up to a renaming of colours (`colour_canonical`: MultiRoom and
KeyCorridor draw new colours for every layout): a new stage asks again.

Stages are announced through ``WORKDIR/current.json``; every copy of the
teacher (one per SubprocVecEnv worker) checks it at most once a second and
swaps the weights in, so the main process needs no channel to the workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from llmguide.teachers.base import Proposal, Question, Subgoal, Teacher, TeacherCache
from llmguide.teachers.minigrid_planning import agent_cell, layout_targets, minigrid_base, symbolic_state

from llmguide.errors import ConfigError
from llmguide.processes import stop_process

__all__ = [
    "SELF_TAUGHT_SYSTEM",
    "SelfTaughtQuestion",
    "SelfTaughtTeacher",
    "StageRecord",
    "colour_canonical",
    "event_instruction",
    "situation_from_env",
    "situation_key",
    "situation_messages",
    "target_options",
]

SELF_TAUGHT_SYSTEM = "You teach an agent in a grid world. Name the agent's next subgoal."
#: events that can answer "what next?" (the instruction a teacher could have given for them)
_ANSWER_PREFIXES = (("picked up ", "pick up the "), ("opened ", "open the "))


# -- the situation and its prompt (shared with the hindsight recorder) ---------------------------
def event_instruction(event: str) -> str | None:
    """The instruction an event fulfils ('picked up yellow key' -> 'pick up the yellow key'), or None."""
    if event == "reached goal":
        return "go to the goal"
    for done, todo in _ANSWER_PREFIXES:
        if event.startswith(done) and not event.endswith(" box"):  # "opened grey box" is not a door target
            return todo + event[len(done):]
    return None


def target_options(env: gym.Env, kind: str = "object") -> list[tuple[str, Subgoal]]:
    """(instruction, subgoal of `kind`) for every target the layout offers now."""
    base = minigrid_base(env)
    pos = agent_cell(base)
    out, seen = [], set()
    for t in layout_targets(env, approach=kind == "positional"):
        if kind == "positional" and t.approach is None:
            continue
        if t.instruction not in seen:
            seen.add(t.instruction)
            out.append((t.instruction, t.as_subgoal(kind, pos)))
    return out


def situation_from_env(env: gym.Env, achieved: Sequence[Subgoal] = ()) -> dict[str, Any]:
    """A situation when no `HindsightRecorder` is below (all objects counted as seen)."""
    state = symbolic_state(env, achieved)
    return {
        "mission": state["mission"],
        "seen": state["objects"],
        "carrying": state["carrying"],
        "done": [s.text for s in achieved],
    }


def _situation_text(situation: Mapping[str, Any]) -> str:
    return "\n".join([
        f"Mission: {situation['mission']}.",
        "Seen: " + (", ".join(situation.get("seen") or ()) or "nothing yet") + ".",
        f"Carrying: {situation.get('carrying') or 'nothing'}.",
        "Done: " + (", ".join(situation.get("done") or ()) or "nothing yet") + ".",
    ])


def situation_messages(situation: Mapping[str, Any], options: Sequence[str]) -> list[dict[str, str]]:
    """The teacher's chat prompt: fixed system text, the situation, the options.

    The options are listed in an order drawn from a hash of the situation, so
    their position tells nothing about the answer (and the same situation is
    always asked the same way, in training and when teaching).
    """
    text = _situation_text(situation)
    order = sorted(options)
    random.Random(hashlib.sha1(text.encode()).hexdigest()).shuffle(order)
    user = f"{text}\nOptions: {'; '.join(order)}.\nNext subgoal?"
    return [{"role": "system", "content": SELF_TAUGHT_SYSTEM}, {"role": "user", "content": user}]


_COLOUR = re.compile(r"\b(red|green|blue|purple|yellow|grey)\b")


def colour_canonical(situation: Mapping[str, Any], options: Sequence[str]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The situation and options with each colour renamed by the part it plays (c1, c2, ...).

    Why: MultiRoom and KeyCorridor draw new colours for every layout, so "seen a closed red
    door, carrying nothing" and "seen a closed blue door, carrying nothing" are the same
    situation to a teacher, yet a key made of the colours never repeats and every episode asks
    the LLM again. A colour's part is where it occurs with the colours blanked (in what is seen,
    carried, done or offered); colours are numbered in the order of their parts, so two layouts
    that differ only in colours give the same canonical form. Colours with the same part are
    interchangeable, and either numbering gives the same form.

    >>> colour_canonical({"mission": "m", "seen": ["closed red door"], "carrying": None, "done": []},
    ...                  ["open the red door", "open the blue door"])[1]
    ('open the c2 door', 'open the c1 door')
    """
    fields = [("mission", str(situation.get("mission") or ""))]
    fields += [("seen", t) for t in situation.get("seen") or ()]
    fields += [("carrying", str(situation.get("carrying") or ""))]
    fields += [("done", t) for t in situation.get("done") or ()]
    fields += [("option", t) for t in options]
    parts: dict[str, list[tuple[str, str]]] = {}
    for kind, text in fields:
        for colour in set(_COLOUR.findall(text)):
            blank = _COLOUR.sub(lambda m, c=colour: "X" if m.group(0) == c else "_", text)
            parts.setdefault(colour, []).append((kind, blank))
    order = sorted(parts, key=lambda c: (sorted(parts[c]), c))
    names = {c: f"c{i + 1}" for i, c in enumerate(order)}

    def rename(text: str) -> str:
        return _COLOUR.sub(lambda m: names[m.group(0)], text)

    canonical = {
        "mission": rename(str(situation.get("mission") or "")),
        "seen": sorted(rename(t) for t in situation.get("seen") or ()),
        "carrying": rename(situation["carrying"]) if situation.get("carrying") else None,
        "done": [rename(t) for t in situation.get("done") or ()],
    }
    return canonical, tuple(rename(o) for o in options)


def situation_key(situation: Mapping[str, Any], options: Sequence[str]) -> str:
    """What an answer may depend on: the situation and the options up to a renaming of colours
    (`colour_canonical`), not the layout."""
    return _canonical_key(*colour_canonical(situation, options))


def _canonical_key(canonical: Mapping[str, Any], renamed: Sequence[str]) -> str:
    return hashlib.sha1((_situation_text(canonical) + "|" + "|".join(sorted(renamed))).encode()).hexdigest()


# -- questions and stages ------------------------------------------------------------------------
@dataclass(frozen=True)
class SelfTaughtQuestion(Question):
    """A question with the instructions the model scores (candidates[i] is options[i] in the teacher's
    kind); its answer is cached as the colour-canonical option (`colour_canonical`), so it answers
    every layout that differs only in colours."""

    options: tuple[str, ...] = ()
    canonical_options: tuple[str, ...] = ()

    def cached(self, hit: Any) -> int | None:
        """The index of the option a cached (canonical) answer names, or None."""
        names = self.canonical_options or self.options
        return names.index(hit) if isinstance(hit, str) and hit in names else None


@dataclass
class StageRecord:
    """One tuning stage: its data, cost and the probe accuracy before/after (oracle only scores)."""

    stage: int
    examples: int
    started_step: int
    ok: bool = False
    swapped_step: int | None = None
    seconds: float = 0.0  # wall time from launch to the weights being usable
    train_s: float | None = None
    loss_first: float | None = None
    loss_last: float | None = None
    probe_before: float | None = None
    probe_after: float | None = None
    probe_n: int | None = None
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class SelfTaughtTeacher(Teacher):
    """Chooses the next subgoal by the likelihood under the embedded model plus the run's LoRA stages.

    Args:
        kind: ``object``, ``positional`` or ``language`` (the model always scores target instructions).
        adapter: model spec for `AdapterLM` (``smollm2``, ``gguf:PATH``, ``hf:DIR``).
        lora_r: LoRA rank.
        stage_examples: new hindsight examples that trigger the next stage.
        stage_steps, stage_lr, batch_size: the SFT of one stage (on all examples so far).
        max_stages: stop tuning after this many stages (0: a frozen teacher, the control).
        probe_episodes: held-out expert episodes whose situations score each stage against
            the oracle (0: no probe).
        finetune_nice: niceness added to the stage worker (0 where other jobs load the machine).
        wait_for_stages: the learner waits at a rollout's end for a running stage to finish
            (time counted in ``stage_wait_s``). Off in use; on, a benchmark measures what the
            stages do per sample, whatever the host's tuning speed.
        cache: True (memory), a path (SQLite, shared by subprocess workers) or a `TeacherCache`.
        seed: seeds the LoRA initialisation and each stage's batches.

    A teacher is bound to a run folder (`bind`) by the method; without one it never tunes.

    Example:
        >>> import gymnasium as gym, minigrid  # doctest: +SKIP
        >>> env = gym.make("MiniGrid-DoorKey-5x5-v0"); _ = env.reset(seed=0)  # doctest: +SKIP
        >>> SelfTaughtTeacher("object").propose(env, {}).subgoal.text  # doctest: +SKIP
        'yellow key'
    """

    name = "self_taught"
    uses_llm = True

    def __init__(
        self,
        kind: str = "object",
        *,
        adapter: str = "smollm2",
        lora_r: int = 8,
        stage_examples: int = 32,
        stage_steps: int = 30,
        stage_lr: float = 1e-3,
        batch_size: int = 8,
        max_stages: int | None = None,
        probe_episodes: int = 6,
        finetune_nice: int = 10,
        wait_for_stages: bool = False,
        cache: TeacherCache | bool | str | Path | None = True,
        seed: int = 0,
    ) -> None:
        super().__init__(kind, cache=cache)
        if stage_examples < 1:
            raise ConfigError(f"stage_examples must be >= 1, got {stage_examples}.")
        self.adapter_spec = adapter
        self.lora_r = int(lora_r)
        self.stage_examples = int(stage_examples)
        self.stage_steps = int(stage_steps)
        self.stage_lr = float(stage_lr)
        self.batch_size = int(batch_size)
        self.max_stages = max_stages
        self.probe_episodes = int(probe_episodes)
        self.finetune_nice = int(finetune_nice)
        self.wait_for_stages = bool(wait_for_stages)
        self.stage_wait_s = 0.0  # learner time spent waiting on stages (wait_for_stages only)
        self.seed = int(seed)
        self.workdir: Path | None = None
        self.stage = 0
        self.stages: list[StageRecord] = []
        self.examples_used = 0
        self.queries_by_stage: dict[int, int] = {}
        self._lm: Any = None
        self._job: tuple[StageRecord, subprocess.Popen, Path, float, Any, int] | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self._inflight: set[str | None] = set()  # situations being scored now (each is scored once)

    def __repr__(self) -> str:
        return f"SelfTaughtTeacher(kind={self.kind!r}, adapter={self.adapter_spec!r}, stage={self.stage})"

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for SubprocVecEnv: the model, the stage job and the lock stay behind."""
        state = dict(self.__dict__)
        state.update(_lm=None, _job=None, _lock=None, _inflight=set())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- run folder --------------------------------------------------------------------------
    def bind(self, run_dir: str | Path) -> None:
        """Keep hindsight, stages and the stage pointer under ``run_dir/self_taught``; a teacher
        already bound keeps its folder (its stages live there), e.g. when passed to a second run."""
        if self.workdir is not None:
            return
        self.workdir = Path(run_dir) / "self_taught"
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def hindsight_path(self) -> Path | None:
        """The JSONL the `HindsightRecorder` appends to (None: unbound, nothing recorded)."""
        return None if self.workdir is None else self.workdir / "hindsight.jsonl"

    @property
    def probe_path(self) -> Path | None:
        return None if self.workdir is None else self.workdir / "probe.jsonl"

    @property
    def tuning(self) -> bool:
        return self.workdir is not None and (self.max_stages is None or self.max_stages > 0)

    def stage_dir(self, stage: int) -> Path:
        assert self.workdir is not None
        return self.workdir / f"stage_{stage}"

    # -- the model -----------------------------------------------------------------------------
    @property
    def lm(self) -> Any:
        """The `AdapterLM` (loaded on first use, in whichever process asks), at the current stage."""
        with self._lock:
            if self._lm is None:
                from llmguide.teachers.lora_tuning import AdapterLM

                self._lm = AdapterLM(self.adapter_spec, lora_r=self.lora_r, seed=self.seed, threads=1)
                if self.stage > 0:
                    self._lm.load_stage(self.stage_dir(self.stage), self.stage)
            return self._lm

    @property
    def llm(self) -> Any:
        """The scoring model (what batched guidance loads once before answering in threads)."""
        return self.lm

    def load_stage(self, stage: int) -> None:
        """Hot swap: the next answers come from stage `stage`'s LoRA (cached answers are per stage)."""
        if self._lm is not None and stage > 0:
            self._lm.load_stage(self.stage_dir(stage), stage)
        self.stage = int(stage)

    def _refresh_stage(self) -> None:
        """Follow ``current.json`` (written by the process that runs the stages), at most once a second."""
        if self.workdir is None or time.monotonic() - self._checked_at < 1.0:
            return
        self._checked_at = time.monotonic()
        try:
            stage = int(json.loads((self.workdir / "current.json").read_text())["stage"])
        except (OSError, ValueError, KeyError):
            return
        if stage != self.stage:
            self.load_stage(stage)

    # -- asking --------------------------------------------------------------------------------
    def propose(
        self, env: gym.Env, info: dict[str, Any], achieved: Sequence[Subgoal] = (), *, defer: bool = False
    ) -> Proposal:
        """Next subgoal: cached per (situation, options, stage), else scored now or (``defer``) later."""
        self._refresh_stage()
        pairs = target_options(env, self.kind)
        done = {s.key for s in achieved}
        pairs = [p for p in pairs if p[1].key not in done] or pairs
        if not pairs:
            proposal = Proposal(None)
            self._record(None, proposal)
            return proposal
        situation = info.get("situation") or situation_from_env(env, achieved)
        options = tuple(p[0] for p in pairs)
        canonical, renamed = colour_canonical(situation, options)
        key = f"st:{_canonical_key(canonical, renamed)}:stage{self.stage}"
        question = SelfTaughtQuestion(key, situation_messages(situation, options), [p[1] for p in pairs], options,
                                      renamed)
        hit = question.cached(self.cache.get(key) if self.cache is not None else TeacherCache.MISS)
        if hit is not None:
            proposal = Proposal(pairs[hit][1], cache_hit=True)
            self._record(None, proposal)
            return proposal
        if defer:
            return Proposal(None, question=question)
        return self.answer(question)

    def answer(self, question: Question) -> Proposal:
        """Score the options (thread-safe: the model has its lock); count and cache the answer."""
        assert isinstance(question, SelfTaughtQuestion)
        hit = question.cached(self.cache.get(question.key) if self.cache is not None and question.key
                              else TeacherCache.MISS)
        if hit is not None:  # another env's question answered it meanwhile
            proposal = Proposal(question.candidates[hit], cache_hit=True)
            self._record(None, proposal)
            return proposal
        with self._lock:
            if question.key in self._inflight:
                return Proposal(None)  # another env's thread is scoring this situation: its answer will be cached
            self._inflight.add(question.key)
        try:
            picked = self.lm.choose(question.messages, list(question.options))
        finally:
            self._inflight.discard(question.key)
        index = question.options.index(picked)
        proposal = Proposal(question.candidates[index], llm_queries=1, llm_generations=1)
        self._record(None, proposal)
        self.queries_by_stage[self.stage] = self.queries_by_stage.get(self.stage, 0) + 1
        if self.cache is not None and question.key is not None:
            self.cache.put(question.key, (question.canonical_options or question.options)[index])
        return proposal

    # -- tuning stages (driven from the training process by `agents.hindsight.SelfTaughtCallback`) --
    @property
    def finetune_running(self) -> bool:
        return self._job is not None

    def examples_available(self) -> int:
        """Complete lines in the hindsight JSONL (a line being written is not counted)."""
        path = self.hindsight_path
        if path is None or not path.is_file():
            return 0
        data = path.read_bytes()
        return data.count(b"\n")

    def start_stage(self, step: int = 0) -> bool:
        """Launch the next stage in a background process when `stage_examples` new examples came in."""
        if not self.tuning or self._job is not None:
            return False
        if self.max_stages is not None and len([s for s in self.stages if s.ok]) >= self.max_stages:
            return False
        n = self.examples_available()
        if n - self.examples_used < self.stage_examples:
            return False
        k = len(self.stages) + 1
        out = self.stage_dir(k)
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("error.txt", "stats.json", "adapter_model.safetensors"):
            (out / stale).unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "llmguide.teachers.lora_tuning", "--examples", str(self.hindsight_path),
            "--records", str(n), "--out", str(out), "--adapter", self.adapter_spec, "--lora-r", str(self.lora_r),
            "--steps", str(self.stage_steps), "--lr", str(self.stage_lr), "--batch-size", str(self.batch_size),
            "--seed", str(self.seed + k), "--nice", str(self.finetune_nice),
        ]
        if self.stage > 0:
            cmd += ["--init", str(self.stage_dir(self.stage))]
        if self.probe_path is not None and self.probe_path.is_file():
            cmd += ["--eval", str(self.probe_path)]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
                   TOKENIZERS_PARALLELISM="false")
        log = (out / "finetune.log").open("w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._job = (StageRecord(k, n, int(step)), proc, out, time.perf_counter(), log, n)
        return True

    def poll(self, step: int = 0, wait: float | None = 0.0) -> StageRecord | None:
        """If the running stage ended (waiting up to `wait` s; None: until it ends), swap it in
        (announcing it in ``current.json``) and return its record."""
        if self._job is None:
            return None
        record, proc, out, t0, log, n = self._job
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        log.close()
        self._job = None
        self.examples_used = n
        record.seconds = time.perf_counter() - t0
        stats_file, weights = out / "stats.json", out / "adapter_model.safetensors"
        if proc.returncode == 0 and stats_file.is_file() and weights.is_file():
            stats = json.loads(stats_file.read_text())
            record.ok, record.swapped_step, record.stats = True, int(step), stats
            record.train_s, record.loss_first, record.loss_last = stats.get("train_s"), stats["loss_first"], stats["loss_last"]
            before, after = stats.get("eval_before") or {}, stats.get("eval_after") or {}
            record.probe_before, record.probe_after, record.probe_n = before.get("accuracy"), after.get("accuracy"), after.get("n")
            self.load_stage(record.stage)
            self._announce()
        else:
            err = out / "error.txt"
            record.error = err.read_text().strip() if err.is_file() else f"worker exited with code {proc.returncode}"
        self.stages.append(record)
        return record

    def stop(self) -> None:
        """End a running stage (end of training: its weights could guide nothing more)."""
        if self._job is None:
            return
        record, proc, _, t0, log, _ = self._job
        stop_process(proc, 30)
        log.close()
        self._job = None
        record.seconds, record.error = time.perf_counter() - t0, "stopped: training ended before the stage did"
        self.stages.append(record)

    def _announce(self) -> None:
        assert self.workdir is not None
        tmp = self.workdir / f"current.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps({"stage": self.stage}))
        os.replace(tmp, self.workdir / "current.json")

    # -- resume and report ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The stage in use, the finished stages and how many examples they used (JSON-able);
        the hindsight file is the run folder's and is appended to by the resumed run."""
        return {
            "stage": self.stage,
            "stages": [asdict(s) for s in self.stages],
            "examples_used": self.examples_used,
            "queries_by_stage": {str(k): v for k, v in self.queries_by_stage.items()},
            "stage_wait_s": self.stage_wait_s,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict`: that stage's weights are swapped in (now or when the model loads)."""
        self.stages = [StageRecord(**s) for s in state.get("stages", [])]
        self.examples_used = int(state.get("examples_used", 0))
        self.queries_by_stage = {int(k): int(v) for k, v in state.get("queries_by_stage", {}).items()}
        self.stage_wait_s = float(state.get("stage_wait_s", 0.0))
        self.load_stage(int(state.get("stage", 0)))
        if self.workdir is not None:
            self._announce()

    def summary(self) -> dict[str, Any]:
        """Figures for the run's metrics: per stage, examples, seconds and probe accuracy."""
        ok = [s for s in self.stages if s.ok]
        return {
            "stage": self.stage,
            "stages_done": len(ok),
            "stages_failed": len(self.stages) - len(ok),
            "hindsight_examples": self.examples_available(),
            "queries_by_stage": {str(k): v for k, v in sorted(self.queries_by_stage.items())},
            "stage_wait_s": round(self.stage_wait_s, 3),
            "stages": [
                {k: v for k, v in asdict(s).items() if k != "stats"} for s in self.stages
            ],
        }
