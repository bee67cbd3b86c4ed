"""`seq-lora` (LoRA-FT in MLLM-CL): one LoRA adapter fine-tuned on each task in turn.

The paper's plain sequential baseline: nothing protects what earlier tasks taught the adapter, so later
tasks overwrite it (catastrophic forgetting). It is also the base of the sequential family: a subclass
changes only what it hands the engine — the data of a task (`+replay`), the loss (`ewc`, `lwf`), the
adapter's recipe (`moelora`) — through the hooks below, never the loop.

The first task is learned with nothing to protect: where that step is plain LoRA training (seq-lora, EWC,
LwF, `+replay`), it is the very training of MR-LoRA's expert for that task, so the expert is taken from the
run's expert pool (trained there once, seeded as an expert) instead of being trained again."""
from __future__ import annotations

from typing import ClassVar, Sequence

from mllmcl.context import fresh_adapter, train_adapter
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.engine import load_adapter
from mllmcl.engine.train import LossFn, causal_lm_loss
from mllmcl.methods import METHODS
from mllmcl.methods.base import OneAdapterMethod
from mllmcl.methods.experts import ExpertPool


@METHODS.register("seq-lora", "LoRA-FT: one LoRA trained on each task in turn (forgets)")
class SeqLoRA(OneAdapterMethod):
    name = "seq-lora"
    sequential: ClassVar[bool] = True
    replayable: ClassVar[bool] = True

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

    def first_step_is_an_expert(self, task: Task) -> bool:
        """Whether learning `task` first is exactly how MR-LoRA's expert of `task` is trained: a fresh adapter
        of the run's recipe, on the task's own rows, with the answers' cross-entropy. Nothing earlier is there
        to protect yet, so seq-lora, EWC, LwF and their `+replay` forms all start that way."""
        return (not self.learned and self.adapter not in self.ctx.backbone.adapter_names
                and self.recipe() == self.ctx.config.lora and self.loss(task) is causal_lm_loss
                and self.data(task) == list(self.ctx.train_rows(task)))

    def learn(self, task: Task) -> None:
        if self.first_step_is_an_expert(task):
            # the same training, seeded alike: the expert is trained once per run (or per sweep seed) and copied
            self.before_task(task)
            expert = ExpertPool(self.ctx).ensure(task)
            load_adapter(self.ctx.backbone, self.adapter, self.ctx.experts / expert)
        else:
            if self.adapter not in self.ctx.backbone.adapter_names:
                fresh_adapter(self.ctx, self.adapter, self.ctx.train_seed(self.name, "init"), self.recipe())
            self.before_task(task)
            train_adapter(self.ctx, self.adapter, self.data(task), self.ctx.train_seed(self.name, task.name),
                          f"{self.name} ← {task.name}", loss_fn=self.loss(task))
        self.learned.append(task)
        self.after_task(task)
