"""`oracle` router: the query's true task — the upper bound of routing. A query carries no label, so this
router looks its task up in the run's benchmark (the rows it was drawn from); its card says so
(`needs_labels`), so it exists for evaluation only and serving refuses it. A query of a task without an
expert (or one the benchmark does not hold) goes to the most recent expert (a fitted one, as every router
must), with confidence 0."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from mllmcl.cl.context import Context
from mllmcl.cl.routing.catalog import ROUTERS
from mllmcl.cl.routing.router import Expert, Routing
from mllmcl.core.errors import UserError
from mllmcl.core.io import write_json_atomic
from mllmcl.data.mllm_cl import Benchmark
from mllmcl.data.records import Query

STATE = "oracle_router.json"


def true_tasks(benchmark: Benchmark) -> dict[Query, str]:
    """Query → the task it comes from, for every evaluation row of `benchmark` (test, validation, unseen)."""
    rows = [s for task in benchmark.tasks for s in (*task.test, *task.val)] + list(benchmark.unseen)
    truth: dict[Query, str] = {}
    for sample in rows:
        truth.setdefault(sample.query, sample.task)
    return truth


class OracleRouter:
    kind = "oracle"
    card = ROUTERS.get(kind)

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.names: list[str] = []
        self._truth: dict[Query, str] | None = None

    def fit(self, experts: Sequence[Expert]) -> None:
        self.names = [e.name for e in experts]

    def route(self, queries: Sequence[Query]) -> Routing:
        if self._truth is None:
            self._truth = true_tasks(self.ctx.benchmark)
        index = {name: i for i, name in enumerate(self.names)}
        chosen = [index.get(self._truth.get(q)) for q in queries]
        return Routing([len(self.names) - 1 if c is None else c for c in chosen],
                       [0.0 if c is None else 1.0 for c in chosen])

    def save(self, folder: Path) -> None:
        write_json_atomic(Path(folder) / STATE, {"kind": self.kind, "experts": self.names})

    def load(self, folder: Path) -> bool:
        path = Path(folder) / STATE
        if not path.is_file():
            return False
        try:
            self.names = list(json.loads(path.read_text())["experts"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path}: cannot read the oracle router's saved state ({err})") from None
        return True
