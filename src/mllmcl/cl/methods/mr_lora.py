"""`mr-lora`: MR-LoRA (MLLM-CL, Zhao et al. 2025) — parameter isolation plus an MLLM router.

Each task gets a fresh LoRA expert on the frozen base, never trained again, so no expert can forget. At
test time a router reads the image and question once and picks one of the experts learned so far; the
chosen experts then answer, live, in batches where every sample carries its own adapter. An expert's answer
to a test sample is generated once per run and reused at later steps (the expert never changes). The router is
chosen per run (`router.kind`) or per method entry (`mr-lora[prototype]`): `mllm` (the paper's router LoRA),
`prototype` (training-free nearest expert prototype) or `oracle` (the true task)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.cl.context import Context
from mllmcl.cl.methods.base import Answers
from mllmcl.cl.methods.catalog import METHODS
from mllmcl.cl.methods.experts import ExpertPool
from mllmcl.cl.routing.answer import route_and_answer
from mllmcl.cl.routing.build import build_router
from mllmcl.cl.routing.router import expert_of
from mllmcl.data.mllm_cl import Task
from mllmcl.data.records import Query


class MRLoRA:
    name = "mr-lora"
    card = METHODS.get(name)  # uses the run's expert pool (methods/experts.py), shared with oracle

    def __init__(self, ctx: Context, router: str | None = None, name: str | None = None):
        self.ctx = ctx
        self.name = name or self.name
        self.experts = ExpertPool(ctx)
        self.router = build_router(router or ctx.config.router.kind, ctx)
        self.learned: list[Task] = []

    def learn(self, task: Task) -> None:
        self.experts.ensure(task)
        self.learned.append(task)
        self.router.fit([expert_of(self.ctx, t, self.router.kind) for t in self.learned])

    def answer(self, queries: Sequence[Query], max_new_tokens: int) -> Answers:
        names = [task.name for task in self.learned]
        result = route_and_answer(self.ctx, self.router, queries, names, [self.experts.adapter(n) for n in names],
                                  max_new_tokens, memo=self.ctx.expert_answers)  # the step serving shares
        return Answers(result.texts, result.experts, result.confidence)

    def save(self, folder: Path) -> None:
        self.router.save(folder)

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        for task in learned:
            self.experts.ensure(task)
        self.learned = list(learned)
        if not self.router.load(folder):  # a folder from before routers saved their state: refit (deterministic)
            self.router.fit([expert_of(self.ctx, t, self.router.kind) for t in self.learned])
