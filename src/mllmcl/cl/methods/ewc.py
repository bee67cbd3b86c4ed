"""`ewc`: online Elastic Weight Consolidation (Kirkpatrick et al. 2017) on the sequential LoRA adapter.

After each task, the diagonal (empirical) Fisher information of the adapter's trainable parameters is
estimated as Kirkpatrick et al. define it, from the squared gradient of each sample's own loss (`ewc.samples`
rows of the task, one backward pass each), and the adapter's weights are taken
as the anchor θ*. The Fisher is kept online: F ← γ·F + F_task (`ewc.gamma`; 1 sums the tasks). Every later
task adds λ/2 · Σ_i F_i (θ_i − θ*_i)² to its loss (`ewc.lambda`), so weights that mattered for earlier tasks
move less. The loop, data and adapter are seq-lora's; only the loss and the after-task step differ."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from mllmcl.cl.context import Context
from mllmcl.cl.methods.base import require_saved
from mllmcl.cl.methods.catalog import METHODS, EWCSettings
from mllmcl.cl.methods.seq_lora import SeqLoRA
from mllmcl.core.io import write_bytes_atomic
from mllmcl.data.mllm_cl import Task
from mllmcl.engine.adapters import adapter_parameters
from mllmcl.engine.train import LossFn, causal_lm_loss, squared_gradients

STATE = "ewc_state.safetensors"


def ewc_penalty(params: dict[str, torch.Tensor], fisher: dict[str, torch.Tensor],
                anchor: dict[str, torch.Tensor], weight: float) -> torch.Tensor:
    """weight/2 · Σ_i F_i (θ_i − θ*_i)²: zero at the anchor, growing quadratically away from it."""
    total = sum(((params[k] - anchor[k].to(params[k].device)) ** 2 * fisher[k].to(params[k].device)).sum()
                for k in fisher)
    return 0.5 * weight * total


class EWC(SeqLoRA):
    name = "ewc"
    card = METHODS.get(name)

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.settings: EWCSettings = ctx.config.block("ewc")
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def loss(self, task: Task) -> LossFn:
        if not self.fisher or self.settings.lambda_ == 0:
            return causal_lm_loss
        params = adapter_parameters(self.ctx.backbone, self.adapter)
        fisher, anchor, weight = self.fisher, self.anchor, self.settings.lambda_

        def loss(model, batch):
            return causal_lm_loss(model, batch) + ewc_penalty(params, fisher, anchor, weight)
        return loss

    def after_task(self, task: Task) -> None:
        fisher = squared_gradients(self.ctx.backbone, self.data(task), self.adapter, 1, self.settings.samples,
                                   self.ctx.train_seed(self.name, "fisher", task.name))  # batches of one: per sample
        gamma = self.settings.gamma
        self.fisher = {k: gamma * self.fisher[k] + f if k in self.fisher else f for k, f in fisher.items()}
        self.anchor = {k: p.detach().clone() for k, p in adapter_parameters(self.ctx.backbone, self.adapter).items()}

    def save(self, folder: Path) -> None:
        super().save(folder)
        if self.fisher:
            tensors = {**{f"fisher/{k}": v.contiguous().cpu() for k, v in self.fisher.items()},
                       **{f"anchor/{k}": v.contiguous().cpu() for k, v in self.anchor.items()}}
            write_bytes_atomic(folder / STATE, safetensors_bytes(tensors))

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        super().restore(folder, learned)
        if not learned:
            return
        tensors = load_file(str(require_saved(folder / STATE, "the EWC state", learned)))
        self.fisher = {k.removeprefix("fisher/"): v for k, v in tensors.items() if k.startswith("fisher/")}
        self.anchor = {k.removeprefix("anchor/"): v for k, v in tensors.items() if k.startswith("anchor/")}
