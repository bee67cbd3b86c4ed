"""`oracle`: the MR-LoRA experts answering with the true task identity — the paper's Oracle row, the
accuracy MR-LoRA would reach with a perfect router. Only its final accuracies are reported."""
from __future__ import annotations

from typing import ClassVar

from mllmcl.context import Context
from mllmcl.methods import METHODS
from mllmcl.methods.mr_lora import MRLoRA


@METHODS.register("oracle", "the mr-lora experts with the true task identity (upper reference)")
class Oracle(MRLoRA):
    name = "oracle"
    sequential: ClassVar[bool] = False
    routed: ClassVar[bool] = False  # its "routing" is the truth by construction
    takes_router: ClassVar[bool] = False

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, router="oracle", name=name)
