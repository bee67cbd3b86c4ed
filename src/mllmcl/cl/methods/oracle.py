"""`oracle`: the MR-LoRA experts answering with the true task identity — the paper's Oracle row, the
accuracy MR-LoRA would reach with a perfect router. Only its final accuracies are reported."""
from __future__ import annotations

from mllmcl.cl.context import Context
from mllmcl.cl.methods.catalog import METHODS
from mllmcl.cl.methods.mr_lora import MRLoRA


class Oracle(MRLoRA):
    name = "oracle"
    card = METHODS.get(name)  # not routed: its "routing" is the truth by construction

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, router="oracle", name=name)
