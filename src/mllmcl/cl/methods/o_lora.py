"""`o-lora`: O-LoRA (Wang et al., EMNLP Findings 2023) — a new LoRA per task, learned in a subspace
orthogonal to the earlier tasks' LoRAs.

Task t trains a fresh LoRA (`o-lora.rank`) while the earlier tasks' LoRAs stay frozen but active: their
updates are summed into every forward pass (engine `train(frozen_adapters=…)`). Its loss adds
λ1 · Σ_j Σ_layers ‖A_t A_jᵀ‖₁ between the new A and every earlier A (`o-lora.lambda1`), and optionally
λ2 · ‖θ_t‖² on the new LoRA (`o-lora.lambda2`). No task id at test time: the model answers with the sum of
all LoRAs, merged into one adapter whose update is exactly that sum (peft's "cat" combination). So that the
adapters can be summed, every LoRA here is plain LoRA and the projector stays the base model's: a per-task
projector copy cannot be summed, and LoRA on the projector cannot sit beside the copies other methods keep on
the shared backbone (docs/methods.md, "Differences from the paper")."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from mllmcl.cl.context import Context, fresh_adapter, train_adapter
from mllmcl.cl.methods.base import OneAdapterMethod
from mllmcl.cl.methods.catalog import METHODS, OLoRASettings
from mllmcl.core.errors import UserError
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.engine.adapters import adapter_parameters, delete_adapter, load_adapter, save_adapter, sum_adapters
from mllmcl.engine.train import LossFn, causal_lm_loss


def lora_a_matrices(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Layer → the A matrix (rank, in_features) among an adapter's parameters."""
    return {k.split(".lora_A.")[0]: p for k, p in params.items() if ".lora_A." in k}


def orthogonality(new: dict[str, torch.Tensor], earlier: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Σ_j Σ_layers ‖A_new A_jᵀ‖₁: zero when the new A's rows are orthogonal to every earlier A's rows."""
    total = torch.zeros(())
    for old in earlier:
        for layer, a in new.items():
            total = total + (a @ old[layer].to(a.device).T).abs().sum()
    return total


class OLoRA(OneAdapterMethod):
    name = "o-lora"
    card = METHODS.get(name)

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.settings: OLoRASettings = ctx.config.block("o-lora")
        self.tasks: list[str] = []   # the per-task adapters, in order; self.adapter is their sum

    def recipe(self):
        lora = self.ctx.config.lora  # the run's recipe at O-LoRA's rank (same alpha / rank scale), no projector
        return replace(lora, rank=self.settings.rank, alpha=lora.alpha * self.settings.rank / lora.rank,
                       projector=False)

    def data(self, task: Task) -> list[Sample]:
        return list(self.ctx.train_rows(task))

    def trained_after(self, learned: Sequence[Task]) -> bool:
        return bool(learned)

    def loss(self, new: str) -> LossFn:
        backbone, settings = self.ctx.backbone, self.settings
        params = adapter_parameters(backbone, new)
        a_new = lora_a_matrices(params)
        earlier = [lora_a_matrices(adapter_parameters(backbone, name)) for name in self.tasks]
        if not earlier and settings.lambda2 == 0:
            return causal_lm_loss

        def loss(model, batch):
            total = causal_lm_loss(model, batch)
            if earlier and settings.lambda1:
                total = total + settings.lambda1 * orthogonality(a_new, earlier)
            if settings.lambda2:
                total = total + settings.lambda2 * sum((p ** 2).sum() for p in params.values())
            return total
        return loss

    def learn(self, task: Task) -> None:
        new = f"{self.adapter}_t{len(self.tasks) + 1}"
        fresh_adapter(self.ctx, new, self.ctx.train_seed(self.name, "init", task.name), self.recipe())
        train_adapter(self.ctx, new, self.data(task), self.ctx.train_seed(self.name, task.name),
                      f"{self.name} ← {task.name}", loss_fn=self.loss(new), frozen_adapters=tuple(self.tasks))
        self.tasks.append(new)
        self.learned.append(task)
        self._merge()

    def _merge(self) -> None:
        """The answering adapter: the exact sum of every task's LoRA."""
        if self.adapter in self.ctx.backbone.adapter_names:
            delete_adapter(self.ctx.backbone, self.adapter)
        sum_adapters(self.ctx.backbone, self.tasks, self.adapter)

    def save(self, folder: Path) -> None:
        for name in self.tasks:
            save_adapter(self.ctx.backbone, name, folder)

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        self.learned = list(learned)
        self.tasks = [f"{self.adapter}_t{i + 1}" for i in range(len(learned))]
        for name in self.tasks:
            if not (folder / name).is_dir():
                raise UserError(f"{folder / name}: the o-lora adapter of task {len(self.tasks)} is missing; "
                                "the run cannot resume from here (start it in another --out)")
            if name not in self.ctx.backbone.adapter_names:
                load_adapter(self.ctx.backbone, name, folder / name)
        if self.tasks:
            self._merge()
