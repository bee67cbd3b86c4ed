"""The one training loop of mllmcl, on `accelerate`.

`train` trains either one named LoRA adapter (everything else frozen) or, with `adapter=None`, the whole
model but what `freeze` names (full fine-tuning; used by `mllmcl pretrain`). Methods only hand it data, an
adapter name and optionally a loss function; none writes its own loop. `fit` is the loop itself, for any
module (the pretraining's vision stage uses it directly). The same call runs unchanged in one process or under
`torchrun` / `accelerate launch` (DDP, FSDP, DeepSpeed): `batch_size` is per process.
"""
from __future__ import annotations

import math
import os
import random
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from mllmcl.core.errors import UserError
from mllmcl.core.progress import progress_bar
from mllmcl.core.reproducible import PINNED
from mllmcl.data.records import VQAExample
from mllmcl.engine.adapters import adapter_parameters, require
from mllmcl.engine.settings import TrainConfig
from mllmcl.models.backbone import IGNORE_INDEX, Backbone

LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]


@dataclass
class TrainStats:
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)  # one mean loss per optimizer step

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def final_loss(self) -> float:
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return float(np.mean(tail)) if tail else float("nan")


def model_inputs(batch: dict) -> dict:
    """The batch without its metadata (keys starting with "_", e.g. `_index`: each row's position in the
    examples handed to `train`), ready for `model(**...)`."""
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def causal_lm_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the assistant's tokens (labels != -100), the model's own loss computed
    where it is non-zero: the output head runs only at the positions that predict an answer token of some
    row (`logits_to_keep`), not over every image and question token. On the tiny backbone the full-vocabulary
    head and its softmax were a fifth of a training step."""
    inputs = model_inputs(batch)
    labels = inputs.pop("labels")
    targets = labels[:, 1:]  # position p predicts token p + 1
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    logits = model(**inputs, logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets[:, keep].flatten(),
                                             ignore_index=IGNORE_INDEX)


def conversation(example: VQAExample) -> tuple[tuple[str, str], ...]:
    """The turns to train on: a multi-turn record's `turns` (LLaVA rows), else its one question and answer."""
    return tuple(getattr(example, "turns", ()) or ((example.question, example.answer),))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_accelerator():
    """An Accelerator for this process: CPU (gloo under torchrun) when no GPU is present. Without `cpu=True`
    a CPU torchrun would silently train each rank on its own."""
    return Accelerator(cpu=not torch.cuda.is_available())


def trainable_parameters(backbone: Backbone, adapter: str | None, freeze: str = "",
                         frozen_adapters: Sequence[str] = ()) -> list[torch.nn.Parameter]:
    """Select what trains: only adapter `adapter` (with `frozen_adapters` active beside it, their outputs
    summed into the forward pass but their weights frozen), or every parameter of the bare model except
    those whose names match the regex `freeze` (e.g. "vision_tower", as LLaVA-1.5 keeps its CLIP frozen)."""
    model = backbone.model
    if adapter is None:
        if backbone.adapter_names:
            raise ValueError("full fine-tuning needs a backbone without adapters")
        if frozen_adapters:
            raise ValueError("frozen adapters go with an adapter to train")
        frozen = re.compile(freeze) if freeze else None
        for name, p in model.named_parameters():
            p.requires_grad_(frozen is None or frozen.search(name) is None)
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        if freeze:
            raise ValueError("freeze applies to full fine-tuning; an adapter trains only its own weights")
        if adapter in frozen_adapters:
            raise ValueError(f"adapter {adapter!r} cannot be both trained and frozen")
        require(backbone, [adapter, *frozen_adapters])
        if frozen_adapters:  # peft: every active adapter's LoRA weights require grad …
            model.base_model.set_adapter([*frozen_adapters, adapter])
            for name in frozen_adapters:  # … so the frozen ones are frozen again
                for p in adapter_parameters(backbone, name).values():
                    p.requires_grad_(False)
        else:
            model.set_adapter(adapter)  # peft: only this adapter's weights require grad
        params = list(adapter_parameters(backbone, adapter).values())
        for p in params:
            p.requires_grad_(True)
    if not params:
        raise ValueError(f"nothing to train for adapter {adapter!r}")
    return params


def train(backbone: Backbone, examples: Sequence[VQAExample], adapter: str | None, config: TrainConfig = TrainConfig(),
          loss_fn: LossFn = causal_lm_loss, freeze: str = "", frozen_adapters: Sequence[str] = ()) -> TrainStats:
    """Train `adapter` (or, with `adapter=None`, the full model but the parameters whose names match the
    regex `freeze`) on `examples` for `config`; returns loss history and throughput. `loss_fn(model, batch)`
    replaces the answers' cross-entropy (a method's own loss; `batch["_index"]` gives each row's position in
    `examples`); `frozen_adapters` stay active, summed into the forward pass, but do not train (O-LoRA)."""
    params = trainable_parameters(backbone, adapter, freeze, frozen_adapters)

    def collate(items: list[tuple[int, VQAExample]]) -> dict:
        batch = backbone.encode_conversations([e.image for _, e in items], [conversation(e) for _, e in items])
        batch["_index"] = torch.tensor([i for i, _ in items])
        return batch

    try:
        return fit(backbone.model, params, list(enumerate(examples)), collate, config, loss_fn)
    finally:
        if frozen_adapters:  # back to one active adapter, as every other engine call expects
            backbone.model.set_adapter(adapter)
            for p in params:
                p.requires_grad_(False)


def check_cpu_bf16() -> None:
    """bf16 autocast on a CPU whose oneDNN kernels are pinned to AVX2 (core/reproducible.py) takes a
    reference path, about a thousand times slower than float32 (`mllmcl bench scale` times bf16 with native
    kernels). Refuse it with the two ways out rather than run for days."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").lower() == PINNED["ONEDNN_MAX_CPU_ISA"].lower():
        raise UserError("train.bf16 on CPU with the CPU kernels pinned to AVX2 (for reproducible numbers) is about "
                        "1000x slower than float32: set train.bf16=false on CPU, or MLLMCL_NATIVE_KERNELS=1 to give "
                        "up cross-machine reproducibility for speed (docs/results.md, \"Determinism\")")


def fit(model: torch.nn.Module, params: list[torch.nn.Parameter], items: Sequence, collate: Callable[[list], dict],
        config: TrainConfig, loss_fn: LossFn) -> TrainStats:
    """The loop itself, for any module: `params` (already requiring grad) learn from `items` batched by
    `collate`, minimising `loss_fn(model, batch)`. `train` calls it for a backbone; `mllmcl pretrain` also for
    the vision tower's first stage. On exit, even on error, the model is in eval mode and `params` are frozen."""
    if len(items) == 0:  # an empty loader would never reach `total_steps`
        raise ValueError("no training examples")
    seed_everything(config.seed)
    accelerator = make_accelerator()
    if config.bf16 and accelerator.device.type == "cpu":
        check_cpu_bf16()
    loader = DataLoader(list(items), batch_size=config.batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(config.seed), drop_last=False)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    steps_per_epoch = math.ceil(len(loader) / config.grad_accum)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps), num_training_steps=total_steps,
        min_lr_rate=config.min_lr_ratio)
    stats = TrainStats()
    bar = _progress(total_steps, config, accelerator.is_main_process)
    model.train()
    start = time.perf_counter()
    try:
        _loop(model, loader, optimizer, scheduler, accelerator, params, loss_fn, config, total_steps, stats, bar,
              start)
    finally:  # an error or Ctrl-C must not leave the model in training mode with trainable weights
        stats.seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        model.eval()
        for p in params:
            p.requires_grad_(False)
        accelerator.free_memory()
    return stats


def _rows(batch: dict) -> int:
    """Samples in a batch: the length of its first tensor."""
    return next(v.shape[0] for v in batch.values() if torch.is_tensor(v))


def _loop(model, loader, optimizer, scheduler, accelerator, params, loss_fn: LossFn, config: TrainConfig,
          total_steps: int, stats: TrainStats, bar, start: float) -> None:
    """Optimizer steps until `total_steps`, re-iterating the (reshuffled) loader as often as needed."""
    def autocast():
        return torch.autocast(accelerator.device.type, dtype=torch.bfloat16) if config.bf16 else nullcontext()

    micro, step_loss = 0, 0.0
    while stats.steps < total_steps:
        for batch in loader:
            micro += 1
            last_micro = micro % config.grad_accum == 0
            sync = nullcontext() if last_micro else accelerator.no_sync(model)
            with sync:
                with autocast():
                    loss = loss_fn(model, batch) / config.grad_accum
                accelerator.backward(loss)
            step_loss += loss.detach().float().item()
            stats.samples += _rows(batch) * accelerator.num_processes
            if not last_micro:
                continue
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            stats.steps += 1
            stats.losses.append(step_loss)
            step_loss = 0.0
            if bar is not None:
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{stats.losses[-1]:.3f}", sps=f"{stats.samples / elapsed:.0f}", refresh=False)
                bar.update(1)
            if stats.steps >= total_steps:
                return


def _progress(total: int, config: TrainConfig, main: bool):
    if not (config.progress and main):
        return None
    return progress_bar(total, config.desc, "step")


def squared_gradients(backbone: Backbone, examples: Sequence[VQAExample], adapter: str, batch_size: int,
                      max_batches: int, seed: int, loss_fn: LossFn = causal_lm_loss) -> dict[str, torch.Tensor]:
    """The diagonal empirical Fisher of adapter `adapter`'s parameters on `examples`: the mean over up to
    `max_batches` shuffled batches of each parameter's squared gradient of `loss_fn` (EWC's importance
    weights). Nothing is updated; the model is left in eval mode with the adapter frozen."""
    if len(examples) == 0:
        raise ValueError("no examples to estimate the Fisher information on")
    params = adapter_parameters(backbone, adapter)
    model = backbone.model
    model.set_adapter(adapter)
    for p in params.values():
        p.requires_grad_(True)
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    totals = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    batches = 0
    model.train()
    try:
        for start in range(0, len(order), batch_size):
            if batches == max_batches:
                break
            items = [examples[i] for i in order[start:start + batch_size]]
            batch = backbone.encode_conversations([e.image for e in items], [conversation(e) for e in items])
            batch = {k: v.to(backbone.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            batch["_index"] = torch.tensor(order[start:start + batch_size], device=backbone.device)
            model.zero_grad(set_to_none=True)
            loss_fn(model, batch).backward()
            for name, p in params.items():
                if p.grad is not None:
                    totals[name] += p.grad.detach().float() ** 2
            batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()
        for p in params.values():
            p.requires_grad_(False)
    return {name: total / batches for name, total in totals.items()}
