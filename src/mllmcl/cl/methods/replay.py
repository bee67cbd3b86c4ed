"""`+replay`: any method that trains on `data(task)` (seq-lora and its family, `o-lora`, `cl-moe`,
`hide-llava`, `sefe`, `disco`) plus a replay buffer — stored samples of every past task mixed into each new
task's data: a share of each past task's rows by the position of the task being learned (`replay.share`,
the release's files read as percentages), or `replay.k` samples of each.
These are the "*" rows of MLLM-CL's tables: `seq-lora+replay` (LoRA-FT*; also registered as plain
`replay`), `ewc+replay`, `o-lora+replay`, …

The buffer comes from each past task's training rows (`replay.source: train`, drawn with the run's data
seed) or from the release's replay file (`replay.source: file`, its first rows of the task).
It is built once here, for every method, by one mixin."""
from __future__ import annotations

from dataclasses import replace

from mllmcl.cl.context import Context, sample_rows
from mllmcl.core.errors import UserError
from mllmcl.data.mllm_cl import Sample, Task


class ReplayMixin:
    """Adds the replay buffer of every learned task to `data(task)` (settings: `replay`, methods/catalog.py)."""

    ctx: Context
    name: str
    learned: list[Task]

    def buffer(self, task: Task, learning: int) -> list[Sample]:
        """What past task `task` replays while task number `learning` (1-based) is learned."""
        settings = self.ctx.config.block("replay")
        size = settings.size(len(self.ctx.train_rows(task)), learning)
        if settings.source == "file":
            rows = [s for s in self.ctx.benchmark.replay if s.task == task.name][:size]
            if not rows:
                raise UserError(f"replay.source is 'file' but the benchmark's replay file has no rows of task "
                                f"{task.name!r} ({self.ctx.benchmark.replay_file or 'no replay file found'})")
            return rows
        return sample_rows(self.ctx.train_rows(task), size, self.ctx.data_seed(self.name, "buffer", task.name))

    def data(self, task: Task) -> list[Sample]:
        rows = super().data(task)  # type: ignore[misc]
        for past in self.learned:
            rows.extend(self.buffer(past, len(self.learned) + 1))
        return rows


def with_replay(method: type) -> type:
    """`method` with a replay buffer: a subclass that mixes `ReplayMixin` in (made once per method class). Its
    card is the method's, less `replayable` (no replay on top of replay)."""
    if method not in _REPLAYED:
        card = replace(method.card, replayable=False)
        _REPLAYED[method] = type(f"{method.__name__}WithReplay", (ReplayMixin, method), {"card": card})
    return _REPLAYED[method]


_REPLAYED: dict[type, type] = {}
