"""A random-weight checkpoint of a model family (models/families.py) at a chosen shape, written with
`save_pretrained` so that it loads through `hf:<dir>` like a downloaded one: built offline from the family's
transformers configuration class, with a small byte-level BPE tokenizer trained on the given texts, the
family's special tokens, and a chat template in the family's format.

Tests build them tiny (what must hold is that every path runs, not what a random model answers); a 7B-class
shape gives the real layer sizes for timing (`mllmcl bench scale`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (CLIPVisionConfig, GotOcr2ImageProcessorPil, Idefics3Config, Idefics3ForConditionalGeneration,
                          Idefics3ImageProcessorPil, Idefics3Processor, InternVLConfig, InternVLForConditionalGeneration,
                          InternVLProcessor, LlavaNextConfig, LlavaNextForConditionalGeneration,
                          LlavaNextImageProcessorPil, LlavaNextProcessor, LlavaOnevisionConfig,
                          LlavaOnevisionForConditionalGeneration, LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor,
                          PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                          Qwen2_5_VLProcessor, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil,
                          Qwen2VLProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor,
                          SiglipVisionConfig, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil,
                          SmolVLMProcessor)

from mllmcl.models.hf import image_only
from mllmcl.models.tiny import TinyConfig, build_tiny


@dataclass(frozen=True)
class Shape:
    """Sizes of a random checkpoint: a tiny default; `SHAPES_7B` holds each family's 7B-class sizes."""

    hidden: int = 64
    intermediate: int = 128
    layers: int = 2
    heads: int = 2
    kv_heads: int = 1
    vocab: int = 600                  # the BPE tokenizer's vocabulary
    embeddings: int | None = None     # rows of the embedding table and head (None: the tokenizer's size)
    vision_hidden: int = 32
    vision_intermediate: int = 64
    vision_layers: int = 1
    vision_heads: int = 2
    image_tokens: tuple[int, int] = (4, 16)  # Qwen: fewest and most image tokens per image (the pixel budget)
    tile: int = 56                    # tiled families: a tile's side in pixels

    def cut(self, layers: int | None) -> "Shape":
        """The same widths with only the first `layers` layers of each tower (None: all)."""
        return self if layers is None else replace(self, layers=layers, vision_layers=layers)


# The 7B-class models' sizes (their config.json): Qwen2/2.5-VL-7B, Qwen3-VL-8B, InternVL3-8B (InternViT-300M),
# Idefics3-8B (SigLIP-so400m + Llama-3-8B), LLaVA-NeXT-7B (vicuna), LLaVA-OneVision-7B (SigLIP + Qwen2).
SHAPES_7B = {
    "qwen2-vl": Shape(3584, 18944, 28, 28, 4, embeddings=152064, vision_hidden=1280, vision_intermediate=5120,
                      vision_layers=32, vision_heads=16, image_tokens=(4, 16384)),
    "qwen2.5-vl": Shape(3584, 18944, 28, 28, 4, embeddings=152064, vision_hidden=1280, vision_intermediate=3420,
                        vision_layers=32, vision_heads=16, image_tokens=(4, 16384)),
    "qwen3-vl": Shape(4096, 12288, 36, 32, 8, embeddings=151936, vision_hidden=1152, vision_intermediate=4304,
                      vision_layers=27, vision_heads=16, image_tokens=(4, 16384)),
    "internvl": Shape(3584, 18944, 28, 28, 4, embeddings=151674, vision_hidden=1024, vision_intermediate=4096,
                      vision_layers=24, vision_heads=16, tile=448),
    "idefics3": Shape(4096, 14336, 32, 32, 8, embeddings=128259, vision_hidden=1152, vision_intermediate=4304,
                      vision_layers=27, vision_heads=16, tile=364),
    "llava-next": Shape(4096, 11008, 32, 32, 32, embeddings=32064, vision_hidden=1024, vision_intermediate=4096,
                        vision_layers=24, vision_heads=16, tile=336),
    "llava-onevision": Shape(3584, 18944, 28, 28, 4, embeddings=152128, vision_hidden=1152, vision_intermediate=4304,
                             vision_layers=26, vision_heads=16, tile=384),
}


# ChatML, as the Qwen-VL processors render it (written for these checkpoints; a real one ships its own)
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
          "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|>"
          "<|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# InternVL's port to transformers: the same ChatML, the image as its context token on a line of its own
INTERNVL_CHAT = CHATML.replace("<|vision_start|><|image_pad|><|vision_end|>", "<IMG_CONTEXT>\n")
INTERNVL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>")
# Idefics3 / SmolVLM: "User:<image>question<end_of_utterance>\nAssistant: answer<end_of_utterance>\n"
IDEFICS3_CHAT = ("{% for m in messages %}{{ m['role'] | capitalize }}:{% if m['content'] is string %}"
                 "{{ ' ' + m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
                 "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n"
                 "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")
IDEFICS3_TOKENS = ("<|endoftext|>", "<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>")
# LLaVA-NeXT (vicuna): "USER: <image>\nquestion ASSISTANT: answer</s>"
LLAVA_NEXT_CHAT = ("{% for m in messages %}{% if m['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
                   "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
                   "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
                   "{% endfor %}{% endif %}{% if m['role'] == 'assistant' %}</s>{% else %} {% endif %}{% endfor %}"
                   "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
# LLaVA-OneVision (Qwen2): ChatML, the image as "<image>" on a line of its own before the question
ONEVISION_CHAT = CHATML.replace("<|vision_start|><|image_pad|><|vision_end|>", "<image>\n")
ONEVISION_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
QWEN_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>")


def _tokenizer(texts: Iterable[str], vocab: int, special: tuple[str, ...], **names) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(texts), trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=list(special), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left", model_max_length=4096, **names)


QWEN_CLASSES = {"qwen2-vl": (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor),
                "qwen2.5-vl": (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor),
                "qwen3-vl": (Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor)}


def _qwen(family: str, texts: Iterable[str], shape: Shape):
    Config, Model, Processor = QWEN_CLASSES[family]
    depth = shape.vision_layers
    vision = {"depth": depth, "hidden_size": shape.vision_hidden, "out_hidden_size": shape.hidden,
              "intermediate_size": shape.vision_intermediate, "num_heads": shape.vision_heads}
    if family == "qwen2-vl":  # a ViT of embed_dim with an MLP ratio, merged into the language model's width
        vision = {"depth": depth, "embed_dim": shape.vision_hidden, "hidden_size": shape.hidden,
                  "mlp_ratio": shape.vision_intermediate // shape.vision_hidden, "num_heads": shape.vision_heads}
    elif family == "qwen2.5-vl":  # windowed attention but in a few full-attention blocks
        vision |= {"window_size": 112, "fullatt_block_indexes": [i for i in (7, 15, 23, 31) if i < depth] or [depth - 1]}
    else:  # DeepStack: features of a few vision layers also enter early language layers
        vision |= {"num_position_embeddings": 2304,
                   "deepstack_visual_indexes": [i for i in (8, 16, 24) if i < min(depth, shape.layers)] or [0]}
    patch = 16 if family == "qwen3-vl" else 14
    tokenizer = _tokenizer(texts, shape.vocab, QWEN_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                           extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    ids = tokenizer.convert_tokens_to_ids
    half = shape.hidden // shape.heads // 2  # multimodal rope: time, height, width sections summing to half
    side = (half - half // 4) // 2
    text = {"vocab_size": shape.embeddings or len(tokenizer), "hidden_size": shape.hidden,
            "intermediate_size": shape.intermediate, "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [half - 2 * side, side, side]},
            "head_dim": 2 * half, "bos_token_id": None, "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>")}
    config = Config(text_config=text, vision_config={**vision, "patch_size": patch, "spatial_merge_size": 2,
                                                      "temporal_patch_size": 2},
                    image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                    vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
                    tie_word_embeddings=False)
    model = Model(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.generation_config.bos_token_id = None
    # the pixel budget: one image token per (2 x patch)² pixels after the 2x2 merge
    pixels = (2 * patch) ** 2
    fewest, most = shape.image_tokens
    images = Qwen2VLImageProcessorPil(min_pixels=fewest * pixels, max_pixels=most * pixels, patch_size=patch,
                                      merge_size=2, temporal_patch_size=2)
    processor = image_only(Processor)(image_processor=images, tokenizer=tokenizer, chat_template=CHATML)
    return model, processor


def _internvl(family: str, texts: Iterable[str], shape: Shape):
    tokenizer = _tokenizer(texts, shape.vocab, INTERNVL_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                           extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                                                 "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    ids = tokenizer.convert_tokens_to_ids
    tile, patch = shape.tile, 14  # (tile/14)² patches, pixel-shuffled by 0.5: 4 tokens at 56 px, 256 at 448
    vision = {"hidden_size": shape.vision_hidden, "num_hidden_layers": shape.vision_layers,
              "num_attention_heads": shape.vision_heads, "intermediate_size": shape.vision_intermediate,
              "image_size": [tile, tile], "patch_size": [patch, patch]}
    text = {"model_type": "qwen2", "vocab_size": shape.embeddings or len(tokenizer), "hidden_size": shape.hidden,
            "intermediate_size": shape.intermediate, "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads, "bos_token_id": None,
            "eos_token_id": ids("<|im_end|>"), "pad_token_id": ids("<|endoftext|>"), "tie_word_embeddings": False}
    config = InternVLConfig(vision_config=vision, text_config=text, image_token_id=ids("<IMG_CONTEXT>"),
                            downsample_ratio=0.5, vision_feature_layer=-1, tie_word_embeddings=False)
    model = InternVLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.generation_config.bos_token_id = None
    # a wide image is cut into up to 4 tiles plus a thumbnail, as InternVL's dynamic tiling does
    images = GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, crop_to_patches=True, min_patches=1,
                                      max_patches=4)
    per_tile = (tile // patch // 2) ** 2
    processor = image_only(InternVLProcessor)(image_processor=images, tokenizer=tokenizer, image_seq_length=per_tile,
                                              chat_template=INTERNVL_CHAT)
    return model, processor


def _idefics3(family: str, texts: Iterable[str], shape: Shape):
    tokenizer = _tokenizer(texts, shape.vocab, IDEFICS3_TOKENS, eos_token="<end_of_utterance>",
                           pad_token="<|endoftext|>",
                           extra_special_tokens={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                                                 "global_image_token": "<global-img>",
                                                 "end_of_utterance_token": "<end_of_utterance>"})
    ids = tokenizer.convert_tokens_to_ids
    tile, patch = shape.tile, 14  # (tile/14)² patches, pixel-shuffled by 2 per side: 4 tokens at 56 px
    vision = {"hidden_size": shape.vision_hidden, "intermediate_size": shape.vision_intermediate,
              "num_hidden_layers": shape.vision_layers, "num_attention_heads": shape.vision_heads,
              "image_size": tile, "patch_size": patch}
    text = {"model_type": "llama", "vocab_size": shape.embeddings or len(tokenizer), "hidden_size": shape.hidden,
            "intermediate_size": shape.intermediate, "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads, "bos_token_id": None,
            "eos_token_id": ids("<end_of_utterance>"), "pad_token_id": ids("<|endoftext|>"),
            "tie_word_embeddings": False}
    smolvlm = family == "smolvlm"  # SmolVLM2: Idefics3's architecture under classes of its own
    Config, Model = (SmolVLMConfig, SmolVLMForConditionalGeneration) if smolvlm else \
        (Idefics3Config, Idefics3ForConditionalGeneration)
    config = Config(vision_config=vision, text_config=text, image_token_id=ids("<image>"), scale_factor=2,
                    tie_word_embeddings=False)
    model = Model(config)
    model.generation_config.eos_token_id = ids("<end_of_utterance>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.generation_config.bos_token_id = None
    # images up to two tiles a side are split into tiles plus the whole image, as SmolVLM splits them
    Images, Processor = (SmolVLMImageProcessorPil, image_only(SmolVLMProcessor)) if smolvlm else \
        (Idefics3ImageProcessorPil, Idefics3Processor)
    images = Images(do_image_splitting=True, size={"longest_edge": 2 * tile}, max_image_size={"longest_edge": tile})
    processor = Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=(tile // patch // 2) ** 2,
                          chat_template=IDEFICS3_CHAT)
    return model, processor


def _llava_next(family: str, texts: Iterable[str], shape: Shape):
    tokenizer = _tokenizer(texts, shape.vocab, ("<pad>", "<s>", "</s>", "<image>"), eos_token="</s>",
                           pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    ids = tokenizer.convert_tokens_to_ids
    tile, patch = shape.tile, 14  # (tile/14)² tokens a tile: 16 at 56 px
    pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile]]
    vision = CLIPVisionConfig(hidden_size=shape.vision_hidden, intermediate_size=shape.vision_intermediate,
                              num_hidden_layers=shape.vision_layers, num_attention_heads=shape.vision_heads,
                              image_size=tile, patch_size=patch, projection_dim=shape.vision_hidden)
    text = {"model_type": "llama", "vocab_size": shape.embeddings or len(tokenizer), "hidden_size": shape.hidden,
            "intermediate_size": shape.intermediate, "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads, "bos_token_id": None,
            "eos_token_id": ids("</s>"), "pad_token_id": ids("<pad>"), "tie_word_embeddings": False}
    config = LlavaNextConfig(vision_config=vision.to_dict(), text_config=text, image_token_index=ids("<image>"),
                             image_grid_pinpoints=pinpoints, vision_feature_layer=-1, tie_word_embeddings=False)
    model = LlavaNextForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("</s>")
    model.generation_config.pad_token_id = ids("<pad>")
    model.generation_config.bos_token_id = None
    # the whole image, then up to 2 x 2 tiles at the pinpoint resolution nearest its shape (any-resolution)
    images = LlavaNextImageProcessorPil(size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile},
                                        image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=images, tokenizer=tokenizer, patch_size=patch,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=LLAVA_NEXT_CHAT)
    return model, processor


def _llava_onevision(family: str, texts: Iterable[str], shape: Shape):
    tokenizer = _tokenizer(texts, shape.vocab, ONEVISION_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                           extra_special_tokens={"image_token": "<image>", "video_token": "<video>"})
    ids = tokenizer.convert_tokens_to_ids
    tile, patch = shape.tile, 14
    pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile]]
    vision = SiglipVisionConfig(hidden_size=shape.vision_hidden, intermediate_size=shape.vision_intermediate,
                                num_hidden_layers=shape.vision_layers, num_attention_heads=shape.vision_heads,
                                image_size=tile, patch_size=patch)
    text = {"model_type": "qwen2", "vocab_size": shape.embeddings or len(tokenizer), "hidden_size": shape.hidden,
            "intermediate_size": shape.intermediate, "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads, "bos_token_id": None,
            "eos_token_id": ids("<|im_end|>"), "pad_token_id": ids("<|endoftext|>"), "tie_word_embeddings": False}
    config = LlavaOnevisionConfig(vision_config=vision.to_dict(), text_config=text, image_token_index=ids("<image>"),
                                  video_token_index=ids("<video>"), image_grid_pinpoints=pinpoints,
                                  vision_feature_layer=-1, vision_feature_select_strategy="full",
                                  vision_aspect_ratio="anyres_max_4", tie_word_embeddings=False)
    model = LlavaOnevisionForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.generation_config.bos_token_id = None
    # the whole image first, then its any-resolution tiles, as LLaVA-OneVision splits them
    images = LlavaOnevisionImageProcessorPil(size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints)
    processor = image_only(LlavaOnevisionProcessor)(image_processor=images, tokenizer=tokenizer,
                                        num_image_tokens=(tile // patch) ** 2, vision_feature_select_strategy="full",
                                        vision_aspect_ratio="anyres_max_4", chat_template=ONEVISION_CHAT)
    return model, processor


FAMILY_BUILDERS = {"idefics3": _idefics3, "smolvlm": _idefics3, "llava-next": _llava_next, "llava-onevision": _llava_onevision, "internvl": _internvl, "qwen2-vl": _qwen, "qwen2.5-vl": _qwen, "qwen3-vl": _qwen}


def build_random(family: str, texts: Iterable[str], shape: Shape = Shape(), seed: int = 0):
    """A random-weight model of `family` at `shape` and its processor: `(model, processor)`."""
    torch.manual_seed(seed)
    if family == "llava":
        return build_tiny(texts, TinyConfig.micro(), seed=seed)
    if family not in FAMILY_BUILDERS:
        raise ValueError(f"no random-checkpoint builder for family {family!r}; known: llava, "
                         + ", ".join(FAMILY_BUILDERS))
    return FAMILY_BUILDERS[family](family, texts, shape)


def build_random_checkpoint(family: str, out: str | Path, texts: Iterable[str], shape: Shape = Shape(),
                            seed: int = 0) -> Path:
    """Write a random-weight checkpoint of `family` at `shape` into `out` (created) and return it."""
    out = Path(out)
    model, processor = build_random(family, texts, shape, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
