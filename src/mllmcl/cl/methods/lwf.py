"""`lwf`: Learning without Forgetting (Li & Hoiem 2016), as ported to MLLMs: the sequential LoRA adapter
learns each new task while matching, on the new task's own data, what the model answered before it.

Before task t (t > 1), the adapter as the earlier tasks left it is the teacher: its logits at every answer
position of the new task's training rows are computed once and cached (engine/teacher.py). The loss is the
answers' cross-entropy plus `lwf.alpha` · T² · KL(teacher_T ‖ student_T) over those positions, both
softened at temperature T (`lwf.temperature`). The first task has no teacher and trains like seq-lora."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mllmcl.cl.context import Context
from mllmcl.cl.methods.catalog import METHODS, LwFSettings
from mllmcl.cl.methods.seq_lora import SeqLoRA
from mllmcl.data.mllm_cl import Task
from mllmcl.engine.teacher import AnswerLogits, answer_positions
from mllmcl.engine.train import LossFn, causal_lm_loss, model_inputs


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over positions (rows): zero when they agree.
    Teacher entries of -inf (outside a top-k cache) have probability zero."""
    t = temperature
    log_student = F.log_softmax(student.float() / t, dim=-1)
    log_teacher = F.log_softmax(teacher.float() / t, dim=-1)
    teacher_p = log_teacher.exp()
    terms = torch.where(teacher_p > 0, teacher_p * (log_teacher - log_student), torch.zeros_like(teacher_p))
    return terms.sum(-1).mean() * t * t


class LwF(SeqLoRA):
    name = "lwf"
    card = METHODS.get(name)

    def __init__(self, ctx: Context, name: str | None = None):
        super().__init__(ctx, name)
        self.settings: LwFSettings = ctx.config.block("lwf")
        self.teacher: AnswerLogits | None = None

    def before_task(self, task: Task) -> None:
        self.teacher = None
        if self.learned and self.settings.alpha > 0:
            self.teacher = AnswerLogits.compute(self.ctx.backbone, self.data(task), self.adapter,
                                                self.ctx.config.eval.batch_size, self.settings.top_k)

    def after_task(self, task: Task) -> None:
        self.teacher = None  # the cache belongs to one task's data

    def loss(self, task: Task) -> LossFn:
        if self.teacher is None:
            return causal_lm_loss
        teacher, settings = self.teacher, self.settings

        def loss(model, batch):
            out = model(**model_inputs(batch))
            student = out.logits[:, :-1][answer_positions(batch["labels"])]
            return out.loss + settings.alpha * distillation(student, teacher.for_batch(batch), settings.temperature)
        return loss
