"""`o-lora`: O-LoRA (Wang et al., EMNLP Findings 2023) — a new LoRA per task, learned in a subspace
orthogonal to the earlier tasks' LoRAs.

Task t trains a fresh LoRA (`o-lora.rank`) beside the earlier tasks' frozen, active LoRAs and answers with
their sum (methods/summed_lora.py). Its loss adds λ1 · Σ_j Σ_layers ‖A_t A_jᵀ‖₁ between the new A and every
earlier A (`o-lora.lambda1`), and optionally λ2 · ‖θ_t‖² on the new LoRA (`o-lora.lambda2`)."""
from __future__ import annotations

from typing import Sequence

import torch

from mllmcl.cl.context import Context
from mllmcl.cl.methods.catalog import METHODS, OLoRASettings
from mllmcl.cl.methods.summed_lora import SummedLoRA
from mllmcl.engine.adapters import adapter_parameters
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


class OLoRA(SummedLoRA):
    name = "o-lora"
    card = METHODS.get(name)

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.settings: OLoRASettings = ctx.config.block("o-lora")

    def rank(self) -> int:
        return self.settings.rank

    def carry_projector(self) -> bool:
        return self.settings.projector

    def loss(self, new: str) -> LossFn:
        backbone, settings = self.ctx.backbone, self.settings
        params = {k: p for k, p in adapter_parameters(backbone, new).items() if ".lora_" in k}  # no projector
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
