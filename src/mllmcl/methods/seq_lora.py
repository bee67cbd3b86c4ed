"""`seq-lora` (LoRA-FT in MLLM-CL): one LoRA adapter fine-tuned on each task in turn.

The paper's plain sequential baseline: nothing protects what earlier tasks taught the adapter, so later
tasks overwrite it (catastrophic forgetting). Subclasses change only the data each task trains on
(`replay`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.engine import load_adapter, save_adapter
from mllmcl.methods import METHODS
from mllmcl.methods.base import Answers, Context, adapter_name, answer_with, fresh_adapter, train_adapter


@METHODS.register("seq-lora", "LoRA-FT: one LoRA trained on each task in turn (forgets)")
class SeqLoRA:
    name = "seq-lora"
    sequential = True
    routed = False
    learns = True

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.adapter = adapter_name(self.name)
        self.learned: list[Task] = []

    def data(self, task: Task) -> list[Sample]:
        """What learning `task` trains on."""
        return list(self.ctx.train_rows(task))

    def learn(self, task: Task) -> None:
        if self.adapter not in self.ctx.backbone.adapter_names:
            fresh_adapter(self.ctx, self.adapter, self.ctx.seed_for(self.name, "init"))
        train_adapter(self.ctx, self.adapter, self.data(task), self.ctx.seed_for(self.name, task.name),
                      f"{self.name} ← {task.name}")
        self.learned.append(task)

    def answer(self, task: Task, samples: Sequence[Sample]) -> Answers:
        return Answers(answer_with(self.ctx, task, samples, [self.adapter] * len(samples)))

    def save(self, folder: Path) -> None:
        save_adapter(self.ctx.backbone, self.adapter, folder)

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        load_adapter(self.ctx.backbone, self.adapter, folder / self.adapter)
        self.learned = list(learned)
