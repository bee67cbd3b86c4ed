"""`mr-lora`: MR-LoRA (MLLM-CL, Zhao et al. 2025) — parameter isolation plus an MLLM router.

Each task gets a fresh LoRA expert on the frozen base, never trained again, so no expert can forget. At
test time a router reads the image and question once and picks one of the experts learned so far; the
chosen experts then answer, live, in batches where every sample carries its own adapter. The router is
chosen per run (`router.kind`) or per method entry (`mr-lora[prototype]`): `mllm` (the paper's router LoRA),
`prototype` (training-free nearest expert prototype) or `oracle` (the true task)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

from mllmcl.context import Context, answer_with
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.methods import METHODS
from mllmcl.methods.base import Answers
from mllmcl.methods.experts import ExpertPool
from mllmcl.routing import build_router, expert_of


@METHODS.register("mr-lora", "MR-LoRA: a LoRA expert per task + a router choosing among the learned experts")
class MRLoRA:
    name = "mr-lora"
    sequential: ClassVar[bool] = True
    routed: ClassVar[bool] = True
    learns: ClassVar[bool] = True
    replayable: ClassVar[bool] = False
    takes_router: ClassVar[bool] = True

    def __init__(self, ctx: Context, router: str | None = None, name: str | None = None):
        self.ctx = ctx
        self.name = name or self.name
        self.experts = ExpertPool(ctx)
        self.router = build_router(router or ctx.config.router.kind, ctx)
        self.learned: list[Task] = []

    def learn(self, task: Task) -> None:
        self.experts.ensure(task)
        self.learned.append(task)
        self.router.fit([expert_of(self.ctx, t) for t in self.learned])

    def answer(self, samples: Sequence[Sample], max_new_tokens: int) -> Answers:
        routing = self.router.route(samples)
        experts = [self.learned[i].name for i in routing.experts]
        texts = answer_with(self.ctx, samples, [self.experts.adapter(e) for e in experts], max_new_tokens)
        return Answers(texts, experts, routing.confidence)

    def save(self, folder: Path) -> None:
        self.router.save(folder)

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        for task in learned:
            self.experts.ensure(task)
        self.learned = list(learned)
        if not self.router.load(folder):  # a folder from before routers saved their state: refit (deterministic)
            self.router.fit([expert_of(self.ctx, t) for t in self.learned])
