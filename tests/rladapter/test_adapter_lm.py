"""The adapter LM: the shipped Q4_1 GGUF loads in transformers, one LoRA SFT step changes
its logits, stage weights save and reload (in-process swap and fresh load)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from llmguide.teachers.rladapter_finetune import AdapterLM, adapter_messages, base_model_dir

from llmguide.errors import ModelSpecError

pytestmark = pytest.mark.slow

PROMPT = adapter_messages(
    "You see: tree 1 away (1 up). Inventory: empty. Vitals: health 9/9, food 9/9, drink 9/9, energy 9/9.",
    "collected wood x2", "collect wood", 0.71,
)
TARGET = "The agent collects wood well; it should now place a table."


def test_bad_adapter_spec_is_a_one_line_error() -> None:
    with pytest.raises(ModelSpecError, match="gguf:PATH"):
        base_model_dir("llama-7b")


def test_sft_step_changes_logits_and_stage_reloads(tmp_path: Path) -> None:
    lm = AdapterLM("smollm2", lora_r=4, seed=0)
    assert (base_model_dir("smollm2") / "model.safetensors").is_file()  # converted once from the Q4_1 GGUF
    before = lm.logits(PROMPT)
    assert before.shape[0] == len(lm.tokenizer)  # vocabulary-sized logits from the dequantized model
    losses = lm.train_steps([(PROMPT, TARGET)] * 2, steps=1, lr=5e-3, batch_size=2)
    assert len(losses) == 1 and losses[0] > 0
    after = lm.logits(PROMPT)
    assert float((after - before).abs().max()) > 1e-3

    stage = lm.save(tmp_path / "adapter" / "stage_1")
    assert (stage / "adapter_model.safetensors").is_file()

    fresh = AdapterLM("smollm2", lora_r=4, seed=0)
    assert float((fresh.logits(PROMPT) - before).abs().max()) < 1e-4  # LoRA starts as a no-op
    fresh.load_stage(stage, stage=1)
    assert fresh.stage == 1
    assert float((fresh.logits(PROMPT) - after).abs().max()) < 1e-4

    reopened = AdapterLM("smollm2", init=stage)
    assert float((reopened.logits(PROMPT) - after).abs().max()) < 1e-4


def test_worker_runs_one_stage_from_a_buffer(tmp_path: Path) -> None:
    buffer = tmp_path / "rladapter_buffer.jsonl"
    rows = [
        {"state": f"You see: tree {i} away.", "behaviour": "collected wood", "last_subgoal": "collect wood",
         "score": 0.6, "analysis": f"Wood is near; collect it ({i}).", "subgoal": "collect wood",
         "achievement": "collect_wood", "outcome": {"score": 0.5 + i / 10, "subgoal_achieved": i == 2}}
        for i in range(4)
    ]
    buffer.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"partial": ')  # a half-written line
    out = tmp_path / "stage_1"
    proc = subprocess.run(
        [sys.executable, "-m", "llmguide.teachers.rladapter_finetune", "--buffer", str(buffer), "--records", "4",
         "--out", str(out), "--lora-r", "4", "--steps", "2", "--batch-size", "2", "--nice", "0"],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records"] == 4 and stats["examples"] == 2 and stats["steps"] == 2
    assert (out / "adapter_model.safetensors").is_file()
