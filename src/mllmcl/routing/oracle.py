"""`oracle` router: the sample's true task — the upper bound of routing. It reads the benchmark's label of
each sample, so it exists for evaluation only and cannot serve. A sample of a task without an expert goes
to the most recent expert (a fitted one, as every router must), with confidence 0."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from mllmcl.data.mllm_cl import Sample
from mllmcl.errors import UserError
from mllmcl.routing import ROUTERS, Expert, Routing
from mllmcl.utils.io import write_json_atomic

STATE = "oracle_router.json"


@ROUTERS.register("oracle", "the true task of each sample (upper bound; evaluation only)")
class OracleRouter:
    kind = "oracle"

    def __init__(self, ctx):
        self.ctx = ctx
        self.names: list[str] = []

    def fit(self, experts: Sequence[Expert]) -> None:
        self.names = [e.name for e in experts]

    def route(self, samples: Sequence[Sample]) -> Routing:
        index = {name: i for i, name in enumerate(self.names)}
        chosen = [index.get(s.task) for s in samples]
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
