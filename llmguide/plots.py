"""Learning-curve plots for run dirs and benchmarks: exports `plot_curves`.

Matplotlib with the Agg backend (no display needed), imported on call so
`import llmguide` stays light. Any method can plot `{label: (x, y)}` series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_curves"]

Series = tuple[Sequence[float], Sequence[float]]


def plot_curves(
    curves: Mapping[str, Series],
    path: str | Path,
    title: str = "",
    ylabel: str = "success rate",
    xlabel: str = "environment steps",
    *,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    hline: float | None = None,
    ylim: tuple[float, float] | None = None,
    markers: Mapping[str, Sequence[float]] | None = None,
    marker_prefix: str = "S",
) -> Path:
    """Draw one line per label (optional shaded (low, high) band per label) and save a PNG.

    ``markers`` (label -> x values) draws a dotted vertical line in the label's colour at
    each x, tagged ``S1``, ``S2``, ... (``marker_prefix``): where a tuning stage began, say.

    >>> plot_curves({"plain": ([0, 10], [0.0, 0.5])}, "/tmp/llmguide_doctest.png")  # doctest: +ELLIPSIS
    PosixPath('/tmp/llmguide_doctest.png')
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    try:
        for label, (xs, ys) in curves.items():
            (line,) = ax.plot(list(xs), list(ys), label=label, linewidth=1.8)
            if bands and label in bands:
                low, high = bands[label]
                ax.fill_between(list(xs), list(low), list(high), color=line.get_color(), alpha=0.2, linewidth=0)
            for k, x in enumerate((markers or {}).get(label, ()), start=1):
                ax.axvline(x, color=line.get_color(), linestyle=":", linewidth=1.2)
                ax.annotate(f"{marker_prefix}{k}", (x, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                            textcoords="offset points", fontsize="x-small", color=line.get_color())
        if hline is not None:
            ax.axhline(hline, color="grey", linestyle="--", linewidth=1)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if curves:
            ax.legend(loc="best", fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
