"""Shared fixtures: a ~0.3M-parameter LLaVA built from scratch in a fraction of a second, offline."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import numpy as np
import pytest
import torch
from PIL import Image

from mllmcl.data import Example
from mllmcl.models.backbone import Backbone
from mllmcl.models.template import ChatTemplate
from mllmcl.models.tiny import TinyConfig, build_tiny

TEXTS = ["What color is the circle? red blue green yellow", "yes no left right 0 1 2 3 4 5",
         "How many squares are there? Is there a star?", "USER: ASSISTANT:"] * 20


def random_images(n: int, size: int = 32, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def colour_examples(n: int, size: int = 32, seed: int = 0) -> list[Example]:
    """A learnable toy task: the image is one flat colour; the answer names it."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
    rng = np.random.default_rng(seed)
    names = list(colours)
    out = []
    for _ in range(n):
        name = names[int(rng.integers(len(names)))]
        out.append(Example(Image.new("RGB", (size, size), colours[name]), "What color is the image?", name))
    return out


@pytest.fixture
def micro() -> Backbone:
    torch.manual_seed(0)
    model, processor = build_tiny(TEXTS, TinyConfig.micro(), seed=0)
    return Backbone("micro", model, processor, ChatTemplate(), max_length=TinyConfig.micro().max_length)


@pytest.fixture(scope="session")
def micro_checkpoint(tmp_path_factory):
    """The micro LLaVA saved as a transformers checkpoint, for the real `--backbone hf:<path>` route (it loads
    in tens of milliseconds), with one saved LoRA adapter beside it: `<root>/model`, `<root>/adapters/user`."""
    from mllmcl.engine import LoraRecipe, add_adapter, save_adapter

    root = tmp_path_factory.mktemp("micro")
    torch.manual_seed(0)
    model, processor = build_tiny(TEXTS, TinyConfig.micro(), seed=0)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    backbone = Backbone("micro", model, processor, ChatTemplate(), max_length=TinyConfig.micro().max_length)
    add_adapter(backbone, "user", LoraRecipe(rank=2))
    save_adapter(backbone, "user", root / "adapters")
    return root
