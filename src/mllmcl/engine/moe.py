"""A mixture-of-LoRA-experts adapter (MoELoRA, as in CoIN): in every adapted linear layer, E LoRA experts of
rank r/E and a router `Linear(in_features, E)` whose softmax weighs the experts per token, densely (every
expert runs):

    out = base(x) + scale · Σ_e g_e(x) · B_e A_e x,      g(x) = softmax(W_g x)

Stacking the experts' A_e and B_e gives one rank-r LoRA (A, B), and the sum is B · (ĝ(x) ⊙ A x) where ĝ
repeats each gate weight over its expert's r/E rank dimensions. So the adapter is a plain peft LoRA of rank
r — named, saved, loaded, trained and mixed like any other — whose A output is multiplied by the gate in a
forward hook on each `lora_A` module. The gates are the recipe's extra parameters (saved beside peft's file).
The engine's mixed-adapter fast path does not apply (`plain = False`): batches with a MoE adapter take peft's
path, which calls `lora_A` and so the hook. No merging into the base weights (the gate depends on the input).
"""
from __future__ import annotations

import re

import torch
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mllmcl.engine.adapters import RECIPES, LoraRecipe
from mllmcl.models.backbone import Backbone

GATES = "mllmcl_moe_gates"  # the ModuleDict on the bare model holding every MoE adapter's gates


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class MoELoraRecipe(LoraRecipe):
    """A LoRA recipe whose rank is split into `experts` experts of rank rank/experts, mixed per token by a
    softmax gate in every adapted layer."""

    experts: int = Field(4, ge=1)
    """LoRA experts per adapted layer (each of rank rank / experts)"""

    kind = "moe"
    plain = False

    def __post_init__(self) -> None:
        if self.rank % self.experts:
            raise ValueError(f"rank {self.rank} does not split into {self.experts} experts of equal rank")

    def _holder(self, backbone: Backbone) -> torch.nn.ModuleDict:
        model = backbone.base_model
        if not hasattr(model, GATES):
            model.add_module(GATES, torch.nn.ModuleDict())
        return getattr(model, GATES)

    def _layers(self, backbone: Backbone, name: str) -> dict[str, torch.nn.Module]:
        """Gate key → the adapter's `lora_A` linear in each adapted layer."""
        out = {}
        for key, module in backbone.model.named_modules():
            if key.endswith(f".lora_A.{name}"):
                out[re.sub(r"[^A-Za-z0-9_]", "_", key.removesuffix(f".lora_A.{name}"))] = module
        return out

    def attach(self, backbone: Backbone, name: str) -> None:
        layers = self._layers(backbone, name)
        gates = torch.nn.ModuleDict()
        for key, lora_a in layers.items():
            gate = torch.nn.Linear(lora_a.in_features, self.experts, bias=False)
            torch.nn.init.zeros_(gate.weight)  # uniform mixture at the start: the adapter starts as plain LoRA
            gates[key] = gate.to(device=lora_a.weight.device, dtype=lora_a.weight.dtype)
            handle = lora_a.register_forward_hook(_gated(gate, self.experts))
            _handles(backbone).setdefault(name, []).append(handle)
        self._holder(backbone)[name] = gates

    def detach(self, backbone: Backbone, name: str) -> None:
        for handle in _handles(backbone).pop(name, []):
            handle.remove()
        holder = self._holder(backbone)
        if name in holder:
            del holder[name]

    def extra_parameters(self, backbone: Backbone, name: str) -> dict[str, torch.nn.Parameter]:
        gates = self._holder(backbone)[name]
        return {f"{GATES}.{name}.{key}.weight": gate.weight for key, gate in gates.items()}

    def gates(self, backbone: Backbone, name: str) -> dict[str, torch.nn.Linear]:
        """The gate of each adapted layer (for inspection and tests)."""
        return dict(self._holder(backbone)[name].items())


def _gated(gate: torch.nn.Linear, experts: int):
    def hook(module, inputs, output):
        weights = torch.softmax(gate(inputs[0]).float(), dim=-1).to(output.dtype)   # (..., E)
        return output * weights.repeat_interleave(output.shape[-1] // experts, dim=-1)
    return hook


def _handles(backbone: Backbone) -> dict[str, list]:
    model = backbone.model
    if not hasattr(model, "_mllmcl_moe_hooks"):
        model._mllmcl_moe_hooks = {}
    return model._mllmcl_moe_hooks


RECIPES[MoELoraRecipe.kind] = MoELoraRecipe
