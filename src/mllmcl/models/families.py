"""The model families `hf:<path>` loads, as data: where each keeps its language model, vision encoder and
projector, how its prompts are written, and what an adapter can reach in it (`mllmcl ls`, docs/engine.md).

A family is found from the checkpoint's `config.json` (`model_type`). The language model's linear layers are
named alike in every family here (`…<language>.layers.N.{q,k,v,o,gate,up,down}_proj`, `language` being
`language_model`, or `text_model` in Idefics3), so one LoRA target list serves them all; the vision encoder
and the projector differ:

- `projector`: a regex over module names of the projector's linear layers, which a recipe with
  `lora.projector` copies per adapter (peft `modules_to_save`). None where the family's projector does not
  run one row per sample: Qwen's `visual.merger` maps the patches of every image in the batch at once, so a
  per-sample copy cannot be told which rows are whose; InternVL's projector maps tiles, several per image.
- `vision`: the regex of the vision encoder's layers that `lora.vision` adapts (`{layers}` is filled in), or
  None where its layers, too, run over all the batch's patches at once.
- `whole_view`: where an image becomes several tiles (InternVL, Idefics3, LLaVA-NeXT), whether the whole
  image's own view comes "first" or "last" among its tokens ("" where an image is one view); the prototype
  router's grid pools that view.
- `chat`: "vicuna" for LLaVA-1.5 (its checkpoints ship no chat template; models/template.py writes it),
  "processor" for every family whose processor carries a chat template (used as it is).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mllmcl.core.errors import UserError
from mllmcl.core.registry import Registry


@dataclass(frozen=True)
class Family:
    """What mllmcl needs to know about one transformers model family (see the module docstring)."""

    model_types: tuple[str, ...]
    classes: str
    projector: str | None
    vision: str | None
    chat: Literal["vicuna", "processor"] = "processor"
    checkpoints: str = ""
    whole_view: Literal["", "first", "last"] = ""
    language: str = "language_model"
    nested_images: bool = False  # the processor takes each sample's images as a list of their own (SmolVLM2)


FAMILIES: Registry[Family] = Registry("model family")
FAMILIES.add("llava", Family(
    ("llava",), "LlavaForConditionalGeneration", projector=r"multi_modal_projector\.linear_\d+$",
    vision=r"vision_tower.*\.layers\.{layers}\..*\.(?:q_proj|k_proj|v_proj|out_proj|fc1|fc2)", chat="vicuna",
    checkpoints="llava-hf/llava-1.5-7b-hf, llava-hf/llava-1.5-13b-hf"),
    "LLaVA-1.5: CLIP + a 2-layer MLP projector + Vicuna; the vicuna_v1 prompt")
FAMILIES.add("qwen2-vl", Family(
    ("qwen2_vl",), "Qwen2VLForConditionalGeneration", projector=None, vision=None,
    checkpoints="Qwen/Qwen2-VL-2B-Instruct, Qwen/Qwen2-VL-7B-Instruct"),
    "Qwen2-VL: dynamic-resolution ViT + patch merger + Qwen2; its processor's chat template")
FAMILIES.add("qwen2.5-vl", Family(
    ("qwen2_5_vl",), "Qwen2_5_VLForConditionalGeneration", projector=None, vision=None,
    checkpoints="Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen2.5-VL-7B-Instruct"),
    "Qwen2.5-VL: windowed dynamic-resolution ViT + patch merger + Qwen2.5; its processor's chat template")

FAMILIES.add("qwen3-vl", Family(
    ("qwen3_vl",), "Qwen3VLForConditionalGeneration", projector=None, vision=None,
    checkpoints="Qwen/Qwen3-VL-2B-Instruct, Qwen/Qwen3-VL-8B-Instruct"),
    "Qwen3-VL: dynamic-resolution ViT with DeepStack mergers + Qwen3; its processor's chat template")

FAMILIES.add("internvl", Family(
    ("internvl",), "InternVLForConditionalGeneration", projector=None, vision=None, whole_view="last",
    checkpoints="OpenGVLab/InternVL3-2B-hf, OpenGVLab/InternVL3-8B-hf"),
    "InternVL (the transformers port): InternViT + MLP projector + Qwen2.5 or InternLM; dynamic tiles; "
    "its processor's chat template")

FAMILIES.add("idefics3", Family(
    ("idefics3",), "Idefics3ForConditionalGeneration", projector=None, vision=None, whole_view="last",
    language="text_model",
    checkpoints="HuggingFaceTB/SmolVLM-256M-Instruct, HuggingFaceTB/SmolVLM-Instruct, HuggingFaceM4/Idefics3-8B-Llama3"),
    "Idefics3 and SmolVLM (v1): SigLIP + pixel-shuffle connector + Llama / SmolLM; image splitting; its "
    "processor's chat template")

FAMILIES.add("smolvlm", Family(
    ("smolvlm",), "SmolVLMForConditionalGeneration", projector=None, vision=None, whole_view="last",
    language="text_model", nested_images=True,
    checkpoints="HuggingFaceTB/SmolVLM2-256M-Video-Instruct, HuggingFaceTB/SmolVLM2-2.2B-Instruct"),
    "SmolVLM2: Idefics3's architecture (SigLIP + pixel-shuffle connector + SmolLM2); image splitting; its "
    "processor's chat template (images only here)")

FAMILIES.add("llava-next", Family(
    ("llava_next",), "LlavaNextForConditionalGeneration", projector=None, vision=None, whole_view="first",
    checkpoints="llava-hf/llava-v1.6-vicuna-7b-hf, llava-hf/llava-v1.6-mistral-7b-hf"),
    "LLaVA-NeXT (1.6): CLIP + MLP projector + Vicuna / Mistral; any-resolution tiles after the whole image; "
    "its processor's chat template")

FAMILIES.add("llava-onevision", Family(
    ("llava_onevision",), "LlavaOnevisionForConditionalGeneration", projector=None, vision=None, whole_view="first",
    checkpoints="llava-hf/llava-onevision-qwen2-0.5b-ov-hf, llava-hf/llava-onevision-qwen2-7b-ov-hf"),
    "LLaVA-OneVision: SigLIP + MLP projector + Qwen2; any-resolution tiles after the whole image; its "
    "processor's chat template")


def family_of(model_type: str, where: str = "config.json") -> tuple[str, Family]:
    """The family of a checkpoint whose config names `model_type`; a UserError naming the families there are."""
    for name in FAMILIES.names():
        family = FAMILIES.get(name)
        if model_type in family.model_types:
            return name, family
    known = ", ".join(t for n in FAMILIES.names() for t in FAMILIES.get(n).model_types)
    raise UserError(f"{where}: model_type {model_type!r} is not a family mllmcl knows (known: {known})")
