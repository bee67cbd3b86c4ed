"""Load a LLaVA checkpoint saved by transformers (`save_pretrained`), e.g. a local copy of
`llava-hf/llava-1.5-7b-hf`, through `AutoModelForImageTextToText` and `AutoProcessor`. Nothing is
downloaded: the path must hold the checkpoint. Tested with LlavaForConditionalGeneration (LLaVA-1.5
layout, vicuna conversation template); variants with another chat format or several image crops per
sample (LLaVA-NeXT) load but are not validated yet."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from mllmcl.core.errors import UserError, one_line
from mllmcl.core.io import is_dir, is_file
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
    path = Path(path).expanduser()
    if not is_dir(path):
        raise UserError(f"{path}: not a directory holding a transformers checkpoint")
    missing = [f for f in ("config.json",) if not is_file(path / f)]
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
    except Exception as err:  # a corrupt or partial folder fails in transformers in many ways (SafetensorError, …)
        raise UserError(f"{path}: cannot load the checkpoint ({type(err).__name__}: {one_line(str(err))[:300]})") from err
    if getattr(processor, "tokenizer", None) is None or getattr(processor, "image_processor", None) is None:
        raise UserError(f"{path}: the processor has no tokenizer or image processor; not a vision-language checkpoint")
    model.eval()
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:  # batching needs one; the padded positions are masked out
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    if tokenizer.pad_token is None:
        raise UserError(f"{path}: the tokenizer has no padding, unknown or end-of-sequence token "
                        "(tokenizer_config.json missing or incomplete?)")
    image_token = getattr(processor, "image_token", None) or "<image>"
    template = ChatTemplate(system=template.system, image_token=image_token)
    if max_length is None:
        max_length = getattr(getattr(model.config, "text_config", model.config), "max_position_embeddings", None)
    backbone = Backbone(name=name, model=model, processor=processor, template=template, max_length=max_length)
    _check_answers(path, backbone)
    return backbone


def _check_answers(path: Path, backbone: Backbone) -> None:
    """What loading accepts but answering would trip over, found now and named by file: a processor whose
    settings cannot encode an image (processor_config.json: a crop size of null, NaN, 0, …), token ids in
    generation_config.json outside the vocabulary, and anything else that stops one greedy token from being
    generated for a blank image (a few milliseconds for the tiny model, one forward pass for a 7B one)."""
    model = backbone.model
    try:
        batch = backbone.encode_prompts([Image.new("RGB", (32, 32))], ["?"])
    except Exception as err:  # a processor's settings can be wrong in as many ways as it has settings
        raise UserError(f"{path}: the processor cannot encode an image and a question (processor_config.json? "
                        f"{type(err).__name__}: {one_line(str(err))[:200]})") from err
    vocab = model.get_input_embeddings().num_embeddings
    generation = getattr(model, "generation_config", None)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
        value = getattr(generation, key, None)
        ids = value if isinstance(value, list) else [value]
        if not all(i is None or (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab) for i in ids):
            raise UserError(f"{path / 'generation_config.json'}: {key} {value!r} is not a token id "
                            f"(the vocabulary has {vocab})")
    batch = {k: v.to(backbone.device) if torch.is_tensor(v) else v for k, v in batch.items()}
    try:
        with torch.no_grad():
            model.generate(**batch, max_new_tokens=1, do_sample=False, pad_token_id=backbone.tokenizer.pad_token_id)
    except Exception as err:
        raise UserError(f"{path}: the checkpoint loads but cannot answer (config.json, generation_config.json or "
                        f"processor_config.json? {type(err).__name__}: {one_line(str(err))[:200]})") from err