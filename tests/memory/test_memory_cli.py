"""`llmguide memory stats|export|import|clear PATH`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from llmguide.memory import Experience, ExperienceMemory
from typer.testing import CliRunner

from llmguide.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import BagOfWords


@pytest.fixture(autouse=True)
def fake_default_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI opens memories with the default embeddings; use the torch-free fake here."""
    import llmguide.memory.embeddings as emb

    monkeypatch.setattr(emb, "_DEFAULT", BagOfWords())


def test_stats_export_import_clear(tmp_path: Path) -> None:
    path = tmp_path / "mem"
    ExperienceMemory(path, embeddings=BagOfWords()).add([
        Experience("lane 1, car close ahead", "SLOWER", outcome="safe"),
        Experience("lane 2, clear road", "FASTER", source="reflection", outcome="corrected"),
    ])
    runner = CliRunner()
    res = runner.invoke(app, ["memory", "stats", str(path), "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert stats["count"] == 2 and stats["by_source"] == {"reasoning": 1, "reflection": 1}

    out = tmp_path / "mem.jsonl"
    res = runner.invoke(app, ["memory", "export", str(path), str(out)])
    assert res.exit_code == 0 and "exported 2" in res.output
    assert len(out.read_text().splitlines()) == 2

    res = runner.invoke(app, ["memory", "import", str(tmp_path / "copy"), str(out)])
    assert res.exit_code == 0 and "imported 2" in res.output and "holds 2" in res.output

    res = runner.invoke(app, ["memory", "clear", str(path)], input="n\n")
    assert res.exit_code == 0 and "nothing removed" in res.output
    res = runner.invoke(app, ["memory", "clear", str(path), "--yes"])
    assert res.exit_code == 0 and "removed 2" in res.output
    assert "count: 0" in runner.invoke(app, ["memory", "stats", str(path)]).output


def test_damaged_or_missing_dir_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "mem"
    ExperienceMemory(path, embeddings=BagOfWords()).add([Experience("scene", "IDLE")])
    (path / "chroma.sqlite3").write_bytes(b"not a database" * 100)
    runner = CliRunner()
    res = runner.invoke(app, ["memory", "stats", str(path)])
    assert res.exit_code == 2 and "damaged" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["memory", "stats", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "No memory directory" in res.output
    res = runner.invoke(app, ["memory", "import", str(tmp_path / "new"), str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 2 and "No JSONL file" in res.output
