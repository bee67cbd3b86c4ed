"""Load a vision-language checkpoint saved by transformers (`save_pretrained`), e.g. a local copy of
`llava-hf/llava-1.5-7b-hf` or `Qwen/Qwen2.5-VL-7B-Instruct`, through `AutoModelForImageTextToText` and
`AutoProcessor`. Nothing is downloaded: the path must hold the checkpoint. Its family (models/families.py)
comes from `config.json` and says how prompts are written: LLaVA-1.5's vicuna template, or the processor's
own chat template.

Without torchvision (this project's stack: it does not import beside the pinned torch), transformers cannot
build the processors that also take videos (Qwen-VL); those load with their image processor and tokenizer
only, the same class otherwise, so images are processed exactly as the full processor would."""
from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path

import torch
from PIL import Image
import transformers
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from mllmcl.core.errors import UserError, one_line
from mllmcl.core.io import is_dir, is_file, read_json
from mllmcl.models.backbone import Backbone
from mllmcl.models.families import FAMILIES, family_of
from mllmcl.models.template import VICUNA_SYSTEM, ChatTemplate, ProcessorTemplate


def default_device() -> torch.device:
    """This process's GPU under torchrun / accelerate launch (LOCAL_RANK), else GPU 0, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def load_checkpoint(path: str | Path, name: str, template: ChatTemplate | None = None,
                    device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                    max_length: int | None = None, processor_kwargs: dict | None = None,
                    attention: str | None = None, device_map: str | None = None) -> Backbone:
    """Load model and processor from a local directory. `template`: None picks the family's (LLaVA-1.5: the
    vicuna template with its system prompt; others: the processor's chat template). `dtype`: None keeps the
    checkpoint's float32 on CPU and uses bfloat16 on GPU; a torch dtype or its name forces one. `attention`:
    transformers' attn_implementation; `device_map` "auto" spreads the model over the visible GPUs."""
    path = Path(path).expanduser()
    if not is_dir(path):
        raise UserError(f"{path}: not a directory holding a transformers checkpoint")
    missing = [f for f in ("config.json",) if not is_file(path / f)]
    if missing or not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise UserError(f"{path}: no checkpoint here (need config.json and model weights, "
                        "as written by save_pretrained)")
    config = read_json(path / "config.json", "checkpoint configuration")
    family, _ = family_of(config.get("model_type") if isinstance(config, dict) else None, str(path / "config.json"))
    device = torch.device(device) if device is not None else default_device()
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        processor = _processor(path, processor_kwargs or {})
        # straight onto the target device: no full CPU copy per process on multi-GPU machines
        extra = {"attn_implementation": attention} if attention else {}
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, device_map=device_map or {"": device},
                                                            **extra)
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
    template = _template(path, family, processor, image_token, template)
    if max_length is None:
        max_length = getattr(getattr(model.config, "text_config", model.config), "max_position_embeddings", None)
    backbone = Backbone(name=name, model=model, processor=processor, template=template, max_length=max_length,
                        family=family)
    _check_answers(path, backbone)
    return backbone


def _processor(path: Path, kwargs: dict):
    """The checkpoint's processor; one that also takes videos (Qwen-VL) as its image-only self when the full one
    cannot be built here (no torchvision, or no video processor saved)."""
    try:
        return AutoProcessor.from_pretrained(path, **kwargs)
    except Exception:  # the image-only processor below, where the processor takes videos; else the error stands
        saved = read_json(path / "processor_config.json", "processor configuration") \
            if is_file(path / "processor_config.json") else {}
        cls = getattr(transformers, str(saved.get("processor_class", "")), None) if isinstance(saved, dict) else None
        if cls is None or "video_processor" not in cls.get_attributes():
            raise
    own = {k: v for k, v in saved.items() if k != "processor_class" and not isinstance(v, dict)}  # image_seq_length, …
    if "image_seq_len" in inspect.signature(cls.__init__).parameters and "image_seq_len" not in own:
        own["image_seq_len"] = _image_seq_len(path)
    return image_only(cls)(image_processor=AutoImageProcessor.from_pretrained(path, **kwargs),
                           tokenizer=AutoTokenizer.from_pretrained(path), chat_template=_chat_template(path), **own)


def _image_seq_len(path: Path) -> int:
    """Tokens per image tile of an Idefics3-style model (SmolVLM2), from config.json when the processor's settings
    do not say: the vision tower's patches per side, pixel-shuffled by `scale_factor` per side."""
    config = read_json(path / "config.json", "checkpoint configuration")
    vision = config.get("vision_config") or {}
    side = vision.get("image_size", 512) // vision.get("patch_size", 16)
    return int(side ** 2 // config.get("scale_factor", 2) ** 2)


def image_only(cls: type) -> type:
    """Processor class `cls` without its video processor: the same image processing, tokenizer and template,
    and the same class name (saved as `processor_class`, so a machine with torchvision loads the full one)."""
    @classmethod
    def get_attributes(_cls):
        return [a for a in cls.get_attributes() if a != "video_processor"]

    @functools.wraps(cls.__init__)  # its signature too: save_pretrained saves the settings it names
    def __init__(self, *args, **kwargs):
        if "video_processor" in inspect.signature(cls.__init__).parameters:  # SmolVLM2's is a required argument
            kwargs.setdefault("video_processor", None)
        cls.__init__(self, *args, **kwargs)
    return type(cls.__name__, (cls,), {"get_attributes": get_attributes, "__init__": __init__,
                                       "__doc__": "without its video processor"})


def _chat_template(path: Path) -> str | None:
    if is_file(path / "chat_template.jinja"):
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    saved = read_json(path / "chat_template.json") if is_file(path / "chat_template.json") else {}
    return saved.get("chat_template") if isinstance(saved, dict) else None


def _template(path: Path, family: str, processor, image_token: str, given: ChatTemplate | None):
    if given is not None:
        return ChatTemplate(system=given.system, image_token=image_token)
    if FAMILIES.get(family).chat == "vicuna":
        return ChatTemplate(system=VICUNA_SYSTEM, image_token=image_token)
    try:
        return ProcessorTemplate(processor, image_token)
    except ValueError as err:
        raise UserError(f"{path}: {err} (chat_template.jinja missing?); the {family} family answers in its chat "
                        "template") from None


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