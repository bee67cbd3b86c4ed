"""The embedded `tiny` backbone: a real `LlavaForConditionalGeneration` (CLIP vision tower + Llama language
model) small enough to pretrain and fine-tune on a laptop CPU, with a byte-level BPE tokenizer trained
locally and a standard `LlavaProcessor`.

`build_tiny(texts, config)` makes an untrained model (used by `mllmcl pretrain` and by tests);
the pretrained weights ship inside the package (`models/weights/tiny/`) and load through the same
`from_pretrained` path as any transformers checkpoint.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                          LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<image>")  # ids 0..4
WEIGHTS_DIR = Path(__file__).parent / "weights" / "tiny"


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of the tiny LLaVA. The defaults are the shipped model; tests use `TinyConfig.micro()`."""

    image_size: int = 48
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 192
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    vocab_size: int = 2048
    max_length: int = 160

    @classmethod
    def micro(cls) -> "TinyConfig":
        """~0.5M parameters: for unit tests that only need the code path, not quality."""
        return cls(image_size=32, patch_size=8, vision_hidden=32, vision_layers=1, vision_heads=2,
                   text_hidden=64, text_layers=2, text_heads=2, text_kv_heads=1, vocab_size=600)

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer (any text encodes; frequent words become single tokens), wrapped as a
    transformers fast tokenizer with `<image>` registered as the image token and left padding."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"}, padding_side="left", model_max_length=512)


def build_tiny(texts: Iterable[str], config: TinyConfig = TinyConfig(), seed: int = 0):
    """An untrained tiny LLaVA and its processor. Returns `(model, processor)`."""
    tokenizer = train_tokenizer(texts, config.vocab_size)
    vision = CLIPVisionConfig(
        hidden_size=config.vision_hidden, intermediate_size=4 * config.vision_hidden,
        num_hidden_layers=config.vision_layers, num_attention_heads=config.vision_heads,
        image_size=config.image_size, patch_size=config.patch_size, projection_dim=config.vision_hidden)
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.text_hidden, intermediate_size=4 * config.text_hidden,
        num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
        num_key_value_heads=config.text_kv_heads, max_position_embeddings=2 * config.max_length,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    llava = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.image_token_id,
        image_seq_length=config.image_tokens, vision_feature_layer=-1,
        vision_feature_select_strategy="default", projector_hidden_act="gelu", tie_word_embeddings=False)
    llava.mllmcl_tiny = config.to_dict()  # saved in config.json: how the shipped model was sized
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(llava)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": config.image_size}, crop_size={"height": config.image_size, "width": config.image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=config.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token="<image>")
    return model, processor
