"""What every continual-learning method shares: the contract the runner calls and the answering, saving and
restoring of methods whose state is one adapter.

Contract (a Protocol, not a base class):
- `learn(task)` — called once per task, in training order;
- `answer(samples, max_new_tokens) -> Answers` — the texts (and, for routed methods, which expert answered
  each). A method answers from the samples alone: it is never told which task they come from;
- `save(folder)` / `restore(folder, learned)` — the state after a step, so a killed run resumes there.
Class attributes declare, as data the runner and the configuration check, what a method is: `sequential`
(it has a T×T accuracy matrix, evaluated after every task; otherwise only its final accuracies exist),
`routed` (it reports which expert answered), `learns` (False: nothing to train) and `replayable` (it trains
on `data(task)`, so `name+replay` can add a replay buffer).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, Sequence

from mllmcl.context import Context, adapter_name, answer_with
from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.engine import load_adapter, save_adapter
from mllmcl.errors import UserError


@dataclass(frozen=True)
class Answers:
    """A method's answers to some samples: `texts[i]` answers sample i; `experts[i]` is the name of the expert
    that produced it and `confidence[i]` the router's confidence in that choice (routed methods only)."""

    texts: list[str]
    experts: list[str] | None = None
    confidence: list[float] | None = None


class Method(Protocol):
    name: str
    sequential: bool
    routed: bool

    def learn(self, task: Task) -> None: ...

    def answer(self, samples: Sequence[Sample], max_new_tokens: int) -> Answers: ...

    def save(self, folder: Path) -> None: ...

    def restore(self, folder: Path, learned: Sequence[Task]) -> None: ...


class OneAdapterMethod:
    """What methods whose whole state is one adapter named after them (`seq-lora` and its family, `joint`)
    share: answering with it, saving it, restoring it. Subclasses write `learn` and `trained_after`."""

    routed: ClassVar[bool] = False
    learns: ClassVar[bool] = True
    replayable: ClassVar[bool] = False
    name: str

    def __init__(self, ctx: Context, name: str | None = None):
        self.ctx = ctx
        self.name = name or self.name
        self.adapter = adapter_name(self.name)
        self.learned: list[Task] = []

    def trained_after(self, learned: Sequence[Task]) -> bool:
        """Whether the adapter exists once `learned` are learned (so a resumed run must find it saved)."""
        raise NotImplementedError

    def answer(self, samples: Sequence[Sample], max_new_tokens: int) -> Answers:
        return Answers(answer_with(self.ctx, samples, [self.adapter] * len(samples), max_new_tokens))

    def save(self, folder: Path) -> None:
        if self.adapter in self.ctx.backbone.adapter_names:
            save_adapter(self.ctx.backbone, self.adapter, folder)

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        self.learned = list(learned)
        saved = folder / self.adapter
        if saved.is_dir():
            load_adapter(self.ctx.backbone, self.adapter, saved)
        elif self.trained_after(self.learned):
            raise UserError(f"{saved}: the {self.name} adapter saved after {len(learned)} tasks is missing; "
                            "the run cannot resume from here (start it in another --out)")
