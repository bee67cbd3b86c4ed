"""What every continual-learning method shares: the contract the runner calls, the context it is built
with, and the few engine calls methods compose (a fresh seeded adapter, a training call, answering).

Contract (a Protocol, not a base class):
- `learn(task)` — called once per task, in benchmark order;
- `answer(task, samples) -> Answers` — the texts (and, for routed methods, which expert answered each);
- `save(folder)` / `restore(folder, learned)` — the state after a step, so a killed run resumes there.
Class attributes declare, as data the runner checks, what a method is: `sequential` (it has a T×T
accuracy matrix, evaluated after every task; otherwise only its final accuracies exist) and `routed`.
Methods whose whole state is one adapter inherit `OneAdapterMethod` for answering, saving and restoring.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, Sequence

from mllmcl.config import RunConfig
from mllmcl.data.mllm_cl import Benchmark, Sample, Task
from mllmcl.engine import add_adapter, generate, load_adapter, save_adapter, train
from mllmcl.engine.adapters import LoraRecipe
from mllmcl.engine.train import TrainStats, seed_everything
from mllmcl.errors import UserError
from mllmcl.models.backbone import Backbone


@dataclass(frozen=True)
class Answers:
    """A method's answers to some samples: `texts[i]` answers sample i; `experts[i]` is the task whose
    expert produced it (routed methods only)."""

    texts: list[str]
    experts: list[str] | None = None


class Method(Protocol):
    name: str
    sequential: bool
    routed: bool

    def learn(self, task: Task) -> None: ...

    def answer(self, task: Task, samples: Sequence[Sample]) -> Answers: ...

    def save(self, folder: Path) -> None: ...

    def restore(self, folder: Path, learned: Sequence[Task]) -> None: ...


@dataclass
class Context:
    """What a method is built with: the shared backbone (adapters of every method live on it side by side),
    the benchmark, the run's config and folder."""

    backbone: Backbone
    benchmark: Benchmark
    config: RunConfig
    folder: Path

    @property
    def task_names(self) -> list[str]:
        return self.benchmark.names

    def train_rows(self, task: Task) -> tuple[Sample, ...]:
        limit = self.config.data.train_limit
        return task.train[:limit] if limit else task.train

    def max_new_tokens(self, task: Task) -> int:
        return min(task.spec.max_new_tokens, self.config.eval.max_new_tokens)

    def seed_for(self, *parts: object) -> int:
        """A seed of its own for each (method, task, …), derived from the run's seed: what one training
        call draws never depends on what ran before it (resuming gives the same weights)."""
        return random.Random(f"{self.config.seed}|" + "|".join(map(str, parts))).randrange(2**31)


def adapter_name(*parts: str) -> str:
    """A valid peft adapter name from free text (task names may hold '.' or spaces)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", "_".join(parts))


def fresh_adapter(ctx: Context, name: str, seed: int, recipe: LoraRecipe | None = None) -> None:
    """Attach a new LoRA adapter whose random init is fixed by `seed`."""
    seed_everything(seed)
    add_adapter(ctx.backbone, name, recipe or ctx.config.lora)


def train_adapter(ctx: Context, name: str, rows: Sequence, seed: int, desc: str, **changes) -> TrainStats:
    """One call of the shared engine with the run's training settings (`changes` override some)."""
    config = replace(ctx.config.train, seed=seed, desc=desc, **changes)
    return train(ctx.backbone, rows, name, config)


def answer_with(ctx: Context, task: Task, samples: Sequence[Sample], adapters: Sequence[str | None] | None) -> list[str]:
    """Greedy answers to `samples` of `task`, with one adapter per sample (None = the base model)."""
    return generate(ctx.backbone, [s.image for s in samples], [s.question for s in samples], adapters=adapters,
                    max_new_tokens=ctx.max_new_tokens(task), batch_size=ctx.config.eval.batch_size)


def sample_rows(rows: Sequence[Sample], k: int, seed: int) -> list[Sample]:
    """`k` rows drawn without replacement (all of them when there are fewer), in a seeded order."""
    if len(rows) <= k:
        return list(rows)
    return random.Random(seed).sample(list(rows), k)


class OneAdapterMethod:
    """What methods whose whole state is one LoRA adapter named after them (`seq-lora`, `replay`, `joint`)
    share: answering with it, saving it, restoring it. Subclasses write `learn` and `trained_after`."""

    routed = False
    learns = True
    name: str

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.adapter = adapter_name(self.name)
        self.learned: list[Task] = []

    def trained_after(self, learned: Sequence[Task]) -> bool:
        """Whether the adapter exists once `learned` are learned (so a resumed run must find it saved)."""
        raise NotImplementedError

    def answer(self, task: Task, samples: Sequence[Sample]) -> Answers:
        return Answers(answer_with(self.ctx, task, samples, [self.adapter] * len(samples)))

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
