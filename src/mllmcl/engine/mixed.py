"""Mixed-adapter inference: every sample of one batch runs with its own LoRA adapter, at single-adapter speed.

peft mixes adapters in a batch (`adapter_names=`) by rebuilding, in every LoRA layer and at every decoding
step, a Python list of each adapter's sample indices, gathering those rows, and scattering the update back.
On a small model that bookkeeping costs more than the LoRA maths. Here the caller orders the batch so that
each adapter's samples are contiguous (`adapter_runs`); the runs are found once per batch, and each LoRA
layer adds adapter a's update to its rows `start:stop`, a view, with no index lists, gathers or scatters:

    out[start:stop] += (x[start:stop] @ A_a.T) @ (scale_a * B_a.T)

which is exactly peft's per-sample LoRA output (tested against it). The peft layers run with adapters
disabled (base output) while forward hooks add the updates; per-adapter projector copies (`modules_to_save`)
replace the projector's output on their rows. Plain LoRA on linear layers only (no DoRA or other peft
variants, no LoRA on embeddings); `supports` says whether a batch qualifies, else the caller keeps peft's path.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer
from peft.utils import ModulesToSaveWrapper

from mllmcl.engine.adapters import BASE

Run = tuple[str, int, int]  # adapter, first row, row after the last


def adapter_runs(names: Sequence[str]) -> list[Run] | None:
    """The batch as contiguous runs of one adapter each, or None if some adapter's rows are not contiguous."""
    runs: list[list] = []
    for row, name in enumerate(names):
        if runs and runs[-1][0] == name:
            runs[-1][2] = row + 1
        elif any(run[0] == name for run in runs):
            return None
        else:
            runs.append([name, row, row + 1])
    return [tuple(run) for run in runs]


def supports(model: torch.nn.Module, names: Sequence[str]) -> bool:
    """True when `names` is grouped into runs and every layer holding one of them is plain LoRA on a linear."""
    if adapter_runs(names) is None:
        return False
    adapters = set(names) - {BASE}
    for module in model.modules():
        if isinstance(module, LoraLayer):
            held = [a for a in adapters if any(a in getattr(module, part) for part in module.adapter_layer_names)]
            if held and (not isinstance(module, LoraLinear) or any(a in module.lora_variant for a in held)):
                return False
    return True


def _check_rows(x: torch.Tensor, rows: int, where: str) -> None:
    if x.shape[0] != rows:
        raise RuntimeError(f"a mixed-adapter batch of {rows} samples reached {where} with {x.shape[0]} rows; "
                           "per-sample adapters need exactly one row per sample")


def _lora_hook(module: LoraLinear, runs: list[Run], rows: int):
    """Forward hook adding each run's own LoRA update to the base output of `module` (None: no run's adapter
    is on this layer)."""
    weights = [(module.lora_A[a].weight.T, module.lora_B[a].weight.T * module.scaling[a], start, stop)
               for a, start, stop in runs if a in module.lora_A]
    if not weights:
        return None

    def hook(_module, args, output):
        x = args[0]
        _check_rows(x, rows, "a LoRA layer")
        for a_t, b_t, start, stop in weights:
            output[start:stop] += ((x[start:stop].to(a_t.dtype) @ a_t) @ b_t).to(output.dtype)
        return output

    return hook


def _copy_hook(module: ModulesToSaveWrapper, runs: list[Run], rows: int):
    """Forward hook: each run with its own copy of the module (`modules_to_save`) takes that copy's output
    (None: no run has a copy here)."""
    copies = [(module.modules_to_save[a], start, stop) for a, start, stop in runs if a in module.modules_to_save]
    if not copies:
        return None

    def hook(_module, args, output):
        x = args[0]
        _check_rows(x, rows, type(module.original_module).__name__)
        for copy, start, stop in copies:
            output[start:stop] = copy(x[start:stop]).to(output.dtype)
        return output

    return hook


@contextmanager
def mixed_adapters(model: torch.nn.Module, names: Sequence[str]) -> Iterator[None]:
    """Within the context, `model` (a peft model) runs sample i with adapter `names[i]` (`BASE` = none).

    `names` must pass `supports`. The peft layers return their base output and hooks add the per-sample
    updates; the hooks are removed and the adapters re-enabled on exit."""
    all_runs = adapter_runs(names)
    if all_runs is None:
        raise ValueError("mixed_adapters needs each adapter's samples next to each other")
    runs = [run for run in all_runs if run[0] != BASE]
    handles = []
    with model.disable_adapter():
        try:
            for module in model.modules():
                hook = None
                if isinstance(module, LoraLinear):
                    hook = _lora_hook(module, runs, len(names))
                elif isinstance(module, ModulesToSaveWrapper):
                    hook = _copy_hook(module, runs, len(names))
                if hook is not None:
                    handles.append(module.register_forward_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()
