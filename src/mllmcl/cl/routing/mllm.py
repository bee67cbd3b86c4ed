"""`mllm` router (MR-LoRA): a separate LoRA on the same frozen base learns to name the expert.

Its prompt lists the experts by letter, each with its description (no built-in domain list), then the
sample's question; the target is the right letter. At every stage the router is trained afresh on the
router buffers of all experts so far. At test time one forward pass reads image and prompt, and the expert
is the highest-scoring letter among the experts' letters — never free text, never a random fallback; the
confidence is that letter's probability among the experts' letters.

The router's own recipe (`router` settings) differs from the experts': a small rank on the language model
only, small batches and many passes, because the buffers are small (20 samples per expert by default) and
many small steps fit them better than the experts' recipe does on the tiny backbone. What the buffers do not
cover is what the router gets wrong; `mllmcl bench routers` measures routing on the validation split. 7B
models route far better from the same 20 samples (the paper)."""
from __future__ import annotations

import json
import string
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from mllmcl.cl.context import Context, fresh_adapter, train_adapter
from mllmcl.cl.routing.catalog import ROUTERS
from mllmcl.cl.routing.router import Expert, Routing, single
from mllmcl.core.errors import UserError
from mllmcl.core.io import write_json_atomic
from mllmcl.data.official_router import OFFICIAL_LETTERS, official_prompt
from mllmcl.data.records import Example, Query
from mllmcl.data.tasks import without_rule_suffix
from mllmcl.engine.adapters import delete_adapter, load_adapter, save_adapter
from mllmcl.engine.generate import next_token_logits

LETTERS = string.ascii_uppercase
ADAPTER = "router"
STATE = "mllm_router.json"
QUESTION_CHARS = 240  # the router needs the gist of the question, not all of a long prompt


class MLLMRouter:
    kind = "mllm"
    card = ROUTERS.get(kind)

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.experts: list[tuple[str, str]] = []   # (name, description) in letter order
        self._letter_ids: dict[str, int] = {}
        self._head_lengths: dict[str, int] = {}

    # -- the prompt
    def describe(self, description: str) -> str:
        return description.split(":")[0].strip() if self.ctx.config.router.describe == "short" else description

    def prompt(self, question: str, descriptions: Sequence[str] | None = None) -> str:
        if self.ctx.config.router.prompt == "official":
            return official_prompt(question, self.ctx.config.setting)
        descriptions = [d for _, d in self.experts] if descriptions is None else list(descriptions)
        if len(descriptions) > len(LETTERS):
            raise UserError(f"the mllm router names experts by letter: at most {len(LETTERS)}, got {len(descriptions)}")
        listing = "; ".join(f"{LETTERS[i]} {self.describe(d)}" for i, d in enumerate(descriptions))
        head = f"Experts: {listing}. Which expert? "
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
            ids = self.ctx.backbone.encode_prompts([Image.new("RGB", (8, 8))], [head])["input_ids"]
            self._head_lengths[head] = ids.shape[1] + 4
        return self._head_lengths[head]

    def letters(self) -> list[str]:
        """The answer letter of each fitted expert: A, B, … in expert order, or the official map's letter."""
        if self.ctx.config.router.prompt != "official":
            return list(LETTERS[:len(self.experts)])
        setting = self.ctx.config.setting
        official = {task: letter for letter, task in OFFICIAL_LETTERS.get(setting, {}).items()}
        unknown = [name for name, _ in self.experts if name not in official]
        if unknown:
            raise UserError(f"router.prompt=official knows the {setting} tasks {', '.join(official) or '(none)'}, "
                            f"not {', '.join(unknown)}; use router.prompt=mllmcl")
        return [official[name] for name, _ in self.experts]

    def letter_id(self, letter: str) -> int:
        """The token of the answer `letter` (what the model emits right after `ASSISTANT:`)."""
        if letter not in self._letter_ids:
            backbone = self.ctx.backbone
            tokenizer, template = backbone.tokenizer, backbone.template
            prompt = template.prompt("?")
            start = len(tokenizer(prompt).input_ids)
            token = tokenizer(prompt + template.target(letter, "")).input_ids[start:]
            if len(token) != 1 or tokenizer.decode(token).strip() != letter or token[0] in self._letter_ids.values():
                raise UserError(f"backbone {backbone.name}: the answer {letter!r} is not a token of its own, so the mllm "
                                "router cannot score it in one pass; use router.kind=prototype")
            self._letter_ids[letter] = token[0]
        return self._letter_ids[letter]

    # -- training and routing
    def fit(self, experts: Sequence[Expert]) -> None:
        backbone, cfg = self.ctx.backbone, self.ctx.config.router
        if ADAPTER in backbone.adapter_names:
            delete_adapter(backbone, ADAPTER)
        self.experts = [(e.name, e.description) for e in experts]
        if len(experts) == 1:  # one expert: nothing to learn until a second one arrives
            return
        letters = self.letters()
        rows = [Example(s.image, self.prompt(without_rule_suffix(s.question)), letters[i])
                for i, expert in enumerate(experts) for s in expert.buffer]
        stage = len(experts)
        recipe = replace(self.ctx.config.lora, rank=cfg.rank, alpha=2.0 * cfg.rank, vision=cfg.vision)
        fresh_adapter(self.ctx, ADAPTER, self.ctx.train_seed("router", stage, "init"), recipe)
        train_adapter(self.ctx, ADAPTER, rows, self.ctx.train_seed("router", stage), f"router ({stage} experts)",
                      epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, max_steps=None)

    def scores(self, queries: Sequence[Query]) -> torch.Tensor:
        """Router logits of the experts' letters, shape (n, experts)."""
        prompts = [self.prompt(without_rule_suffix(q.question)) for q in queries]
        return next_token_logits(self.ctx.backbone, [q.image for q in queries], prompts,
                                 adapters=[ADAPTER] * len(queries), batch_size=self.ctx.config.eval.batch_size,
                                 columns=[self.letter_id(letter) for letter in self.letters()],
                                 processes=self.ctx.processes)

    def route(self, queries: Sequence[Query]) -> Routing:
        if not self.experts:
            raise ValueError("the mllm router routes only after fit()")
        if len(self.experts) == 1:
            return single(queries)
        probabilities = self.scores(queries).softmax(dim=1)
        confidence, chosen = probabilities.max(dim=1)
        return Routing(chosen.tolist(), confidence.tolist())

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        if ADAPTER in self.ctx.backbone.adapter_names:
            save_adapter(self.ctx.backbone, ADAPTER, folder)
        write_json_atomic(folder / STATE, {"kind": self.kind, "prompt": self.ctx.config.router.prompt,
                                           "experts": [name for name, _ in self.experts],
                                           "letters": dict(zip(self.letters(), (name for name, _ in self.experts))),
                                           "descriptions": {name: d for name, d in self.experts}})

    def load(self, folder: Path) -> bool:
        folder = Path(folder)
        if not (folder / STATE).is_file():
            return False
        try:
            state = json.loads((folder / STATE).read_text())
            self.experts = [(name, state["descriptions"][name]) for name in state["experts"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{folder / STATE}: cannot read the mllm router's saved state ({err})") from None
        if ADAPTER in self.ctx.backbone.adapter_names:
            delete_adapter(self.ctx.backbone, ADAPTER)
        if len(self.experts) > 1:
            load_adapter(self.ctx.backbone, ADAPTER, folder / ADAPTER)
        return True
