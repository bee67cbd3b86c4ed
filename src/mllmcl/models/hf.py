"""Load a LLaVA checkpoint saved by transformers (`save_pretrained`), e.g. a local copy of
`llava-hf/llava-1.5-7b-hf`, through `AutoModelForImageTextToText` and `AutoProcessor`. Nothing is
downloaded: the path must hold the checkpoint. Tested with LlavaForConditionalGeneration (LLaVA-1.5
layout, vicuna conversation template); variants with another chat format or several image crops per
sample (LLaVA-NeXT) load but are not validated yet."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from mllmcl.errors import UserError
from mllmcl.models.backbone import Backbone
from mllmcl.models.template import ChatTemplate


def default_device() -> torch.device:
    """This process's GPU under torchrun / accelerate launch (LOCAL_RANK), else GPU 0, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def load_checkpoint(path: str | Path, name: str, template: ChatTemplate, device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None, max_length: int | None = None,
                    processor_kwargs: dict | None = None) -> Backbone:
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
        processor = AutoProcessor.from_pretrained(path, **(processor_kwargs or {}))
        # straight onto the target device: no full CPU copy per process on multi-GPU machines
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, device_map={"": device})
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{path}: cannot load the checkpoint ({err})") from None
    if getattr(processor, "tokenizer", None) is None or getattr(processor, "image_processor", None) is None:
        raise UserError(f"{path}: the processor has no tokenizer or image processor; not a vision-language checkpoint")
    model.eval()
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:  # batching needs one; the padded positions are masked out
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    image_token = getattr(processor, "image_token", None) or "<image>"
    template = ChatTemplate(system=template.system, image_token=image_token)
    if max_length is None:
        max_length = getattr(getattr(model.config, "text_config", model.config), "max_position_embeddings", None)
    return Backbone(name=name, model=model, processor=processor, template=template, max_length=max_length)
