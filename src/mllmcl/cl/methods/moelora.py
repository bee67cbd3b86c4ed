"""`moelora`: MoELoRA (CoIN, Chen et al. 2024) — seq-lora whose adapter is a mixture of LoRA experts: each
adapted layer holds E experts of rank r/E (`moelora.experts`, r = the run's `lora.rank`) and a per-token
softmax gate over them (engine/moe.py). Trained sequentially on the tasks like seq-lora; the experts are not
tied to tasks, so nothing but the gate's freedom protects earlier tasks."""
from __future__ import annotations

from dataclasses import asdict

from mllmcl.cl.methods.catalog import METHODS
from mllmcl.cl.methods.seq_lora import SeqLoRA
from mllmcl.engine.settings import MoELoraRecipe


class MoELoRA(SeqLoRA):
    name = "moelora"
    card = METHODS.get(name)  # checks that moelora.experts divides lora.rank when the configuration loads

    def recipe(self):
        return MoELoraRecipe(**asdict(self.ctx.config.lora), experts=self.ctx.config.block("moelora").experts)
