"""What HiDe-LLaVA and DISCO share: one LoRA subspace per task inside a single task-block adapter
(engine/blocks.py), an identity feature per task, and answers whose blocks are weighted by each input's
similarity to those identities — no task id at test time.

Learning task t trains block t alone (every other block is switched off in the forward pass and left as it
was), then stores the task's identity: the mean feature of its training prompts. The features are the base
model's own, adapters off (`engine.generate.pooled_features` at layer 0): the mean input embedding of the
prompt's text tokens stands in for the CLIP text feature of the instruction, the mean projected image token
for the CLIP image embedding. Like the routers, they read the prompt without the suffix an evaluation's
prompt rule derives from the answer (`data.tasks.without_rule_suffix`). A subclass says which features it
keeps, how a query's block weights follow from them (`weights`) and which layers it fuses (`fused_layers`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from mllmcl.cl.context import Context, answer_with, fresh_adapter
from mllmcl.cl.methods.base import Answers, require_saved
from mllmcl.cl.methods.seq_lora import SeqLoRA
from mllmcl.core.errors import UserError
from mllmcl.core.io import write_bytes_atomic
from mllmcl.data.mllm_cl import Task
from mllmcl.data.records import Query
from mllmcl.data.tasks import without_rule_suffix
from mllmcl.engine import blocks
from mllmcl.engine.adapters import adapter_parameters
from mllmcl.engine.generate import pooled_features
from mllmcl.engine.settings import BlockLoraRecipe, in_parts

STATE = "identities.safetensors"


class TaskBlockMethod(SeqLoRA):
    """A task-block adapter of one block per task, at the run's LoRA rank and scale per block. `features`
    names the identity features kept per task ("text", "image")."""

    features: tuple[str, ...] = ("text",)

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.identities: dict[str, list[torch.Tensor]] = {kind: [] for kind in self.features}

    @property
    def blocks(self) -> int:
        return len(self.ctx.task_names)

    def recipe(self):
        return in_parts(self.ctx.config.lora, BlockLoraRecipe, self.blocks, blocks=self.blocks)

    # -- what a subclass decides
    def weights(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(n, learned tasks) block weights of n queries from their features (kind → (n, d))."""
        raise NotImplementedError

    def fused_layers(self) -> set[str]:
        """The layers whose learned blocks are fused at test time (none by default)."""
        return set()

    # -- learning
    def learn(self, task: Task) -> None:
        index = len(self.learned)
        if index >= self.blocks:
            raise UserError(f"{self.name}: {index + 1} tasks for an adapter of {self.blocks} task blocks")
        if self.adapter not in self.ctx.backbone.adapter_names:
            fresh_adapter(self.ctx, self.adapter, self.ctx.train_seed(self.name, "init"), self.recipe())
        before = {k: p.detach().clone() for k, p in adapter_parameters(self.ctx.backbone, self.adapter).items()}
        with blocks.route(self.ctx.backbone, self.adapter, blocks.one_hot(self.blocks, index)):
            super().learn(task)
        self._keep_other_blocks(before, index)
        rows = self.ctx.train_rows(task)
        for kind, feats in self._features([s.query for s in rows]).items():
            self.identities[kind].append(feats.mean(0))

    def _keep_other_blocks(self, before: dict[str, torch.Tensor], index: int) -> None:
        """Put back every block but `index` as it was before the task (only weight decay could move them: they
        get no gradient). The projector copy, shared by every task as MCITlib carries it, keeps training."""
        keep = torch.ones(self.blocks, dtype=torch.bool)
        keep[index] = False
        with torch.no_grad():
            for key, p in adapter_parameters(self.ctx.backbone, self.adapter).items():
                if key in before and (".lora_A." in key or ".lora_B." in key):
                    p.copy_(torch.where(blocks.per_block(keep, key, p), before[key], p))

    # -- identities and answering
    def _features(self, queries: Sequence[Query]) -> dict[str, torch.Tensor]:
        backbone, size = self.ctx.backbone, self.ctx.config.eval.batch_size
        images, questions = [q.image for q in queries], [without_rule_suffix(q.question) for q in queries]
        return {kind: pooled_features(backbone, images, questions, size, layer=0, tokens=kind,
                                      processes=self.ctx.processes) for kind in self.features}

    def block_weights(self, queries: Sequence[Query]) -> torch.Tensor:
        """(n, T) weights of every block for each query: the subclass's weights over the learned tasks, 0 for
        the blocks of tasks not learned yet."""
        learned = self.weights(self._features(queries))
        return torch.cat([learned, torch.zeros(len(queries), self.blocks - learned.shape[1])], dim=1)

    def answer(self, queries: Sequence[Query], max_new_tokens: int) -> Answers:
        if not self.learned:
            return Answers(answer_with(self.ctx, queries, [None] * len(queries), max_new_tokens))
        weights = self.block_weights(queries)
        learned = torch.zeros(self.blocks)
        learned[:len(self.learned)] = 1.0
        fused, size, texts = self.fused_layers(), self.ctx.config.eval.batch_size, []
        for start in range(0, len(queries), size):  # one generate call per batch: row i gets weights[i]
            chunk = queries[start:start + size]
            with blocks.route(self.ctx.backbone, self.adapter, weights[start:start + size], fused, learned):
                texts += answer_with(self.ctx, chunk, [self.adapter] * len(chunk), max_new_tokens)
        return Answers(texts)

    # -- state
    def save(self, folder: Path) -> None:
        super().save(folder)
        if self.learned:
            tensors = {f"{kind}/{i}": v.contiguous() for kind, vs in self.identities.items() for i, v in enumerate(vs)}
            write_bytes_atomic(folder / STATE, safetensors_bytes(tensors))

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        super().restore(folder, learned)
        self.identities = {kind: [] for kind in self.features}
        if not learned:
            return
        tensors = load_file(str(require_saved(folder / STATE, f"the {self.name} task identities", learned)))
        for kind in self.features:
            self.identities[kind] = [tensors[f"{kind}/{i}"] for i in range(len(learned))]


def cosine(features: torch.Tensor, identities: Sequence[torch.Tensor]) -> torch.Tensor:
    """(n, k) cosine similarity of each feature row to each identity."""
    ids = torch.stack(list(identities))
    return torch.nn.functional.normalize(features, dim=-1) @ torch.nn.functional.normalize(ids, dim=-1).T
