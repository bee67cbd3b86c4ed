"""`hide-llava`: HiDe-LLaVA (Guo et al., ACL 2025): task-specific expansion in the top layer, task-general
fusion below it.

Task t trains its own block of every adapted layer (methods/task_blocks.py) and keeps two anchors: the mean
image feature and the mean text feature of its training prompts. At test time:
- the top layer (the language model's last decoder layer, and the output head when adapted) computes
  Σ_k w_k · B_k A_k x, w = softmax(s / τ), s_k = (cos(image, image anchor_k) + cos(text, text anchor_k)) / 2
  over the learned tasks (`hide-llava.temperature`, 0.1 as in the reference);
- every other adapted layer computes (Σ_k B_k)(Σ_k A_k) x over the learned tasks, cross terms included.
One anchor of each kind per task, so the reference's max over a task's anchors is that anchor.
`hide-llava.fuse: false` weighs the blocks by the anchors in every layer instead (an ablation of the fusion)."""
from __future__ import annotations

import torch

from mllmcl.cl.context import Context
from mllmcl.cl.methods.catalog import METHODS, HiDeSettings
from mllmcl.cl.methods.task_blocks import TaskBlockMethod, cosine
from mllmcl.engine import blocks


class HiDeLLaVA(TaskBlockMethod):
    name = "hide-llava"
    card = METHODS.get(name)
    features = ("image", "text")

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.settings: HiDeSettings = ctx.config.block("hide-llava")

    def weights(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        similarity = (cosine(features["image"], self.identities["image"])
                      + cosine(features["text"], self.identities["text"])) / 2
        return torch.softmax(similarity / self.settings.temperature, dim=-1)

    def fused_layers(self) -> set[str]:
        if not self.settings.fuse:
            return set()
        every = set(blocks.layers(self.ctx.backbone, self.adapter))
        return every - blocks.top_layer_keys(self.ctx.backbone, self.adapter)
