"""The ``llmguide`` command line.

Each command is a thin shell over the Python API. Errors that a user can fix
(``LLMGuideError``) are printed as one line, without a traceback, exit code 2.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from llmguide.errors import ConfigError, LLMGuideError

app = typer.Typer(help="LLMs guiding RL agents: teachers, LLM agents, runs and reports.", no_args_is_help=True)
cache_app = typer.Typer(help="The persistent LLM response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
console = Console()
err_console = Console(stderr=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print an ``LLMGuideError`` as one readable line and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LLMGuideError as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


# -- models -------------------------------------------------------------------
@app.command()
@friendly
def models() -> None:
    """List the model specs usable here (embedded model, GPU build, OpenAI key)."""
    from llmguide.llm import gpu_offload_supported, smollm2_path

    table = Table(title="LLM backends")
    table.add_column("spec")
    table.add_column("status")
    try:
        path = smollm2_path()
        table.add_row("smollm2", f"ok: {path} ({path.stat().st_size / 1e6:.0f} MB)")
    except LLMGuideError as err:
        table.add_row("smollm2", f"missing: {err}")
    gpu = gpu_offload_supported()
    table.add_row(
        "gguf:PATH",
        "llama.cpp build with GPU offload (n_gpu_layers=-1 by default)" if gpu else "CPU-only llama.cpp build (`make gpu` rebuilds with CUDA)",
    )
    key = "set" if os.environ.get("OPENAI_API_KEY") else "not set (local servers need none)"
    table.add_row("openai:MODEL[@URL]", f"OPENAI_API_KEY {key}")
    console.print(table)


@app.command()
@friendly
def ask(
    spec: str = typer.Argument(..., help="Model spec: smollm2, gguf:PATH, openai:MODEL[@URL]."),
    prompt: str = typer.Argument(..., help="The question."),
    max_tokens: int = typer.Option(128, help="Completion token cap."),
    temperature: float = typer.Option(0.0, help="Sampling temperature (0 = greedy, cached)."),
) -> None:
    """One answer from a model, for a quick check."""
    from llmguide.llm import METER, load

    llm = load(spec, max_tokens=max_tokens, temperature=temperature)
    answer = llm.invoke(prompt)
    console.print(answer.content, highlight=False)
    snap = METER.snapshot()
    err_console.print(
        f"[dim]{snap.prompt_tokens} prompt + {snap.completion_tokens} completion tokens, "
        f"{snap.latency_ms_mean:.0f} ms, cache hit: {bool(snap.cache_hits)}[/]"
    )


serve_app = typer.Typer(help="Serve models: `llmguide serve --model ...` (a GGUF, OpenAI-compatible) or `llmguide serve annotator` (ONI).")
app.add_typer(serve_app, name="serve")


@serve_app.callback(invoke_without_command=True)
@friendly
def serve(
    ctx: typer.Context,
    model: str = typer.Option("smollm2", help="smollm2, a GGUF path, or gguf:PATH."),
    host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000, help="TCP port."),
    n_gpu_layers: int = typer.Option(0, help="Layers to offload to the GPU (-1 = all)."),
    n_ctx: int = typer.Option(4096, help="Context length."),
    model_alias: Optional[str] = typer.Option(None, help="Model name clients use (default: file stem, or smollm2)."),
) -> None:
    """Serve a GGUF over an OpenAI-compatible HTTP API (llama-cpp-python's server)."""
    if ctx.invoked_subcommand is not None:
        return
    from llmguide.serve import run_server

    run_server(model=model, host=host, port=port, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, model_alias=model_alias)


# -- ONI annotation server (teachers/oni) ------------------------------------------
@serve_app.command("annotator")
@friendly
def serve_annotator(
    llm: str = typer.Option("smollm2", help="LLM spec that labels captions: smollm2, gguf:PATH, openai:MODEL or openai:MODEL@URL."),
    db: Path = typer.Option(Path("oni_labels.sqlite"), help="SQLite label store (created if missing; survives restarts)."),
    host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
    port: int = typer.Option(8765, help="TCP port."),
    queue_size: int = typer.Option(4096, help="Bounded queue of captions waiting for a label (overflow is dropped, counted)."),
    batch_size: int = typer.Option(8, help="Captions labelled per LLM call."),
    prefs_per_batch: int = typer.Option(2, help="Pairwise preferences asked per batch (0 = none)."),
    threads: Optional[int] = typer.Option(None, help="llama.cpp threads for in-process GGUF models."),
) -> None:
    """ONI annotation server: POST /captions, GET /labels?since=, /health, /stats."""
    from llmguide.teachers.oni.server import AnnotatorSettings, run_annotator

    console.print(f"ONI annotator on http://{host}:{port} (llm={llm}, db={db})", highlight=False)
    run_annotator(AnnotatorSettings(llm=llm, db=str(db), host=host, port=port, queue_size=queue_size,
                                    batch_size=batch_size, prefs_per_batch=prefs_per_batch, threads=threads))


# -- cache --------------------------------------------------------------------
@cache_app.command("stats")
@friendly
def cache_stats(path: Optional[Path] = typer.Option(None, help="Cache file (default: ~/.cache/llmguide/responses.sqlite).")) -> None:
    """Entries and size of the response cache."""
    from llmguide.llm import ResponseCache

    stats = ResponseCache(path).stats()
    for key in ("path", "entries", "bytes"):
        console.print(f"{key}: {stats[key]}")


@cache_app.command("clear")
@friendly
def cache_clear(path: Optional[Path] = typer.Option(None, help="Cache file (default: ~/.cache/llmguide/responses.sqlite).")) -> None:
    """Delete the response cache file (safe: it only holds cached answers)."""
    from llmguide.llm.cache import default_cache_path, remove_cache_file

    target = path or default_cache_path()
    removed = remove_cache_file(target)
    console.print(f"removed {len(removed)} file(s) at {target}" if removed else f"nothing to remove at {target}")


# -- environments -------------------------------------------------------------
@app.command()
@friendly
def envs() -> None:
    """List the environments llmguide can describe in words."""
    from llmguide.envs import list_envs

    rows = list_envs()
    table = Table(title="Environments")
    table.add_column("id", no_wrap=True)
    table.add_column("family")
    table.add_column("description")
    for row in rows:
        table.add_row(str(row.get("id")), str(row.get("family", "")), str(row.get("description", "")))
    console.print(table)


# -- runs ---------------------------------------------------------------------
#: method -> "module:function" evaluating a finished run dir without its teacher/LLM.
EVALUATORS: dict[str, str] = {"subgoal": "llmguide.experiment:evaluate_run_dir"}


def _load_config(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({err}).") from None
    if not isinstance(config, dict) or "method" not in config:
        raise ConfigError(f"{path} must be a mapping with a `method` key (e.g. `method: subgoal`).")
    return config


def apply_overrides(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides; dotted keys reach into nested mappings, values parse as YAML."""
    import copy

    import yaml

    config = copy.deepcopy(config)
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. --set total_steps=20000), got {item!r}.")
        *parents, leaf = key.strip().split(".")
        node = config
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a mapping in this config.")
            node = child
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[leaf] = raw
    return config


def _scalar_rows(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested metrics into (key, value) rows; lists (curves, tables) are left out."""
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_scalar_rows(value, name + "/"))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        elif isinstance(value, (int, str, bool)) or value is None:
            rows.append((name, str(value)))
    return rows


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    """A runner's `table` (list of row dicts) as a table, then the key scalars."""
    rows = metrics.get("table")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        table = Table(title=title)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        for col in columns:
            table.add_column(str(col))
        for row in rows:
            table.add_row(*[f"{row.get(c):.3g}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns])
        console.print(table)
    else:
        table = Table(title=title)
        table.add_column("metric")
        table.add_column("value")
        for key, value in _scalar_rows({k: v for k, v in metrics.items() if k not in ("table", "arms")}):
            table.add_row(key, value)
        console.print(table)
    if metrics.get("plot"):
        console.print(f"learning curve: {metrics['plot']}", highlight=False, soft_wrap=True)


def _run_one(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from llmguide.rundir import write_json
    from llmguide.runners import get_runner

    runner = get_runner(str(config["method"]))
    try:
        metrics = runner(config, run_dir)
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted[/]: checkpoint kept in {run_dir}; continue with "
            f"`llmguide run --resume {run_dir}`",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    write_json(run_dir / "metrics.json", metrics)
    _print_metrics(metrics, title=f"{run_dir.name}")
    console.print(f"run dir: {run_dir}", highlight=False, soft_wrap=True)
    return metrics


@app.command()
@friendly
def run(
    config: Optional[Path] = typer.Argument(None, help="Run config YAML (with a `method:` key)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds for a small sweep, e.g. 0,1,2."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run from its run dir."),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Where run dirs go (default: $LLMGUIDE_RUNS_DIR or ./runs)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar while training (on a terminal)."),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a config value: --set total_steps=20000 --set teacher.llm=gguf:/m.gguf (repeatable)."
    ),
    memory: Optional[Path] = typer.Option(
        None, "--memory", help="Experience-memory dir kept across runs (DiLu, ScienceWorld); same as --set memory=PATH."
    ),
    approve: bool = typer.Option(False, "--approve", help="DiLu: ask a person to approve each reflected correction."),
) -> None:
    """Train from a config: one run dir per seed (config, logs, checkpoints, plots, metrics.json)."""
    from llmguide.rundir import make_run_dir, write_yaml

    if resume is not None:
        if config is not None or seeds:
            raise ConfigError("--resume takes the run dir only (its config.yaml is reused); drop CONFIG and --seeds.")
        cfg = _load_config(resume / "config.yaml")
        cfg["resume"] = True
        cfg["progress_bar"] = progress and sys.stderr.isatty()
        _run_one(cfg, resume)
        return
    if config is None:
        raise ConfigError("Give a config file (e.g. `llmguide run configs/minigrid_doorkey.yaml`) or --resume RUN_DIR.")
    extra = list(overrides or [])
    if memory is not None:
        extra.append(f"memory={memory}")
    if approve:
        extra.append("approve=true")
    cfg = apply_overrides(_load_config(config), extra)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()] if seeds else [int(cfg.get("seed", 0))]
    except ValueError:
        raise ConfigError(f"--seeds must be integers separated by commas, got {seeds!r}.") from None
    from llmguide.runners import get_runner

    get_runner(str(cfg["method"]))  # unknown methods fail before any folder is made
    results = []
    for seed in seed_list:
        one = dict(cfg, seed=seed)
        run_dir = make_run_dir(str(one.get("env", "env")), str(one["method"]), seed, root=runs_dir)
        write_yaml(run_dir / "config.yaml", one)
        one["progress_bar"] = progress and sys.stderr.isatty()
        results.append((seed, _run_one(one, run_dir)))
    if len(results) > 1:
        import numpy as np

        table = Table(title=f"{len(results)} seeds")
        table.add_column("metric")
        table.add_column("mean ± std")
        table.add_column("per seed")
        per_key: dict[str, list[float]] = {}
        for _, metrics in results:
            for key, value in _scalar_rows({k: v for k, v in metrics.items() if k not in ("table", "arms")}):
                try:
                    per_key.setdefault(key, []).append(float(value))
                except ValueError:
                    continue
        for key, values in per_key.items():
            if len(values) == len(results) and key != "seed":
                arr = np.asarray(values)
                table.add_row(key, f"{arr.mean():.4g} ± {arr.std():.2g}", ", ".join(f"{v:.4g}" for v in values))
        console.print(table)


@app.command("eval")
@friendly
def eval_run(
    run_dir: Path = typer.Argument(..., help="A run dir made by `llmguide run`."),
    episodes: int = typer.Option(100, help="Evaluation episodes."),
    deterministic: Optional[bool] = typer.Option(None, "--deterministic/--stochastic", help="Greedy or sampled actions (default: the run's setting)."),
) -> None:
    """Evaluate a trained run on the plain env: no teacher, no LLM."""
    import importlib

    from llmguide.rundir import write_json

    cfg = _load_config(run_dir / "config.yaml")
    target = EVALUATORS.get(str(cfg["method"]))
    if target is None:
        raise ConfigError(f"`llmguide eval` does not support method {cfg['method']!r} yet (supported: {', '.join(EVALUATORS)}).")
    module, _, name = target.partition(":")
    out = getattr(importlib.import_module(module), name)(run_dir, episodes=episodes, deterministic=deterministic)
    write_json(run_dir / "eval.json", out)
    _print_metrics(out, title=f"eval · {run_dir.name} · {episodes} episodes, no teacher")


# -- memory (memory/cli.py: stats, export, import, clear) ---------------------
from llmguide.memory.cli import memory_app  # noqa: E402  (light: chromadb loads when a command runs)

app.add_typer(memory_app, name="memory")


# -- report (llmguide/report.py) ------------------------------------------------
@app.command()
@friendly
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run dirs (or folders of run dirs) to compare."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: next to the runs)."),
) -> None:
    """Compare runs of any methods: report.md (table) + PNG plots (curves, final scores, LLM cost)."""
    from llmguide.report import compare

    result = compare(run_dirs, out)
    table = Table(title=f"{len(result.runs)} run(s)")
    for col in result.rows[0]:
        table.add_column(str(col))
    for row in result.rows:
        table.add_row(*[str(v) for v in row.values()])
    console.print(table)
    console.print(f"report: {result.path}", highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
