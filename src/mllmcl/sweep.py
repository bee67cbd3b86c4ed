"""`mllmcl sweep`: the same run over several task orders and seeds, aggregated as mean ± std.

    DIR/runs/s<seed>-o<k>/      one ordinary run folder per cell (resumable like any run)
    DIR/experts/s<seed>/        MR-LoRA's experts, shared by every order of a seed (an expert depends on
                                its task's data and the seeds, not on when it is learned), trained once
    DIR/sweep.json              the cells and every metric as {"mean", "std", "n", "ci95"} per method
    DIR/report.md, spread.png   the table, and each method's spread across the cells

Order k is `data.order=random:k` (k = 0 is the benchmark's own order); a seed sets `seed`, the default of
both `data.seed` and `train.seed`. Cells run one after the other, each on a freshly loaded backbone and with
its independent parts in `jobs` processes (mllmcl/jobs.py); a killed sweep resumes every cell where it
stopped, and finished cells are read back without loading a model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

from mllmcl.config import RunConfig, build_config, to_dict
from mllmcl.errors import UserError
from mllmcl.eval.aggregate import aggregate
from mllmcl.utils.io import write_json_atomic, write_text_atomic
from mllmcl.utils.progress import write_line

FORMAT = 1
SWEEP = "sweep.json"


def cells(config: RunConfig, orders: int, seeds: int) -> list[tuple[str, RunConfig]]:
    """(folder name, configuration) of every cell: seeds `config.seed` … `config.seed + seeds - 1`, orders
    random:0 … random:orders-1."""
    if orders < 1 or seeds < 1:
        raise UserError(f"sweep: --orders and --seeds must be at least 1, got {orders} and {seeds}")
    if orders > 1 and config.data.order:
        raise UserError(f"sweep: data.order is {config.data.order!r}; --orders {orders} sets the order of each cell, "
                        "so leave data.order unset (or use --orders 1)")
    base = to_dict(config)
    out = []
    for seed in range(config.seed, config.seed + seeds):
        for k in range(orders):
            values = {**base, "seed": seed, "data": {**base["data"], "seed": seed},
                      "train": {**base["train"], "seed": seed}}
            if orders > 1:
                values["data"]["order"] = f"random:{k}"
            out.append((f"s{seed}-o{k}", build_config(values)))
    return out


def finished(results: dict | None, config: RunConfig) -> bool:
    return bool(results) and results["run"].get("finished") is not None and all(
        (results["methods"].get(m) or {}).get("final") is not None for m in config.methods)


def sweep(config: RunConfig, out: str | Path, orders: int, seeds: int, log: Callable[[str], None] = write_line,
          progress: bool = True) -> dict:
    """Run every cell (resuming what exists), then write sweep.json and the report; returns sweep.json's data."""
    from mllmcl.parallel import Processes, barrier, is_main
    from mllmcl.runner import RunFolder, run

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
    from mllmcl.report import load_results

    runs = [load_results(folder) for folder in folders]
    data = {"format": FORMAT, "grid": dict(grid),
            "runs": [str(Path(f).relative_to(out)) for f in folders],
            "cells": [{"run": str(Path(f).relative_to(out)), "seed": r["run"].get("seed"),
                       "order": r["run"].get("order"), "tasks": r["tasks"]} for f, r in zip(folders, runs)],
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
    from mllmcl.report import load_results
    from mllmcl.report.sweep import sweep_markdown, spread_plot

    runs = [load_results(out / run) for run in summary["runs"]]
    spread_plot(runs, out / "spread.png")
    path = out / "report.md"
    write_text_atomic(path, sweep_markdown(summary, "spread.png"))
    return path
