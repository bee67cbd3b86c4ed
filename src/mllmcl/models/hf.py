"""Load any LLaVA-family checkpoint saved by transformers (`save_pretrained`), e.g. a local copy of
`llava-hf/llava-1.5-7b-hf`, through `AutoModelForImageTextToText` and `AutoProcessor`. Nothing is
downloaded: the path must hold the checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch

from mllmcl.errors import UserError
from mllmcl.models.backbone import Backbone
from mllmcl.models.template import ChatTemplate


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_checkpoint(path: str | Path, name: str, template: ChatTemplate, device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None) -> Backbone:
    """Load model and processor from a local directory. `dtype`: None keeps the checkpoint's float32 on CPU
    and uses bfloat16 on GPU; a torch dtype or its name forces one."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{path}: not a directory holding a transformers checkpoint")
    missing = [f for f in ("config.json",) if not (path / f).is_file()]
    if missing or not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise UserError(f"{path}: no checkpoint here (need config.json and model weights, "
                        "as written by save_pretrained)")
    device = torch.device(device) if device is not None else default_device()
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        processor = AutoProcessor.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{path}: cannot load the checkpoint ({err})") from None
    if getattr(processor, "tokenizer", None) is None or getattr(processor, "image_processor", None) is None:
        raise UserError(f"{path}: the processor has no tokenizer or image processor; not a vision-language checkpoint")
    model.to(device).eval()
    image_token = getattr(processor, "image_token", None) or "<image>"
    template = ChatTemplate(system=template.system, image_token=image_token)
    max_length = getattr(getattr(model.config, "text_config", model.config), "max_position_embeddings", None)
    return Backbone(name=name, model=model, processor=processor, template=template, max_length=max_length)
