"""The routers there are, as data: each one's card, one-line description and settings block (its fields join
the configuration's `router` section, e.g. `router.shrinkage`). The configuration, `mllmcl ls` and serving
read this without loading torch or a model; each router's code is its own module, `build.py` maps the names
to it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from mllmcl.core.registry import Registry
from mllmcl.core.settings import Settings


@dataclass(frozen=True)
class RouterCard:
    """What a router is: `needs_labels` — it reads the true task of what it routes (the oracle), so it exists
    for evaluation only and cannot serve."""

    needs_labels: bool = False
    buffer: int = 20
    """router-training samples per task when `router.k` is not set: 20, as the release's router files"""


class PrototypeSettings(Settings):
    """The prototype router's features and metric (fields of the `router` section)."""

    layer: int = 2
    """hidden layer pooled: 0 = the input embeddings, -1 = the last layer"""
    tokens: Literal["text", "image", "all"] = "image"
    """tokens pooled: the question's text tokens, the image tokens, or all"""
    grid: int = Field(3, ge=1)
    """image tokens pooled per region of a grid x grid layout (tokens=image): where things are, not only what"""
    shrinkage: float = Field(0.01, gt=0.0, le=1.0)
    """how far the shared covariance is shrunk toward a scaled identity"""


class MLLMRouterSettings(Settings):
    """The MLLM router's prompt and its LoRA's training (fields of the `router` section)."""

    describe: Literal["short", "full"] = "short"
    """expert descriptions in the prompt: short (up to the first ':') or the full sentence"""
    epochs: float = Field(24.0, gt=0)
    """passes over the router buffers at each stage (this and `rank` chosen on the validation split)"""
    lr: float = Field(2e-3, gt=0)
    """the router LoRA's learning rate"""
    batch_size: int = Field(4, ge=1)
    """small batches, many steps (20 samples per expert are few)"""
    rank: int = Field(16, ge=1)
    """the router LoRA's rank (alpha = 2 x rank)"""
    vision: bool = False
    """the router LoRA also adapts the vision tower"""
    prompt: Literal["mllmcl", "official"] = "mllmcl"
    """mllmcl: experts listed by letter with their descriptions, the question cut to fit the backbone;
    official: the released MR-LoRA router prompt and letter maps, byte-exact (the official tasks only; needs a
    backbone whose window holds ~1.5k characters of prompt, e.g. LLaVA-1.5-7B)"""


ROUTERS: Registry[RouterCard] = Registry("router")
ROUTERS.add("mllm", RouterCard(), "MR-LoRA's MLLM router: a router LoRA picks the expert's letter",
            settings=MLLMRouterSettings)
ROUTERS.add("prototype", RouterCard(buffer=200), "nearest expert prototype of frozen base features (training-free)",
            settings=PrototypeSettings)
ROUTERS.add("oracle", RouterCard(needs_labels=True), "the true task of each sample (upper bound; evaluation only)")
