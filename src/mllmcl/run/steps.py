"""One method's steps, from where its results stand: learn the next task, evaluate every task (after each task
for a sequential method, after the last for the others), save the method's state, record the step. The
same code runs in the run's own process and in a worker of a parallel run (run/jobs.py); only what
`commit` does with a recorded step differs."""
from __future__ import annotations

import time
from typing import Callable

from mllmcl.cl.context import Context
from mllmcl.cl.methods.base import Method
from mllmcl.eval.results import MethodResults, Results, routing_stage
from mllmcl.run.evaluation import Evaluation, evaluate
from mllmcl.run.folder import RunFolder
from mllmcl.run.log import Log, accuracy_row


def run_method(ctx: Context, method: Method, entry: MethodResults, folder: RunFolder, results: Results, log: Log,
               commit: Callable[[int], None]) -> None:
    """Train and evaluate `method` step by step from where `entry` (its part of `results`) stands. After each
    step its state is saved, `entry` updated, then `commit(step)` records it (results.json)."""
    tasks = ctx.benchmark.tasks
    if entry.final is not None:
        log(f"[{method.name}] finished earlier; kept")
        return
    if not method.card.learns:
        entry.steps = len(tasks)
        entry.finish(results.zero_shot, results.zero_shot_format_valid)
        commit(len(tasks))
        log(f"[{method.name}] final = the zero-shot row")
        return
    done = entry.steps
    if done:
        method.restore(folder.state(method.name, done), tasks[:done])
        log(f"[{method.name}] resumed after step {done}/{len(tasks)}")
    for step in range(done + 1, len(tasks) + 1):
        task = tasks[step - 1]
        start = time.perf_counter()
        method.learn(task)
        learn_seconds = time.perf_counter() - start
        line = f"[{method.name}] {step}/{len(tasks)} learned {task.name} in {learn_seconds:.1f} s"
        evaluation = None
        if method.card.sequential or step == len(tasks):
            label = f"step{step}" if method.card.sequential else "final"
            evaluation = evaluate(ctx, method, tasks, folder.predictions(method.name, label))
            line += f" · {accuracy_row(ctx.task_names, evaluation.accuracy)} ({evaluation.seconds:.1f} s)"
        state = folder.state(method.name, step)
        if ctx.main:  # the step's state is on disk before results.json says the step is done
            method.save(state)
            state.mkdir(parents=True, exist_ok=True)
        record(entry, ctx.task_names, step, learn_seconds, evaluation)
        if evaluation is not None and entry.routing is not None and evaluation.experts is not None:
            line += f" · routing {entry.routing.stages[-1].accuracy:.2f}%"
        if step == len(tasks):
            if entry.sequential:
                entry.finish(entry.matrix[-1], entry.format_valid[-1])
            else:
                entry.finish(evaluation.accuracy, evaluation.format_valid)
        commit(step)
        log(line)


def record(entry: MethodResults, names: list[str], step: int, learn_seconds: float,
           evaluation: Evaluation | None) -> None:
    """Step `step` into `entry`: its timings and, when it was evaluated, its row (a sequential method's
    matrix) and its routing stage."""
    entry.steps = step
    entry.seconds.learn.append(round(learn_seconds, 2))
    entry.seconds.evaluate.append(round(evaluation.seconds, 2) if evaluation else 0.0)
    if evaluation is None:
        return
    if entry.sequential:
        entry.matrix.append(evaluation.accuracy)
        if entry.format_valid is None:  # a file from before format_valid was recorded
            entry.format_valid = []
        entry.format_valid.append(evaluation.format_valid)
    if entry.routing is not None and evaluation.experts is not None:
        entry.routing.stages.append(routing_stage(names, names[:step], evaluation.experts))
