"""Several processes running one job (`torchrun --nproc_per_node N -m mllmcl …` or `accelerate launch -m
mllmcl …`): who this process is, and the few collective steps the runner needs — a barrier, gathering
objects in rank order, the main process going first.

The rule (docs/engine.md, "Several processes"): every rank computes, the main process alone writes files,
and a barrier stands between a write and anyone reading it. Training is data-parallel inside the engine's
loop (accelerate); inference is sharded by whole batches (`shard`), so each sample is answered in exactly
the batch a single process would answer it in, and the results are gathered back in order.

`Processes.start()` joins the launcher's process group (gloo on CPU, NCCL on GPU, through accelerate) and
returns None in a plain single-process run, so single-process code paths stay exactly as they are.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, TypeVar

T = TypeVar("T")


def cpu_cores() -> int:
    """The CPU cores this process may use (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sharded_parameters() -> str | None:
    """The launch's parameter sharding, if any ("FSDP" or "DeepSpeed ZeRO-3"), from what `accelerate launch`
    sets: such a launch keeps only a shard of each weight on each process outside the training step."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "FSDP"
    if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        return "DeepSpeed ZeRO-3"
    return None


def launched() -> bool:
    """Whether a launcher started several processes for this job (torchrun / accelerate launch set these)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass(frozen=True)
class Processes:
    """This process's place among the job's processes."""

    rank: int
    world: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls) -> "Processes | None":
        """Join the launcher's process group (once; later calls return the same); None when not launched."""
        if not launched():
            return None
        import torch  # torch loads only in a launched run: core stays light for the CLI
        from accelerate import PartialState  # as torch, above

        state = PartialState(cpu=not torch.cuda.is_available())
        if state.num_processes < 2:
            return None
        return cls(state.process_index, state.num_processes)

    def barrier(self) -> None:
        import torch.distributed as dist  # as in `start`: only in a launched run

        dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        import torch.distributed as dist  # as in `start`: only in a launched run

        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def broadcast(self, value: Any) -> Any:
        """The main process's `value`, on every rank."""
        import torch.distributed as dist  # as in `start`: only in a launched run

        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, items: Sequence[T]) -> list[tuple[int, T]]:
        """This rank's share of `items` (with their positions): every world-th item, starting at its rank."""
        return [(i, item) for i, item in enumerate(items) if i % self.world == self.rank]

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """The main process runs the block first (e.g. writes a cache); the others run it after."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()


def is_main(processes: Processes | None) -> bool:
    return processes is None or processes.main


def barrier(processes: Processes | None) -> None:
    if processes is not None:
        processes.barrier()


@contextmanager
def main_first(processes: Processes | None) -> Iterator[None]:
    if processes is None:
        yield
    else:
        with processes.main_first():
            yield
