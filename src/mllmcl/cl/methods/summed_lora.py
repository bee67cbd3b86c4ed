"""What O-LoRA and SEFE's RegLoRA share: a fresh LoRA per task, trained while the earlier tasks' LoRAs stay
frozen but active (their updates are summed into every forward pass, engine `train(frozen_adapters=…)`), and
answers from the sum of all of them, merged into one adapter whose update is exactly that sum (peft's "cat"
combination). With no task id at test time, this is the model "merged after every task" that both methods
describe, kept as separate LoRAs on the shared backbone that other methods use too.

The projector: by default it stays the base model's (each task LoRA is plain). With `carry_projector()`
(`o-lora.projector`, `sefe.projector`) one projector copy is trained with every task and carried to the next,
as MCITlib carries its projector: task t's LoRA starts with the projector that task t-1 left, and the
answering adapter holds the latest one. A subclass gives the task's loss (`loss(new)`), may keep state after
each task (`after_task(new)`) and says whether it carries the projector."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from mllmcl.cl.context import Context, fresh_adapter, train_adapter
from mllmcl.cl.methods.base import OneAdapterMethod, require_saved
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.core.io import write_bytes_atomic
from mllmcl.engine.adapters import (delete_adapter, drop_projector, load_adapter, load_projector_state,
                                    save_adapter, sum_adapters)
from mllmcl.engine.settings import LoraRecipe
from mllmcl.engine.train import LossFn, causal_lm_loss


class SummedLoRA(OneAdapterMethod):
    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.tasks: list[str] = []   # the per-task adapters, in order; self.adapter is their sum
        self.projector: dict[str, torch.Tensor] | None = None  # the carried projector copy, once trained

    # -- what a subclass decides
    def rank(self) -> int:
        """Each task's LoRA rank (the run's by default)."""
        return self.ctx.config.lora.rank

    def loss(self, new: str) -> LossFn:
        """The loss of training adapter `new` (the earlier tasks' adapters are `self.tasks`)."""
        return causal_lm_loss

    def after_task(self, new: str) -> None:
        """Called once adapter `new` is trained, before it joins `self.tasks`."""

    def carry_projector(self) -> bool:
        """Train one projector copy across the tasks (only where the run's recipe has one)."""
        return False

    # -- the loop
    def recipe(self) -> LoraRecipe:
        """The run's recipe at `rank()` (same alpha / rank scale), with a projector copy only when carried."""
        lora, rank = self.ctx.config.lora, self.rank()
        return replace(lora, rank=rank, alpha=lora.alpha * rank / lora.rank,
                       projector=lora.projector and self.carry_projector())

    def data(self, task: Task) -> list[Sample]:
        return list(self.ctx.train_rows(task))

    def trained_after(self, learned: Sequence[Task]) -> bool:
        return bool(learned)

    def learn(self, task: Task) -> None:
        new = f"{self.adapter}_t{len(self.tasks) + 1}"
        recipe = self.recipe()
        fresh_adapter(self.ctx, new, self.ctx.train_seed(self.name, "init", task.name), recipe)
        if recipe.projector and self.projector is not None:
            load_projector_state(self.ctx.backbone, new, self.projector)
        train_adapter(self.ctx, new, self.data(task), self.ctx.train_seed(self.name, task.name),
                      f"{self.name} ← {task.name}", loss_fn=self.loss(new), frozen_adapters=tuple(self.tasks))
        self.after_task(new)
        if recipe.projector:  # the copy moves on to the next task; the task's LoRA stays plain, to be summed
            self.projector = drop_projector(self.ctx.backbone, new)
        self.tasks.append(new)
        self.learned.append(task)
        self._merge()

    def _merge(self) -> None:
        """The answering adapter: the exact sum of every task's LoRA."""
        if self.adapter in self.ctx.backbone.adapter_names:
            delete_adapter(self.ctx.backbone, self.adapter)
        sum_adapters(self.ctx.backbone, self.tasks, self.adapter, projector=self.projector)

    def save(self, folder: Path) -> None:
        for name in self.tasks:
            save_adapter(self.ctx.backbone, name, folder)
        if self.projector is not None:
            write_bytes_atomic(folder / self._projector_file(), safetensors_bytes(self.projector))

    def _projector_file(self) -> str:
        return f"{self.adapter}_projector.safetensors"

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        self.learned = list(learned)
        self.tasks = [f"{self.adapter}_t{i + 1}" for i in range(len(learned))]
        for i, name in enumerate(self.tasks):
            require_saved(folder / name, f"the {self.name} adapter of task {i + 1}", learned)
            if name not in self.ctx.backbone.adapter_names:
                load_adapter(self.ctx.backbone, name, folder / name)
        self.projector = None
        if self.tasks and self.recipe().projector:
            saved = require_saved(folder / self._projector_file(), f"the {self.name} projector copy", learned)
            self.projector = load_file(str(saved))
        if self.tasks:
            self._merge()
