"""`zero-shot`: the base model, never trained; the lower reference row of the paper's tables."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mllmcl.context import Context, answer_with
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.methods import METHODS
from mllmcl.methods.base import Answers


@METHODS.register("zero-shot", "the base model without any training (reference row)")
class ZeroShot:
    name = "zero-shot"
    sequential = False
    routed = False
    learns = False  # its final accuracies are the run's zero-shot row: the runner does not evaluate it twice
    replayable = False

    def __init__(self, ctx: Context, name: str | None = None):
        self.ctx = ctx
        self.name = name or self.name

    def learn(self, task: Task) -> None:
        pass

    def answer(self, samples: Sequence[Sample], max_new_tokens: int) -> Answers:
        return Answers(answer_with(self.ctx, samples, None, max_new_tokens))

    def save(self, folder: Path) -> None:
        pass

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        pass
