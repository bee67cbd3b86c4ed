"""Pictures written beside results: a matplotlib Figure (its own Agg canvas: no pyplot, no global backend,
works without a display) saved as a PNG atomically, so a killed write leaves no half image."""
from __future__ import annotations

import io
from pathlib import Path

from mllmcl.core.io import write_bytes_atomic

DPI = 120


def save_png(figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write `figure` to `path` as a PNG (atomically) and return the path."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def serving_plot(report: dict, path: str | Path) -> Path:
    """`mllmcl bench serve`'s figures: requests/s and p95 latency against concurrent clients, served, with
    offline batched answering as the line a server would reach with no overhead."""
    from matplotlib.figure import Figure  # loads only when the picture is drawn, as in report/heatmap.py

    levels = report["levels"]
    clients = [level["concurrency"] for level in levels]
    figure = Figure(figsize=(8, 3.2))
    rate, latency = figure.subplots(1, 2)
    rate.plot(clients, [level["requests_per_second"] for level in levels], "o-", label="served")
    rate.axhline(report["offline_requests_per_second"], color="black", linestyle="--", label="offline, one call")
    rate.set(xlabel="concurrent clients", ylabel="requests/s", xscale="log", ylim=(0, None))
    rate.legend(fontsize=8)
    latency.plot(clients, [level["p95_ms"] for level in levels], "o-", color="C1", label="p95")
    latency.plot(clients, [level["p50_ms"] for level in levels], "o:", color="C1", label="p50")
    latency.set(xlabel="concurrent clients", ylabel="latency (ms)", xscale="log", ylim=(0, None))
    latency.legend(fontsize=8)
    for axes in (rate, latency):
        axes.set_xticks(clients, labels=[str(c) for c in clients])
        axes.grid(alpha=0.3)
    figure.suptitle(f"served / offline at {clients[-1]} clients: {report['served_vs_offline']:.3f}", fontsize=10)
    figure.tight_layout()
    return save_png(figure, path)


__all__ = ["DPI", "save_png", "serving_plot"]
