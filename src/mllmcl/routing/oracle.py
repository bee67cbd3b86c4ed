"""`oracle` router: the sample's true task — the upper bound of routing. A sample of a task not learned yet
has no right expert; it goes to the most recently learned one (a seen expert, as every router must)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.routing import ROUTERS


@ROUTERS.register("oracle", "the true task of each sample (upper bound)")
class OracleRouter:
    kind = "oracle"

    def __init__(self, ctx):
        self.ctx = ctx

    def fit(self, seen: Sequence[Task]) -> None:
        pass

    def route(self, samples: Sequence[Sample], seen: Sequence[Task]) -> list[int]:
        index = {task.name: i for i, task in enumerate(seen)}
        return [index.get(s.task, len(seen) - 1) for s in samples]

    def save(self, folder: Path) -> None:
        pass

    def restore(self, folder: Path, seen: Sequence[Task]) -> None:
        pass
