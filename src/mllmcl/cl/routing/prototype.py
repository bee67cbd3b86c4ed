"""`prototype` router: training-free expert identification from frozen base features.

A sample's features are frozen hidden states of the base model, pooled: by default the image tokens of
layer 2, averaged per cell of a 3 x 3 grid and concatenated (`router.layer`, `router.tokens`,
`router.grid`), so the features say where things lie in the image as well as what they are. The question's
wording is not read by default: the default benchmark asks the same generic questions in every domain, and
a real deployment cannot count on wording either. An expert's prototype is the mean over its router buffer
(200 samples per task unless `router.k` says otherwise: a mean of 20 is noisy). A sample goes to the expert
whose prototype is nearest in Mahalanobis distance under the covariance of the buffers around their own
prototypes, shrunk toward a scaled identity (`router.shrinkage`): a nearest-class-mean classifier with a
shared metric, computed in closed form, nothing trained. Its confidence is how typical the distance to the
chosen prototype is among the buffers' own distances (an empirical p-value: near 1 for a typical sample;
beyond the farthest buffer sample it decays exponentially below 1/(k+1)), so an input that fits no expert
can be told apart. `mllmcl bench routers` measures the variants on the validation split.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save as safetensors_bytes

from mllmcl.cl.context import Context
from mllmcl.cl.routing.catalog import ROUTERS
from mllmcl.cl.routing.router import Expert, Routing
from mllmcl.core.errors import UserError
from mllmcl.core.io import write_bytes_atomic, write_json_atomic
from mllmcl.data.mllm_cl import Sample
from mllmcl.data.records import Query
from mllmcl.data.tasks import without_rule_suffix
from mllmcl.engine.generate import pooled_features

STATE = "prototype_router"
TIE = 1e-4  # relative tolerance under which two distances are the same (float rounding across batch shapes)


class PrototypeRouter:
    kind = "prototype"
    card = ROUTERS.get(kind)

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.features: dict[str, torch.Tensor] = {}   # buffer features per expert (kept: refits need no pass)
        self.names: list[str] = []
        self.means = self.precision = self.reference = torch.zeros(0)

    def _raw(self, items: Sequence[Query | Sample]) -> torch.Tensor:
        """Pooled features of what is routed (queries) or fitted on (buffer samples): image and prompt only."""
        cfg = self.ctx.config.router
        questions = [without_rule_suffix(s.question) for s in items]
        return pooled_features(self.ctx.backbone, [s.image for s in items], questions,
                               batch_size=self.ctx.config.eval.batch_size, layer=cfg.layer, tokens=cfg.tokens,
                               grid=cfg.grid, processes=self.ctx.processes)

    def fit(self, experts: Sequence[Expert]) -> None:
        for expert in experts:
            if expert.name not in self.features:
                self.features[expert.name] = self._raw(expert.buffer)
        self.names = [e.name for e in experts]
        buffers = [self.features[name] for name in self.names]
        self.means = torch.stack([b.mean(0) for b in buffers])
        centred = torch.cat([b - self.means[i] for i, b in enumerate(buffers)])
        covariance = centred.T @ centred / len(centred)
        shrink = self.ctx.config.router.shrinkage
        scale = covariance.diagonal().mean().clamp(min=1e-8)
        covariance = (1 - shrink) * covariance + shrink * scale * torch.eye(len(covariance))
        self.precision = torch.linalg.inv(covariance)
        # the buffers' own distances to their prototypes: the scale a confidence is measured against
        self.reference = torch.cat([self._distances(b)[:, i] for i, b in enumerate(buffers)]).sort().values

    def _distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of each row to each prototype, shape (n, experts)."""
        diff = features[:, None, :] - self.means[None, :, :]
        return torch.einsum("ned,df,nef->ne", diff, self.precision, diff)

    def route(self, queries: Sequence[Query]) -> Routing:
        if not self.names:
            raise ValueError("the prototype router routes only after fit()")
        distances = self._distances(self._raw(queries))
        best, chosen = distances.min(dim=1)
        return Routing(chosen.tolist(), self.confidence(best).tolist())

    def confidence(self, distance: torch.Tensor) -> torch.Tensor:
        """The share of buffer samples at least as far from their own prototype (an empirical p-value); beyond
        the farthest one, where that share is 0 for every distance, an exponential tail below the smallest
        share on the scale of the buffers' own spread, so that distances there stay ordered (what an
        open-world threshold calibrated on held-out rows needs: held-out rows often lie beyond the buffer)."""
        reference = self.reference
        n = max(1, len(reference))
        # a sample worded like a buffer sample lies at that sample's distance, up to float rounding that varies
        # with the batch it was computed in: count such ties as "at least as far" whatever the batch
        farther = len(reference) - torch.searchsorted(reference, distance * (1 - TIE), right=False)
        if not len(reference):
            return farther.float()
        top = reference[-1]
        spread = (top - reference[len(reference) // 2]).clamp(min=1e-8)
        tail = torch.exp(-(distance - top).clamp(min=0) / spread) / (n + 1)
        return torch.where(farther > 0, farther.float() / n, tail)

    def save(self, folder: Path) -> None:
        folder = Path(folder) / STATE
        tensors = {"means": self.means, "precision": self.precision, "reference": self.reference,
                   **{f"features/{i}": self.features[name] for i, name in enumerate(self.names)}}
        write_bytes_atomic(folder / "state.safetensors", safetensors_bytes({k: v.contiguous() for k, v in tensors.items()}))
        write_json_atomic(folder / "router.json", {"kind": self.kind, "experts": self.names,
                                                   "settings": _settings(self.ctx)})

    def load(self, folder: Path) -> bool:
        folder = Path(folder) / STATE
        if not (folder / "router.json").is_file():
            return False
        try:
            meta = json.loads((folder / "router.json").read_text())
            tensors = load_file(folder / "state.safetensors")
            settings, names = meta.get("settings"), [str(name) for name in meta["experts"]]
            if isinstance(settings, dict):  # states saved before the grid setting existed pooled one region
                settings = {"grid": 1, **settings}
            means, precision, reference = tensors["means"], tensors["precision"], tensors["reference"]
            features = {name: tensors[f"features/{i}"] for i, name in enumerate(names)}
        except Exception as err:  # OSError, bad JSON, SafetensorError (cut short, corrupt), a missing key or tensor
            raise UserError(f"{folder}: cannot read the prototype router's saved state "
                            f"({type(err).__name__}: {err})") from None
        if settings != _settings(self.ctx):
            raise UserError(f"{folder}: the prototype router was fitted with {settings}, "
                            f"not this configuration's {_settings(self.ctx)}")
        if names and (means.dim() != 2 or tuple(means.shape) != (len(names), precision.shape[-1])):
            raise UserError(f"{folder}: the prototype router's saved state does not fit together (means "
                            f"{tuple(means.shape)}, precision {tuple(precision.shape)}, {len(names)} experts)")
        self.names, self.means, self.precision, self.reference, self.features = \
            names, means, precision, reference, features
        return True


def _settings(ctx: Context) -> dict:
    cfg = ctx.config.router
    return {"layer": cfg.layer, "tokens": cfg.tokens, "grid": cfg.grid, "shrinkage": cfg.shrinkage}
