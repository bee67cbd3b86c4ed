"""The continual-learning protocol — the one place where data moves.

    evaluate the untrained model on every task                       (the zero-shot row)
    for each method:
        for each task, in training order (data.order; the benchmark's by default):
            method.learn(task)
            evaluate every task, future ones included               (a row of the T×T matrix)
            save the method's state, rewrite results.json atomically

Methods that are not sequential (`zero-shot`, `joint`, `oracle`) learn every task but are evaluated once,
after the last. Running again with the same `--out` resumes after the last finished step of every method
and gives the same results: every training call draws from a seed of its own, and each step's state
(adapters, router) is saved before results.json says the step is done. See docs/results.md.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import accelerate
import peft
import torch
import transformers

from mllmcl import __version__
from mllmcl.cl.config import RunConfig, to_yaml
from mllmcl.cl.context import Context
from mllmcl.cl.methods.base import Method
from mllmcl.cl.methods.build import build_method
from mllmcl.cl.methods.catalog import card_of
from mllmcl.cl.methods.zero_shot import ZeroShot
from mllmcl.core.errors import UserError
from mllmcl.core.io import write_text_atomic
from mllmcl.core.parallel import Processes, cpu_cores, is_main, main_first, sharded_parameters
from mllmcl.core.progress import write_line
from mllmcl.core.reproducible import kernel_settings
from mllmcl.data.mllm_cl import Benchmark
from mllmcl.eval.results import MethodResults, Results, RunInfo
from mllmcl.models.load import load_backbone
from mllmcl.run import jobs
from mllmcl.run.benchmark import prepare_benchmark, require_answers
from mllmcl.run.evaluation import evaluate
from mllmcl.run.folder import RunFolder
from mllmcl.run.log import Log, accuracy_row, silent
from mllmcl.run.steps import run_method


def run(config: RunConfig, out: str | Path, log: Log = write_line, progress: bool = True, backbone=None,
        experts: str | Path | None = None) -> Results:
    """Run (or resume) every method of `config` on its benchmark; returns the results (also in
    `out/results.json`). `backbone`: an already loaded one instead of `config.backbone` (tests; the run then
    stays in this process, whatever `jobs` says); `experts`: where MR-LoRA's experts are kept (default
    `out/experts`; a sweep shares one folder across orders). With `jobs` > 1 the methods and the experts run
    in parallel worker processes (run/jobs.py); this process alone writes results.json."""
    sharding = sharded_parameters()
    if sharding:
        raise UserError(f"{sharding} shards the model's weights across processes, but mllmcl run evaluates the model "
                        "between training steps, outside the training wrapper, and needs them whole: launch it with "
                        "the ddp or deepspeed-zero2 configuration (docs/engine.md, \"Several processes\")")
    processes = Processes.start()
    main = is_main(processes)
    log = log if main else silent
    folder = RunFolder(out)
    folder.check_config(config)
    started = time.perf_counter()
    given = backbone is not None
    if config.threads:
        torch.set_num_threads(config.threads)
    if not given and processes is None and may_run_parts_in_parallel(config):
        jobs.warm_up()
    with main_first(processes):  # the main process writes the synthetic data; the others then read it
        bench = prepare_benchmark(config, progress and main)
    require_answers(bench)
    results = folder.finished_steps() or new_results(config, bench)
    if results.tasks != bench.names:
        raise UserError(f"{folder.results_file}: its tasks {results.tasks} are not this run's {bench.names}")
    results.run.finished = None  # set again when every method of this call is done
    if processes is not None:
        results.run.processes = processes.world
    if main:
        folder.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder.path / "config.yaml", to_yaml(config))
    log(f"run: {config.setting} · {len(bench.tasks)} tasks ({', '.join(bench.names)}) · backbone {config.backbone} · "
        f"methods {', '.join(config.methods)} · out {folder.path}")
    backbone = backbone or load_backbone(config.backbone, **config.model.load_options())
    ctx = Context(backbone, bench, config, folder.path, experts, progress and main, processes)

    if results.zero_shot is None:
        evaluation = evaluate(ctx, ZeroShot(ctx), bench.tasks, folder.predictions("zero-shot", "step0"))
        results.zero_shot, results.zero_shot_format_valid = evaluation.accuracy, evaluation.format_valid
        folder.write(ctx, results)
        log(f"zero-shot: {accuracy_row(bench.names, evaluation.accuracy)}  ({evaluation.seconds:.1f} s)")

    methods = [build_method(spec, ctx) for spec in config.methods]
    for method in methods:  # results.json lists the methods in the configuration's order
        if method.name not in results.methods:
            router = method.router.kind if method.card.routed else None
            results.methods[method.name] = MethodResults.start(method.card.sequential, results.zero_shot, router)
    count = 1 if given or processes is not None else job_count(config, ctx, methods, results)
    if count > 1:
        jobs.run_in_parallel(ctx, methods, folder, results, count, log)
    else:
        for method in methods:
            run_method(ctx, method, results.methods[method.name], folder, results, log,
                       commit=_committer(ctx, folder, results, method.name))
    results.run.finished = now()
    results.run.seconds_this_session = round(time.perf_counter() - started, 1)
    folder.write(ctx, results)
    return results


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment() -> dict:
    """What the numbers depend on beyond the configuration (docs/results.md, "Determinism")."""
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "accelerate": accelerate.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu",
            "kernels": kernel_settings()}


def new_results(config: RunConfig, bench: Benchmark) -> Results:
    run_info = RunInfo(setting=config.setting, benchmark=config.data.benchmark, backbone=config.backbone,
                       seed=config.seed, data_seed=config.data.seed, train_seed=config.train.seed,
                       order=config.data.order or "benchmark", split=config.eval.split, started=now(), finished=None,
                       environment=environment())
    return Results(mllmcl_version=__version__, run=run_info, tasks=bench.names)


def job_count(config: RunConfig, ctx: Context, methods: Sequence[Method], results: Results) -> int:
    """How many processes run the parts of this run at once: `jobs`, or (0) one per CPU core but no more than
    there are parts to run at once, and 1 on a GPU (every process holds its own copy of the model)."""
    if config.jobs:
        return config.jobs
    if torch.cuda.is_available():
        return 1
    return max(1, min(cpu_cores(), jobs.plan(ctx, methods, results).width))


def may_run_parts_in_parallel(config: RunConfig) -> bool:
    """Whether `job_count` can come out above 1, judged from the configuration alone (before the data and
    the model are loaded): jobs > 1, or jobs = 0 on a CPU with several cores and several parts to run."""
    if config.jobs:
        return config.jobs > 1
    if torch.cuda.is_available() or cpu_cores() < 2:
        return False
    learning = [card for card in map(card_of, config.methods) if card.learns]
    return len(learning) > 1 or any(card.uses_experts for card in learning)


def _committer(ctx: Context, folder: RunFolder, results: Results, name: str) -> Callable[[int], None]:
    """What a step of method `name` does once its state is saved, in one process: results.json says the
    step is done, then the previous step's state goes."""
    def commit(step: int) -> None:
        folder.write(ctx, results)
        if step > 1 and ctx.main:
            shutil.rmtree(folder.state(name, step - 1), ignore_errors=True)
    return commit
