"""Task-block LoRA: one LoRA of rank T·r in every adapted layer, whose T blocks of rank r belong to T tasks
(HiDe-LLaVA and DISCO keep one LoRA subspace per task this way). Block k is (A_k, B_k): rows k·r…(k+1)·r of
A and the same columns of B. A forward hook on each `lora_A` decides what reaches `lora_B`, per layer:

- mixed (the default): block k's output is scaled by a weight w_k, one weight vector per sample (or one for
  the whole batch), so the update is Σ_k w_k · B_k A_k x. Training task t sets w = one-hot(t): only block t
  runs, and only block t gets a gradient. Answering sets each sample's weights from its similarity to the
  tasks' identity features (the method computes them);
- fused (HiDe-LLaVA's lower layers): every learned block reads the sum of the learned blocks' A x, so the
  update is (Σ_k B_k)(Σ_k A_k) x over the learned blocks k, cross terms included.

So the adapter is a plain peft LoRA — named, saved, loaded and trained like any other — and the blocks'
weights are state of the method that owns it (`route`), not saved with it. Batches with a block adapter take
peft's path (`plain = False`), which calls `lora_A` and so the hook."""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from mllmcl.models.backbone import Backbone
from mllmcl.models.families import FAMILIES


@dataclass
class BlockState:
    """How adapter `name`'s blocks are mixed now: `weights` (rows or 1, T), `fused` layer keys, `learned`
    (T,) 0/1 — the blocks a fused layer sums over."""

    blocks: int
    weights: torch.Tensor | None = None
    fused: frozenset[str] = frozenset()
    learned: torch.Tensor | None = None
    handles: list = field(default_factory=list)


def attach(backbone: Backbone, name: str, blocks: int) -> None:
    """Hook every `lora_A` of adapter `name`; until `route` sets weights, the adapter refuses to run."""
    state = BlockState(blocks)
    for key, lora_a in layers(backbone, name).items():
        state.handles.append(lora_a.register_forward_hook(_hook(state, key)))
    _states(backbone)[name] = state


def detach(backbone: Backbone, name: str) -> None:
    state = _states(backbone).pop(name, None)
    for handle in state.handles if state else ():
        handle.remove()


def layers(backbone: Backbone, name: str) -> dict[str, torch.nn.Module]:
    """Layer key (the adapted module's name) → its `lora_A` linear of adapter `name`."""
    suffix = f".lora_A.{name}"
    return {key.removesuffix(suffix): module for key, module in backbone.model.named_modules()
            if key.endswith(suffix)}


def top_layer_keys(backbone: Backbone, name: str) -> set[str]:
    """The layer keys of adapter `name` in the language model's last decoder layer, and the output head: what
    HiDe-LLaVA keeps task-specific."""
    keys, language = layers(backbone, name), FAMILIES.get(backbone.family).language
    index = [int(m.group(1)) for k in keys if (m := re.search(rf"{language}.*\.layers\.(\d+)\.", k))]
    if not index:
        raise ValueError(f"adapter {name!r} adapts no decoder layer of the language model")
    top = re.compile(rf"{language}.*\.layers\.{max(index)}\.")
    return {k for k in keys if top.search(k) or k.endswith("lm_head")}


@contextmanager
def route(backbone: Backbone, name: str, weights: torch.Tensor, fused: Iterable[str] = (),
          learned: torch.Tensor | None = None) -> Iterator[None]:
    """Within the block, adapter `name` mixes its blocks by `weights` — shape (T,) for every sample, or
    (rows, T), one row per sample of every batch that runs — and fuses the layers `fused` over the blocks
    marked in `learned` (T,)."""
    state = _states(backbone)[name]
    weights = torch.as_tensor(weights, dtype=torch.float32)
    weights = weights.unsqueeze(0) if weights.dim() == 1 else weights
    if weights.shape[-1] != state.blocks:
        raise ValueError(f"{weights.shape[-1]} block weights for an adapter of {state.blocks} blocks")
    if fused and learned is None:
        raise ValueError("fused layers need the learned blocks")
    saved = (state.weights, state.fused, state.learned)
    state.weights, state.fused = weights, frozenset(fused)
    state.learned = None if learned is None else torch.as_tensor(learned, dtype=torch.float32)
    try:
        yield
    finally:
        state.weights, state.fused, state.learned = saved


def one_hot(blocks: int, index: int) -> torch.Tensor:
    weights = torch.zeros(blocks)
    weights[index] = 1.0
    return weights


def per_block(values: torch.Tensor, key: str, weight: torch.Tensor) -> torch.Tensor:
    """A value per block (or per expert), `values` of shape (T,), laid over the LoRA weight `weight` named
    `key`: over A's rows (its rank dimension) or B's columns, broadcastable against `weight`."""
    dim = 0 if ".lora_A." in key else 1
    shape = [1, 1]
    shape[dim] = -1
    return values.repeat_interleave(weight.shape[dim] // len(values)).view(shape).to(weight.device)


def _hook(state: BlockState, key: str):
    def hook(module, inputs, output):
        if state.weights is None:
            raise RuntimeError("a task-block adapter runs only inside engine.blocks.route (its method answers)")
        blocks = state.blocks
        out = output.unflatten(-1, (blocks, output.shape[-1] // blocks))       # (rows, …, T, r)
        if key in state.fused:
            learned = state.learned.to(out.dtype).view(blocks, 1)
            return ((out * learned).sum(-2, keepdim=True) * learned).flatten(-2)
        weights = state.weights.to(device=out.device, dtype=out.dtype)
        if weights.shape[0] not in (1, out.shape[0]):
            raise RuntimeError(f"{weights.shape[0]} rows of block weights for a batch of {out.shape[0]}")
        weights = weights.view(weights.shape[0], *([1] * (out.dim() - 3)), blocks, 1)
        return (out * weights).flatten(-2)
    return hook


def _states(backbone: Backbone) -> dict[str, BlockState]:
    model = backbone.model
    if not hasattr(model, "_mllmcl_blocks"):
        model._mllmcl_blocks = {}
    return model._mllmcl_blocks
