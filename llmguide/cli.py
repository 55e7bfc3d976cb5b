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
# Tables stay readable when the output goes to a file or a CI log (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 160)
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
    """Entries and size of the response cache (a missing file is reported, not created)."""
    from llmguide.llm import ResponseCache

    stats = ResponseCache(path).stats()
    if not stats["exists"]:
        console.print(f"no cache file at {stats['path']} (the first cached LLM call creates it)", highlight=False, soft_wrap=True)
        return
    for key in ("path", "entries", "bytes"):
        console.print(f"{key}: {stats[key]}", highlight=False)


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
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a mapping in this config.")
            node = child
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[leaf] = raw
    return config


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


#: the RunMetrics keys shown in the CLI's tables, in this order
_SHOWN = ("label", "steps", "episodes", "success", "score", "return_mean", "steps_to_target", "llm_calls",
          "llm_calls_per_1k_steps", "fallbacks", "first_option_rate", "invalid_actions", "steps_per_s", "wall_s")


def _print_runs(rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    columns = [c for c in _SHOWN if any(r.get(c) not in (None, 0) for r in rows) or c in ("label", "success")]
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[_fmt(row.get(c)) for c in columns])
    console.print(table)


def _new_run_dir(cfg: dict[str, Any], seed: int, runs_dir: Optional[Path], name: Optional[str] = None) -> Path:
    from llmguide.rundir import make_run_dir

    label = name or str(cfg["method"])
    try:
        return make_run_dir(str(cfg.get("env", "env")), label, seed, root=runs_dir)
    except OSError as err:
        where = runs_dir or os.environ.get("LLMGUIDE_RUNS_DIR", "runs")
        raise ConfigError(
            f"Cannot create a run dir under {where} ({err.strerror or err}); pass --runs-dir to a writable "
            "folder or set LLMGUIDE_RUNS_DIR."
        ) from None


def _run_prepared(prepared: Any, run_dir: Path) -> dict[str, Any]:
    from llmguide.core import run as core_run
    from llmguide.training import RunInterrupted

    try:
        metrics = core_run(prepared, run_dir).model_dump(mode="json")
    except RunInterrupted as stop:
        if stop.resumable:
            err_console.print(
                f"[yellow]interrupted[/] at {stop.progress}: the run is saved in {run_dir}; continue with "
                f"`llmguide run --resume {run_dir}`",
                highlight=False, soft_wrap=True,
            )
        else:
            err_console.print(f"[yellow]interrupted[/] at {stop.progress}; nothing to resume.", highlight=False)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        err_console.print(f"[yellow]interrupted[/] before training started; nothing to resume in {run_dir}.",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    return metrics


def _arms(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A config's `arms:` (name -> overrides) as full configs, one per arm; {} when it has none."""
    arms = cfg.get("arms")
    if arms is None:
        return {}
    if not isinstance(arms, dict) or not all(isinstance(v, dict) for v in arms.values()) or not arms:
        raise ConfigError("`arms` must map arm names to key overrides, e.g. `arms: {plain: {teacher: none}, oracle: {teacher: oracle}}`.")
    base = {k: v for k, v in cfg.items() if k != "arms"}
    return {str(name): {**base, **over} for name, over in arms.items()}


def _study(cfg: dict[str, Any], seeds: list[int], runs_dir: Optional[Path], progress: bool, resume_dir: Optional[Path] = None) -> None:
    """Run each arm (x seed) as its own run under one folder, then one report over all of them."""
    from llmguide.core import prepare
    from llmguide.report import compare
    from llmguide.rundir import read_json, write_yaml

    arms = _arms(cfg)
    prepared = {}
    for name, arm_cfg in arms.items():  # every arm is validated before anything runs
        for seed in seeds:
            try:
                prepared[(name, seed)] = prepare({**arm_cfg, "seed": seed, "name": arm_cfg.get("name") or name,
                                                  "progress": progress, "resume": resume_dir is not None})
            except ConfigError as err:
                raise ConfigError(f"arm {name!r}: {err}") from None
    parent = resume_dir or _new_run_dir(cfg, seeds[0], runs_dir, name=f"{cfg['method']}-study")
    if resume_dir is None:
        write_yaml(parent / "config.yaml", {**cfg, "seeds": seeds})
    rows = []
    for (name, seed), prep in prepared.items():
        run_dir = parent / (name if len(seeds) == 1 else f"{name}__seed{seed}")
        done = run_dir / "metrics.json"
        if resume_dir is not None and done.exists() and read_json(done).get("status") == "finished":
            rows.append(read_json(done))
            continue
        if resume_dir is not None and not (run_dir / "config.yaml").exists():
            prep.settings.resume = False
        console.print(f"[bold]arm {name}[/] (seed {seed}) -> {run_dir}", highlight=False, soft_wrap=True)
        try:
            rows.append(_run_prepared(prep, run_dir))
        except Exception as err:  # one arm's crash must not cost the others, nor vanish from the results
            rows.append(_crashed(run_dir, name, seed, prep, err))
    finished = [r for r in rows if r.get("status") != "crashed"]
    report = compare([parent], parent) if finished else None
    _print_runs(finished, title=f"{parent.name}")
    from llmguide.rundir import write_json

    write_json(parent / "results.json", {
        "runs": [{k: r.get(k) for k in _SHOWN + ("method", "env", "seed", "status", "error", "run_dir")} for r in rows],
        "crashed": sum(r.get("status") == "crashed" for r in rows),
        "report": str(report.path) if report else None, "plots": [str(p) for p in report.plots] if report else []})
    for plot in report.plots if report else []:
        console.print(f"plot: {plot}", highlight=False, soft_wrap=True)
    console.print(f"results: {parent / 'results.json'}", highlight=False, soft_wrap=True)
    console.print(f"run dir: {parent}", highlight=False, soft_wrap=True)
    crashed = [r for r in rows if r.get("status") == "crashed"]
    if crashed:
        for r in crashed:
            err_console.print(f"[red]crashed[/] {r['label']} (seed {r['seed']}): {r['error']} (traceback in "
                              f"{r['run_dir']}/error.txt; `llmguide run --resume {parent}` re-runs it)",
                              highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _crashed(run_dir: Path, name: str, seed: int, prep: Any, err: Exception) -> dict[str, Any]:
    """The results row of a run that raised, with its traceback written to ``error.txt`` in its run dir."""
    import traceback

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").write_text("".join(traceback.format_exception(err)))
    return {"label": name, "seed": seed, "status": "crashed", "method": prep.settings.method,
            "env": getattr(prep.config, "env", None),
            "error": f"{type(err).__name__}: {err}", "run_dir": str(run_dir)}


def _print_config_help(method: str) -> None:
    from rich.markup import escape

    from llmguide.config import RunSettings, describe_fields
    from llmguide.methods import method_class

    cls = method_class(method)
    for title, model in ((f"{method}: {cls.Config.__doc__ or ''}".strip(), cls.Config), ("run settings (every method)", RunSettings)):
        table = Table(title=title)
        for col in ("key", "default", "description"):
            table.add_column(col)
        for key, default, doc in describe_fields(model):
            table.add_row(escape(key), escape(default), escape(doc))
        console.print(table)


@app.command()
@friendly
def run(
    config: Optional[Path] = typer.Argument(None, help="Run config YAML (with a `method:` key)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds, e.g. 0,1,2: one run dir per seed."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run from its run dir."),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Where run dirs go (default: $LLMGUIDE_RUNS_DIR or ./runs)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar (on a terminal)."),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a config value: --set total_steps=20000 --set teacher.llm=gguf:/m.gguf (repeatable)."
    ),
    memory: Optional[Path] = typer.Option(
        None, "--memory", help="Experience-memory dir kept across runs (DiLu, ScienceWorld); same as --set memory=PATH."
    ),
    approve: bool = typer.Option(False, "--approve", help="DiLu: ask a person to approve each reflected correction."),
    help_config: bool = typer.Option(False, "--help-config", help="Print the method's config keys with defaults and docs, then exit."),
) -> None:
    """Run any method from a config: one run dir per seed (config, logs, checkpoints, plots, metrics.json)."""
    from llmguide.core import load_run_config, prepare

    show_bar = progress and sys.stderr.isatty()
    if resume is not None:
        if config is not None or seeds:
            raise ConfigError("--resume takes the run dir only (its config.yaml is reused); drop CONFIG and --seeds.")
        cfg = load_run_config(resume / "config.yaml")
        if "arms" in cfg:
            _study({k: v for k, v in cfg.items() if k != "seeds"}, list(cfg.get("seeds") or [cfg.get("seed", 0)]),
                   None, show_bar, resume_dir=resume)
            return
        metrics = _run_prepared(prepare({**cfg, "resume": True, "progress": show_bar}), resume)
        _print_runs([metrics], title=resume.name)
        console.print(f"run dir: {resume}", highlight=False, soft_wrap=True)
        return
    if config is None:
        raise ConfigError("Give a config file (e.g. `llmguide run configs/minigrid_doorkey.yaml`) or --resume RUN_DIR.")
    extra = list(overrides or [])
    if memory is not None:
        extra.append(f"memory={memory}")
    if approve:
        extra.append("approve=true")
    cfg = apply_overrides(load_run_config(config), extra)
    if help_config:
        _print_config_help(str(cfg["method"]))
        return
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()] if seeds else [int(cfg.get("seed", 0))]
    except ValueError:
        raise ConfigError(f"--seeds must be integers separated by commas, got {seeds!r}.") from None
    if "arms" in cfg:
        _study(cfg, seed_list, runs_dir, show_bar)
        return
    prepared = [prepare({**cfg, "seed": seed, "progress": show_bar}) for seed in seed_list]  # validated before any folder
    rows = []
    for prep in prepared:
        run_dir = _new_run_dir(cfg, prep.settings.seed, runs_dir)
        rows.append(_run_prepared(prep, run_dir))
        _print_runs([rows[-1]], title=run_dir.name)
        console.print(f"run dir: {run_dir}", highlight=False, soft_wrap=True)
    if len(rows) > 1:
        import numpy as np

        table = Table(title=f"{len(rows)} seeds")
        for col in ("metric", "mean ± std", "per seed"):
            table.add_column(col)
        for key in ("success", "score", "return_mean", "steps_to_target", "llm_calls", "steps_per_s"):
            values = [r.get(key) for r in rows]
            if all(isinstance(v, (int, float)) for v in values):
                arr = np.asarray(values, dtype=float)
                table.add_row(key, f"{arr.mean():.4g} ± {arr.std():.2g}", ", ".join(f"{v:.4g}" for v in arr))
        console.print(table)


# -- sweeps on Ray (llmguide/sweep.py) -------------------------------------------
@app.command()
@friendly
def sweep(
    config: Optional[Path] = typer.Argument(None, help="Run config YAML (with a `method:` key; `arms:` allowed)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Seeds: 0-9 or 0,2,5-7 (default: the config's seed)."),
    grid: Optional[list[str]] = typer.Option(None, "--grid", help="A swept key: --grid learner_kwargs.learning_rate=1e-3,3e-4 (repeatable: all combinations)."),
    address: Optional[str] = typer.Option(None, "--address", help="An existing Ray cluster (e.g. 10.0.0.1:6379); default: a local Ray instance."),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Where the sweep dir goes; on a cluster, a path every node sees (default: $LLMGUIDE_RUNS_DIR or ./runs)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted sweep from its sweep dir (finished trials are not re-run)."),
    max_failures: int = typer.Option(2, "--max-failures", min=0, help="Retries of a failed trial (a lost node included) before it is reported failed."),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", min=1, help="CPUs of the local Ray instance (default: all); ignored with --address."),
    gpu_fraction: float = typer.Option(0.25, "--gpu-fraction", min=0.0, max=1.0, help="GPU share of a trial that offloads a local GGUF (n_gpu_layers != 0)."),
    refresh: float = typer.Option(5.0, "--refresh", min=0.5, help="Seconds between live-table prints."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="Override a config value for every trial (repeatable)."),
) -> None:
    """Every (config x seed) trial as one run of the common core, as Ray Tune trials; then one report."""
    from llmguide.core import load_run_config
    from llmguide.report import compare
    from llmguide.rundir import write_json
    from llmguide.sweep import make_trials, parse_seeds, run_sweep

    if resume is not None:
        if config is not None or seeds or grid or overrides:
            raise ConfigError("--resume takes the sweep dir only (its sweep.yaml is reused); drop CONFIG, --seeds, --grid, --set.")
        trials, sweep_dir = None, resume
    else:
        if config is None:
            raise ConfigError("Give a config file (e.g. `llmguide sweep configs/minigrid_doorkey.yaml --seeds 0-9`) or --resume SWEEP_DIR.")
        cfg = apply_overrides(load_run_config(config), list(overrides or []))
        seed_list = parse_seeds(seeds) if seeds else [int(cfg.get("seed", 0))]
        arms = _arms(cfg) or {str(cfg.get("name") or cfg["method"]): cfg}
        trials = make_trials(arms, seed_list, list(grid or []), gpu_fraction=gpu_fraction)  # all validated first
        sweep_dir = _new_run_dir(cfg, seed_list[0], runs_dir, name=f"{cfg['method']}-sweep")
        console.print(f"sweep of {len(trials)} trial(s) -> {sweep_dir}", highlight=False, soft_wrap=True)
    result = run_sweep(trials, sweep_dir, address=address, max_failures=max_failures, num_cpus=num_cpus,
                       resume=resume is not None, console=console, refresh_s=refresh)
    report = None
    if any(r["status"] == "finished" for r in result.rows):
        report = compare([result.sweep_dir], result.sweep_dir)
    write_json(result.sweep_dir / "results.json", {
        "trials": result.rows, "report": str(report.path) if report else None,
        "plots": [str(p) for p in report.plots] if report else []})
    _print_runs([{**r, "label": r["trial"]} for r in result.rows if r["status"] == "finished"], title=result.sweep_dir.name)
    for row in result.rows:
        if row["status"] != "finished":
            err_console.print(f"[red]{row['status']}[/] {row['trial']} after {row['attempts']} attempt(s): "
                              f"{row['error'] or 'not run to the end'}", highlight=False, soft_wrap=True)
    if report is not None:
        console.print(f"report: {report.path}", highlight=False, soft_wrap=True)
    console.print(f"results: {result.sweep_dir / 'results.json'}", highlight=False, soft_wrap=True)
    if result.unfinished:
        err_console.print(f"continue with `llmguide sweep --resume {result.sweep_dir}`", highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    if result.failed:
        raise typer.Exit(1)


@app.command()
@friendly
def methods(method: Optional[str] = typer.Argument(None, help="A method name: print its config keys.")) -> None:
    """List the methods, or one method's config keys with defaults and docs."""
    from llmguide.methods import METHODS, method_class

    if method is not None:
        _print_config_help(method)
        return
    table = Table(title="Methods")
    table.add_column("method")
    table.add_column("kind")
    table.add_column("config")
    for name in METHODS:
        cls = method_class(name)
        table.add_row(name, cls.Config.kind, (cls.Config.__doc__ or "").strip().splitlines()[0])  # type: ignore[attr-defined]
    console.print(table)


@app.command("eval")
@friendly
def eval_run(
    run_dir: Path = typer.Argument(..., help="A run dir made by `llmguide run`."),
    episodes: int = typer.Option(20, help="Evaluation episodes."),
    deterministic: Optional[bool] = typer.Option(None, "--deterministic/--stochastic", help="Greedy or sampled actions (default: the run's setting)."),
) -> None:
    """Evaluate a run: a trained policy on the plain env (no teacher, no LLM), or an LLM agent on fixed seeds."""
    from llmguide.core import evaluate

    import yaml

    cfg_path = run_dir / "config.yaml"
    is_study = cfg_path.is_file() and "arms" in (yaml.safe_load(cfg_path.read_text()) or {})
    runs = sorted(d for d in run_dir.iterdir() if (d / "config.yaml").exists()) if is_study else [run_dir]
    rows = []
    for one in runs:
        out = evaluate(one, episodes=episodes, deterministic=deterministic)
        rows.append({"label": one.name, "episodes": out["episodes"], "success": out["success"], "score": out["score"],
                     "return_mean": out["return_mean"]})
    _print_runs(rows, title=f"eval · {run_dir.name} · {episodes} episodes")
    console.print(f"eval: {', '.join(str(r / 'eval.json') for r in runs)}", highlight=False, soft_wrap=True)


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
