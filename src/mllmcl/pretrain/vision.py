"""Stage 1 of pretraining the tiny backbone: the CLIP vision tower learns to see, on its own.

LLaVA starts from a CLIP encoder that was pretrained elsewhere and keeps it frozen. The tiny backbone has
no such encoder, and a tower trained from scratch only through the language model's loss learns colours
fast but stays near chance on shapes for thousands of full-model steps. So the tower is first trained
alone, supervised, on scenes of the general corpus: linear heads read every patch feature that LLaVA's
projector reads and name what lies under that patch: the shape, colour and size of
the object covering it, or "background" and the background's colour ("textured" when it is not plain).
Labels per patch (not per image) make each image token describe its own
place, which is what the language model needs to tell "the colour of the star" from "the colour of the
background". Stage 2 (`pretrain.py`) then trains the projector and the language model with this tower
frozen, as LLaVA-1.5 does. The heads are discarded; only the tower's weights ship.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mllmcl.engine.settings import TrainConfig
from mllmcl.engine.train import fit
from mllmcl.models.backbone import Backbone
from mllmcl.pretrain.corpus import BACKGROUNDS, COLORS, SHAPES, SIZES, SceneView, generate_scene_views

BACKGROUND = "background"
#: What each head names for every patch, and its classes.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": (*SHAPES, BACKGROUND),
    "color": tuple(dict.fromkeys([*COLORS, *BACKGROUNDS, "textured"])),
    "size": (*SIZES, BACKGROUND),
}
COVERED = 0.4  # an object labels a patch when it covers at least this share of it
HELDOUT_SEED_OFFSET = 10_000


@dataclass(frozen=True)
class VisionStageConfig:
    """Stage 1 settings; the defaults are those of the shipped weights."""

    steps: int = 5000
    batch_size: int = 64
    lr: float = 1e-3
    views: int = 20_000       # distinct scenes drawn once
    heldout: int = 600


def patch_labels(view: SceneView, patch: int) -> dict[str, list[int]]:
    """Per attribute, the class index of every patch (row-major, as the tower orders its patch tokens)."""
    grid = view.object_map.shape[0] // patch
    labels: dict[str, list[int]] = {a: [] for a in ATTRIBUTES}
    background_colour = view.scene.background or "textured"
    for row in range(grid):
        for col in range(grid):
            cell = view.object_map[row * patch:(row + 1) * patch, col * patch:(col + 1) * patch]
            counts = np.bincount(cell.ravel(), minlength=len(view.scene.objects) + 1)[1:]
            obj = view.scene.objects[int(counts.argmax())] if counts.max(initial=0) >= COVERED * cell.size else None
            names = {"shape": obj.shape, "color": obj.color, "size": obj.size} if obj else \
                {"shape": BACKGROUND, "color": background_colour, "size": BACKGROUND}
            for attribute, name in names.items():
                labels[attribute].append(ATTRIBUTES[attribute].index(name))
    return labels


class PatchProbe(torch.nn.Module):
    """The backbone's vision tower plus one linear head per attribute on each patch feature."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        llava = backbone.model
        self.tower = llava.model.vision_tower
        self.layer = llava.config.vision_feature_layer
        width = llava.config.vision_config.hidden_size
        self.heads = torch.nn.ModuleDict({a: torch.nn.Linear(width, len(c)) for a, c in ATTRIBUTES.items()})

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[self.layer]
        patches = hidden[:, 1:]  # the patch tokens, as the "default" feature strategy hands them to LLaVA
        return {a: head(patches) for a, head in self.heads.items()}


def _labelled(backbone: Backbone, views: list[SceneView]) -> list[tuple]:
    """(image, patch labels) per view, labels computed once."""
    patch = backbone.model.config.vision_config.patch_size
    return [(v.image, patch_labels(v, patch)) for v in views]


def _collate(backbone: Backbone):
    image_processor = backbone.processor.image_processor

    def collate(items: list[tuple]) -> dict:
        batch = {"pixel_values": image_processor([image for image, _ in items], return_tensors="pt")["pixel_values"]}
        for attribute in ATTRIBUTES:
            batch[attribute] = torch.tensor([labels[attribute] for _, labels in items])
        return batch

    return collate


def _loss(probe: PatchProbe, batch: dict) -> torch.Tensor:
    """Per head, the mean cross-entropy over object patches plus that over background patches: objects cover
    a small share of the patches, and an unweighted mean would let the easy background drown them."""
    logits = probe(batch["pixel_values"])
    on_object = (batch["shape"] != ATTRIBUTES["shape"].index(BACKGROUND)).flatten()
    total = logits["shape"].new_zeros(())
    for attribute in ATTRIBUTES:
        losses = torch.nn.functional.cross_entropy(logits[attribute].flatten(0, 1), batch[attribute].flatten(),
                                                   reduction="none")
        for part in (on_object, ~on_object):
            if part.any():
                total = total + losses[part].mean()
    return total


@torch.no_grad()
def _accuracy(probe: PatchProbe, collate, items: list[tuple]) -> dict[str, float]:
    """Per attribute, the share of object patches named right, and background patches' colour."""
    probe.eval()
    batch = collate(items)
    logits = probe(batch["pixel_values"])
    on_object = batch["shape"] != ATTRIBUTES["shape"].index(BACKGROUND)
    result = {}
    for attribute in ATTRIBUTES:
        right = logits[attribute].argmax(-1) == batch[attribute]
        result[f"{attribute} (object patches)"] = round(100 * right[on_object].float().mean().item(), 2)
    right = logits["color"].argmax(-1) == batch["color"]
    result["color (background patches)"] = round(100 * right[~on_object].float().mean().item(), 2)
    return result


def pretrain_vision(backbone: Backbone, config: VisionStageConfig, seed: int, progress: bool = True) -> dict:
    """Train the backbone's vision tower in place (stage 1); returns its report with held-out accuracy per
    attribute (scenes of another seed)."""
    size = int(backbone.processor.image_processor.crop_size["height"])
    views = _labelled(backbone, generate_scene_views(config.views, seed, image_size=size))
    heldout = _labelled(backbone, generate_scene_views(config.heldout, seed + HELDOUT_SEED_OFFSET, image_size=size))
    probe = PatchProbe(backbone)
    collate = _collate(backbone)
    params = list(probe.parameters())
    for p in params:
        p.requires_grad_(True)
    stats = fit(probe, params, views, collate, TrainConfig(
        max_steps=config.steps, batch_size=config.batch_size, lr=config.lr, warmup_ratio=0.02, seed=seed,
        progress=progress, desc="pretrain tiny: vision"), _loss)
    return {"steps": stats.steps, "train_seconds": round(stats.seconds, 1),
            "train_samples_per_second": round(stats.samples_per_second, 1), "final_loss": round(stats.final_loss, 4),
            "heldout_accuracy": _accuracy(probe, collate, heldout)}
