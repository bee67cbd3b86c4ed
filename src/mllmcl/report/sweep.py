"""The report of a sweep: mean ± std per method over its runs, per-task final accuracy, and a picture of the
spread of each method across the cells (task orders × seeds). Reads sweep.json and results.json only."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.eval.aggregate import mean_std
from mllmcl.eval.cl_metrics import METRIC_NAMES
from mllmcl.eval.results import Results
from mllmcl.report.tables import markdown_table as _table
from mllmcl.report.tables import plain_table, replay_table
from mllmcl.report.figures import save_png

SHOWN = ("MFN", "MAA", "BWT", "Forgetting", "FWT", "MFT")


def _rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    header = ["method", "n", *SHOWN, "routing"]
    rows = []
    for name, stats in summary["methods"].items():
        n = max((stats[m]["n"] for m in METRIC_NAMES), default=0) or (stats.get("routing") or {}).get("n", 0)
        rows.append([name, str(n), *(mean_std(stats[m]) for m in SHOWN), mean_std(stats.get("routing"))])
    return header, rows


def sweep_table(summary: dict) -> str:
    """The plain-text table for the terminal: mean ± std of each metric per method, and n."""
    return plain_table(*_rows(summary))


def sweep_markdown(summary: dict, plot: str | None = None) -> str:
    grid, methods = summary["grid"], summary["methods"]
    n_runs = len(summary["runs"])
    parts = [f"# Sweep: {grid.get('orders')} task order(s) × {grid.get('seeds')} seed(s) = {n_runs} runs",
             "",
             "Each cell is an ordinary run folder (`runs/`); every figure is mean ± sample std over the runs in which "
             "the method finished (n), with the 95% confidence half-width (Student's t) in sweep.json.",
             "", "## Metrics", ""]
    parts += [_table(*_rows(summary)), ""]
    paired = replay_table(list(methods), lambda name, metric: mean_std(methods[name][metric]))
    if paired:
        parts += ["## With and without replay (the paper's layout)", "", paired, ""]
    tasks = list(dict.fromkeys(t for stats in methods.values() for t in stats["final"]))
    parts += ["## Final accuracy per task", "", _table(["method", *tasks], [
        [name, *(mean_std(stats["final"].get(t)) for t in tasks)] for name, stats in methods.items()]), ""]
    parts += ["## Format-valid answers at the end (%)", "",
              "The share of answers in their question's answer format, right or wrong: a low value means the "
              "method forgot how to answer, not only what.", "",
              _table(["method", *tasks], [[name, *(mean_std(stats["format_valid"].get(t)) for t in tasks)]
                                          for name, stats in methods.items()]), ""]
    parts += ["## Cells", "", _table(["run", "seed", "order", "tasks in training order"], [
        [c["run"], str(c["seed"]), str(c["order"]), ", ".join(c["tasks"])] for c in summary["cells"]]), ""]
    if plot:
        parts += ["## Spread across cells", "", f"![spread]({plot})", ""]
    return "\n".join(parts)


def spread_plot(runs: Sequence[Results], path: Path, metrics: Sequence[str] = ("MFN", "BWT")) -> Path:
    """One panel per metric: each method's value in every run, one dot per run (coloured by task order), with
    the mean as a bar."""
    from matplotlib.figure import Figure  # loads only when the picture is drawn, as in report/heatmap.py

    methods = list(dict.fromkeys(m for r in runs for m in r.methods))
    orders = list(dict.fromkeys(r.run.order for r in runs))
    figure = Figure(figsize=(1.2 + 1.1 * len(methods), 3.2 * len(metrics)), dpi=120)
    for row, metric in enumerate(metrics):
        axes = figure.add_subplot(len(metrics), 1, row + 1)
        for i, method in enumerate(methods):
            values = [(r.run.order, (r.methods[method].metrics or {}).get(metric) if method in r.methods else None)
                      for r in runs]
            values = [(o, v) for o, v in values if v is not None]
            if not values:
                continue
            for order, value in values:
                colour = f"C{orders.index(order) % 10}"
                axes.plot(i + 0.15 * (orders.index(order) - (len(orders) - 1) / 2) / max(1, len(orders)),
                          value, "o", color=colour, markersize=5,
                          label=str(order) if i == 0 or method == methods[0] else None)
            mean = sum(v for _, v in values) / len(values)
            axes.hlines(mean, i - 0.3, i + 0.3, colors="black", linewidth=1.5)
        axes.set_xticks(range(len(methods)))
        axes.set_xticklabels(methods, rotation=20, ha="right", fontsize=8)
        axes.set_ylabel(metric)
        axes.grid(axis="y", alpha=0.3)
        if row == 0 and len(orders) > 1:
            handles, labels = axes.get_legend_handles_labels()
            unique = dict(zip(labels, handles))
            axes.legend(unique.values(), unique.keys(), title="order", fontsize=7, title_fontsize=7, loc="best")
    figure.tight_layout()
    return save_png(figure, path)
