"""A short guided Crafter run with the real models: SmolLM2 adapter (transformers + LoRA),
SmolLM2 guide (llama.cpp), MiniLM embeddings, one background fine-tune stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llmguide.agents.rladapter import run_rladapter_config
from llmguide.teachers.rladapter import SUBGOALS
from llmguide.teachers.rladapter_finetune import AdapterLM

pytestmark = pytest.mark.slow


def test_short_guided_run_logs_subgoals_and_tunes_a_stage(tmp_path: Path) -> None:
    config = {
        "variant": "rladapter", "seed": 0, "total_timesteps": 240, "n_envs": 1, "every": 100,
        "stage_every": 200, "min_records": 1, "stage_sft_steps": 2, "adapter_batch_size": 2,
        "max_new_tokens": 16, "lora_r": 4, "env_kwargs": {"area": [32, 32]}, "wait_final_s": 600,
        "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
        "net": {"channels": [4, 8, 8], "image_features": 16, "subgoal_features": 8, "net_arch": [8]},
    }
    m = run_rladapter_config(config, tmp_path)
    assert m["timesteps"] >= 240 and m["bonus"] == 0.0
    teacher = m["teacher"]
    assert teacher["queries"] == 3  # env steps 1, 101, 201
    assert m["llm"]["calls"] >= 3 and teacher["adapter_ms_mean"] > 0

    logged = [json.loads(line) for line in (tmp_path / "subgoals.jsonl").read_text().splitlines()]
    assert len(logged) == 3 and all(row["subgoal"] in SUBGOALS.values() for row in logged)
    assert all(isinstance(row["analysis"], str) and row["analysis"] for row in logged)

    records = [json.loads(line) for line in (tmp_path / "rladapter_buffer.jsonl").read_text().splitlines()]
    assert len(records) == 3  # two closed by the next query, the last at the end of training
    assert all({"state", "score", "analysis", "subgoal", "outcome"} <= set(r) for r in records)
    assert "Vitals" in records[0]["state"] and 0 < records[0]["outcome"]["score"] < 1

    # the stage started at step 200 in the background and finished (waited for at the end)
    assert teacher["stages_done"] == 1 and len(m["finetune_s_per_stage"]) == 1
    stage = tmp_path / "adapter" / "stage_1"
    assert json.loads((stage / "stats.json").read_text())["examples"] >= 1
    assert set(m["comprehension_by_stage"]) == {"0"}
    lm = AdapterLM("smollm2", lora_r=4)
    lm.load_stage(stage, 1)  # reloadable
    assert "rladapter/stage" in (tmp_path / "progress.csv").read_text().splitlines()[0]
