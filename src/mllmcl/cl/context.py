"""What methods and routers are built with: the shared backbone, the benchmark, the run's configuration
and folder (`Context`), and the few engine calls they compose — a fresh seeded adapter, a training call,
answering with one adapter per sample, a seeded draw of rows.

It sits below `routing` and `methods` (both use it; routing never imports methods)."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from mllmcl.cl.config import RunConfig
from mllmcl.core.parallel import Processes, is_main
from mllmcl.data.mllm_cl import Benchmark, Sample, Task
from mllmcl.data.records import Query
from mllmcl.engine.adapters import add_adapter
from mllmcl.engine.generate import generate
from mllmcl.engine.settings import LoraRecipe
from mllmcl.engine.train import LossFn, TrainStats, causal_lm_loss, seed_everything, train
from mllmcl.models.backbone import Backbone


@dataclass
class Context:
    """What a method or router is built with. Adapters of every method live side by side on the one
    `backbone`. `experts` is where MR-LoRA's per-task experts are kept (default `<folder>/experts`); a sweep
    points the runs of several task orders at one folder, since an expert does not depend on the order."""

    backbone: Backbone
    benchmark: Benchmark
    config: RunConfig
    folder: Path
    experts: Path | None = None
    progress: bool = True   # progress bars of training calls (the run's log lines print regardless)
    processes: Processes | None = None  # several processes (torchrun): inference is sharded, main writes
    expert_answers: dict = field(default_factory=dict, repr=False)
    """greedy answers of frozen adapters, `(adapter, query, token limit) → Generation`: a trained expert never
    changes, so across a run's evaluation steps, and across the methods that share the experts (mr-lora with
    any router, oracle), it answers each query once (routing/answer.py)"""

    @property
    def main(self) -> bool:
        """Whether this process writes files (always, in a single-process run)."""
        return is_main(self.processes)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.experts = Path(self.experts) if self.experts is not None else self.folder / "experts"

    @property
    def task_names(self) -> list[str]:
        return self.benchmark.names

    def train_rows(self, task: Task) -> tuple[Sample, ...]:
        limit = self.config.data.train_limit
        return task.train[:limit] if limit else task.train

    def max_new_tokens(self, task: Task) -> int:
        return min(task.spec.max_new_tokens, self.config.eval.max_new_tokens)

    def train_seed(self, *parts: object) -> int:
        """A seed of its own for each training call (method, task, …), from `train.seed`: what one call draws
        (init, data order) never depends on what ran before it, so a resumed run gets the same weights."""
        return _derive(self.config.train.seed, parts)

    def data_seed(self, *parts: object) -> int:
        """A seed of its own for each draw of data (a router or replay buffer), from `data.seed`."""
        return _derive(self.config.data.seed, parts)


def _derive(seed: int, parts: Sequence[object]) -> int:
    return random.Random(f"{seed}|" + "|".join(map(str, parts))).randrange(2**31)


def adapter_name(*parts: str) -> str:
    """A valid peft adapter name from free text (task names may hold '.' or spaces)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", "_".join(parts))


def fresh_adapter(ctx: Context, name: str, seed: int, recipe: LoraRecipe | None = None) -> None:
    """Attach a new adapter whose random init is fixed by `seed` (the run's LoRA recipe by default)."""
    seed_everything(seed)
    add_adapter(ctx.backbone, name, recipe or ctx.config.lora)


def train_adapter(ctx: Context, name: str, rows: Sequence, seed: int, desc: str, loss_fn: LossFn = causal_lm_loss,
                  frozen_adapters: Sequence[str] = (), **changes) -> TrainStats:
    """One call of the shared engine with the run's training settings (`changes` override some) and,
    optionally, a method's own loss (`loss_fn(model, batch)`) and frozen adapters active beside `name`."""
    config = replace(ctx.config.train, seed=seed, desc=desc, **changes)
    config = replace(config, progress=config.progress and ctx.progress)
    return train(ctx.backbone, rows, name, config, loss_fn=loss_fn, frozen_adapters=frozen_adapters)


def answer_with(ctx: Context, queries: Sequence[Query], adapters: Sequence[str | None] | None,
                max_new_tokens: int) -> list[str]:
    """Greedy answers to `queries`, with one adapter per query (None = the base model)."""
    return generate(ctx.backbone, [q.image for q in queries], [q.question for q in queries], adapters=adapters,
                    max_new_tokens=max_new_tokens, batch_size=ctx.config.eval.batch_size, processes=ctx.processes)


def sample_rows(rows: Sequence[Sample], k: int, seed: int) -> list[Sample]:
    """`k` rows drawn without replacement (all of them when there are fewer), in a seeded order."""
    if len(rows) <= k:
        return list(rows)
    return random.Random(seed).sample(list(rows), k)
