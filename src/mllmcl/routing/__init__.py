"""Routers: given a sample (image + question), pick one of the experts learned so far. Shared by every expert
method and by serving, so they know experts, never tasks or labels.

Contract (a Protocol):
- `fit(experts)` — after each new expert; `experts` are all experts so far, in order, each with its name,
  description and router buffer (a few of its training samples);
- `route(samples) -> Routing` — per sample an index into the fitted experts (never an unseen one, never free
  text) and a confidence in [0, 1] that the sample belongs to that expert at all (what an open-world
  fallback thresholds);
- `save(folder)` / `load(folder) -> bool` — the full fitted state, restored without refitting (`load` says
  False when `folder` holds no state of this router).
Registered routers:
- `mllm`: a router LoRA on the same base, trained at each stage on the buffers (MR-LoRA's router);
- `prototype`: training-free, the nearest expert prototype of frozen base features;
- `oracle`: the sample's true task (an upper bound; reads the benchmark's label, so it cannot serve)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from mllmcl.config import Settings
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.registry import Registry

if TYPE_CHECKING:
    from mllmcl.context import Context


@dataclass(frozen=True)
class Expert:
    """What a router knows of an expert: its name (a task name in a run), the sentence describing its domain,
    and its router buffer."""

    name: str
    description: str
    buffer: tuple[Sample, ...]


@dataclass(frozen=True)
class Routing:
    """A router's decision for some samples: `experts[i]` indexes the fitted experts; `confidence[i]` in
    [0, 1] is how well sample i fits that expert."""

    experts: list[int]
    confidence: list[float]


class Router(Protocol):
    kind: str

    def fit(self, experts: Sequence[Expert]) -> None: ...

    def route(self, samples: Sequence[Sample]) -> Routing: ...

    def save(self, folder: Path) -> None: ...

    def load(self, folder: Path) -> bool: ...


ROUTERS: Registry[Router] = Registry("router")


def build_router(kind: str, ctx: "Context") -> Router:
    return ROUTERS.build(kind, ctx)


def router_buffer(ctx: "Context", task: Task) -> tuple[Sample, ...]:
    """The k router-training samples of `task`: its rows in the benchmark's router file first (the release
    ships 20 per task), then, when k asks for more than the file has (or it has none), training rows drawn
    with the run's data seed to make up k."""
    from mllmcl.context import sample_rows

    k = ctx.config.router.k
    rows = [s for s in ctx.benchmark.router if s.task == task.name][:k]
    if len(rows) < k:
        rows += sample_rows(ctx.train_rows(task), k - len(rows), ctx.data_seed("router-buffer", task.name))
    return tuple(rows)


def expert_of(ctx: "Context", task: Task) -> Expert:
    """A task as a router sees it."""
    return Expert(task.name, task.spec.description, router_buffer(ctx, task))


def single(samples: Sequence[Sample]) -> Routing:
    """One expert: nothing to choose (no pass needed), every sample fits it as far as a router can tell."""
    return Routing([0] * len(samples), [1.0] * len(samples))


from mllmcl.routing import mllm, oracle, prototype  # noqa: E402,F401  (registers them)

__all__ = ["Expert", "ROUTERS", "Router", "Routing", "Settings", "build_router", "expert_of", "router_buffer"]
