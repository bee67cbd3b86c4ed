"""Evaluating a method on every task: the one place that holds both sides of a test row. The method sees
`Query`s (image and prompt, no task, no answer); the answers are scored here with each task's official rule
and written, one JSON line per sample, under the run's predictions folder."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mllmcl.cl.context import Context
from mllmcl.cl.methods.base import Method
from mllmcl.core.io import slug, write_text_atomic
from mllmcl.data.mllm_cl import Task
from mllmcl.eval import get_scorer
from mllmcl.eval.formats import format_valid
from mllmcl.run.benchmark import eval_rows


@dataclass
class Evaluation:
    """One method evaluated on every task at one step: accuracy per task (%), the share of answers in their
    question's format (%), and which expert answered each sample (routed methods)."""

    accuracy: list[float]
    format_valid: list[float]
    experts: list[list[str]] | None
    seconds: float


def evaluate(ctx: Context, method: Method, tasks: Sequence[Task], predictions: Path) -> Evaluation:
    """Answer every evaluation sample of every task with `method` (from its query alone), score each answer
    with the task's official rule, check its format, and write one JSONL of predictions per task under
    `predictions/` (the main process; with several processes each answers its share of the batches and every
    process gets every answer)."""
    start = time.perf_counter()
    accuracy, formats, experts = [], [], []
    for task in tasks:
        samples = eval_rows(ctx.config, task)
        answers = method.answer([s.query for s in samples], ctx.max_new_tokens(task))
        if len(answers.texts) != len(samples):
            raise RuntimeError(f"{method.name} answered {len(answers.texts)} of {len(samples)} samples of {task.name}")
        scorer = get_scorer(task.spec.scorer)
        credits = [float(scorer.judge(s.row, text)) for s, text in zip(samples, answers.texts)]
        valid = format_valid([s.row for s in samples], [s.answer for s in samples], answers.texts,
                             [s.question for s in samples])
        accuracy.append(round(100 * sum(credits) / len(samples), 4))
        formats.append(round(100 * sum(valid) / len(samples), 4))
        experts.append(answers.experts)
        lines = []
        for i, (s, text, credit) in enumerate(zip(samples, answers.texts, credits)):
            line = {"question_id": s.id, "task": task.name, "prompt": s.question, "text": text, "answer": s.answer,
                    "score": credit, "format_valid": valid[i]}
            if answers.experts is not None:
                line["expert"] = answers.experts[i]
                line["confidence"] = round(answers.confidence[i], 6) if answers.confidence else None
            lines.append(json.dumps(line, ensure_ascii=False))
        if ctx.main:
            write_text_atomic(predictions / f"{slug(task.name)}.jsonl", "\n".join(lines) + "\n")
    routed = all(e is not None for e in experts)
    return Evaluation(accuracy, formats, experts if routed else None, time.perf_counter() - start)
