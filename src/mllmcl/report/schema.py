"""What a report needs from a results.json (format 1, docs/results.md), checked before anything is written.

`check_results` walks every field the tables and heatmaps read and raises one UserError naming the file and
the key (`methods['seq-lora'].matrix[1][0]: must be a number or null, got 'abc'`). Fields the report does not
read are not checked, so a newer runner may add some. Numbers must be finite: a value that is not (or a
400-digit integer, which no float holds) would make a table cell or a heatmap colour meaningless.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mllmcl.errors import UserError
from mllmcl.report.tables import METRICS

FORMAT = 1  # the results.json format this code reads and the runner writes


class _Checker:
    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, what: str, value: Any) -> None:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise UserError(f"{self.path}: {key}: {what}, got {shown}")

    def number(self, value: Any, key: str) -> None:
        """A finite number or null."""
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, "must be a number or null", value)
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            finite = False
        if not finite:
            self.fail(key, "must be a finite number or null", value)

    def numbers(self, value: Any, key: str) -> None:
        """Null, or a list of numbers / nulls (one per task)."""
        if value is None:
            return
        if not isinstance(value, list):
            self.fail(key, "must be a list of numbers or null", value)
        for i, item in enumerate(value):
            self.number(item, f"{key}[{i}]")

    def mapping(self, value: Any, key: str, optional: bool = True) -> dict:
        if value is None and optional:
            return {}
        if not isinstance(value, dict):
            self.fail(key, "must be an object" + (" or null" if optional else ""), value)
        return value

    def names(self, value: Any, key: str) -> None:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, "must be a list of names (non-empty strings)", value)

    def table(self, value: Any, key: str) -> None:
        """Null, or a list of rows of numbers (an accuracy matrix, a confusion matrix)."""
        if value is None:
            return
        if not isinstance(value, list):
            self.fail(key, "must be a list of rows of numbers", value)
        for i, row in enumerate(value):
            if not isinstance(row, list):
                self.fail(f"{key}[{i}]", "must be a list of numbers", row)
            self.numbers(row, f"{key}[{i}]")

    def routing(self, routing: dict, key: str) -> None:
        self.number(routing.get("accuracy"), f"{key}.accuracy")
        per_task = self.mapping(routing.get("per_task"), f"{key}.per_task")
        for task, value in per_task.items():
            self.number(value, f"{key}.per_task[{task!r}]")
        self.table(routing.get("confusion"), f"{key}.confusion")
        stages = routing.get("stages")
        if stages is None:
            return
        if not isinstance(stages, list):
            self.fail(f"{key}.stages", "must be a list of objects or null", stages)
        for i, stage in enumerate(stages):
            where = f"{key}.stages[{i}]"
            stage = self.mapping(stage, where, optional=False)
            if "seen" in stage:
                self.names(stage["seen"], f"{where}.seen")
            self.number(stage.get("accuracy"), f"{where}.accuracy")


def check_results(results: Any, path: Path) -> dict:
    """`results` if it holds what a report reads, else a UserError naming `path` and the key."""
    check = _Checker(path)
    if not isinstance(results, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(results).__name__}")
    version = results.get("format")
    if isinstance(version, bool) or version != FORMAT:
        shown = repr(version) if len(repr(version)) <= 40 else repr(version)[:37] + "..."
        raise UserError(f"{path}: results format {shown}, this mllmcl reads format {FORMAT}")
    if not isinstance(results.get("tasks"), list) or not isinstance(results.get("methods"), dict):
        raise UserError(f"{path}: expected a 'tasks' list and a 'methods' object")
    check.names(results["tasks"], "tasks")
    if not results["tasks"]:
        check.fail("tasks", "must name at least one task", results["tasks"])
    check.mapping(results.get("run"), "run")
    for name, method in results["methods"].items():
        key = f"methods[{name!r}]"
        method = check.mapping(method, key, optional=False)
        if not isinstance(method.get("sequential", False), bool):
            check.fail(f"{key}.sequential", "must be true or false", method["sequential"])
        for field in ("zero_shot", "final"):
            check.numbers(method.get(field), f"{key}.{field}")
        check.table(method.get("matrix"), f"{key}.matrix")
        metrics = check.mapping(method.get("metrics"), f"{key}.metrics")
        for metric in METRICS:
            check.number(metrics.get(metric), f"{key}.metrics[{metric!r}]")
        check.routing(check.mapping(method.get("routing"), f"{key}.routing"), f"{key}.routing")
    return results
