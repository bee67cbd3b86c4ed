"""`prototype` router: training-free task identification. Each task's prototype is the mean of the frozen
base model's pooled features (last hidden states averaged over image and question tokens) over its router
buffer; a sample goes to the seen task whose prototype is nearest in cosine similarity. One forward pass
of the base per sample, no training — the cheap alternative that later work found competitive."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.engine import pooled_features
from mllmcl.routing import ROUTERS, router_buffer


@ROUTERS.register("prototype", "nearest task prototype of frozen base features (training-free)")
class PrototypeRouter:
    kind = "prototype"

    def __init__(self, ctx):
        self.ctx = ctx
        self.prototypes: dict[str, torch.Tensor] = {}

    def _features(self, samples: Sequence[Sample]) -> torch.Tensor:
        features = pooled_features(self.ctx.backbone, [s.image for s in samples], [s.question for s in samples],
                                   batch_size=self.ctx.config.eval.batch_size)
        return torch.nn.functional.normalize(features, dim=-1)

    def fit(self, seen: Sequence[Task]) -> None:
        for task in seen:
            if task.name not in self.prototypes:
                mean = self._features(router_buffer(self.ctx, task)).mean(0)
                self.prototypes[task.name] = torch.nn.functional.normalize(mean, dim=0)

    def route(self, samples: Sequence[Sample], seen: Sequence[Task]) -> list[int]:
        centres = torch.stack([self.prototypes[t.name] for t in seen])
        return (self._features(samples) @ centres.T).argmax(dim=1).tolist()

    def save(self, folder: Path) -> None:
        pass  # prototypes are recomputed from the buffer on restore: deterministic and cheap

    def restore(self, folder: Path, seen: Sequence[Task]) -> None:
        self.fit(seen)
