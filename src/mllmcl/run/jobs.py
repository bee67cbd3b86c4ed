"""The independent parts of one run, in parallel worker processes (`jobs` > 1).

A run's methods do not depend on one another, and neither do MR-LoRA's per-task experts. On a CPU two
single-threaded processes get through more work than one process on two threads: a small model's products
gain little from a second thread, while two single-threaded processes side by side each run nearly as fast
as one alone. So a run is cut into parts:

- each method that learns (seq-lora, ewc, joint, …) but the expert methods;
- each task's expert, when an expert method is in the run and the expert is not saved yet;
- the expert methods together (mr-lora with any router, oracle), once every expert is saved: they share the
  experts' answers (`Context.expert_answers`), so one process answers each test sample once per expert.

The parts run `jobs` at a time, longest first, each in a fresh process with its share of the cores as
threads: a part's numbers never depend on which process ran it or what ran before. The processes are
forked from a server that imported torch once, so a part starts in well under a second. This process alone
writes results.json: a worker saves a step's state, then reports the step; this process records it in
results.json and deletes the method's previous state. Bars and log lines are relayed here and drawn in one
place (core/progress.py). An error in a part stops the others, and the run resumes from its results.json
like any run.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import signal
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path
from typing import Callable, Sequence

import torch

from mllmcl.cl.config import build_config, to_dict
from mllmcl.cl.context import Context
from mllmcl.cl.methods.base import Method
from mllmcl.cl.methods.build import build_method
from mllmcl.cl.methods.experts import ExpertPool
from mllmcl.core.errors import UserError
from mllmcl.core.parallel import cpu_cores
from mllmcl.core.progress import BarBoard, relay_to
from mllmcl.eval.results import Results
from mllmcl.models.load import load_backbone
from mllmcl.run.benchmark import prepare_benchmark
from mllmcl.run.folder import RunFolder
from mllmcl.run.steps import run_method

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Part:
    """One part of a run: the expert of `expert` (a task name), or `methods` (their entries in the
    configuration) run one after the other in one process. `after`: parts that must finish first."""

    name: str
    methods: tuple[str, ...] = ()
    expert: str | None = None
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    parts: tuple[Part, ...]

    @property
    def width(self) -> int:
        """How many parts can run at once at the start."""
        return sum(1 for part in self.parts if not part.after)


def plan(ctx: Context, methods: Sequence[Method], results: Results) -> Plan:
    """The parts still to run, longest first: sequential methods (one training per task plus an evaluation
    of every task after each), then the experts, then the expert methods."""
    unfinished = [m for m in methods if m.card.learns and results.methods[m.name].final is None]
    alone = [m for m in unfinished if not m.card.uses_experts]
    alone.sort(key=lambda m: not m.card.sequential)  # stable: the configuration's order within each kind
    parts = [Part(f"method {m.name}", methods=(m.name,)) for m in alone]
    with_experts = [m.name for m in unfinished if m.card.uses_experts]
    if with_experts:
        pool = ExpertPool(ctx)
        experts = [Part(f"expert {task.name}", expert=task.name) for task in ctx.benchmark.tasks
                   if not (ctx.experts / pool.adapter(task.name) / "adapter_config.json").is_file()]
        parts += experts
        parts.append(Part("expert methods " + ", ".join(with_experts), methods=tuple(with_experts),
                          after=tuple(p.name for p in experts)))
    return Plan(tuple(parts))


def run_in_parallel(ctx: Context, methods: Sequence[Method], folder: RunFolder, results: Results, jobs: int,
                    log: Callable[[str], None]) -> None:
    """Run the parts of `plan(...)` in `jobs` worker processes, recording every reported step in `results`
    (results.json, written here only)."""
    parts = plan(ctx, methods, results).parts
    for method in methods:
        if method.name not in {name for part in parts for name in part.methods}:
            run_method(ctx, method, results.methods[method.name], folder, results, log,
                       commit=lambda step: folder.write(ctx, results))
    if not parts:
        return
    threads = ctx.config.threads or max(1, cpu_cores() // jobs)
    results.run.jobs = {"processes": jobs, "threads": threads}
    log(f"jobs: {len(parts)} parts in {jobs} processes of {threads} thread{'s' * (threads > 1)} each")
    mp = _context()
    channel = mp.Queue()
    board = BarBoard(enabled=ctx.progress)
    workers: dict[str, int] = {}  # the process of each running part (a finished part's pid may be reused)

    def handle(message: tuple) -> None:
        kind = message[0]
        if board.handle(message):
            return
        if kind == "pid":
            workers[message[1]] = message[2]
        elif kind == "log":
            log(message[1])
        elif kind == "step":
            _, name, entry, step = message
            results.methods[name] = entry
            folder.write(ctx, results)
            if step > 1:
                shutil.rmtree(folder.state(name, step - 1), ignore_errors=True)

    def drain() -> None:
        while True:
            try:
                handle(channel.get_nowait())
            except queue.Empty:
                return

    job = (to_dict(ctx.config), str(folder.path), str(ctx.experts), threads)
    pending, running, done = list(parts), {}, set()
    pool = ProcessPoolExecutor(jobs, mp_context=mp, initializer=_start_worker,
                               initargs=(channel, list(warnings.filters)), max_tasks_per_child=1)
    try:
        while pending or running:
            for part in [p for p in pending if set(p.after) <= done]:
                if len(running) == jobs:
                    break
                pending.remove(part)
                running[pool.submit(_run_part, part, results, *job)] = part
            finished, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            drain()
            for future in finished:
                part = running.pop(future)
                _result(future, part)  # raises the part's error here
                drain()  # the worker flushed its messages before it returned
                workers.pop(part.name, None)
                done.add(part.name)
    except BaseException as err:
        if not isinstance(err.__cause__, BrokenProcessPool):  # (a killed worker may leave half a message)
            drain()  # the steps the other parts reported before the error are recorded; a rerun resumes there
        _stop(list(workers.values()))
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        board.close()
    pool.shutdown(wait=True)


def warm_up() -> None:
    """Start the fork server now, so that its imports (torch, transformers: seconds) overlap the run's data
    generation and zero-shot evaluation instead of delaying the first part."""
    if _context().get_start_method() == "forkserver":
        forkserver.ensure_running()


def _context():
    """Fork workers from a server process that imported mllmcl (and torch) once; spawn where there is none."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        mp = multiprocessing.get_context("forkserver")
        mp.set_forkserver_preload([__name__])
        return mp
    return multiprocessing.get_context("spawn")


def _result(future: Future, part: Part) -> None:
    """The part's outcome: its own error as raised, or a UserError when its process died (killed, out of
    memory) naming the part and the ways on."""
    try:
        future.result()
    except BrokenProcessPool as broken:
        raise UserError(f"the worker process of {part.name} ended abruptly (killed, or out of memory); run the same "
                        "command again to resume, or with jobs=1 to run every part in this process") from broken


def _stop(pids: list[int]) -> None:
    """End the workers still running (the run stops at the first error; finished steps stay recorded)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


# --- in the worker ---------------------------------------------------------------------------------------

_channel = None


def _start_worker(channel, warning_filters: list) -> None:
    global _channel
    _channel = channel
    warnings.filters[:] = warning_filters  # what this run shows of library warnings, as in the parent
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which ends the workers
    relay_to(channel.put)
    _release_fork_server()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _release_fork_server() -> None:
    """Close this worker's copy of the run's end of the fork server's "alive" pipe. CPython hands one to every
    process the fork server starts (so that it could start processes itself); while any worker holds it, the
    fork server never sees its run die, so it never ends, and neither would `_exit_with_parent`."""
    server = forkserver._forkserver
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:  # None in a worker that was spawned, not forked by the server
        os.close(fd)
        server._forkserver_alive_fd = None


def _exit_with_parent(parent: int) -> None:
    """A worker whose run was killed (its parent, the fork server, ends with it) stops too, rather than go on
    training and writing state for a run that a rerun resumes on its own."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _run_part(part: Part, results: Results, config: dict, out: str, experts: str, threads: int) -> None:
    """Run one part in this fresh worker: load the benchmark (already written) and the backbone, then train
    the expert or run the methods, reporting every finished step to the parent."""
    torch.set_num_threads(threads)
    _channel.put(("pid", part.name, os.getpid()))
    try:
        run_config = build_config(config)
        folder = RunFolder(out)
        bench = prepare_benchmark(run_config, progress=False)
        ctx = Context(load_backbone(run_config.backbone, **run_config.model.load_options()), bench, run_config, folder.path, Path(experts),
                      progress=True, processes=None)
        if part.expert is not None:
            start = time.perf_counter()
            ExpertPool(ctx).ensure(bench.task(part.expert))
            _channel.put(("log", f"[expert] {part.expert} trained in {time.perf_counter() - start:.1f} s"))
            return
        for name in part.methods:
            method = build_method(name, ctx)
            entry = results.methods[method.name].model_copy(deep=True)
            run_method(ctx, method, entry, folder, results, lambda line: _channel.put(("log", line)),
                       commit=lambda step, n=method.name, e=entry: _channel.put(("step", n, e.model_copy(deep=True),
                                                                                 step)))
    finally:
        _channel.close()
        _channel.join_thread()  # every message is in the pipe before the parent learns the part is done
