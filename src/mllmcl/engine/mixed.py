"""Mixed-adapter inference: every sample of one batch runs with its own LoRA adapter, at single-adapter speed.

peft mixes adapters in a batch (`adapter_names=`) by rebuilding, in every LoRA layer and at every decoding
step, a Python list of each adapter's sample indices, gathering those rows, and scattering the update back.
On a small model that bookkeeping costs more than the LoRA maths. Here the caller orders each batch so that
every adapter's samples are contiguous; the runs are found once per batch (`MixedAdapters.route`), and each
LoRA layer adds adapter a's update to its rows `start:stop`, a view, with no index lists, gathers or scatters:

    out[start:stop] += scale_a * (x[start:stop] @ A_a.T) @ B_a.T

which is exactly peft's per-sample LoRA output (tested against it). When the runs cover the batch, all runs
can take one batched matmul pair against the adapters stacked once per request, as many operations as a
single adapter: a balanced mix always (a free view), uneven runs at decoding steps (padded to the longest run;
a prompt's many tokens per sample make padding cost more than it saves). The peft layers run with adapters
disabled (base output) while forward hooks add the updates; per-adapter projector copies (`modules_to_save`)
replace the projector's output on their rows. Everything that does not depend on the batch (disabling the
adapters, finding the layers, registering the hooks) is done once per request, not once per batch.
Plain LoRA on linear layers only (no DoRA or other peft variants, no LoRA on embeddings); `supports` says
whether a request qualifies, else the caller keeps peft's path.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

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


def supports(model: torch.nn.Module, names: Iterable[str]) -> bool:
    """True when every layer holding one of the adapters `names` is plain LoRA on a linear layer, and no
    adapter's recipe adds computation of its own (e.g. MoE-LoRA's gates)."""
    adapters = set(names) - {BASE}
    recipes = getattr(model, "_mllmcl_recipes", {})
    if any(not recipes[a].plain for a in adapters if a in recipes):
        return False
    for module in model.modules():
        if isinstance(module, LoraLayer):
            held = [a for a in adapters if any(a in getattr(module, part) for part in module.adapter_layer_names)]
            if held and (not isinstance(module, LoraLinear) or any(a in module.lora_variant for a in held)):
                return False
    return True


class _RunHook:
    """A forward hook that treats each run of the batch with what its module holds for that run's adapter
    (`held`: adapter name -> LoRA weights or a module copy); runs of adapters it holds nothing for pass."""

    def __init__(self, held: dict):
        self.held = held
        self.runs: list = []  # (what is held for the run's adapter, first row, row after the last)
        self.rows = 0

    def route(self, runs: list[Run], rows: int) -> None:
        self.runs = [(self.held[a], start, stop) for a, start, stop in runs if a in self.held]
        self.rows = rows


class _LoraRuns(_RunHook):
    """Forward hook of one LoRA linear: adds each run's own LoRA update to the base output.

    Three paths, all equal to peft's output (tested): runs of one length that cover the batch (a balanced
    mix) are viewed as (runs, rows per run, features) for one batched matmul pair against the stacked
    adapters; uneven runs covering the batch do the same at decoding steps after padding every run to the
    longest (one gather in, one out); anything else (base rows, prompts of uneven runs, adapters of different
    ranks) takes one matmul pair per run."""

    def __init__(self, module: LoraLinear, adapters: set[str]):
        super().__init__({a: (module.lora_A[a].weight.T, module.lora_B[a].weight.T, module.scaling[a])
                          for a in adapters if a in module.lora_A})
        self.stacked: tuple[torch.Tensor, torch.Tensor] | None = None  # (A stack, B stack) when batched
        self.padding: tuple[torch.Tensor, torch.Tensor] | None = None  # (fill, slot) when runs are uneven
        self._stacks: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def route(self, runs: list[Run], rows: int) -> None:
        super().route(runs, rows)
        mine = [a for a, _, _ in runs if a in self.held]
        lengths = [stop - start for _, start, stop in self.runs]
        ranks = {a_t.shape[1] for (a_t, _, _), _, _ in self.runs}
        self.stacked, self.padding = None, None
        if len(mine) > 1 and len(ranks) == 1 and sum(lengths) == rows:
            self.stacked = self._stack(tuple(mine))
            longest = max(lengths)
            if min(lengths) < longest:  # runs padded to the longest: which row fills each slot, where each row went
                fill = [start + min(j, stop - start - 1) for _, start, stop in self.runs for j in range(longest)]
                slot = [i * longest + j for i, length in enumerate(lengths) for j in range(length)]
                device = self.stacked[0].device
                self.padding = (torch.tensor(fill, device=device), torch.tensor(slot, device=device))

    def _stack(self, adapters: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """A of each adapter stacked (runs, in, rank) and B scaled and stacked (runs, rank, out), kept for the
        request (the weights do not change during inference)."""
        if adapters not in self._stacks:
            weights = [self.held[a] for a in adapters]
            self._stacks[adapters] = (torch.stack([a_t for a_t, _, _ in weights]),
                                      torch.stack([b_t * scale for _, b_t, scale in weights]))
        return self._stacks[adapters]

    def __call__(self, _module, args, output: torch.Tensor) -> torch.Tensor:
        if not self.runs:
            return output
        x = args[0]
        _check_rows(x, self.rows, "a LoRA layer")
        (a_t, _, _), _, _ = self.runs[0]
        if not (x.dtype == output.dtype == a_t.dtype and output.is_contiguous()):
            for (a_t, b_t, scale), start, stop in self.runs:  # mixed precision: the adapter's dtype, then the output's
                output[start:stop] += (scale * ((x[start:stop].to(a_t.dtype) @ a_t) @ b_t)).to(output.dtype)
            return output
        x2, out2 = x.reshape(-1, x.shape[-1]), output.view(-1, output.shape[-1])
        if self.stacked is not None and self.padding is None:
            a_all, b_all = self.stacked
            runs = a_all.shape[0]
            out3 = output.view(runs, -1, output.shape[-1])
            out3.baddbmm_(torch.bmm(x.reshape(runs, -1, x.shape[-1]), a_all), b_all)
            return output
        if self.stacked is not None and x2.shape[0] == self.rows:  # uneven runs, one token per sample
            (a_all, b_all), (fill, slot) = self.stacked, self.padding
            padded = x2.index_select(0, fill).view(a_all.shape[0], -1, x2.shape[-1])
            update = torch.bmm(torch.bmm(padded, a_all), b_all).view(-1, out2.shape[-1])
            out2.add_(update.index_select(0, slot))
            return output
        # one row per token: a run's rows are one slice; addmm_ fuses the update and the add
        per_sample = x2.shape[0] // self.rows
        for (a_t, b_t, scale), start, stop in self.runs:
            rows = slice(start * per_sample, stop * per_sample)
            out2[rows].addmm_(x2[rows] @ a_t, b_t, alpha=scale)
        return output


class _CopyRuns(_RunHook):
    """Forward hook of a `modules_to_save` wrapper: each run with its own copy of the module takes that copy's
    output."""

    def __init__(self, module: ModulesToSaveWrapper, adapters: set[str]):
        super().__init__({a: module.modules_to_save[a] for a in adapters if a in module.modules_to_save})
        self.name = type(module.original_module).__name__

    def __call__(self, _module, args, output: torch.Tensor) -> torch.Tensor:
        if not self.runs:
            return output
        x = args[0]
        _check_rows(x, self.rows, self.name)
        for copy, start, stop in self.runs:
            output[start:stop] = copy(x[start:stop]).to(output.dtype)
        return output


def _check_rows(x: torch.Tensor, rows: int, where: str) -> None:
    if x.shape[0] != rows:
        raise RuntimeError(f"a mixed-adapter batch of {rows} samples reached {where} with {x.shape[0]} rows; "
                           "per-sample adapters need exactly one row per sample")


class MixedAdapters:
    """The hooks of one request; `route(names)` points them at the next batch."""

    def __init__(self, hooks: list):
        self._hooks = hooks

    def route(self, names: Sequence[str]) -> None:
        """The next forward passes run sample i with adapter `names[i]` (`BASE` = none). Each adapter's samples
        must be contiguous (the engine orders every batch so)."""
        runs = adapter_runs(names)
        if runs is None:
            raise ValueError("mixed adapters need each adapter's samples next to each other")
        runs = [run for run in runs if run[0] != BASE]
        for hook in self._hooks:
            hook.route(runs, len(names))


@contextmanager
def mixed_adapters(model: torch.nn.Module, adapters: Iterable[str]) -> Iterator[MixedAdapters]:
    """Within the context, `model` (a peft model) runs each batch with the per-sample adapters given to the
    yielded object's `route`; `adapters` (which must pass `supports`) are all those the batches may name.
    The peft layers return their base output and hooks add the per-sample updates; before the first `route`
    every sample gets the base model. On exit the hooks are removed and the adapters re-enabled."""
    adapters = set(adapters) - {BASE}
    hooks, handles = [], []
    with model.disable_adapter():
        try:
            for module in model.modules():
                if isinstance(module, LoraLinear):
                    hook = _LoraRuns(module, adapters)
                elif isinstance(module, ModulesToSaveWrapper):
                    hook = _CopyRuns(module, adapters)
                else:
                    continue
                if hook.held:
                    hooks.append(hook)
                    handles.append(module.register_forward_hook(hook))
            yield MixedAdapters(hooks)
        finally:
            for handle in handles:
                handle.remove()
