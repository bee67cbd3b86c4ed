"""Routers: given a test sample, pick one of the experts seen so far. Shared by every expert method.

Contract (a Protocol): `fit(seen)` after each new task (`seen`: the tasks learned so far, in order);
`route(samples, seen) -> list[int]` (an index into `seen` per sample: never an unseen expert, never free
text); `save(folder)` / `restore(folder, seen)` for resuming a run.
- `mllm`: a router LoRA on the same base, trained at each stage on the router buffer (MR-LoRA's router);
- `prototype`: training-free, the nearest task prototype of mean-pooled frozen base features;
- `oracle`: the sample's true task (an upper bound; needs the task label)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.registry import Registry

if TYPE_CHECKING:
    from mllmcl.methods.base import Context


class Router(Protocol):
    def fit(self, seen: Sequence[Task]) -> None: ...

    def route(self, samples: Sequence[Sample], seen: Sequence[Task]) -> list[int]: ...

    def save(self, folder: Path) -> None: ...

    def restore(self, folder: Path, seen: Sequence[Task]) -> None: ...


ROUTERS: Registry[Router] = Registry("router")

def build_router(kind: str, ctx: "Context") -> Router:
    return ROUTERS.build(kind, ctx)


def router_buffer(ctx: "Context", task: Task) -> list[Sample]:
    """The k router-training samples of `task`: its rows in the benchmark's router file when it has some
    (the release ships 20 per task), else k of its training rows drawn with the run's seed."""
    from mllmcl.methods.base import sample_rows

    k = ctx.config.router.k
    rows = [s for s in ctx.benchmark.router if s.task == task.name]
    if rows:
        return rows[:k]
    return sample_rows(ctx.train_rows(task), k, ctx.seed_for("router-buffer", task.name))


from mllmcl.routing import mllm, oracle, prototype  # noqa: E402,F401  (registers them)

__all__ = ["ROUTERS", "Router", "build_router", "router_buffer"]
