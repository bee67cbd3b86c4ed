"""`joint`: one LoRA trained on every task at once — multi-task training, the usual upper bound of
continual learning (it breaks the protocol on purpose: it waits for the last task, then sees all data)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.engine import load_adapter, save_adapter
from mllmcl.methods import METHODS
from mllmcl.methods.base import Answers, Context, adapter_name, answer_with, fresh_adapter, train_adapter


@METHODS.register("joint", "one LoRA trained on all tasks at once (multi-task upper bound)")
class Joint:
    name = "joint"
    sequential = False
    routed = False
    learns = True

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.adapter = adapter_name(self.name)
        self.learned: list[Task] = []

    def learn(self, task: Task) -> None:
        self.learned.append(task)
        if len(self.learned) < len(self.ctx.task_names):
            return
        rows = [s for t in self.learned for s in self.ctx.train_rows(t)]
        fresh_adapter(self.ctx, self.adapter, self.ctx.seed_for(self.name, "init"))
        train_adapter(self.ctx, self.adapter, rows, self.ctx.seed_for(self.name, "all"), f"{self.name} ← all tasks")

    def answer(self, task: Task, samples: Sequence[Sample]) -> Answers:
        return Answers(answer_with(self.ctx, task, samples, [self.adapter] * len(samples)))

    def save(self, folder: Path) -> None:
        if self.adapter in self.ctx.backbone.adapter_names:
            save_adapter(self.ctx.backbone, self.adapter, folder)

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        self.learned = list(learned)
        if (folder / self.adapter).is_dir():
            load_adapter(self.ctx.backbone, self.adapter, folder / self.adapter)
