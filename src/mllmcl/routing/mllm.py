"""`mllm` router (MR-LoRA): a separate LoRA on the same frozen base learns to name the expert.

Its prompt lists the seen experts by letter, each with the description from its task's definition (no
built-in domain list), then the sample's question; the target is the right letter. At every stage the
router is trained afresh on the router buffer of all tasks seen so far. At test time one forward pass
reads image and prompt, and the expert is the highest-scoring letter among the seen experts' letters —
never free text, never a random fallback.

The tiny backbone's recipe (measured on the five synthetic DCL tasks, 20 buffer samples per task, 100 test
samples per task, routing accuracy): the experts' recipe (rank 64, vision tower too, batch 16) 76.4% and
93% of its own buffer — it underfits; rank 8 on the language model only, batch 16, lr 5e-3: 84.6%; the
same with batch 4 (four times the steps), lr 2e-3: 91.6% (99% on the buffer; the rest is what 20 samples
per task do not cover). 7B models route far better from the same 20 samples (the paper)."""
from __future__ import annotations

import string
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.data.records import Example
from mllmcl.engine import delete_adapter, load_adapter, next_token_logits, save_adapter
from mllmcl.errors import UserError
from mllmcl.methods.base import fresh_adapter, train_adapter
from mllmcl.routing import ROUTERS, router_buffer

LETTERS = string.ascii_uppercase
ADAPTER = "router"
QUESTION_CHARS = 240  # the router needs the gist of the question, not all of a long prompt


@ROUTERS.register("mllm", "MR-LoRA's MLLM router: a router LoRA picks the expert's letter")
class MLLMRouter:
    kind = "mllm"

    def __init__(self, ctx):
        self.ctx = ctx
        self._letter_ids: list[int] = []
        self._head_lengths: dict[str, int] = {}

    # -- the prompt
    def describe(self, task: Task) -> str:
        text = task.spec.description
        return text.split(":")[0].strip() if self.ctx.config.router.describe == "short" else text

    def prompt(self, question: str, seen: Sequence[Task]) -> str:
        if len(seen) > len(LETTERS):
            raise UserError(f"the mllm router names experts by letter: at most {len(LETTERS)} tasks, got {len(seen)}")
        experts = "; ".join(f"{LETTERS[i]} {self.describe(t)}" for i, t in enumerate(seen))
        head = f"Experts: {experts}. Which expert? "
        question = " ".join(question.replace("<image>", " ").split())
        return head + self._truncate(question, head)

    def _truncate(self, question: str, head: str) -> str:
        """The question, cut to what fits the backbone's training window beside the image and the expert list
        (the router needs the gist of the question, not all of a long prompt)."""
        backbone = self.ctx.backbone
        question = question[:QUESTION_CHARS]
        if backbone.max_length is None:
            return question
        tokenizer = backbone.tokenizer
        budget = backbone.max_length - self._head_length(head)
        ids = tokenizer(question, add_special_tokens=False).input_ids
        if budget <= 0:
            raise UserError(f"backbone {backbone.name}: the router prompt for {len(head)} characters of expert list "
                            f"leaves no room for the question in {backbone.max_length} tokens; use router.describe=short")
        return question if len(ids) <= budget else tokenizer.decode(ids[:budget])

    def _head_length(self, head: str) -> int:
        """Tokens of the prompt without its question (image tokens expanded) plus " A</s>" and a margin for
        merges; measured once per expert list, not once per sample."""
        if head not in self._head_lengths:
            from PIL import Image

            ids = self.ctx.backbone.encode_prompts([Image.new("RGB", (8, 8))], [head])["input_ids"]
            self._head_lengths[head] = ids.shape[1] + 4
        return self._head_lengths[head]

    def letter_ids(self, n: int) -> list[int]:
        """The tokens of the first `n` letter answers (what the model emits right after `ASSISTANT:`)."""
        while len(self._letter_ids) < n:
            backbone = self.ctx.backbone
            tokenizer, template = backbone.tokenizer, backbone.template
            prompt = template.prompt("?")
            start = len(tokenizer(prompt).input_ids)
            letter = LETTERS[len(self._letter_ids)]
            token = tokenizer(prompt + template.target(letter, "")).input_ids[start:]
            if len(token) != 1 or tokenizer.decode(token).strip() != letter or token[0] in self._letter_ids:
                raise UserError(f"backbone {backbone.name}: the answer {letter!r} is not a token of its own, so the mllm "
                                "router cannot score it in one pass; use router.kind=prototype")
            self._letter_ids.append(token[0])
        return self._letter_ids[:n]

    # -- training and routing
    def fit(self, seen: Sequence[Task]) -> None:
        backbone, cfg = self.ctx.backbone, self.ctx.config.router
        if ADAPTER in backbone.adapter_names:
            delete_adapter(backbone, ADAPTER)
        if len(seen) == 1:  # one expert: nothing to learn until a second task arrives
            return
        rows = [Example(s.image, self.prompt(s.question, seen), LETTERS[i])
                for i, task in enumerate(seen) for s in router_buffer(self.ctx, task)]
        stage = len(seen)
        recipe = replace(self.ctx.config.lora, rank=cfg.rank, alpha=2.0 * cfg.rank, vision=cfg.vision)
        fresh_adapter(self.ctx, ADAPTER, self.ctx.seed_for("router", stage, "init"), recipe)
        train_adapter(self.ctx, ADAPTER, rows, self.ctx.seed_for("router", stage), f"router ({stage} experts)",
                      epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, max_steps=None)

    def scores(self, samples: Sequence[Sample], seen: Sequence[Task]) -> torch.Tensor:
        """Router logits of the seen experts' letters, shape (n, len(seen))."""
        prompts = [self.prompt(s.question, seen) for s in samples]
        logits = next_token_logits(self.ctx.backbone, [s.image for s in samples], prompts,
                                   adapters=[ADAPTER] * len(samples), batch_size=self.ctx.config.eval.batch_size)
        return logits[:, self.letter_ids(len(seen))]

    def route(self, samples: Sequence[Sample], seen: Sequence[Task]) -> list[int]:
        if len(seen) == 1:  # one expert: nothing to choose, no pass needed
            return [0] * len(samples)
        return self.scores(samples, seen).argmax(dim=1).tolist()

    def save(self, folder: Path) -> None:
        if ADAPTER in self.ctx.backbone.adapter_names:
            save_adapter(self.ctx.backbone, ADAPTER, folder)

    def restore(self, folder: Path, seen: Sequence[Task]) -> None:
        if ADAPTER in self.ctx.backbone.adapter_names:
            delete_adapter(self.ctx.backbone, ADAPTER)
        if (folder / ADAPTER).is_dir():
            load_adapter(self.ctx.backbone, ADAPTER, folder / ADAPTER)
