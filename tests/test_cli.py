"""The console script: one readable line for user errors, exit code 2."""

from __future__ import annotations

from typer.testing import CliRunner

from llmguide.cli import app

runner = CliRunner()


def test_models_lists_backends() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "smollm2" in result.output and "gguf:PATH" in result.output


def test_ask_embedded_model() -> None:
    result = runner.invoke(app, ["ask", "smollm2", "Name a fruit.", "--max-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_bad_spec_is_one_clear_line() -> None:
    result = runner.invoke(app, ["ask", "llama3", "hi"])
    assert result.exit_code == 2
    assert "Unknown model spec 'llama3'" in result.output
    assert "Traceback" not in result.output


def test_missing_model_file_for_serve(tmp_path) -> None:
    result = runner.invoke(app, ["serve", "--model", str(tmp_path / "x.gguf")])
    assert result.exit_code == 2 and "no GGUF file" in result.output


def test_cache_stats_and_clear(tmp_path) -> None:
    from langchain_core.outputs import Generation

    from llmguide.llm import ResponseCache

    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.update("prompt", "llm", [Generation(text="answer")])
    cache.close()
    stats = runner.invoke(app, ["cache", "stats", "--path", str(path)])
    assert stats.exit_code == 0 and "entries: 1" in stats.output
    result = runner.invoke(app, ["cache", "clear", "--path", str(path)])
    assert result.exit_code == 0 and "removed" in result.output
    assert not path.exists()


def test_corrupt_cache_message(tmp_path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"garbage" * 200)
    result = runner.invoke(app, ["cache", "stats", "--path", str(path)])
    assert result.exit_code == 2 and "llmguide cache clear" in result.output


def test_set_overrides_reach_nested_keys() -> None:
    from llmguide.cli import apply_overrides

    cfg = {"method": "subgoal", "total_steps": 100, "teacher": {"llm": "smollm2"}}
    out = apply_overrides(cfg, ["total_steps=2000", "teacher.llm=gguf:/m.gguf", "memory=runs/mem", "eval.every=50"])
    assert out["total_steps"] == 2000 and out["teacher"]["llm"] == "gguf:/m.gguf"
    assert out["memory"] == "runs/mem" and out["eval"] == {"every": 50}
    assert cfg["total_steps"] == 100  # the original is untouched


def test_bad_override_is_one_clear_line(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("method: subgoal\nenv: MiniGrid-Empty-5x5-v0\n")
    result = runner.invoke(app, ["run", str(config), "--set", "nonsense"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output
