"""The router contract, and what a router learns from. Routers know experts, never tasks or labels: they are
fitted on the experts' labelled router buffers (training data) and route label-free `Query`s.

Contract (a Protocol):
- `fit(experts)` — after each new expert; `experts` are all experts so far, in order, each with its name,
  description and router buffer (a few of its training samples);
- `route(queries) -> Routing` — per query an index into the fitted experts (never an unseen one, never free
  text) and a confidence in [0, 1] that the query belongs to that expert at all (what an open-world
  fallback thresholds);
- `save(folder)` / `load(folder) -> bool` — the full fitted state, restored without refitting (`load` says
  False when `folder` holds no state of this router).
`kind` is the router's name in the catalog (routing/catalog.py) and `card` its entry there."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, Sequence

from mllmcl.cl.context import Context, sample_rows
from mllmcl.cl.routing.catalog import ROUTERS, RouterCard
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.data.records import Query


@dataclass(frozen=True)
class Expert:
    """What a router knows of an expert: its name (a task name in a run), the sentence describing its domain,
    and its router buffer."""

    name: str
    description: str
    buffer: tuple[Sample, ...]


@dataclass(frozen=True)
class Routing:
    """A router's decision for some queries: `experts[i]` indexes the fitted experts; `confidence[i]` in
    [0, 1] is how well query i fits that expert."""

    experts: list[int]
    confidence: list[float]


class Router(Protocol):
    kind: ClassVar[str]
    card: ClassVar[RouterCard]

    def fit(self, experts: Sequence[Expert]) -> None: ...

    def route(self, queries: Sequence[Query]) -> Routing: ...

    def save(self, folder: Path) -> None: ...

    def load(self, folder: Path) -> bool: ...


def buffer_size(ctx: Context, kind: str) -> int:
    """Router-training samples per task for router `kind`: `router.k`, else the router's own default."""
    return ctx.config.router.k or ROUTERS.get(kind).buffer


def router_buffer(ctx: Context, task: Task, kind: str) -> tuple[Sample, ...]:
    """The router-training samples of `task` for router `kind`: its rows in the benchmark's router file first
    (the release ships 20 per task), then, when the router asks for more than the file has (or it has none),
    training rows drawn with the run's data seed to make up the number."""
    k = buffer_size(ctx, kind)
    rows = [s for s in ctx.benchmark.router if s.task == task.name][:k]
    if len(rows) < k:
        rows += sample_rows(ctx.train_rows(task), k - len(rows), ctx.data_seed("router-buffer", task.name))
    return tuple(rows)


def expert_of(ctx: Context, task: Task, kind: str) -> Expert:
    """A task as router `kind` sees it."""
    return Expert(task.name, task.spec.description, router_buffer(ctx, task, kind))


def single(queries: Sequence[Query]) -> Routing:
    """One expert: nothing to choose (no pass needed), every query fits it as far as a router can tell."""
    return Routing([0] * len(queries), [1.0] * len(queries))
