"""`Backbone`: a vision-language model with its processor and chat template, and the two encodings every
part of mllmcl uses — training batches with masked labels, and left-padded prompts for generation (the
engine trains and generates with them: engine/train.py, engine/generate.py).

The model is a transformers `*ForConditionalGeneration`; once an adapter is added it is wrapped in a
`peft.PeftModel` holding any number of named LoRA adapters. The tiny embedded model, a LLaVA-1.5-7B and a
Qwen2.5-VL checkpoint take exactly the same path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from mllmcl.core.errors import UserError
from mllmcl.data.records import ImageLike, load_image
from mllmcl.models.families import FAMILIES
from mllmcl.models.template import ChatTemplate, ProcessorTemplate

IGNORE_INDEX = -100


@dataclass
class Backbone:
    """A loaded multimodal model. `name` is how it was asked for (`tiny`, `hf:/path`)."""

    name: str
    model: torch.nn.Module
    processor: object
    template: ChatTemplate | ProcessorTemplate
    max_length: int | None = None  # longer training sequences are an error, not silently cut
    family: str = "llava"          # models/families.py: where its projector and vision layers are

    # ----------------------------------------------------------------- properties
    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def adapter_names(self) -> list[str]:
        """Names of the LoRA adapters attached (empty for the bare base model)."""
        return list(getattr(self.model, "peft_config", {}) or {})

    @property
    def base_model(self) -> torch.nn.Module:
        """The transformers model under any peft wrapper."""
        return self.model.get_base_model() if self.adapter_names else self.model

    # ----------------------------------------------------------------- encodings
    def _images(self, images: Sequence[ImageLike]) -> list[Image.Image]:
        return [load_image(image) for image in images]

    def _encode(self, images: Sequence[ImageLike], texts: list[str], padding_side: str) -> dict:
        for text in texts:
            _check_text(text, self.template.image_token)
        tokenizer = self.tokenizer
        saved_side = tokenizer.padding_side
        tokenizer.padding_side = padding_side
        try:
            pictures = self._images(images)
            if FAMILIES.get(self.family).nested_images:
                pictures = [[picture] for picture in pictures]
            batch = self.processor(images=pictures, text=texts, return_tensors="pt", padding=True)
        finally:
            tokenizer.padding_side = saved_side
        return dict(batch)

    def encode_prompts(self, images: Sequence[ImageLike], questions: Sequence[str]) -> dict:
        """Left-padded prompts (`… ASSISTANT:`) ready for `generate` or a next-token forward pass."""
        prompts = [self.template.prompt(q) for q in questions]
        return self._encode(images, prompts, padding_side="left")

    def encode_train(self, images: Sequence[ImageLike], questions: Sequence[str], answers: Sequence[str]) -> dict:
        """Right-padded `prompt + answer</s>` with `labels` equal to the input ids on the assistant's tokens
        (answer and end-of-sequence) and IGNORE_INDEX everywhere else (system, question, image, padding)."""
        if not (len(images) == len(questions) == len(answers)):
            raise ValueError("images, questions and answers differ in length")
        return self.encode_conversations(images, [[(q, a)] for q, a in zip(questions, answers)])

    def encode_conversations(self, images: Sequence[ImageLike], conversations: Sequence[Sequence[tuple[str, str]]]) -> dict:
        """Like `encode_train` for multi-turn conversations `[(question, answer), …]` about one image each
        (LLaVA training rows): labels cover every assistant turn, nothing else."""
        if len(images) != len(conversations):
            raise ValueError("images and conversations differ in length")
        if any(len(turns) == 0 for turns in conversations):
            raise ValueError("a conversation has no turns")
        eos = self.tokenizer.eos_token
        pieces = [self.template.pieces(turns, eos) for turns in conversations]
        texts = ["".join(text for text, _ in row) for row in pieces]
        batch = self._encode(images, texts, padding_side="right")
        ids = batch["input_ids"]
        if self.max_length is not None and ids.shape[1] > self.max_length:
            longest = int(batch["attention_mask"].sum(dim=1).argmax())
            raise UserError(
                f"a training sequence has {ids.shape[1]} tokens, more than backbone {self.name}'s maximum "
                f"{self.max_length}: question {conversations[longest][0][0][:60]!r}")
        labels = torch.full_like(ids, IGNORE_INDEX)
        for row, row_pieces in enumerate(pieces):
            # what the processor put in for the image beyond the text's own tokens (all of it in the first turn)
            added = int(batch["attention_mask"][row].sum()) - len(self.tokenizer(texts[row]).input_ids)
            prefix = ""
            for text, is_target in row_pieces:
                start = self._prefix_length(prefix, ids[row], added) if prefix else 0
                prefix += text
                if is_target:
                    end = self._prefix_length(prefix, ids[row], added)
                    labels[row, start:end] = ids[row, start:end]
        batch["labels"] = labels
        return batch

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.template.image_token)

    def image_token_layouts(self, batch: dict) -> list[tuple[int, int]]:
        """Rows × columns of each prompt's image tokens in `batch` (one image each) that show the whole image:
        from the processor's patch grid where the resolution is dynamic (Qwen-VL: `image_grid_thw`, merged
        `merge_size`²), one tile's square where images are tiled (`image_view_tokens`), else a square of all."""
        grids = batch.get("image_grid_thw")
        if grids is not None:
            merge = getattr(self.processor.image_processor, "merge_size", 1)
            return [(int(h) // merge, int(w) // merge) for _, h, w in grids.tolist()]
        counts = (batch["input_ids"] == self.image_token_id).sum(1).tolist()
        if FAMILIES.get(self.family).whole_view:
            counts = [min(count, self.image_view_tokens) for count in counts]
        sides = [round(c ** 0.5) for c in counts]
        if any(side * side != count for side, count in zip(sides, counts)):
            raise ValueError(f"image tokens per prompt {counts}: not a square layout")
        return [(side, side) for side in sides]

    @property
    def image_view_tokens(self) -> int:
        """Image tokens of one tile of a tiled family: the processor's `image_seq_length` (InternVL),
        `image_seq_len` (Idefics3), `num_image_tokens` (LLaVA-OneVision), or its crop's patches (LLaVA-NeXT)."""
        processor = self.processor
        tokens = (getattr(processor, "image_seq_length", None) or getattr(processor, "image_seq_len", None)
                  or getattr(processor, "num_image_tokens", None))
        if tokens:
            return int(tokens)
        return (processor.image_processor.crop_size["height"] // processor.patch_size) ** 2

    def _prefix_length(self, prefix: str, full_ids: torch.Tensor, added: int) -> int:
        """Length of a text prefix inside the processed full conversation ids: the prefix's own tokens plus the
        `added` tokens the processor expanded its image placeholder into (image tokens, and the markers around
        them that some families add)."""
        prefix_ids = self.tokenizer(prefix).input_ids
        expanded = len(prefix_ids) + added
        if expanded > len(full_ids) or int(full_ids[expanded - 1]) != prefix_ids[-1]:
            raise ValueError(
                "the tokenizer merges a turn boundary; the label mask cannot be exact "
                f"after {prefix[-40:]!r}")
        return expanded


def _check_text(text: str, image_token: str) -> None:
    """A prompt the tokenizer and processor can take, or a UserError quoting it: valid Unicode (no lone
    surrogate, which a shell makes of bytes that are not UTF-8), and one image placeholder (one image per
    sample; the template puts it before the question unless the question places it)."""
    shown = repr(text if len(text) <= 80 else text[:77] + "...")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"question {shown}: not valid Unicode text (a lone surrogate, e.g. from bytes that are "
                        "not UTF-8)") from None
    if text.count(image_token) > 1:
        raise UserError(f"question {shown}: {text.count(image_token)} {image_token} placeholders for one image; "
                        f"leave {image_token} out (the image is put before the question)")
