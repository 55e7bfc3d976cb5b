"""benchmarks/scienceworld_agents.py: arms on the same seeds, rows merged into the results JSON by the script."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scienceworld_agents.py"


def _bench():
    spec = importlib.util.spec_from_file_location("scienceworld_agents_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unknown_arm_is_one_readable_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _bench().main(["--arms", "rankr", "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert "unknown arm 'rankr'; known arms: random, ranker" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java")
def test_second_invocation_replaces_its_own_rows_and_keeps_the_others(tmp_path: Path) -> None:
    bench, out = _bench(), tmp_path / "sw.json"
    common = ["--arms", "random", "--tasks", "find-living-thing", "--variations", "1", "--max-steps", "1",
              "--runs-dir", str(tmp_path / "runs"), "--out", str(out), "--report", str(tmp_path / "report")]
    assert bench.main([*common, "--seeds", "0,1"]) == 0
    first = json.loads(out.read_text())
    assert [(r["arm"], r["seed"], r["episodes"]) for r in first["rows"]] == [("random", 0, 1), ("random", 1, 1)]
    assert bench.main([*common, "--seeds", "1"]) == 0
    second = json.loads(out.read_text())
    assert [r["seed"] for r in second["rows"]] == [0, 1]
    assert second["rows"][0]["run_dir"] == first["rows"][0]["run_dir"]  # seed 0 kept from the first invocation
    assert second["rows"][1]["run_dir"] != first["rows"][1]["run_dir"]  # seed 1 re-run, its old row replaced
    assert [i["seeds"] for i in second["invocations"]] == [[0, 1], [1]]
    assert all("--seeds" in i["command"] and len(i["load_average_end"]) == 3 for i in second["invocations"])
    (summary,) = second["summary"]
    assert summary["arm"] == "random" and summary["seeds"] == [0, 1] and summary["episodes"] == 2
    row = second["rows"][0]
    scores = row["episode_scores"]["find-living-thing"]
    assert len(scores) == 1 and row["score_mean"] == pytest.approx(scores[0])
    low, value, high = row["score_iqm95"][1], row["score_iqm95"][0], row["score_iqm95"][2]
    assert low <= value <= high
    assert row["llm_calls_per_step"] == 0 and row["fallback_rate"] is None and row["llm_differs_from_ranker"] is None
