"""ExperienceMemory: add/search/dedup, persistence across processes, export/import, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from llmguide.memory import SCHEMA_FILE, SCHEMA_VERSION, Experience, ExperienceMemory

from llmguide.errors import ConfigError, CorruptStoreError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fakes import BagOfWords

SCENES = {
    "close": "You drive in the second lane, at 25 m/s. vehicle 1: in your lane, 8 m ahead, 5 m/s slower.",
    "clear": "You drive in the first lane, at 20 m/s. No vehicle nearby. Open road ahead.",
    "left": "You drive in the fourth lane, at 30 m/s. vehicle 1: 1 lane to your left, 3 m behind, faster.",
}


def mem(path: Path | None, **kw) -> ExperienceMemory:
    return ExperienceMemory(path, embeddings=BagOfWords(), **kw)


def test_add_search_returns_nearest_scene(tmp_path: Path) -> None:
    m = mem(tmp_path / "m")
    added = m.add([
        Experience(SCENES["close"], "SLOWER", "too close", outcome="safe"),
        Experience(SCENES["clear"], "FASTER", "road is clear", outcome="safe"),
        Experience(SCENES["left"], "IDLE", "car on the left", source="reflection", outcome="corrected"),
    ])
    assert added == 3 and len(m) == 3
    hits = m.search("You drive in the first lane, at 21 m/s. No vehicle nearby.", k=2)
    assert hits[0].decision == "FASTER"
    assert hits[0].score is not None and hits[0].score > hits[1].score
    assert hits[0].reasoning == "road is clear" and hits[0].source == "reasoning"
    assert m.search("anything", k=0) == []


def test_dedup_exact_and_near(tmp_path: Path) -> None:
    m = mem(tmp_path / "m", near_duplicate=0.99)
    assert m.add([Experience(SCENES["close"], "SLOWER"), Experience(SCENES["close"], "SLOWER")]) == 1
    assert m.add([Experience(SCENES["close"], "SLOWER", "again")]) == 0
    # same words in another order embed identically here: a near duplicate with the same decision
    shuffled = " ".join(reversed(SCENES["close"].split()))
    assert m.add([Experience(shuffled, "SLOWER")]) == 0
    # ... but another decision in the same scene is new knowledge
    assert m.add([Experience(shuffled, "LANE_LEFT")]) == 1
    assert len(m) == 2


def test_stats_export_import_clear(tmp_path: Path) -> None:
    m = mem(tmp_path / "m")
    m.add([Experience(SCENES["close"], "SLOWER", outcome="safe"),
           Experience(SCENES["left"], "IDLE", source="reflection", outcome="corrected")])
    stats = m.stats()
    assert stats["count"] == 2 and stats["by_source"] == {"reasoning": 1, "reflection": 1}
    assert stats["by_decision"] == {"SLOWER": 1, "IDLE": 1} and stats["schema_version"] == SCHEMA_VERSION
    out = tmp_path / "export.jsonl"
    assert m.export_jsonl(out) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["decision"] for r in lines] == ["SLOWER", "IDLE"]  # insertion order
    other = mem(tmp_path / "other")
    assert other.import_jsonl(out) == 2 and other.import_jsonl(out) == 0
    assert {e.decision for e in other.all()} == {"SLOWER", "IDLE"}
    assert mem(tmp_path / "limited").import_jsonl(out, limit=1) == 1
    assert m.clear() == 2 and len(m) == 0
    assert len(mem(tmp_path / "m")) == 0  # still a valid memory dir after clear
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"scene": "x", "decision": "IDLE"}\nnot json\n')
    with pytest.raises(ConfigError, match="bad.jsonl:2"):
        other.import_jsonl(bad)


def test_persist_and_reload_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "m"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from fakes import BagOfWords
        from llmguide.memory import Experience, ExperienceMemory
        m = ExperienceMemory({str(path)!r}, embeddings=BagOfWords())
        m.add([Experience({SCENES["close"]!r}, "SLOWER", "too close")])
        m.add([Experience({SCENES["clear"]!r}, "FASTER", "clear road")])
        print(len(m))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("2")
    m = mem(path)
    assert len(m) == 2
    assert m.search(SCENES["close"], k=1)[0].decision == "SLOWER"
    assert m.add([Experience(SCENES["left"], "IDLE")]) == 1
    assert [e.seq for e in m.all()] == [0, 1, 2]  # insertion order continues after reload


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m"
    mem(path).add([Experience(SCENES["close"], "SLOWER")])
    record = json.loads((path / SCHEMA_FILE).read_text())
    record["schema_version"] = SCHEMA_VERSION + 1
    (path / SCHEMA_FILE).write_text(json.dumps(record))
    with pytest.raises(CorruptStoreError, match="newer"):
        mem(path)


@pytest.mark.parametrize("damage", ["sqlite", "schema", "no_schema", "no_sqlite", "foreign"])
def test_damaged_dir_gives_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "m"
    mem(path).add([Experience(SCENES["close"], "SLOWER")])
    if damage == "sqlite":
        (path / "chroma.sqlite3").write_bytes(b"\x00garbage" * 500)
    elif damage == "schema":
        (path / SCHEMA_FILE).write_text("{not json")
    elif damage == "no_schema":
        (path / SCHEMA_FILE).unlink()
    elif damage == "no_sqlite":
        (path / "chroma.sqlite3").unlink()
    else:
        path = tmp_path / "foreign"
        path.mkdir()
        (path / "notes.txt").write_text("hello")
    with pytest.raises(CorruptStoreError) as info:
        mem(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_bad_path_and_embedding_mismatch(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        mem(file)
    path = tmp_path / "m"
    mem(path).add([Experience(SCENES["close"], "SLOWER")])

    class Other(BagOfWords):
        name = "other-embedding"

    with pytest.raises(ConfigError, match="other-embedding"):
        ExperienceMemory(path, embeddings=Other())
    with pytest.raises(ConfigError, match="source"):
        Experience("scene", "IDLE", source="dream")


def test_in_process_memories_are_separate() -> None:
    a, b = mem(None), mem(None)
    a.add([Experience(SCENES["close"], "SLOWER")])
    assert len(a) == 1 and len(b) == 0


def test_import_is_light() -> None:
    code = ("import sys, llmguide.memory, llmguide.cli; "
            "print(any(m.split('.')[0] in ('chromadb', 'torch', 'sentence_transformers') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
