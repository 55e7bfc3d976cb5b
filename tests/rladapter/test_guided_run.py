"""A short guided Crafter run with the real models: SmolLM2 adapter (transformers + LoRA),
SmolLM2 guide (llama.cpp), MiniLM embeddings; a background fine-tune stage finishes, the
run is interrupted, and the resumed run continues from that stage and tunes the next."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from llmguide.teachers.rladapter import SUBGOALS, RLAdapterTeacher
from llmguide.teachers.rladapter_finetune import AdapterLM

from llmguide.core import prepare, run
from llmguide.training import RunInterrupted

pytestmark = pytest.mark.slow

CONFIG: dict[str, Any] = {
    "method": "rladapter", "variant": "rladapter", "seed": 0, "total_steps": 512, "n_envs": 1, "every": 32,
    "stage_every": 64, "min_records": 1, "min_examples": 1, "min_new_records": 1, "stage_sft_steps": 2,
    "finetune_nice": 0,  # a niced worker starves on a machine loaded by other jobs
    "adapter_batch_size": 2, "max_new_tokens": 16,
    "lora_r": 4, "env_kwargs": {"area": [16, 16], "length": 48}, "wait_final_s": 600, "checkpoint_every": 0,
    "learner_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    "net": {"channels": [4, 8, 8], "image_features": 16, "subgoal_features": 8, "net_arch": [8]},
    "eval": {"every": 0, "episodes": 1, "n_envs": 1},
}


def test_stage_survives_an_interrupt_and_the_next_stage_builds_on_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_start = RLAdapterTeacher.start_stage

    def start_wait_stop(self: RLAdapterTeacher, step: int = 0) -> bool:
        """The first stage: let it finish (as it would in the background), then Ctrl-C."""
        if not real_start(self, step):
            return False
        result = self.wait(timeout=600)
        assert result is not None and result.ok, result
        raise KeyboardInterrupt

    monkeypatch.setattr(RLAdapterTeacher, "start_stage", start_wait_stop)
    with pytest.raises(RunInterrupted):
        run(prepare(CONFIG), tmp_path)
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == 64
    teacher_state = state["method_state"]["teacher"]
    assert teacher_state["stage"] == 1 and [s["ok"] for s in teacher_state["stages"]] == [True]
    stage_1 = tmp_path / "adapter" / "stage_1"
    assert json.loads((stage_1 / "stats.json").read_text())["examples"] >= 1
    buffer = (tmp_path / "rladapter_buffer.jsonl").read_text()

    monkeypatch.setattr(RLAdapterTeacher, "start_stage", real_start)
    m = run(prepare({**CONFIG, "total_steps": 192, "resume": True}), tmp_path)
    assert m.resumes == 1 and m.steps >= 192 and m.llm_calls >= 6
    teacher = m.extras["teacher"]
    # queries at steps 1, 33 (first segment), 65, 97, 129, 161 (resumed: asked again at once)
    assert teacher["queries"] == 6 and teacher["adapter_ms_mean"] > 0
    # stage 2 started on resume at the first new record (stage 1's boundary was passed); a 3rd may
    # follow if stage 2 is ready in time; the one still running at the end was waited for
    done = teacher["stages_done"]
    assert done in (2, 3) and len(m.extras["finetune_s_per_stage"]) == done
    assert [r["stage"] for r in m.extras["stages"]] == list(range(done + 1))
    assert all(r["examples"] >= 1 and r["finetune_s"] > 0 for r in m.extras["stages"][1:])
    stats_2 = json.loads((tmp_path / "adapter" / "stage_2" / "stats.json").read_text())
    assert stats_2["init"] == str(stage_1)
    assert {"0", "1"} <= set(m.extras["comprehension_by_stage"])

    logged = [json.loads(line) for line in (tmp_path / "subgoals.jsonl").read_text().splitlines()]
    assert len(logged) == 6 and all(row["subgoal"] in SUBGOALS.values() for row in logged)
    assert all(isinstance(row["analysis"], str) and row["analysis"] for row in logged)
    assert [row["stage"] for row in logged[:2]] == [0, 0] and all(row["stage"] >= 1 for row in logged[2:])

    text = (tmp_path / "rladapter_buffer.jsonl").read_text()
    assert text.startswith(buffer)
    records = [json.loads(line) for line in text.splitlines()]
    assert all({"state", "score", "analysis", "subgoal", "outcome"} <= set(r) for r in records)
    assert "Vitals" in records[0]["state"] and 0 < records[0]["outcome"]["score"] < 1
    assert "rladapter/stage" in (tmp_path / "progress-resume1.csv").read_text().splitlines()[0]
    AdapterLM("smollm2", lora_r=4).load_stage(tmp_path / "adapter" / "stage_2", 2)  # reloadable
