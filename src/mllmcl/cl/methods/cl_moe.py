"""`cl-moe`: CL-MoE (Huai et al., CVPR 2025) — a mixture of LoRA experts trained on every task in turn, with
an optional momentum merge of the experts between tasks.

Every adapted layer holds one expert per task of the run's LoRA rank (T experts, rank T·r in all) and a
per-token router without bias, randomly initialised, whose softmax mixes every expert densely (engine/moe.py).
All experts and routers train on every task, as in the reference code. With `cl-moe.merge`, after task t
the experts are merged with their weights before the task (momentum α = `cl-moe.momentum`): an expert among
the previous task's `cl-moe.usage_top` most used (by each token's top-2 routing) and not among the current
task's becomes (1−α)·before + α·after, every other expert α·before + (1−α)·after; the routers are not merged.
MCITlib, which produced the MLLM-CL paper's row, never merges: the default, `merge: false`, is that row."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from mllmcl.cl.context import Context, answer_with
from mllmcl.cl.methods.base import require_saved
from mllmcl.cl.methods.catalog import METHODS, CLMoESettings
from mllmcl.cl.methods.moelora import MoELoRA
from mllmcl.core.io import write_text_atomic
from mllmcl.data.mllm_cl import Task
from mllmcl.engine import blocks, moe
from mllmcl.engine.adapters import adapter_parameters
from mllmcl.engine.settings import MoELoraRecipe, in_parts

STATE = "cl_moe_usage.json"


class CLMoE(MoELoRA):
    name = "cl-moe"
    card = METHODS.get(name)

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.settings: CLMoESettings = ctx.config.block("cl-moe")
        self.before: dict[str, torch.Tensor] = {}
        self.used: dict[str, set[int]] = {}   # gate key → the previous task's most used experts

    @property
    def experts(self) -> int:
        return len(self.ctx.task_names)

    def recipe(self):
        t = self.experts
        return in_parts(self.ctx.config.lora, MoELoraRecipe, t, experts=t, gate_init="random")

    def before_task(self, task: Task) -> None:
        if self.settings.merge:
            self.before = {k: p.detach().clone() for k, p in self._loras().items()}

    def after_task(self, task: Task) -> None:
        if not self.settings.merge:
            return
        used = self._most_used(task)
        if len(self.learned) > 1:
            self.merge(self.before, used)
        self.used, self.before = used, {}

    def merge(self, before: dict[str, torch.Tensor], used_now: dict[str, set[int]]) -> None:
        """The momentum merge of every expert with its weights `before` the task (see the module docstring)."""
        alpha, t = self.settings.momentum, self.experts
        with torch.no_grad():
            for key, p in self._loras().items():
                layer = moe.layer_key(key.split(".lora_A.")[0].split(".lora_B.")[0])
                exclusive = self.used.get(layer, set()) - used_now.get(layer, set())
                keep = torch.full((t,), alpha)        # the weight of `before`, per expert
                keep[list(exclusive)] = 1 - alpha
                keep = blocks.per_block(keep, key, p).to(p.dtype)
                p.copy_(keep * before[key] + (1 - keep) * p)

    def _loras(self) -> dict[str, torch.nn.Parameter]:
        return {k: p for k, p in adapter_parameters(self.ctx.backbone, self.adapter).items()
                if ".lora_A." in k or ".lora_B." in k}

    def _most_used(self, task: Task) -> dict[str, set[int]]:
        queries = [s.query for s in self.ctx.train_rows(task)]
        counts = moe.expert_usage(self.ctx.backbone, self.adapter,
                                  lambda: answer_with(self.ctx, queries, [self.adapter] * len(queries), 1))
        top = min(self.settings.usage_top, self.experts)
        return {key: set(c.topk(top).indices.tolist()) for key, c in counts.items()}

    def save(self, folder: Path) -> None:
        super().save(folder)
        if self.settings.merge and self.used:
            write_text_atomic(folder / STATE, json.dumps({k: sorted(v) for k, v in self.used.items()}))

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        super().restore(folder, learned)
        self.used = {}
        if self.settings.merge and learned:
            saved = require_saved(folder / STATE, "the experts' usage", learned)
            self.used = {k: set(v) for k, v in json.loads(saved.read_text()).items()}
