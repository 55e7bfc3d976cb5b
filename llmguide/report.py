"""One comparison report for any set of runs: exports `build_report`, `compare`, `Report`,
`RunSummary`, `load_runs`.

Every method ends its run with the same record (`llmguide.record.RunMetrics`
in ``metrics.json``), so this module reads only that schema — no per-method
keys — and writes, in ``out_dir``:

- ``report.md``: a Markdown table — run label, env, seeds, success and score
  (IQM with a 95% stratified-bootstrap interval over seeds, `llmguide.stats`),
  return (mean ± std), steps to the target (IQM, a run that never reached it
  counted at its budget), LLM calls per 1k env
  steps, cache hit rate, fallbacks, invalid actions, env steps per second —
  then the plots;
  then, where the LLM chose among listed options, one row per call site of
  ``choose``: mode, first-option rate beside chance, fallbacks;
- ``learning_curves.png``: mean ± std band over the seeds of each label, from
  each record's `curve` (success where measured, else score, else return);
- ``final_scores.png``: bars of each label's headline figure, one panel per kind;
- ``llm_cost.png``: LLM calls per 1k env steps and env steps per second per label.

Runs are grouped by their label (config `name`, else method and variant). A
folder holding run dirs (seeds, the arms of a study) is expanded.

Example:
    >>> from llmguide.report import compare                           # doctest: +SKIP
    >>> compare(["runs/a", "runs/b"], "runs/report")                  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from llmguide.errors import ConfigError
from llmguide.record import RunMetrics, merge_choices

__all__ = ["RunSummary", "Report", "load_runs", "build_report", "compare"]


@dataclass
class RunSummary:
    """One run dir and its record."""

    run_dir: Path
    metrics: RunMetrics

    @property
    def label(self) -> str:
        return self.metrics.label

    @property
    def seed(self) -> int:
        return self.metrics.seed

    @property
    def curve(self) -> tuple[str, list[float], list[float]] | None:
        """(figure, steps, values) of the learning curve: success, else score, else return."""
        points = self.metrics.curve
        for key in ("success", "score", "return_mean"):
            pts = [(p.steps, getattr(p, key)) for p in points if getattr(p, key) is not None]
            if pts:
                return key, [float(x) for x, _ in pts], [float(y) for _, y in pts]
        return None

    @property
    def headline(self) -> tuple[str, float] | None:
        """The figure the bars show: score, else success rate, else return."""
        m = self.metrics
        for name, value in (("score", m.score), ("success rate", m.success), ("return", m.return_mean)):
            if value is not None:
                return name, float(value)
        return None


def _summarize(run_dir: Path) -> RunSummary:
    import json

    from pydantic import ValidationError

    path = run_dir / "metrics.json"
    try:
        return RunSummary(run_dir, RunMetrics.model_validate(json.loads(path.read_text())))
    except (ValidationError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"{path} is not a llmguide run record ({str(err).splitlines()[0]}); re-run it with `llmguide run` "
            "(records from before the common schema cannot be reported)."
        ) from None


def _is_run(path: Path) -> bool:
    return (path / "metrics.json").exists()


def _expand(path: Path, depth: int = 2) -> list[Path]:
    """A run dir itself, or the run dirs inside a folder (seeds, a study's arms), two levels deep."""
    if not path.is_dir():
        raise ConfigError(f"Run dir not found: {path}; give folders made by `llmguide run`.")
    if _is_run(path):
        return [path]
    found = []
    for child in sorted(d for d in path.iterdir() if d.is_dir()):
        if _is_run(child):
            found.append(child)
        elif depth > 0:
            found += _expand(child, depth - 1)
    return found


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


def _iqm(values: Sequence[float | None]) -> str:
    """IQM with its 95% stratified-bootstrap interval (`llmguide.stats`) over the runs that have the figure."""
    from llmguide.stats import iqm_interval

    present = [float(v) for v in values if v is not None]
    return str(iqm_interval(present)) if present else "–"


def _steps_to_target(ms: Sequence[RunMetrics]) -> str:
    """IQM [95% CI] of the step the target was reached, a run that never reached it counted at its
    budget (so the figure is a lower bound for it), and how many reached it."""
    if not any(m.kind == "trained" for m in ms):
        return "–"
    reached = [m.steps_to_target for m in ms if m.steps_to_target is not None]
    censored = [m.steps_to_target if m.steps_to_target is not None else m.steps for m in ms]
    return f"{_iqm(censored)} ({len(reached)}/{len(ms)} reached)"


def _table(runs: Sequence[RunSummary]) -> list[dict[str, Any]]:
    rows = []
    for label, members in _groups(runs).items():
        n = len(members)
        ms = [m.metrics for m in members]
        seeds = sorted({m.seed for m in ms})
        rows.append({
            "run": label,
            "env": ", ".join(sorted({m.env for m in ms})),
            "seeds": ", ".join(map(str, seeds)),
            "success": _iqm([m.success for m in ms]),
            "score": _iqm([m.score for m in ms]),
            "return": _fmt(_stat([m.return_mean for m in ms]), n),
            "steps": _fmt(_stat([float(m.steps) for m in ms]), n),
            "steps to target": _steps_to_target(ms),
            "LLM calls/1k steps": _fmt(_stat([m.llm_calls_per_1k_steps for m in ms]), n),
            "cache hits": _fmt(_stat([m.cache_hit_rate if m.llm_calls else None for m in ms]), n),
            "fallbacks": _fmt(_stat([float(m.fallbacks) for m in ms]), n),
            "first option": _fmt(_stat([m.first_option_rate for m in ms]), n),
            "invalid": _fmt(_stat([float(m.invalid_actions) for m in ms]), n),
            "steps/s": _fmt(_stat([m.steps_per_s for m in ms]), n),
            "runs": n,
        })
    return rows


def _choice_table(runs: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """Per label and call site of ``choose``: how the choices were made, pooled over the seeds."""
    rows = []
    for label, members in _groups(runs).items():
        for site, stats in merge_choices([m.metrics.choices for m in members]).items():
            options = stats["options_mean"]
            rows.append({
                "run": label,
                "call site": site,
                "choices": stats["calls"],
                "mode": ", ".join(f"{mode} {n}" for mode, n in sorted(stats["modes"].items())),
                "first option": f"{stats['first_option_rate']:.2f}" if stats["first_option_rate"] is not None else "–",
                "chance (1/N)": f"{1 / options:.2f}" if options else "–",
                "fallbacks": stats["fallbacks"],
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
    figures = set()
    for label, members in _groups(runs).items():
        with_curve = [c for c in (m.curve for m in members) if c is not None and c[1]]
        if not with_curve:
            continue
        figures.update(c[0] for c in with_curve)
        end = min(max(c[1]) for c in with_curve)
        grid = sorted({x for c in with_curve for x in c[1] if x <= end})
        ys = np.array([np.interp(grid, c[1], c[2]) for c in with_curve])
        mean, std = ys.mean(axis=0), ys.std(axis=0)
        name = f"{label} (n={len(with_curve)})"
        curves[name] = (grid, mean.tolist())
        bands[name] = ((mean - std).tolist(), (mean + std).tolist())
    if not curves:
        return None
    ylabel = " / ".join(sorted(figures))
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
    calls = [_stat([m.metrics.llm_calls_per_1k_steps for m in groups[label]]) for label in labels]
    speed = [_stat([m.metrics.steps_per_s for m in groups[label]]) for label in labels]
    if all(c is None for c in calls) and all(s is None for s in speed):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.3 * len(labels) + 4), 4.2), dpi=110)
    try:
        for ax, stats, title in ((axes[0], calls, "LLM calls per 1k env steps"), (axes[1], speed, "env steps per second")):
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
        "Success, score and steps to target: interquartile mean (IQM) over the runs (seeds) of each method "
        "with its 95% stratified-bootstrap interval in brackets (Agarwal et al., 2021); other figures: mean ± std; "
        "– = not measured by that method.",
        "",
        _markdown_table(rows),
        "",
        "Success: success rate of the final evaluation (trained methods: the policy alone, no LLM); score: the env's "
        "own score (ScienceWorld 0–100, Crafter score %); LLM calls per 1k env steps (training-time teacher calls "
        "for learners; 0 = no LLM); fallbacks: LLM answers replaced by the explicit fallback; steps/s: env steps per second.",
        "",
        "## Plots",
        "",
    ]
    lines += [f"![{p.stem}]({p.name})" for p in plots] or ["(no plottable data)"]
    choice_rows = _choice_table(runs)
    if choice_rows:
        lines += ["", "## LLM choices", "",
                  "How each call site of `choose` picked among its listed options, over all seeds: the mode that "
                  "answered (score = likelihood of each option; generate/shuffle = constrained generation), the share "
                  "won by the option listed first beside chance (1/N for N options), and explicit fallbacks.", "",
                  _markdown_table(choice_rows)]
    lines += ["", "## Runs", ""]
    lines += [f"- `{r.label}` seed {r.seed}: {r.run_dir}" + (f" (curve: {r.curve[0]})" if r.curve else "") for r in runs]
    markdown = "\n".join(lines) + "\n"
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(markdown)
    tmp.replace(path)
    return Report(path, markdown, plots, rows, runs)


def build_report(run_dirs: Iterable[str | Path], out_dir: str | Path) -> Path:
    """Write ``out_dir/report.md`` (table) and its PNGs for `run_dirs`; return the report path."""
    return compare(run_dirs, out_dir).path
