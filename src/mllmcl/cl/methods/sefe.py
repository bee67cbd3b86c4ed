"""`sefe`: SEFE (Chen et al., ICML 2025) — RegLoRA, with Answer Style Diversification as a setting.

RegLoRA: each task trains a fresh LoRA on the model merged after the earlier tasks (their LoRAs frozen and
summed in, methods/summed_lora.py). After a task, the largest `sefe.key_share` of the entries of each
adapted matrix's update |B A| (unscaled) join that matrix's key positions. Every later task adds
λ · (1/M) · Σ_matrices mean_{(i,j) ∈ keys} |(B A)_ij| to its loss (`sefe.lambda`, M the adapted matrices):
an L1 pull of the new update toward zero where earlier tasks' knowledge sits.

ASD (`sefe.asd`, a share of each task's training rows, 0 = off): those rows are rewritten into another
answer style by rules (data/styles.py) before training, so a task does not teach one style for everything.
The MLLM-CL paper's SEFE row is RegLoRA without ASD, the default."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from mllmcl.cl.context import Context
from mllmcl.cl.methods.base import require_saved
from mllmcl.cl.methods.catalog import METHODS, SEFESettings
from mllmcl.cl.methods.summed_lora import SummedLoRA
from mllmcl.core.io import write_bytes_atomic
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.data.styles import diversify
from mllmcl.engine.adapters import adapter_parameters
from mllmcl.engine.train import LossFn, causal_lm_loss

STATE = "sefe_keys.safetensors"


def lora_updates(params: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Layer → (B, A) of an adapter's LoRA weights: the update of that layer is B @ A (unscaled)."""
    a = {k.split(".lora_A.")[0]: p for k, p in params.items() if ".lora_A." in k}
    b = {k.split(".lora_B.")[0]: p for k, p in params.items() if ".lora_B." in k}
    return {layer: (b[layer], a[layer]) for layer in a}


def key_positions(update: torch.Tensor, share: float) -> torch.Tensor:
    """A boolean mask of the `share` largest entries of |update| (at least one)."""
    flat = update.detach().abs().flatten().float()
    k = max(1, int(round(share * flat.numel())))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[flat.topk(k).indices] = True
    return mask.view(update.shape)


def reg_penalty(updates: dict[str, tuple[torch.Tensor, torch.Tensor]], keys: dict[str, torch.Tensor]) -> torch.Tensor:
    """(1/M) · Σ_matrices mean_{keys} |(B A)_ij| over the M adapted matrices: zero when the new update is zero
    at every earlier key position."""
    total = torch.zeros(())
    for layer, (b, a) in updates.items():
        mask = keys.get(layer)
        if mask is not None and mask.any():
            total = total + (b @ a)[mask.to(b.device)].abs().mean()
    return total / max(1, len(updates))


class SEFE(SummedLoRA):
    name = "sefe"
    card = METHODS.get(name)

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.settings: SEFESettings = ctx.config.block("sefe")
        self.keys: dict[str, torch.Tensor] = {}

    def carry_projector(self) -> bool:
        return self.settings.projector

    def data(self, task: Task) -> list[Sample]:
        rows = super().data(task)
        if self.settings.asd == 0:
            return rows
        return diversify(rows, self.settings.asd, self.ctx.data_seed(self.name, "asd", task.name))

    def loss(self, new: str) -> LossFn:
        if not self.keys or self.settings.lambda_ == 0:
            return causal_lm_loss
        updates, keys, weight = lora_updates(adapter_parameters(self.ctx.backbone, new)), self.keys, self.settings.lambda_

        def loss(model, batch):
            return causal_lm_loss(model, batch) + weight * reg_penalty(updates, keys)
        return loss

    def after_task(self, new: str) -> None:
        for layer, (b, a) in lora_updates(adapter_parameters(self.ctx.backbone, new)).items():
            mask = key_positions(b @ a, self.settings.key_share).cpu()
            self.keys[layer] = mask | self.keys[layer] if layer in self.keys else mask

    def save(self, folder: Path) -> None:
        super().save(folder)
        if self.keys:
            write_bytes_atomic(folder / STATE, safetensors_bytes({k: v.to(torch.uint8) for k, v in self.keys.items()}))

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        super().restore(folder, learned)
        self.keys = {}
        if not learned:
            return
        saved = require_saved(folder / STATE, "the SEFE key positions", learned)
        self.keys = {k: v.bool() for k, v in load_file(str(saved)).items()}
