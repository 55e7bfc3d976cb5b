"""End to end with the real embedded model: `llmguide run`'s spring runner, 20 Crafter steps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# llama.cpp's OpenMP workers spin while waiting; on a shared 2-core machine that
# starves everything else. Only takes effect if llama_cpp is not loaded yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from llmguide.agents.spring import run_spring_config
from llmguide.teachers.spring import crafter_data

from llmguide.runners import get_runner

SMALL_DAG = """
max_tokens: 16
nodes:
  - id: subgoal
    question: What is the top-priority subgoal now?
  - id: action
    question: What is the best action for it?
    parents: [subgoal]
"""


def test_config_errors_are_clear(tmp_path: Path) -> None:
    from llmguide.errors import ConfigError

    with pytest.raises(ConfigError, match="Unknown spring config keys"):
        run_spring_config({"method": "spring", "episodez": 2}, tmp_path)
    assert get_runner("spring") is run_spring_config


def test_shipped_config_uses_only_known_keys() -> None:
    import yaml
    from llmguide.agents.spring import CONFIG_KEYS
    from llmguide.teachers.spring import DEFAULT_DAG_PATH

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "spring_crafter.yaml").read_text())
    assert config["method"] == "spring" and config["env"] == "llmguide/Crafter-v0"
    assert set(config) <= CONFIG_KEYS
    assert config["dag"] is None  # the DAG packaged with llmguide.teachers
    assert DEFAULT_DAG_PATH.is_file()


@pytest.mark.slow
def test_twenty_steps_with_smollm2_every_action_valid(tmp_path: Path, fresh_cache: Path) -> None:
    dag = tmp_path / "dag.yaml"
    dag.write_text(SMALL_DAG)
    config = {"method": "spring", "env": "llmguide/Crafter-v0", "llm": "smollm2", "dag": str(dag),
              "episodes": 1, "max_steps": 20, "seed": 0, "max_tokens": 16, "n_ctx": 2048}
    metrics = run_spring_config(config, tmp_path / "run")
    assert metrics["steps"] == 20
    assert metrics["invalid_actions"] == 0
    assert metrics["llm_fallbacks"] == 0  # constrained decoding: the choice always parsed
    assert metrics["llm_calls_per_step"] == pytest.approx(3.0)  # 2 DAG nodes + 1 choice
    assert 0.0 <= metrics["crafter_score"] <= 100.0
    names = crafter_data()["actions"]
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "logs" / "episode_000.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "step" in r]
    assert [r["step"] for r in steps] == list(range(20))
    for row in steps:
        assert row["action"] in names and names.index(row["action"]) == row["action_id"]
        assert [n["id"] for n in row["nodes"]] == ["subgoal", "action"]
        assert all(n["answer"] for n in row["nodes"])
        assert "Vitals:" in row["observation"]  # the env's text view is in every prompt
    assert "episode_end" in rows[-1]
    assert (tmp_path / "run" / "episodes.json").is_file()
