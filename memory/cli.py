"""``llmguide memory stats|export|import|clear PATH``: exports the typer sub-app `memory_app`.

Thin shells over `ExperienceMemory`; chromadb and the embedding model load
only when a command runs. Damaged or newer directories give one-line errors
(through the main CLI's ``friendly`` wrapper: exit code 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

__all__ = ["memory_app"]

memory_app = typer.Typer(help="Persistent experience memories (DiLu and later methods).", no_args_is_help=True)


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    from llmguide.cli import friendly

    return friendly(fn)


def _open(path: Path, must_exist: bool = True) -> Any:
    from llmguide.memory import ExperienceMemory

    from llmguide.errors import ConfigError

    if must_exist and not path.exists():
        raise ConfigError(f"No memory directory at {path}; check the path (runs keep theirs in RUN_DIR/memory).")
    return ExperienceMemory(path)


def _echo(text: str) -> None:
    typer.echo(text)


@memory_app.command("stats")
def stats(
    path: Path = typer.Argument(..., help="Memory directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the stats as JSON."),
) -> None:
    """Count of experiences, by source, outcome and decision."""

    @_friendly
    def run() -> None:
        data = _open(path).stats()
        if as_json:
            _echo(json.dumps(data, indent=2, sort_keys=True))
            return
        for key in ("path", "schema_version", "embedding", "count", "by_source", "by_outcome", "by_decision"):
            _echo(f"{key}: {data[key]}")

    run()


@memory_app.command("export")
def export(
    path: Path = typer.Argument(..., help="Memory directory."),
    out: Path = typer.Argument(..., help="JSONL file to write."),
) -> None:
    """Write every experience to a JSONL file (one record per line, insertion order)."""

    @_friendly
    def run() -> None:
        n = _open(path).export_jsonl(out)
        _echo(f"exported {n} experience(s) to {out}")

    run()


@memory_app.command("import")
def import_(
    path: Path = typer.Argument(..., help="Memory directory (created if missing)."),
    src: Path = typer.Argument(..., help="JSONL file written by `llmguide memory export`."),
    limit: int = typer.Option(0, help="Import at most this many records (0 = all)."),
) -> None:
    """Add the experiences of a JSONL export (re-embedded, deduplicated)."""

    @_friendly
    def run() -> None:
        from llmguide.errors import ConfigError

        if not src.is_file():
            raise ConfigError(f"No JSONL file at {src}; give a file written by `llmguide memory export`.")
        memory = _open(path, must_exist=False)
        n = memory.import_jsonl(src, limit=limit or None)
        _echo(f"imported {n} new experience(s); the memory now holds {len(memory)}")

    run()


@memory_app.command("clear")
def clear(
    path: Path = typer.Argument(..., help="Memory directory."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove every experience (the directory stays a valid, empty memory)."""

    @_friendly
    def run() -> None:
        memory = _open(path)
        if not yes and not typer.confirm(f"Remove all {len(memory)} experience(s) from {path}?"):
            _echo("nothing removed")
            return
        n = memory.clear()
        _echo(f"removed {n} experience(s) from {path}")

    run()
