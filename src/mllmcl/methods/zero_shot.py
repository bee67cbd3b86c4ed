"""`zero-shot`: the base model, never trained; the lower reference row of the paper's tables."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.methods import METHODS
from mllmcl.methods.base import Answers, Context, answer_with


@METHODS.register("zero-shot", "the base model without any training (reference row)")
class ZeroShot:
    name = "zero-shot"
    sequential = False
    routed = False
    learns = False  # its final accuracies are the run's zero-shot row: the runner does not evaluate it twice

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def learn(self, task: Task) -> None:
        pass

    def answer(self, task: Task, samples: Sequence[Sample]) -> Answers:
        return Answers(answer_with(self.ctx, task, samples, None))

    def save(self, folder: Path) -> None:
        pass

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        pass
