"""`mllmcl sweep`: the same run over several task orders and seeds, aggregated as mean ± std.

    DIR/runs/s<seed>-o<k>/      one ordinary run folder per cell (resumable like any run)
    DIR/experts/s<seed>/        MR-LoRA's experts, shared by every order of a seed (an expert depends on
                                its task's data and the seeds, not on when it is learned), trained once
    DIR/sweep.json              the cells and every metric as {"mean", "std", "n", "ci95"} per method
    DIR/report.md, spread.png   the table, and each method's spread across the cells

Order k is `data.order=random:k` (k = 0 is the benchmark's own order); a seed sets `seed`, the default of
both `data.seed` and `train.seed`. Cells run one after the other, each on a freshly loaded backbone and with
its independent parts in `jobs` processes (run/jobs.py); a killed sweep resumes every cell where it
stopped, and finished cells are read back without loading a model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

from mllmcl.cl.config import RunConfig, cells
from mllmcl.core.errors import UserError
from mllmcl.core.io import write_json_atomic, write_text_atomic
from mllmcl.core.parallel import Processes, barrier, is_main
from mllmcl.core.progress import write_line
from mllmcl.eval.aggregate import aggregate
from mllmcl.eval.results import Results
from mllmcl.report import load_results
from mllmcl.report.sweep import spread_plot, sweep_markdown
from mllmcl.run.folder import RunFolder
from mllmcl.run.protocol import run

FORMAT = 1
SWEEP = "sweep.json"


def finished(results: Results | None, config: RunConfig) -> bool:
    return results is not None and results.run.finished is not None and all(
        m in results.methods and results.methods[m].final is not None for m in config.methods)


def sweep(config: RunConfig, out: str | Path, orders: int, seeds: int, log: Callable[[str], None] = write_line,
          progress: bool = True) -> dict:
    """Run every cell (resuming what exists), then write sweep.json and the report; returns sweep.json's data."""
    processes = Processes.start()
    log = log if is_main(processes) else (lambda _: None)
    out = Path(out)
    grid = cells(config, orders, seeds)
    for i, (name, cell) in enumerate(grid, 1):
        folder = RunFolder(out / "runs" / name)
        if finished(folder.finished_steps(), cell):
            folder.check_config(cell)
            log(f"sweep {i}/{len(grid)} {name}: finished earlier; kept")
            continue
        log(f"sweep {i}/{len(grid)} {name}: seed {cell.seed}, order {cell.data.order or 'benchmark'}")
        run(cell, folder.path, log=lambda line, n=name: log(f"  [{n}] {line}"), progress=progress,
            experts=out / "experts" / f"s{cell.seed}")
    summary = summarize_sweep(out, [out / "runs" / name for name, _ in grid],
                              {"orders": orders, "seeds": seeds, "methods": list(config.methods)},
                              write=is_main(processes))
    if is_main(processes):
        render_sweep_report(out, summary)
    barrier(processes)
    return summary


def summarize_sweep(out: Path, folders: Sequence[Path], grid: Mapping, write: bool = True) -> dict:
    """sweep.json from the cells' results.json files (written unless `write` is False)."""
    runs = [load_results(folder) for folder in folders]
    data = {"format": FORMAT, "grid": dict(grid),
            "runs": [str(Path(f).relative_to(out)) for f in folders],
            "cells": [{"run": str(Path(f).relative_to(out)), "seed": r.run.seed, "order": r.run.order,
                       "tasks": r.tasks} for f, r in zip(folders, runs)],
            "methods": aggregate(runs)}
    if write:
        write_json_atomic(out / SWEEP, data)
    return data


def load_sweep(path: str | Path) -> dict:
    path = Path(path)
    path = path / SWEEP if path.is_dir() else path
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no sweep here (run `mllmcl sweep --out {path.parent}` first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("methods"), dict):
        raise UserError(f"{path}: not a sweep.json of format {FORMAT}")
    return data


def render_sweep_report(out: Path, summary: dict) -> Path:
    """DIR/report.md (mean ± std per method, per-task final accuracy) and DIR/spread.png."""
    runs = [load_results(out / run) for run in summary["runs"]]
    spread_plot(runs, out / "spread.png")
    path = out / "report.md"
    write_text_atomic(path, sweep_markdown(summary, "spread.png"))
    return path
