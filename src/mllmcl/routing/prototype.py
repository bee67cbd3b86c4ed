"""`prototype` router: training-free task identification from frozen base features.

A sample's features are mean-pooled frozen hidden states: by default the input embeddings of its
question's tokens (`router.layer: 0`, `router.tokens: text`). A task's prototype is the mean over its
router buffer. A sample goes to the seen task whose prototype is nearest in Mahalanobis distance under the
covariance of the buffers around their own prototypes, shrunk toward a scaled identity
(`router.shrinkage`) — a nearest-class-mean classifier with a shared metric, computed in closed form: no
gradient step, nothing trained.

Measured on the synthetic DCL tasks (tiny backbone, 20 buffer samples and 100 test samples per task, share
routed right): last-layer features over all tokens with cosine distance 47.6%; the question's input
embeddings with cosine distance 86.8%, standardised 93.8%, with the shrunk shared covariance (0.1–0.5)
100.0%. The tiny model's deeper layers blur what the wording of a question tells apart; its pooled image
features alone separate the domains poorly (39.0%).
"""
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
        self.buffers: dict[str, torch.Tensor] = {}     # features of each task's router buffer
        self.weights = self.bias = torch.zeros(0)
        self.order: list[str] = []

    def _raw(self, samples: Sequence[Sample]) -> torch.Tensor:
        cfg = self.ctx.config.router
        return pooled_features(self.ctx.backbone, [s.image for s in samples], [s.question for s in samples],
                               batch_size=self.ctx.config.eval.batch_size, layer=cfg.layer, tokens=cfg.tokens)

    def fit(self, seen: Sequence[Task]) -> None:
        for task in seen:
            if task.name not in self.buffers:
                self.buffers[task.name] = self._raw(router_buffer(self.ctx, task))
        means = torch.stack([self.buffers[t.name].mean(0) for t in seen])
        centred = torch.cat([self.buffers[t.name] - means[i] for i, t in enumerate(seen)])
        covariance = centred.T @ centred / len(centred)
        shrink = self.ctx.config.router.shrinkage
        scale = covariance.diagonal().mean().clamp(min=1e-8)
        covariance = (1 - shrink) * covariance + shrink * scale * torch.eye(len(covariance))
        # linear discriminant: argmin over tasks of the Mahalanobis distance to the task's prototype
        self.weights = torch.linalg.solve(covariance, means.T)          # (hidden, tasks)
        self.bias = -0.5 * (means * self.weights.T).sum(1)               # (tasks,)
        self.order = [t.name for t in seen]

    def route(self, samples: Sequence[Sample], seen: Sequence[Task]) -> list[int]:
        if [t.name for t in seen] != self.order:
            raise ValueError(f"prototype router fitted on {self.order}, asked to route among {[t.name for t in seen]}")
        if len(seen) == 1:
            return [0] * len(samples)
        return (self._raw(samples) @ self.weights + self.bias).argmax(dim=1).tolist()

    def save(self, folder: Path) -> None:
        pass  # prototypes are recomputed from the buffer on restore: deterministic and cheap

    def restore(self, folder: Path, seen: Sequence[Task]) -> None:
        self.fit(seen)
