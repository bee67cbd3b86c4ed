"""Reports from run folders: report.md (summary, accuracy matrices, routing) plus one heatmap per method.

Reads only `results.json` files (through `mllmcl.eval.results.Results`, see docs/results.md), never a model,
so it works on a finished run, on a run still in progress, and on a machine that never trained anything.

    >>> from mllmcl.report import load_results, render_report, summary_table
    >>> print(summary_table(load_results("runs/dcl-tiny")))
    >>> render_report(["runs/dcl-tiny"])                          # runs/dcl-tiny/report.md, heatmaps/
    >>> render_report(["runs/a", "runs/b"], out=Path("runs/ab"))  # side by side
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.core.errors import UserError
from mllmcl.core.io import is_dir, is_file, write_text_atomic
from mllmcl.eval.results import Results
from mllmcl.report.heatmap import save_heatmap
from mllmcl.report.tables import has_heatmap, heatmap_name, markdown_report, summary_table, unique_labels

__all__ = ["load_results", "load_runs", "markdown_report", "render_report", "save_heatmap", "summary_table"]

RESULTS = "results.json"
REPORT = "report.md"


def _results_file(path: str | Path) -> Path:
    path = Path(path)
    if is_dir(path):
        path = path / RESULTS
        if not is_file(path):
            raise UserError(f"{path.parent}: no {RESULTS} in this folder (is it a run folder?)")
    elif not is_file(path):
        raise UserError(f"{path}: no such run folder or {RESULTS} file")
    return path


def load_results(path: str | Path) -> Results:
    """The results of a run folder or of a results.json file; a UserError naming the file if it is missing,
    not JSON, not in this format, or lacks or mistypes what a results.json holds (`tasks`, `methods`, …)."""
    return Results.load(_results_file(path))


def load_runs(paths: Sequence[str | Path]) -> list[Results]:
    """The results of run folders, results.json files and sweep folders (each of a sweep's `runs/` cells)."""
    runs = []
    for path in map(Path, paths):
        cells = sorted(p for p in (path / "runs").iterdir() if is_file(p / RESULTS)) if is_dir(path / "runs") else []
        runs += [load_results(cell) for cell in cells] or [load_results(path)]
    return runs


def _label(path: str | Path) -> str:
    """A run's label: its folder's name (the folder holding results.json when given the file)."""
    path = Path(path).resolve()
    return (path.parent if path.is_file() else path).name


def _write_heatmaps(results: Results, out: Path, label: str | None) -> None:
    """One heatmap per sequential method with at least one computed row, named as the report links it."""
    for name, method in results.methods.items():
        if has_heatmap(method, results.tasks):
            title = name if label is None else f"{label}: {name}"
            save_heatmap(method.matrix, results.tasks, out / heatmap_name(name, label), title,
                         zero_shot=method.zero_shot)


def render_report(dirs: Sequence[str | Path], out: Path | None = None) -> Path:
    """Write report.md and heatmaps/ for one run (into its own folder unless `out` is given) or for several
    runs side by side (`out` required; heatmaps prefixed by each run's label). Returns report.md's path."""
    if not dirs:
        raise UserError("report: give at least one run folder")
    if len(dirs) > 1 and out is None:
        raise UserError(f"report: {len(dirs)} run folders need --out, the folder for the combined report")
    runs = [load_results(d) for d in dirs]  # all loaded (and checked) before anything is written
    labels = unique_labels(_label(d) for d in dirs)
    out = Path(out) if out is not None else _results_file(dirs[0]).parent
    blocked = next((p for p in (out, *out.parents) if is_file(p)), None)
    if blocked is not None:  # found now, not after the first heatmap is written
        raise UserError(f"{out}: cannot write the report here ({blocked} is a file, not a folder)")
    single = len(runs) == 1
    text = markdown_report(list(zip(labels, runs)))  # before any file is written: a failure leaves none
    for label, results in zip(labels, runs):
        _write_heatmaps(results, out, None if single else label)
    path = out / REPORT
    write_text_atomic(path, text)
    return path
