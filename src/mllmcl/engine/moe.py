"""A mixture-of-LoRA-experts adapter (MoELoRA, as in CoIN): in every adapted linear layer, E LoRA experts of
rank r/E and a router `Linear(in_features, E)` whose softmax weighs the experts per token, densely (every
expert runs):

    out = base(x) + scale · Σ_e g_e(x) · B_e A_e x,      g(x) = softmax(W_g x)

Stacking the experts' A_e and B_e gives one rank-r LoRA (A, B), and the sum is B · (ĝ(x) ⊙ A x) where ĝ
repeats each gate weight over its expert's r/E rank dimensions. So the adapter is a plain peft LoRA of rank
r — named, saved, loaded, trained and mixed like any other — whose A output is multiplied by the gate in a
forward hook on each `lora_A` module. The recipe (`MoELoraRecipe`) is plain data in engine/settings.py; the gates
are the adapter's extra parameters (saved beside peft's file). The engine's mixed-adapter fast path does not
apply (`plain = False`): batches with a MoE adapter take peft's path, which calls `lora_A` and so the hook. No
merging into the base weights (the gate depends on the input).
"""
from __future__ import annotations

import re
from typing import Callable

import torch

from mllmcl.models.backbone import Backbone

GATES = "mllmcl_moe_gates"  # the ModuleDict on the bare model holding every MoE adapter's gates


def attach_gates(backbone: Backbone, name: str, experts: int, init: str = "zeros") -> None:
    """Give adapter `name` a gate over `experts` experts in every layer it adapts, applied by a hook on each
    `lora_A`: zero-initialised (`init="zeros"`, a uniform mixture: the adapter starts as plain LoRA) or with
    torch's default Linear init (`"random"`)."""
    gates = torch.nn.ModuleDict()
    for key, lora_a in _layers(backbone, name).items():
        gate = torch.nn.Linear(lora_a.in_features, experts, bias=False)
        if init == "zeros":
            torch.nn.init.zeros_(gate.weight)
        gates[key] = gate.to(device=lora_a.weight.device, dtype=lora_a.weight.dtype)
        handle = lora_a.register_forward_hook(_gated(gate, experts))
        _handles(backbone).setdefault(name, []).append(handle)
    _holder(backbone)[name] = gates


def expert_usage(backbone: Backbone, name: str, run: Callable[[], object], top: int = 2) -> dict[str, torch.Tensor]:
    """How often each expert of adapter `name` is among a token's `top` gate weights, per layer, while `run()`
    runs forward passes with the adapter (e.g. over a task's prompts): gate key → counts (experts,)."""
    counts: dict[str, torch.Tensor] = {}

    def counter(key: str):
        def hook(module, inputs, output):
            chosen = output.detach().topk(min(top, output.shape[-1]), dim=-1).indices.flatten()
            counts[key] = counts.get(key, 0) + torch.bincount(chosen.cpu(), minlength=output.shape[-1])
        return hook

    handles = [gate.register_forward_hook(counter(key)) for key, gate in gates(backbone, name).items()]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return counts


def detach_gates(backbone: Backbone, name: str) -> None:
    for handle in _handles(backbone).pop(name, []):
        handle.remove()
    holder = _holder(backbone)
    if name in holder:
        del holder[name]


def gate_parameters(backbone: Backbone, name: str) -> dict[str, torch.nn.Parameter]:
    """The gates' weights of adapter `name`, by their name on the model."""
    return {f"{GATES}.{name}.{key}.weight": gate.weight for key, gate in gates(backbone, name).items()}


def gates(backbone: Backbone, name: str) -> dict[str, torch.nn.Linear]:
    """The gate of each layer adapter `name` adapts."""
    return dict(_holder(backbone)[name].items())


def _holder(backbone: Backbone) -> torch.nn.ModuleDict:
    model = backbone.base_model
    if not hasattr(model, GATES):
        model.add_module(GATES, torch.nn.ModuleDict())
    return getattr(model, GATES)


def _layers(backbone: Backbone, name: str) -> dict[str, torch.nn.Module]:
    """Gate key → the adapter's `lora_A` linear in each adapted layer."""
    out = {}
    for key, module in backbone.model.named_modules():
        if key.endswith(f".lora_A.{name}"):
            out[layer_key(key.removesuffix(f".lora_A.{name}"))] = module
    return out


def layer_key(module: str) -> str:
    """The gate key of the adapted module named `module` (as `named_modules` or a parameter's prefix names it)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", module)


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
