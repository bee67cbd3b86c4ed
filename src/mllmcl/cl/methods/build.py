"""A method from its entry in the configuration (`seq-lora`, `mr-lora[mllm]`, `ewc+replay`): the entry is
checked against the catalog (methods/catalog.py), then the method's class is built."""
from __future__ import annotations

from mllmcl.cl.context import Context
from mllmcl.cl.methods.base import Method
from mllmcl.cl.methods.catalog import check_method_spec
from mllmcl.cl.methods.cl_moe import CLMoE
from mllmcl.cl.methods.disco import Disco
from mllmcl.cl.methods.ewc import EWC
from mllmcl.cl.methods.hide_llava import HiDeLLaVA
from mllmcl.cl.methods.joint import Joint
from mllmcl.cl.methods.lwf import LwF
from mllmcl.cl.methods.moelora import MoELoRA
from mllmcl.cl.methods.mr_lora import MRLoRA
from mllmcl.cl.methods.o_lora import OLoRA
from mllmcl.cl.methods.oracle import Oracle
from mllmcl.cl.methods.replay import with_replay
from mllmcl.cl.methods.sefe import SEFE
from mllmcl.cl.methods.seq_lora import SeqLoRA
from mllmcl.cl.methods.zero_shot import ZeroShot

IMPLEMENTATIONS: dict[str, type] = {
    **{method.name: method for method in (ZeroShot, SeqLoRA, Joint, MRLoRA, Oracle, EWC, LwF, MoELoRA, OLoRA,
                                          CLMoE, HiDeLLaVA, SEFE, Disco)},
    "replay": with_replay(SeqLoRA),  # = seq-lora+replay (LoRA-FT* in the paper's tables)
}
"""Method name → its class; the same names and cards as the catalog (tests/test_catalogs.py)."""


def build_method(spec: str, ctx: Context) -> Method:
    """The method of entry `spec`, named as written."""
    parsed = check_method_spec(spec)
    method = IMPLEMENTATIONS[parsed.name]
    if parsed.replay:
        method = with_replay(method)
    extra = {"router": parsed.router} if parsed.router is not None else {}
    return method(ctx, name=parsed.label, **extra)
