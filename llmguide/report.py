"""One comparison report for any set of runs: exports `build_report`, `compare`, `Report`,
`RunSummary`, `load_runs`.

Every method writes a run dir (``config.yaml``, ``metrics.json``, and for SB3
learners ``progress.csv``); methods name their figures differently (a
ScienceWorld ``score_mean``, a Crafter ``crafter_score``, a MiniGrid
``success_rate``), so this module reads each run into one `RunSummary` and
writes, in ``out_dir``:

- ``report.md``: a Markdown table — method (run label), env, seeds, final
  score / return / success (mean ± std over seeds), LLM calls per env step and
  per decision, throughput (env steps per second) — then the plots;
- ``learning_curves.png``: mean ± std band over the seeds of each label
  (SB3 ``progress.csv``: ``eval/success_rate``, else ``rollout/success_rate``,
  else ``rollout/ep_rew_mean``; or the run's own ``evals`` list);
- ``final_scores.png``: bars of each label's headline figure, one panel per kind;
- ``llm_cost.png``: LLM calls per step and env steps per second per label.

Runs are grouped by label: ``config.yaml``'s ``name`` if set, else the method
with its teacher or agent (``subgoal:oracle``, ``scienceworld:llm+memory``).
A folder holding run dirs (a sweep, a ``compare: plain`` run) is expanded.

Example:
    >>> from llmguide.report import compare                           # doctest: +SKIP
    >>> compare(["runs/a", "runs/b"], "runs/report")                  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from llmguide.errors import ConfigError

__all__ = ["RunSummary", "Report", "load_runs", "build_report", "compare"]

_SCORE_KEYS = ("score_mean", "crafter_score", "score")
_RETURN_KEYS = ("return_mean", "mean_return", "reward_mean", "episode_return_mean")
_CURVE_KEYS = ("eval/success_rate", "rollout/success_rate", "rollout/ep_rew_mean")


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _first(metrics: dict[str, Any], keys: Iterable[str]) -> float | None:
    for key in keys:
        value = _num(metrics.get(key))
        if value is not None:
            return value
    return None


@dataclass
class RunSummary:
    """What the report needs from one run dir, whatever the method."""

    run_dir: Path
    label: str
    method: str
    env: str
    seed: int | None
    score: float | None = None
    ret: float | None = None
    success: float | None = None
    llm_per_step: float | None = None
    llm_per_decision: float | None = None
    steps_per_s: float | None = None
    curve: tuple[list[float], list[float]] | None = None
    curve_metric: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def headline(self) -> tuple[str, float] | None:
        """The figure the bars show: score, else success rate, else return."""
        for name, value in (("score", self.score), ("success rate", self.success), ("return", self.ret)):
            if value is not None:
                return name, value
        return None


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data if isinstance(data, dict) else {}


def _read_progress(path: Path) -> tuple[tuple[list[float], list[float]] | None, str, float | None]:
    """(curve, its metric, last fps) from an SB3 progress.csv."""
    if not path.exists():
        return None, "", None
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None, "", None
    fps = [_num(r.get("time/fps")) for r in rows]
    fps_last = next((f for f in reversed(fps) if f is not None), None)
    for key in _CURVE_KEYS:
        pts = [(_num(r.get("time/total_timesteps")), _num(r.get(key))) for r in rows]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            return ([x for x, _ in pts], [y for _, y in pts]), key, fps_last
    return None, "", fps_last


def _label(config: dict[str, Any], metrics: dict[str, Any], method: str) -> str:
    if config.get("name"):
        return str(config["name"])
    detail = metrics.get("agent") or metrics.get("teacher")
    if detail is None and method == "scienceworld":
        detail = config.get("agent")
    return f"{method}:{detail}" if detail else method


def _summarize(run_dir: Path) -> RunSummary:
    from llmguide.rundir import read_json

    config = _read_yaml(run_dir / "config.yaml")
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    method = str(config.get("method") or metrics.get("method") or "run")
    env = str(metrics.get("env") or config.get("env") or "?")
    tasks = metrics.get("tasks") or config.get("tasks")
    if isinstance(tasks, list) and tasks:
        env = f"{env} ({', '.join(map(str, tasks))})"
    seed = metrics.get("seed", config.get("seed"))
    s = RunSummary(run_dir, _label(config, metrics, method), method, env, int(seed) if _num(seed) is not None else None,
                   metrics=metrics)
    s.score = _first(metrics, _SCORE_KEYS)
    s.success = _first(metrics, ("success_rate",))
    s.ret = _first(metrics, _RETURN_KEYS)
    evals = metrics.get("evals") if isinstance(metrics.get("evals"), list) else []
    if s.ret is None and evals:
        s.ret = _num(evals[-1].get("mean_return"))
    s.llm_per_step = _first(metrics, ("llm_calls_per_step",))
    teacher = metrics.get("teacher_metrics") or {}
    if s.llm_per_step is None and _num(teacher.get("llm_calls_per_1k_steps")) is not None:
        s.llm_per_step = float(teacher["llm_calls_per_1k_steps"]) / 1000.0
    usage = metrics.get("llm") if isinstance(metrics.get("llm"), dict) else metrics.get("usage")
    steps = _num(metrics.get("total_steps"))
    if s.llm_per_step is None and isinstance(usage, dict) and steps:
        s.llm_per_step = float(usage.get("calls", 0)) / steps
    if s.llm_per_step is None and method == "subgoal" and not teacher:
        s.llm_per_step = 0.0  # a plain learner asks no LLM
    s.llm_per_decision = _first(metrics, ("llm_calls_per_decision",))
    s.steps_per_s = _first(metrics, ("steps_per_s",))
    if s.steps_per_s is None and (sps := _first(metrics, ("seconds_per_step",))):
        s.steps_per_s = 1.0 / sps
    curve, metric, fps = _read_progress(run_dir / "progress.csv")
    if curve is None and evals and all("steps" in e and "success_rate" in e for e in evals):
        curve, metric = ([float(e["steps"]) for e in evals], [float(e["success_rate"]) for e in evals]), "success_rate (evals)"
    s.curve, s.curve_metric = curve, metric
    if s.steps_per_s is None:
        s.steps_per_s = fps
    return s


def _is_run(path: Path) -> bool:
    return (path / "metrics.json").exists() or (path / "progress.csv").exists()


def _expand(path: Path, depth: int = 2) -> list[Path]:
    """A run dir itself, or the run dirs inside a folder (a sweep, a ``compare: plain`` run's arms)."""
    if not path.is_dir():
        raise ConfigError(f"Run dir not found: {path}; give folders made by `llmguide run`.")
    inner = [d for d in sorted(path.iterdir()) if d.is_dir() and _is_run(d)]
    if _is_run(path):
        from llmguide.rundir import read_json

        try:
            has_arms = "arms" in read_json(path / "metrics.json")
        except Exception:  # no or unreadable metrics: report the run itself
            has_arms = False
        return inner if inner and has_arms else [path]
    if inner:
        return inner
    if depth > 0:
        return [r for d in sorted(path.iterdir()) if d.is_dir() for r in _expand(d, depth - 1)]
    return []


def load_runs(run_dirs_or_results: Iterable[Any]) -> list[RunSummary]:
    """Summaries of run dirs, or of objects with a ``run_dir`` (e.g. `llmguide.Result`)."""
    out: list[RunSummary] = []
    for item in run_dirs_or_results:
        path = Path(getattr(item, "run_dir", item))
        out += [_summarize(p) for p in _expand(path)]
    if not out:
        raise ConfigError("No runs to report; give at least one run dir (a folder with metrics.json).")
    return out


# -- aggregation ------------------------------------------------------------------
def _groups(runs: Sequence[RunSummary]) -> dict[str, list[RunSummary]]:
    groups: dict[str, list[RunSummary]] = {}
    for r in runs:
        groups.setdefault(r.label, []).append(r)
    return groups


def _stat(values: Sequence[float | None]) -> tuple[float, float] | None:
    import numpy as np

    vals = [v for v in values if v is not None]
    if not vals:
        return None
    arr = np.asarray(vals, dtype=float)
    return float(arr.mean()), float(arr.std())


def _fmt(stat: tuple[float, float] | None, n: int, digits: int = 3) -> str:
    if stat is None:
        return "–"
    mean, std = stat
    text = f"{mean:.{digits}g}"
    return f"{text} ± {std:.2g}" if n > 1 else text


def _table(runs: Sequence[RunSummary]) -> list[dict[str, Any]]:
    rows = []
    for label, members in _groups(runs).items():
        n = len(members)
        seeds = sorted({m.seed for m in members if m.seed is not None})
        rows.append({
            "method": label,
            "env": ", ".join(sorted({m.env for m in members})),
            "seeds": ", ".join(map(str, seeds)) or "–",
            "score": _fmt(_stat([m.score for m in members]), n),
            "return": _fmt(_stat([m.ret for m in members]), n),
            "success": _fmt(_stat([m.success for m in members]), n),
            "LLM calls/step": _fmt(_stat([m.llm_per_step for m in members]), n),
            "LLM calls/decision": _fmt(_stat([m.llm_per_decision for m in members]), n),
            "steps/s": _fmt(_stat([m.steps_per_s for m in members]), n),
            "runs": n,
        })
    return rows


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]).replace("|", "/") for c in cols) + " |")
    return "\n".join(lines)


# -- plots --------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _plot_curves(runs: Sequence[RunSummary], path: Path) -> Path | None:
    import numpy as np

    from llmguide.plots import plot_curves

    curves: dict[str, tuple[list[float], list[float]]] = {}
    bands: dict[str, tuple[list[float], list[float]]] = {}
    metrics = set()
    for label, members in _groups(runs).items():
        with_curve = [m for m in members if m.curve and len(m.curve[0]) > 0]
        if not with_curve:
            continue
        metrics.update(m.curve_metric for m in with_curve)
        end = min(max(m.curve[0]) for m in with_curve)  # type: ignore[index]
        grid = sorted({x for m in with_curve for x in m.curve[0] if x <= end})  # type: ignore[index]
        ys = np.array([np.interp(grid, m.curve[0], m.curve[1]) for m in with_curve])  # type: ignore[index]
        mean, std = ys.mean(axis=0), ys.std(axis=0)
        name = f"{label} (n={len(with_curve)})"
        curves[name] = (grid, mean.tolist())
        bands[name] = ((mean - std).tolist(), (mean + std).tolist())
    if not curves:
        return None
    ylabel = " / ".join(sorted(metrics))
    return plot_curves(curves, path, title="Learning curves (mean ± std over seeds)", ylabel=ylabel, bands=bands)


def _plot_bars(runs: Sequence[RunSummary], path: Path) -> Path | None:
    import numpy as np

    panels: dict[str, list[tuple[str, float, float]]] = {}
    for label, members in _groups(runs).items():
        heads = [m.headline for m in members if m.headline is not None]
        if not heads:
            continue
        kind = heads[0][0]
        vals = np.array([v for k, v in heads if k == kind], dtype=float)
        panels.setdefault(kind, []).append((label, float(vals.mean()), float(vals.std())))
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 3.2 * sum(len(v) for v in panels.values()) / max(1, len(panels))) * len(panels) / 1.3 + 1, 4.2), dpi=110, squeeze=False)
    try:
        for ax, (kind, bars) in zip(axes[0], panels.items()):
            labels = [b[0] for b in bars]
            ax.bar(range(len(bars)), [b[1] for b in bars], yerr=[b[2] for b in bars], capsize=4, color="tab:blue", alpha=0.8)
            ax.set_xticks(range(len(bars)), labels, rotation=30, ha="right", fontsize="small")
            ax.set_ylabel(f"final {kind}")
            ax.set_title(f"Final {kind} (mean ± std over seeds)", fontsize="medium")
            ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _plot_cost(runs: Sequence[RunSummary], path: Path) -> Path | None:
    groups = _groups(runs)
    labels = list(groups)
    calls = [_stat([m.llm_per_step for m in groups[label]]) for label in labels]
    speed = [_stat([m.steps_per_s for m in groups[label]]) for label in labels]
    if all(c is None for c in calls) and all(s is None for s in speed):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.3 * len(labels) + 4), 4.2), dpi=110)
    try:
        for ax, stats, title in ((axes[0], calls, "LLM calls per env step"), (axes[1], speed, "env steps per second")):
            ax.bar(range(len(labels)), [s[0] if s else 0.0 for s in stats], yerr=[s[1] if s else 0.0 for s in stats],
                   capsize=4, color="tab:orange" if "LLM" in title else "tab:green", alpha=0.8)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize="small")
            ax.set_title(title, fontsize="medium")
            if "second" in title and any(s and s[0] > 0 for s in stats):
                ax.set_yscale("log")
            ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


# -- the API ------------------------------------------------------------------------------
@dataclass
class Report:
    """A written report: its Markdown file, plots and table rows (shown inline in notebooks)."""

    path: Path
    markdown: str
    plots: list[Path]
    rows: list[dict[str, Any]]
    runs: list[RunSummary]

    def _repr_markdown_(self) -> str:
        return self.markdown.split("\n## Plots")[0]

    def show(self) -> None:
        """Display the table and the PNGs inline (Jupyter), or print the Markdown."""
        try:
            from IPython.display import Image, Markdown, display
        except ImportError:  # pragma: no cover - IPython ships with nbclient's kernel
            print(self.markdown)
            return
        display(Markdown(self._repr_markdown_()))
        for plot in self.plots:
            display(Image(filename=str(plot)))


def compare(run_dirs_or_results: Iterable[Any], out_dir: str | Path | None = None) -> Report:
    """Compare runs (dirs or results with ``run_dir``): write report.md + PNGs, return the `Report`.

    ``out_dir`` None: ``report/`` inside the single run dir, else next to the first run.
    """
    runs = load_runs(list(run_dirs_or_results) if not isinstance(run_dirs_or_results, (str, Path)) else [run_dirs_or_results])
    if out_dir is None:
        first = runs[0].run_dir
        out_dir = first / "report" if len(runs) == 1 else first.parent / f"report-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = _table(runs)
    plots = [p for p in (
        _plot_curves(runs, out / "learning_curves.png"),
        _plot_bars(runs, out / "final_scores.png"),
        _plot_cost(runs, out / "llm_cost.png"),
    ) if p is not None]
    lines = [
        "# llmguide report",
        "",
        f"{len(runs)} run(s), {len(rows)} method(s); generated {time.strftime('%Y-%m-%d %H:%M')}. "
        "Figures are mean ± std over the runs (seeds) of each method; – = not measured by that method.",
        "",
        _markdown_table(rows),
        "",
        "Score: the method's own score (ScienceWorld 0–100, Crafter score %); success: success rate; "
        "LLM calls per env step (training-time teacher calls for learners; 0 = no LLM); steps/s: env steps per second.",
        "",
        "## Plots",
        "",
    ]
    lines += [f"![{p.stem}]({p.name})" for p in plots] or ["(no plottable data)"]
    lines += ["", "## Runs", ""]
    lines += [f"- `{r.label}` seed {r.seed}: {r.run_dir}" + (f" (curve: {r.curve_metric})" if r.curve else "") for r in runs]
    markdown = "\n".join(lines) + "\n"
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(markdown)
    tmp.replace(path)
    return Report(path, markdown, plots, rows, runs)


def build_report(run_dirs: Iterable[str | Path], out_dir: str | Path) -> Path:
    """Write ``out_dir/report.md`` (table) and its PNGs for `run_dirs`; return the report path."""
    return compare(run_dirs, out_dir).path
