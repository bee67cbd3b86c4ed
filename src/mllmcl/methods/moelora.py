"""`moelora`: MoELoRA (CoIN, Chen et al. 2024) — seq-lora whose adapter is a mixture of LoRA experts: each
adapted layer holds E experts of rank r/E (`moelora.experts`, r = the run's `lora.rank`) and a per-token
softmax gate over them (engine/moe.py). Trained sequentially on the tasks like seq-lora; the experts are not
tied to tasks, so nothing but the gate's freedom protects earlier tasks."""
from __future__ import annotations

from dataclasses import asdict

from pydantic import Field

from mllmcl.config import Settings
from mllmcl.engine.moe import MoELoraRecipe
from mllmcl.errors import UserError
from mllmcl.methods import METHODS
from mllmcl.methods.seq_lora import SeqLoRA


class MoELoRASettings(Settings):
    """MoELoRA's experts."""

    experts: int = Field(4, ge=1)
    """LoRA experts per adapted layer, each of rank lora.rank / experts"""


@METHODS.register("moelora", "MoELoRA: seq-lora with a mixture of LoRA experts and a per-token gate in every layer",
                  settings=MoELoRASettings)
class MoELoRA(SeqLoRA):
    name = "moelora"

    @staticmethod
    def check_config(config) -> None:
        experts, rank = config.block("moelora").experts, config.lora.rank
        if rank % experts:
            raise UserError(f"moelora.experts={experts} does not divide lora.rank={rank} into experts of equal rank")

    def recipe(self):
        return MoELoraRecipe(**asdict(self.ctx.config.lora), experts=self.ctx.config.block("moelora").experts)
