"""`joint`: one LoRA trained on every task at once — multi-task training, the usual upper bound of
continual learning (it breaks the protocol on purpose: it waits for the last task, then sees all data)."""
from __future__ import annotations

from typing import Sequence

from mllmcl.cl.context import fresh_adapter, train_adapter
from mllmcl.cl.methods.base import OneAdapterMethod
from mllmcl.cl.methods.catalog import METHODS
from mllmcl.data.mllm_cl import Task


class Joint(OneAdapterMethod):
    name = "joint"
    card = METHODS.get(name)

    def trained_after(self, learned: Sequence[Task]) -> bool:
        return len(learned) == len(self.ctx.task_names)

    def learn(self, task: Task) -> None:
        self.learned.append(task)
        if not self.trained_after(self.learned):
            return
        rows = [s for t in self.learned for s in self.ctx.train_rows(t)]
        fresh_adapter(self.ctx, self.adapter, self.ctx.train_seed(self.name, "init"))
        train_adapter(self.ctx, self.adapter, rows, self.ctx.train_seed(self.name, "all"), f"{self.name} ← all tasks")
