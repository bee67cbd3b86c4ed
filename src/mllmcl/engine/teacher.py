"""A frozen teacher's outputs for the batches a training call sees: what distillation methods (LwF) compare
the student with.

`AnswerLogits.compute(backbone, examples, adapter)` runs the teacher — the backbone with `adapter` active (its
weights as they are now, e.g. the model after the previous task), or the base model — once over `examples`,
in inference mode, and keeps for each example its logits at the positions that predict the answer tokens
(where the training loss looks). During training, `for_batch(batch)` returns them for the batch's rows in
the order the student's answer positions come (`answer_positions`), looked up by `batch["_index"]`.
Computing once per sample and caching is cheaper than a second forward pass per step whenever an example is
seen more than once; `top_k` keeps only the k largest logits per position (the rest count as -inf), which
bounds the cache for large vocabularies.
"""
from __future__ import annotations

from typing import Sequence

import torch

from mllmcl.engine.adapters import require
from mllmcl.engine.generate import _inference
from mllmcl.engine.train import conversation
from mllmcl.models.backbone import IGNORE_INDEX, Backbone


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """Mask (batch, seq-1) of the logit positions that predict an answer token (label at the next position)."""
    return labels[:, 1:] != IGNORE_INDEX


class AnswerLogits:
    """Per example, the teacher's logits at its answer-predicting positions: (n_answer_tokens, vocab) in
    float32, or `top_k` values and indices."""

    def __init__(self, rows: list[torch.Tensor], indices: list[torch.Tensor] | None, vocab: int):
        self.rows, self.indices, self.vocab = rows, indices, vocab

    @classmethod
    def compute(cls, backbone: Backbone, examples: Sequence, adapter: str | None, batch_size: int = 32,
                top_k: int = 0) -> "AnswerLogits":
        if adapter is not None:
            require(backbone, [adapter])
        rows: list[torch.Tensor] = []
        indices: list[torch.Tensor] | None = [] if top_k else None
        vocab = 0
        with _inference(backbone, [adapter] * len(examples) if adapter else None) as route:
            for start in range(0, len(examples), batch_size):
                chunk = examples[start:start + batch_size]
                batch = backbone.encode_conversations([e.image for e in chunk], [conversation(e) for e in chunk])
                batch = {k: v.to(backbone.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                labels = batch.pop("labels")
                extra = route([adapter] * len(chunk) if adapter else None)
                logits = backbone.model(**batch, **extra).logits[:, :-1].float()
                vocab = logits.shape[-1]
                mask = answer_positions(labels)
                for i in range(len(chunk)):
                    selected = logits[i][mask[i]].cpu()
                    if top_k:
                        values, idx = selected.topk(min(top_k, vocab), dim=-1)
                        rows.append(values)
                        indices.append(idx)
                    else:
                        rows.append(selected)
        return cls(rows, indices, vocab)

    def for_batch(self, batch: dict) -> torch.Tensor:
        """The teacher's logits for the batch's answer positions, (n_positions, vocab), on the batch's device;
        with `top_k`, the positions outside the top k hold -inf."""
        index = batch["_index"].tolist()
        device = batch["_index"].device
        if self.indices is None:
            return torch.cat([self.rows[i] for i in index]).to(device)
        values = torch.cat([self.rows[i] for i in index])
        full = torch.full((len(values), self.vocab), float("-inf"))
        full.scatter_(1, torch.cat([self.indices[i] for i in index]), values)
        return full.to(device)
