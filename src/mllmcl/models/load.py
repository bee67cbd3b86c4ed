"""Loading a backbone by name: `tiny` (the embedded LLaVA) or `hf:<path>` (a checkpoint on disk of any family in
models/families.py), both through the same transformers path (models/hf.py).

    >>> from mllmcl.models.load import load_backbone
    >>> backbone = load_backbone("tiny")
"""
from __future__ import annotations

import torch

from mllmcl.core.errors import UserError
from mllmcl.models.backbone import Backbone
from mllmcl.models.catalog import parse_backbone
from mllmcl.models.hf import load_checkpoint
from mllmcl.models.template import ChatTemplate
from mllmcl.models.tiny import WEIGHTS_DIR, TinyConfig


def _tiny(path: str, device=None, dtype=None, **_options) -> Backbone:
    if not (WEIGHTS_DIR / "model.safetensors").is_file():
        raise UserError(f"{WEIGHTS_DIR}: the shipped tiny weights are missing; run `mllmcl pretrain` to rebuild them")
    # the PIL image processor it was pretrained with, even where torchvision is installed
    return load_checkpoint(WEIGHTS_DIR, "tiny", ChatTemplate(system=""), device=device, dtype=dtype or torch.float32,
                           max_length=TinyConfig().max_length, processor_kwargs={"backend": "pil"})


def _hf(path: str, device=None, dtype=None, attention=None, device_map=None, processor_options=None) -> Backbone:
    return load_checkpoint(path, f"hf:{path}", device=device, dtype=dtype, attention=attention,
                           device_map=device_map, processor_kwargs=processor_options)


LOADERS = {"tiny": _tiny, "hf": _hf}
"""Backbone kind (models/catalog.py) → its loader."""


def load_backbone(name: str, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                  attention: str | None = None, device_map: str | None = None,
                  processor_options: dict | None = None) -> Backbone:
    """Load a backbone by name: `tiny`, or `hf:<path>` for a local transformers checkpoint. The options go to
    transformers as they are (the run's `model` block): attention implementation, "auto" device map,
    processor settings such as a dynamic-resolution pixel budget. The tiny backbone takes only the dtype."""
    kind, path = parse_backbone(name)
    return LOADERS[kind](path, device=device, dtype=dtype, attention=attention, device_map=device_map,
                         processor_options=processor_options)
