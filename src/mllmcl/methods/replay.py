"""`replay`: `seq-lora` plus a replay buffer — k stored samples of every past task are mixed into each new
task's training data (the "+ replay" rows of MLLM-CL's tables).

The buffer comes from the task's training rows (`replay.source: train`, k drawn per task with a seed)
or from the release's replay file (`replay.source: file`, its first k rows of the task)."""
from __future__ import annotations

from mllmcl.data.mllm_cl import Sample, Task
from mllmcl.errors import UserError
from mllmcl.methods import METHODS
from mllmcl.methods.base import sample_rows
from mllmcl.methods.seq_lora import SeqLoRA


@METHODS.register("replay", "seq-lora + a replay buffer of k samples per past task")
class Replay(SeqLoRA):
    name = "replay"

    def buffer(self, task: Task) -> list[Sample]:
        k = self.ctx.config.replay.k
        if self.ctx.config.replay.source == "file":
            rows = [s for s in self.ctx.benchmark.replay if s.task == task.name][:k]
            if not rows:
                raise UserError(f"replay.source is 'file' but the benchmark's replay file has no rows of task "
                                f"{task.name!r} ({self.ctx.benchmark.replay_file or 'no replay file found'})")
            return rows
        return sample_rows(self.ctx.train_rows(task), k, self.ctx.seed_for(self.name, "buffer", task.name))

    def data(self, task: Task) -> list[Sample]:
        rows = super().data(task)
        for past in self.learned:
            rows.extend(self.buffer(past))
        return rows
