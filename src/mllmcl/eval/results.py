"""The results file of a run (`results.json`, docs/results.md): one pydantic model, the only way it is written
(by the runner, after every step) and read (by resume, reports, sweeps and serving).

    Results                      format, mllmcl_version, run (RunInfo), tasks, zero_shot, methods
      methods[label]             MethodResults: sequential, steps, matrix (T×T), final, metrics, seconds, …
        routing                  Routing (routed methods only): router, accuracy, per_task, confusion, stages

Reading is checked where a report or a resume relies on it — names, numbers (finite, no booleans, no
strings), lists of them — and a problem is one UserError naming the file and the key. Keys this version
does not know are kept as they are (a newer runner may add some). Fields that format-1 files written by
earlier versions lack get their empty value. It lives in `eval` because both sides of the file stand above
it: the run layer writes it, the reports (and a sweep's aggregation) read it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional, Sequence

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      ValidationError)

from mllmcl.core.errors import UserError
from mllmcl.core.io import read_json, write_json_atomic
from mllmcl.eval.cl_metrics import cl_metrics

FORMAT = 1
"""The results.json format this code writes and reads."""


def _finite(value: int | float) -> int | float:
    try:
        finite = math.isfinite(float(value))
    except OverflowError:  # a 400-digit integer: no float holds it
        finite = False
    if not finite:
        raise ValueError("must be a finite number")
    return value


Number = Annotated[StrictInt | StrictFloat, AfterValidator(_finite)]
"""A finite number as written (an int stays an int): accuracies, seconds, confusion counts."""
Row = list[Optional[Number]]
"""One value per task (null where there is none)."""
Name = Annotated[StrictStr, Field(min_length=1)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class RoutingStage(_Record):
    """Routing quality after `stage` tasks: the share (%) of the seen tasks' evaluation samples sent to their
    own task's expert, per task (null for a task not seen yet), and the confusion matrix (rows: true task,
    columns: chosen expert; all T tasks)."""

    stage: StrictInt = 0
    seen: list[Name] = Field(default_factory=list)
    accuracy: Optional[Number] = None
    per_task: dict[str, Optional[Number]] = Field(default_factory=dict)
    confusion: list[Row] = Field(default_factory=list)


class Routing(_Record):
    """A routed method's routing: the router, the final stage's figures, and every stage."""

    router: Optional[StrictStr] = None
    accuracy: Optional[Number] = None
    per_task: Optional[dict[str, Optional[Number]]] = None
    confusion: Optional[list[Row]] = None
    stages: list[RoutingStage] = Field(default_factory=list)


class Seconds(_Record):
    learn: list[Number] = Field(default_factory=list)
    evaluate: list[Number] = Field(default_factory=list)


class MethodResults(_Record):
    """One method of a run: `sequential` methods have a T×T accuracy `matrix` (row i: after learning task i)
    and its `format_valid` twin; the others only their `final` row. `metrics` are computed once `final` is
    known; `steps` counts the tasks learned so far (what a resume starts after)."""

    sequential: StrictBool = False
    zero_shot: Optional[Row] = None
    steps: StrictInt = 0
    matrix: Optional[list[Row]] = None
    format_valid: Optional[list[Row]] = None
    final: Optional[Row] = None
    final_format_valid: Optional[Row] = None
    metrics: Optional[dict[str, Optional[Number]]] = None
    seconds: Seconds = Field(default_factory=Seconds)
    routing: Optional[Routing] = Field(None, exclude_if=lambda routing: routing is None)

    @classmethod
    def start(cls, sequential: bool, zero_shot: Sequence[float], router: str | None = None) -> "MethodResults":
        """A method that has learned nothing yet; `router`: the router's name, for a routed method."""
        return cls(sequential=sequential, zero_shot=list(zero_shot), matrix=[] if sequential else None,
                   format_valid=[] if sequential else None,
                   routing=Routing(router=router) if router is not None else None)

    def finish(self, final: Sequence[float], final_format: Sequence[float] | None) -> None:
        """The last step is recorded: the final row, and the metrics (a sequential method's from its matrix)."""
        self.final = list(final)
        self.final_format_valid = None if final_format is None else list(final_format)
        if self.sequential:
            self.metrics = cl_metrics(self.matrix, self.zero_shot)
        else:
            self.metrics = {"MFT": None, "MFN": round(sum(final) / len(final), 4), "MAA": None, "BWT": None,
                            "Forgetting": None, "FWT": None}
        if self.routing and self.routing.stages:
            last = self.routing.stages[-1]
            self.routing.accuracy, self.routing.per_task, self.routing.confusion = \
                last.accuracy, last.per_task, last.confusion


class RunInfo(_Record):
    """How the run was made: what its configuration drew and trained with, and where (`environment`: what
    the numbers depend on beyond the configuration, docs/results.md, "Determinism")."""

    setting: Optional[StrictStr] = None
    benchmark: Optional[StrictStr] = None
    backbone: Optional[StrictStr] = None
    seed: Optional[StrictInt] = None
    data_seed: Optional[StrictInt] = None
    train_seed: Optional[StrictInt] = None
    order: Optional[StrictStr] = None
    split: Optional[StrictStr] = None
    started: Optional[StrictStr] = None
    finished: Optional[StrictStr] = None
    environment: Optional[dict[str, Any]] = None
    processes: Optional[StrictInt] = Field(None, exclude_if=lambda value: value is None)
    """several processes (torchrun): how many"""
    jobs: Optional[dict[str, Any]] = Field(None, exclude_if=lambda value: value is None)
    """parallel parts (run/jobs.py): processes and threads each"""
    seconds_this_session: Optional[Number] = Field(None, exclude_if=lambda value: value is None)


class Results(_Record):
    """A run's results.json."""

    format: StrictInt = FORMAT
    mllmcl_version: Optional[StrictStr] = None
    run: RunInfo = Field(default_factory=RunInfo)
    tasks: list[Name] = Field(min_length=1)
    zero_shot: Optional[Row] = None
    zero_shot_format_valid: Optional[Row] = None
    methods: dict[str, MethodResults] = Field(default_factory=dict)

    def write(self, path: str | Path) -> None:
        """Rewrite `path` atomically (a killed write leaves the previous file)."""
        write_json_atomic(path, self.to_json())

    def to_json(self) -> dict:
        """The file's content as plain JSON data."""
        return self.model_dump(mode="json")

    @classmethod
    def load(cls, path: str | Path) -> "Results":
        """The results in `path`, or a UserError naming the file (and the key) when it is missing, not JSON, not
        in this format, or not what a results.json holds."""
        return cls.from_json(read_json(path, "results file"), Path(path))

    @classmethod
    def from_json(cls, data: Any, path: Path) -> "Results":
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
        version = data.get("format")
        if isinstance(version, bool) or version != FORMAT:
            shown = repr(version) if len(repr(version)) <= 40 else repr(version)[:37] + "..."
            raise UserError(f"{path}: results format {shown}, this mllmcl reads format {FORMAT}")
        if not isinstance(data.get("tasks"), list) or not isinstance(data.get("methods"), dict):
            raise UserError(f"{path}: expected a 'tasks' list and a 'methods' object")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise UserError(f"{path}: {_problem(err)}") from None


_MAPPINGS = {"methods", "metrics", "per_task", "environment", "jobs"}
"""Fields whose keys are names (a method, a metric, a task): shown as `methods['seq-lora']`."""
_WHAT = {"dict_type": "must be an object", "model_type": "must be an object", "list_type": "must be a list",
         "int_type": "must be a number", "float_type": "must be a number", "string_type": "must be a string",
         "bool_type": "must be true or false", "too_short": "must not be empty"}


def _problem(err: ValidationError) -> str:
    """The first problem of a validation error as `key: what it must be, got value`, the key written as the
    report names it: `methods['seq-lora'].matrix[1][0]`."""
    first = err.errors(include_url=False)[0]
    key, previous = "", None
    for part in first["loc"]:
        if isinstance(part, int):
            key += f"[{part}]"
        elif previous in _MAPPINGS:
            key += f"[{part!r}]"
        elif part not in ("int", "float") and not part.startswith("function-"):  # a union member's tag
            key += f".{part}" if key else part
        previous = part
    what = _WHAT.get(first["type"], first["msg"].removeprefix("Value error, "))
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{key or 'results'}: {what}, got {shown}"


def routing_stage(names: Sequence[str], seen: Sequence[str], experts: Sequence[Sequence[str]]) -> RoutingStage:
    """Routing quality at one stage, from the expert chosen for each evaluation sample of each task (`experts`,
    in the order of `names`, the run's T tasks): see `RoutingStage`."""
    index = {name: i for i, name in enumerate(names)}
    confusion = [[0] * len(names) for _ in names]
    per_task: dict[str, float | None] = {}
    right = total = 0
    for name, chosen in zip(names, experts):
        for expert in chosen:
            confusion[index[name]][index[expert]] += 1
        if name in seen:
            hits = sum(expert == name for expert in chosen)
            per_task[name] = round(100 * hits / len(chosen), 4)
            right, total = right + hits, total + len(chosen)
        else:
            per_task[name] = None
    return RoutingStage(stage=len(seen), seen=list(seen), accuracy=round(100 * right / total, 4), per_task=per_task,
                        confusion=confusion)
