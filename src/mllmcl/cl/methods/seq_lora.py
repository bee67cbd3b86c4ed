"""`seq-lora` (LoRA-FT in MLLM-CL): one LoRA adapter fine-tuned on each task in turn.

The paper's plain sequential baseline: nothing protects what earlier tasks taught the adapter, so later
tasks overwrite it (catastrophic forgetting). It is also the base of the sequential family: a subclass
changes only what it hands the engine — the data of a task (`+replay`), the loss (`ewc`, `lwf`), the
adapter's recipe (`moelora`) — through the hooks below, never the loop."""
from __future__ import annotations

from typing import Sequence

from mllmcl.cl.context import fresh_adapter, train_adapter
from mllmcl.cl.methods.base import OneAdapterMethod
from mllmcl.cl.methods.catalog import METHODS
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.engine.train import LossFn, causal_lm_loss


class SeqLoRA(OneAdapterMethod):
    name = "seq-lora"
    card = METHODS.get(name)

    # -- hooks
    def recipe(self):
        """The adapter's recipe (the run's LoRA recipe)."""
        return self.ctx.config.lora

    def data(self, task: Task) -> list[Sample]:
        """What learning `task` trains on."""
        return list(self.ctx.train_rows(task))

    def loss(self, task: Task) -> LossFn:
        """The loss of learning `task`: `loss(model, batch)` (the answers' cross-entropy)."""
        return causal_lm_loss

    def before_task(self, task: Task) -> None:
        """Called before training on `task`, with the adapter as the earlier tasks left it."""

    def after_task(self, task: Task) -> None:
        """Called after training on `task` (and after `learned` includes it)."""

    # -- the protocol
    def trained_after(self, learned: Sequence[Task]) -> bool:
        return bool(learned)

    def learn(self, task: Task) -> None:
        if self.adapter not in self.ctx.backbone.adapter_names:
            fresh_adapter(self.ctx, self.adapter, self.ctx.train_seed(self.name, "init"), self.recipe())
        self.before_task(task)
        train_adapter(self.ctx, self.adapter, self.data(task), self.ctx.train_seed(self.name, task.name),
                      f"{self.name} ← {task.name}", loss_fn=self.loss(task))
        self.learned.append(task)
        self.after_task(task)
