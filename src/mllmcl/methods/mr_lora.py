"""`mr-lora`: MR-LoRA (MLLM-CL, Zhao et al. 2025) — parameter isolation plus an MLLM router.

Each task gets a fresh LoRA expert on the frozen base, never trained again, so no expert can forget. At
test time a router reads the image and question once and picks one of the experts seen so far; the chosen
experts then answer, live, in batches where every sample carries its own adapter. The router is chosen
per run (`router.kind`) or per method entry (`mr-lora[prototype]`): `mllm` (the paper's router LoRA),
`prototype` (training-free nearest task prototype) or `oracle` (the true task)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.methods import METHODS
from mllmcl.methods.base import Answers, Context, answer_with
from mllmcl.methods.experts import ExpertPool
from mllmcl.routing import build_router


@METHODS.register("mr-lora", "MR-LoRA: a LoRA expert per task + a router choosing among the seen experts")
class MRLoRA:
    name = "mr-lora"
    sequential = True
    routed = True
    learns = True

    def __init__(self, ctx: Context, router: str | None = None, label: str | None = None):
        self.ctx = ctx
        self.name = label or self.name
        self.experts = ExpertPool(ctx)
        self.router = build_router(router or ctx.config.router.kind, ctx)
        self.learned: list[Task] = []

    def learn(self, task: Task) -> None:
        self.experts.ensure(task)
        self.learned.append(task)
        self.router.fit(self.learned)

    def answer(self, task: Task, samples: Sequence[Sample]) -> Answers:
        chosen = self.router.route(samples, self.learned)
        experts = [self.learned[i].name for i in chosen]
        texts = answer_with(self.ctx, task, samples, [self.experts.adapter(e) for e in experts])
        return Answers(texts, experts)

    def save(self, folder: Path) -> None:
        self.router.save(folder)

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        for task in learned:
            self.experts.ensure(task)
        self.learned = list(learned)
        self.router.restore(folder, self.learned)
