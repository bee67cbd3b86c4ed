"""The pool of per-task LoRA experts shared by the expert methods (`mr-lora` with any router, `oracle`).

An expert is a fresh LoRA adapter (with its own projector copy) trained on one task on the frozen base
and never trained again. It is trained once, saved under the context's experts folder (`<run>/experts/`,
or one folder shared by the runs of a sweep: an expert does not depend on the task order), and reused by
every method that asks for it — in the same process (already attached) or after a restart (loaded)."""
from __future__ import annotations

from mllmcl.cl.context import Context, adapter_name, fresh_adapter, train_adapter
from mllmcl.core.parallel import barrier
from mllmcl.data.mllm_cl import Task
from mllmcl.engine.adapters import load_adapter, save_adapter


class ExpertPool:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.folder = ctx.experts

    @staticmethod
    def adapter(task_name: str) -> str:
        return adapter_name("expert", task_name)

    def ensure(self, task: Task) -> str:
        """The adapter name of `task`'s expert, attached to the backbone: reused, loaded or trained."""
        name = self.adapter(task.name)
        backbone = self.ctx.backbone
        if name in backbone.adapter_names:
            return name
        saved = self.folder / name
        if (saved / "adapter_config.json").is_file():
            load_adapter(backbone, name, saved)
            return name
        fresh_adapter(self.ctx, name, self.ctx.train_seed("expert", task.name, "init"))
        train_adapter(self.ctx, name, self.ctx.train_rows(task), self.ctx.train_seed("expert", task.name),
                      f"expert ← {task.name}")
        if self.ctx.main:
            save_adapter(backbone, name, self.folder)
        barrier(self.ctx.processes)
        return name
