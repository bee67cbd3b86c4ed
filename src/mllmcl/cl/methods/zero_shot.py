"""`zero-shot`: the base model, never trained; the lower reference row of the paper's tables."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.cl.context import Context, answer_with
from mllmcl.cl.methods.base import Answers
from mllmcl.cl.methods.catalog import METHODS
from mllmcl.data.mllm_cl import Task
from mllmcl.data.records import Query


class ZeroShot:
    name = "zero-shot"
    card = METHODS.get(name)  # learns nothing: its final accuracies are the run's zero-shot row, not evaluated twice

    def __init__(self, ctx: Context, name: str | None = None):
        self.ctx = ctx
        self.name = name or self.name

    def learn(self, task: Task) -> None:
        pass

    def answer(self, queries: Sequence[Query], max_new_tokens: int) -> Answers:
        return Answers(answer_with(self.ctx, queries, None, max_new_tokens))

    def save(self, folder: Path) -> None:
        pass

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        pass
