"""Backbones: the embedded `tiny` LLaVA and any LLaVA-family checkpoint on disk (`hf:<path>`).

    >>> from mllmcl.models import load_backbone
    >>> backbone = load_backbone("tiny")
    >>> backbone.generate([image], ["What color is the circle?"])
"""
from __future__ import annotations

import torch

from mllmcl.errors import UserError
from mllmcl.models.backbone import Backbone
from mllmcl.models.hf import load_checkpoint
from mllmcl.models.template import VICUNA_SYSTEM, ChatTemplate
from mllmcl.models.tiny import WEIGHTS_DIR, TinyConfig
from mllmcl.registry import Registry

BACKBONES: Registry[Backbone] = Registry("backbone")


@BACKBONES.register("tiny", "embedded tiny LLaVA (CLIP + Llama), pretrained by mllmcl, ships with the package")
def _tiny(device=None, dtype=None) -> Backbone:
    if not (WEIGHTS_DIR / "model.safetensors").is_file():
        raise UserError(f"{WEIGHTS_DIR}: the shipped tiny weights are missing; run `mllmcl pretrain` to rebuild them")
    # the PIL image processor it was pretrained with, even where torchvision is installed
    return load_checkpoint(WEIGHTS_DIR, "tiny", ChatTemplate(system=""), device=device, dtype=dtype or torch.float32,
                           max_length=TinyConfig().max_length, processor_kwargs={"backend": "pil"})


@BACKBONES.register("hf", "hf:<local path>: a LLaVA checkpoint saved by transformers (e.g. llava-1.5-7b-hf)")
def _hf(path: str, device=None, dtype=None) -> Backbone:
    return load_checkpoint(path, f"hf:{path}", ChatTemplate(system=VICUNA_SYSTEM), device=device, dtype=dtype)


def load_backbone(name: str, device: str | torch.device | None = None,
                  dtype: str | torch.dtype | None = None) -> Backbone:
    """Load a backbone by name: `tiny`, or `hf:<path>` for a local transformers checkpoint."""
    kind, _, arg = name.partition(":")
    if kind == "hf":
        if not arg:
            raise UserError("backbone 'hf:' needs a path, e.g. hf:/models/llava-1.5-7b-hf")
        return BACKBONES.build("hf", arg, device=device, dtype=dtype)
    if arg:
        raise UserError(f"backbone {name!r}: only 'hf:' takes a path")
    return BACKBONES.build(kind, device=device, dtype=dtype)


__all__ = ["Backbone", "BACKBONES", "ChatTemplate", "load_backbone"]
