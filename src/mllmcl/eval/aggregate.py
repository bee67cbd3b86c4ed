"""Aggregating runs: a number is a result only when it reproduces, so a sweep reports every metric as mean,
sample standard deviation, count and 95% confidence half-width (Student's t) over its runs.

Pure functions of runs' results (eval/results.py); nothing here reads a model or writes a file."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

from mllmcl.eval.cl_metrics import METRIC_NAMES
from mllmcl.eval.results import Results

# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal's 1.96 is within 2%
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def summarize(values: Iterable[float | None]) -> dict:
    """{"mean", "std", "n", "ci95"} of the values that are not None; std is the sample standard deviation
    (n − 1), and std and ci95 are None for fewer than two values, every field None for none."""
    xs = [float(v) for v in values if v is not None]
    n = len(xs)
    if n == 0:
        return {"mean": None, "std": None, "n": 0, "ci95": None}
    mean = sum(xs) / n
    if n == 1:
        return {"mean": round(mean, 4), "std": None, "n": 1, "ci95": None}
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return {"mean": round(mean, 4), "std": round(std, 4), "n": n, "ci95": round(t * std / math.sqrt(n), 4)}


def method_values(runs: Sequence[Results], method: str) -> dict:
    """Per quantity, the list of a method's values over `runs` (finished runs of the method only): the six
    metrics, the final accuracy and format-valid rate per task, and routing accuracy for routed methods."""
    done = [(r.methods[method], r.tasks) for r in runs if method in r.methods and r.methods[method].final]
    finished = [entry for entry, _ in done]
    out: dict = {m: [(e.metrics or {}).get(m) for e in finished] for m in METRIC_NAMES}
    out["final"], out["format_valid"] = {}, {}
    for entry, names in done:
        for j, name in enumerate(names):
            out["final"].setdefault(name, []).append(entry.final[j])
            formats = entry.final_format_valid
            out["format_valid"].setdefault(name, []).append(formats[j] if formats else None)
    if any(e.routing is not None for e in finished):
        out["routing"] = [e.routing.accuracy if e.routing else None for e in finished]
    return out


def aggregate(runs: Sequence[Results]) -> dict:
    """Method → quantity → `summarize(...)` over `runs`, methods in first-seen order."""
    methods: list[str] = []
    for results in runs:
        methods += [m for m in results.methods if m not in methods]
    out = {}
    for method in methods:
        values = method_values(runs, method)
        out[method] = {key: ({task: summarize(v) for task, v in value.items()} if isinstance(value, dict)
                             else summarize(value)) for key, value in values.items()}
    return out


def mean_std(stats: dict | None, digits: int = 2) -> str:
    """"mean ± std" (or the mean alone for one run, "—" for none)."""
    if not stats or stats.get("mean") is None:
        return "—"
    if stats.get("std") is None:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
