"""`disco`: DISCO (Guo et al., ICCV 2025, "Federated Continual Instruction Tuning"), in the centralised form
the MLLM-CL paper's row ran (MCITlib's port): a LoRA subspace per task and an identity prototype per task.

Task t trains its own block of every adapted layer (methods/task_blocks.py) and keeps as its prototype the
mean text feature of its training prompts. At test time every adapted layer computes
Σ_k w_k · B_k A_k x with w = softmax(cos(text, prototype_k) / τ) over the learned tasks (`disco.temperature`,
0.05 as in MCITlib). Text only: the prototypes never see the image."""
from __future__ import annotations

import torch

from mllmcl.cl.context import Context
from mllmcl.cl.methods.catalog import METHODS, DiscoSettings
from mllmcl.cl.methods.task_blocks import TaskBlockMethod, cosine


class Disco(TaskBlockMethod):
    name = "disco"
    card = METHODS.get(name)
    features = ("text",)

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.settings: DiscoSettings = ctx.config.block("disco")

    def weights(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.softmax(cosine(features["text"], self.identities["text"]) / self.settings.temperature, dim=-1)
