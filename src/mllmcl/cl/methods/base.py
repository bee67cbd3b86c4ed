"""What every continual-learning method shares: the contract the runner calls and the answering, saving and
restoring of methods whose state is one adapter.

Contract (a Protocol, not a base class):
- `learn(task)` — called once per task, in training order (a task holds labelled training rows);
- `answer(queries, max_new_tokens) -> Answers` — the texts (and, for routed methods, which expert answered
  each). A method answers from `Query`s, which carry no task and no answer: the evaluation alone holds those;
- `save(folder)` / `restore(folder, learned)` — the state after a step, so a killed run resumes there.
`card` declares, as data the runner and the configuration check, what a method is (sequential, routed,
learns, replayable, takes_router, uses_experts: methods/catalog.py); `name` is its entry as written in the
configuration (`ewc+replay`), its key in results.json; a routed method also has its `router`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, Sequence

from mllmcl.cl.context import Context, adapter_name, answer_with
from mllmcl.cl.methods.catalog import MethodCard
from mllmcl.core.errors import UserError
from mllmcl.data.mllm_cl import Task
from mllmcl.data.records import Query
from mllmcl.engine.adapters import load_adapter, save_adapter


@dataclass(frozen=True)
class Answers:
    """A method's answers to some queries: `texts[i]` answers query i; `experts[i]` is the name of the expert
    that produced it and `confidence[i]` the router's confidence in that choice (routed methods only)."""

    texts: list[str]
    experts: list[str] | None = None
    confidence: list[float] | None = None


class Method(Protocol):
    card: ClassVar[MethodCard]
    name: str

    def learn(self, task: Task) -> None: ...

    def answer(self, queries: Sequence[Query], max_new_tokens: int) -> Answers: ...

    def save(self, folder: Path) -> None: ...

    def restore(self, folder: Path, learned: Sequence[Task]) -> None: ...


def require_saved(path: Path, what: str, learned: Sequence[Task]) -> Path:
    """`path`, a method's state saved after `learned`; a clear error when it is missing (a resume cannot
    rebuild it)."""
    if not path.exists():
        raise UserError(f"{path}: {what} saved after {len(learned)} tasks is missing; the run cannot resume "
                        "from here (start it in another --out)")
    return path


class OneAdapterMethod:
    """What methods whose whole state is one adapter named after them (`seq-lora` and its family, `joint`)
    share: answering with it, saving it, restoring it. Subclasses write `learn` and `trained_after`."""

    card: ClassVar[MethodCard]
    name: str

    def __init__(self, ctx: Context, name: str | None = None):
        self.ctx = ctx
        self.name = name or self.name
        self.adapter = adapter_name(self.name)
        self.learned: list[Task] = []

    def trained_after(self, learned: Sequence[Task]) -> bool:
        """Whether the adapter exists once `learned` are learned (so a resumed run must find it saved)."""
        raise NotImplementedError

    def answer(self, queries: Sequence[Query], max_new_tokens: int) -> Answers:
        return Answers(answer_with(self.ctx, queries, [self.adapter] * len(queries), max_new_tokens))

    def save(self, folder: Path) -> None:
        if self.adapter in self.ctx.backbone.adapter_names:
            save_adapter(self.ctx.backbone, self.adapter, folder)

    def restore(self, folder: Path, learned: Sequence[Task]) -> None:
        self.learned = list(learned)
        saved = folder / self.adapter
        if saved.is_dir():
            load_adapter(self.ctx.backbone, self.adapter, saved)
        elif self.trained_after(self.learned):
            require_saved(saved, f"the {self.name} adapter", learned)
