"""The tasks of a run: its benchmark in training order (the synthetic one, written on first use, or an
MLLM-CL data root), checked before any training, and the rows every evaluation reads."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mllmcl.cl.config import RunConfig, resolve_order
from mllmcl.core.errors import UserError
from mllmcl.data.mllm_cl import Benchmark, Sample, Task, load_benchmark
from mllmcl.data.synth.write import SynthSpec, cache_name, write_synth


def prepare_benchmark(config: RunConfig, progress: bool = True) -> Benchmark:
    """The tasks of the run, in training order (`data.order`): the synthetic benchmark (written on first
    use into the cache) or an MLLM-CL data root on disk."""
    data = config.data
    explicit = data.order.split(",") if data.order and not data.order.startswith("random:") else []
    tasks = list(data.tasks) or explicit or None  # an explicit order alone also picks the tasks
    if data.benchmark == "synth":
        spec = SynthSpec(setting=config.setting, train=data.train, test=data.test, val=data.val, seed=data.seed,
                         overlap=data.overlap, visual_overlap=data.visual_overlap, skill=data.skill,
                         unseen=data.unseen)
        root = write_synth(Path(data.cache) / cache_name(spec), spec, progress=progress)
    else:
        root = data.benchmark
    bench = load_benchmark(root, config.setting, tasks)
    order = resolve_order(data.order, bench.names)
    bench = replace(bench, tasks=tuple(bench.task(name) for name in order))
    if config.eval.split == "val":
        empty = [t.name for t in bench.tasks if not t.val]
        if empty:
            raise UserError(f"config key 'eval.split' is val, but task(s) {', '.join(empty)} of {bench.root} have no "
                            "validation rows (val.json)")
    return bench


def require_answers(bench: Benchmark) -> None:
    """Every test row needs its ground truth to be scored here; say so before any training starts."""
    for task in bench.tasks:
        missing = [s.id for s in task.test if "answer" not in s.row]
        if missing:
            hint = (" (its answers are not public: MMT-Bench scores them on its server; leave the task out with "
                    "data.tasks=…, or add the answers)" if not task.spec.answers_public else "")
            raise UserError(f"{task.test_file}: {len(missing)} test rows of task {task.name} have no 'answer', "
                            f"e.g. question_id {missing[0]!r}{hint}")


def eval_rows(config: RunConfig, task: Task) -> tuple[Sample, ...]:
    """The rows every evaluation of `task` reads: its test split (or validation split, `eval.split`), capped
    at `data.test_limit`."""
    rows = task.val if config.eval.split == "val" else task.test
    limit = config.data.test_limit
    return rows[:limit] if limit else rows
