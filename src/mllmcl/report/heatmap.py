"""Heatmap of one method's accuracy matrix, as a PNG for report.md.

Rows are "after <task>" (training order, with an optional "zero-shot" row on top), columns the tasks; the
colour scale is fixed to 0–100 % so that two methods' pictures compare at a glance. Rows not computed yet
(a run in progress) stay blank. matplotlib is imported inside the function, so `import mllmcl` stays fast;
the figure is drawn on its own Agg canvas (no pyplot, no global backend switch, nothing left open), which
works on a machine without a display.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mllmcl.report.figures import DPI, save_png

CMAP = "viridis"


def _grid(matrix: Sequence[Sequence[float | None]], tasks: Sequence[str],
          zero_shot: Sequence[float] | None) -> tuple[np.ma.MaskedArray, list[str]]:
    """The cells to draw (missing rows and None cells masked) and their row labels."""
    rows = ([list(zero_shot)] if zero_shot is not None else []) + [list(row) for row in matrix]
    labels = (["zero-shot"] if zero_shot is not None else []) + [f"after {task}" for task in tasks]
    values = np.full((len(labels), len(tasks)), np.nan)
    for i, row in enumerate(rows[: len(labels)]):
        for j, value in enumerate(row[: len(tasks)]):
            if value is not None:
                values[i, j] = float(value)
    return np.ma.masked_invalid(values), labels


def _text_colour(rgba: Sequence[float]) -> str:
    """Black on light cells, white on dark ones (perceived luminance of the cell colour)."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def save_heatmap(matrix: Sequence[Sequence[float | None]], tasks: Sequence[str], path: str | Path, title: str,
                 zero_shot: Sequence[float] | None = None) -> Path:
    """Draw `matrix` (rows = after each training step, possibly fewer than tasks) as an annotated heatmap and
    write it atomically to `path` (PNG). Returns the path."""
    # matplotlib loads only when a picture is drawn: the CLI imports the report modules at start
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    values, labels = _grid(matrix, tasks, zero_shot)
    cmap, norm = colormaps[CMAP].with_extremes(bad="#f2f2f2"), Normalize(vmin=0.0, vmax=100.0)
    fig = Figure(figsize=(2.2 + 0.85 * len(tasks), 1.3 + 0.45 * len(labels)), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto")
    for (i, j), value in np.ndenumerate(values.filled(np.nan)):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8,
                    color=_text_colour(cmap(norm(value))))
    if zero_shot is not None:  # the reference row is not a training step: set it apart
        ax.axhline(0.5, color="white", linewidth=3)
    ax.set_xticks(range(len(tasks)), labels=list(tasks))
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    return save_png(fig, path, DPI)
