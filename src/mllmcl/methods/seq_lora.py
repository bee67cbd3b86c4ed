"""`seq-lora` (LoRA-FT in MLLM-CL): one LoRA adapter fine-tuned on each task in turn.

The paper's plain sequential baseline: nothing protects what earlier tasks taught the adapter, so later
tasks overwrite it (catastrophic forgetting). Subclasses change only the data each task trains on
(`replay`)."""
from __future__ import annotations

from typing import Sequence

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.methods import METHODS
from mllmcl.methods.base import OneAdapterMethod, fresh_adapter, train_adapter


@METHODS.register("seq-lora", "LoRA-FT: one LoRA trained on each task in turn (forgets)")
class SeqLoRA(OneAdapterMethod):
    name = "seq-lora"
    sequential = True

    def data(self, task: Task) -> list[Sample]:
        """What learning `task` trains on."""
        return list(self.ctx.train_rows(task))

    def trained_after(self, learned: Sequence[Task]) -> bool:
        return bool(learned)

    def learn(self, task: Task) -> None:
        if self.adapter not in self.ctx.backbone.adapter_names:
            fresh_adapter(self.ctx, self.adapter, self.ctx.seed_for(self.name, "init"))
        train_adapter(self.ctx, self.adapter, self.data(task), self.ctx.seed_for(self.name, task.name),
                      f"{self.name} ← {task.name}")
        self.learned.append(task)
