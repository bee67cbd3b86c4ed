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

import json
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from mllmcl import __version__
from mllmcl.config import RunConfig, build_config, method_blocks, read_yaml, resolve_order, to_dict, to_yaml
from mllmcl.context import Context
from mllmcl.data.mllm_cl import Benchmark, Sample, Task, load_benchmark
from mllmcl.errors import UserError
from mllmcl.eval import get_scorer
from mllmcl.eval.cl_metrics import cl_metrics
from mllmcl.eval.formats import format_valid
from mllmcl.methods import METHODS, Method, build_method, parse_method_spec
from mllmcl.methods.zero_shot import ZeroShot
from mllmcl.parallel import Processes, barrier, cpu_cores, is_main, main_first, sharded_parameters
from mllmcl.report.tables import slug
from mllmcl.utils.io import is_file, read_json, write_json_atomic, write_text_atomic
from mllmcl.utils.progress import write_line

FORMAT = 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- data ----------------------------------------------------------------------------------------------

def prepare_benchmark(config: RunConfig, progress: bool = True) -> Benchmark:
    """The tasks of the run, in training order (`data.order`): the synthetic benchmark (written on first
    use into the cache) or an MLLM-CL data root on disk."""
    data = config.data
    explicit = data.order.split(",") if data.order and not data.order.startswith("random:") else []
    tasks = list(data.tasks) or explicit or None  # an explicit order alone also picks the tasks
    if data.benchmark == "synth":
        from mllmcl.data.synth.write import SynthSpec, cache_name, write_synth

        spec = SynthSpec(setting=config.setting, train=data.train, test=data.test, val=data.val, seed=data.seed,
                         overlap=data.overlap, visual_overlap=data.visual_overlap, unseen=data.unseen)
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


# --- evaluation ------------------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """One method evaluated on every task at one step: accuracy per task (%), the share of answers in their
    question's format (%), and which expert answered each sample (routed methods)."""

    accuracy: list[float]
    format_valid: list[float]
    experts: list[list[str]] | None
    seconds: float


def evaluate(ctx: Context, method: Method, tasks: Sequence[Task], predictions: Path) -> Evaluation:
    """Answer every evaluation sample of every task with `method` (which is not told the task), score each
    answer with the task's official rule, check its format, and write one JSONL of predictions per task
    under `predictions/` (the main process; with several processes each answers its share of the batches
    and every process gets every answer)."""
    start = time.perf_counter()
    accuracy, formats, experts = [], [], []
    for task in tasks:
        samples = eval_rows(ctx.config, task)
        answers = method.answer(samples, ctx.max_new_tokens(task))
        if len(answers.texts) != len(samples):
            raise RuntimeError(f"{method.name} answered {len(answers.texts)} of {len(samples)} samples of {task.name}")
        scorer = get_scorer(task.spec.scorer)
        credits = [float(scorer.judge(s.row, text)) for s, text in zip(samples, answers.texts)]
        valid = format_valid([s.row for s in samples], [s.answer for s in samples], answers.texts)
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


def routing_stage(names: Sequence[str], seen: Sequence[str], experts: Sequence[Sequence[str]]) -> dict:
    """Routing quality at one stage: the share of the seen tasks' test samples sent to their own task's
    expert, per task, and the confusion matrix (rows: true task, columns: chosen expert; all T tasks)."""
    index = {name: i for i, name in enumerate(names)}
    confusion = [[0] * len(names) for _ in names]
    per_task: dict[str, float | None] = {}
    right = total = 0
    for name, chosen in zip(names, experts):
        for expert in chosen:
            confusion[index[name]][index[expert]] += 1
        if name in seen:
            hits = sum(expert == name for expert in chosen)
            per_task[name] = round(100 * hits / len(chosen), 4)
            right, total = right + hits, total + len(chosen)
        else:
            per_task[name] = None
    return {"stage": len(seen), "seen": list(seen), "accuracy": round(100 * right / total, 4),
            "per_task": per_task, "confusion": confusion}


# --- the results file ---------------------------------------------------------------------------------------

class RunFolder:
    """`--out`: config.yaml, results.json, predictions/, state/ (each method's state after its last finished
    step: kept at the end, it is the trained model — seq-lora's adapter, mr-lora's router), experts/, report."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.results_file = self.path / "results.json"

    def predictions(self, method: str, step: str) -> Path:
        return self.path / "predictions" / slug(method) / step

    def state(self, method: str, step: int) -> Path:
        return self.path / "state" / slug(method) / f"step{step}"

    def load(self) -> dict | None:
        if not is_file(self.results_file):
            return None
        results = read_json(self.results_file, "results file")
        if not isinstance(results, dict) or not isinstance(results.get("methods"), dict) \
                or not isinstance(results.get("run"), dict):
            raise UserError(f"{self.results_file}: not a results.json of mllmcl run (expected an object with 'run' "
                            "and 'methods'); move it away to start afresh")
        return results

    def finished_steps(self) -> dict | None:
        """The results of the folder if it holds a finished step (the zero-shot row at least), else None:
        only such a folder's configuration binds a rerun. A run that failed before its first step leaves
        nothing that blocks the corrected command. A damaged results.json is an error naming it."""
        results = self.load()
        return results if results and results.get("zero_shot") is not None else None

    def check_config(self, config: RunConfig) -> None:
        """A run folder resumes only under the configuration it was started with. Methods may be added, and
        the settings of methods that have not started yet may differ (they are new)."""
        saved_file = self.path / "config.yaml"
        owned = self.finished_steps()
        if not is_file(saved_file) or owned is None:
            return
        try:
            saved = to_dict(build_config(read_yaml(saved_file)))
        except UserError as err:
            raise UserError(f"{saved_file}: this run's configuration no longer loads ({err}); resume it with the "
                            "mllmcl version that started it, or use another --out") from None
        new = to_dict(config)
        started = {block for label in owned["methods"] for block in _blocks_of(label)}
        ignored = {"methods", "jobs"} | (set(method_blocks()) - started)  # jobs: how, not what, is computed
        changed = sorted(k for k in set(saved) | set(new) if k not in ignored and saved.get(k) != new.get(k))
        if changed:
            raise UserError(f"{self.path} holds a run with another configuration (differs in: {', '.join(changed)}); "
                            "use another --out, or the same settings to resume it")


def _blocks_of(label: str) -> set[str]:
    """The settings blocks a method entry reads (its own, and `replay` for `+replay`)."""
    try:
        spec = parse_method_spec(label)
    except UserError:
        return set()
    return {spec.name} | ({"replay"} if spec.replay else set())


def environment() -> dict:
    """What the numbers depend on beyond the configuration (docs/results.md, "Determinism")."""
    import accelerate
    import peft
    import torch
    import transformers

    from mllmcl.reproducible import kernel_settings

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "accelerate": accelerate.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu",
            "kernels": kernel_settings()}


def new_results(config: RunConfig, bench: Benchmark) -> dict:
    return {"format": FORMAT, "mllmcl_version": __version__,
            "run": {"setting": config.setting, "benchmark": config.data.benchmark, "backbone": config.backbone,
                    "seed": config.seed, "data_seed": config.data.seed, "train_seed": config.train.seed,
                    "order": config.data.order or "benchmark", "split": config.eval.split, "started": now(),
                    "finished": None, "environment": environment()},
            "tasks": bench.names, "zero_shot": None, "zero_shot_format_valid": None, "methods": {}}


def method_entry(method: Method, results: dict) -> dict:
    entry = {"sequential": method.sequential, "zero_shot": list(results["zero_shot"]), "steps": 0,
             "matrix": [] if method.sequential else None, "format_valid": [] if method.sequential else None,
             "final": None, "final_format_valid": None, "metrics": None, "seconds": {"learn": [], "evaluate": []}}
    if method.routed:
        entry["routing"] = {"router": getattr(method.router, "kind", None), "accuracy": None, "per_task": None,
                            "confusion": None, "stages": []}
    return entry


def finish_entry(entry: dict, final: list[float], final_format: list[float] | None) -> None:
    entry["final"] = list(final)
    entry["final_format_valid"] = None if final_format is None else list(final_format)
    if entry["sequential"]:
        entry["metrics"] = cl_metrics(entry["matrix"], entry["zero_shot"])
    else:
        entry["metrics"] = {"MFT": None, "MFN": round(sum(final) / len(final), 4), "MAA": None, "BWT": None,
                            "Forgetting": None, "FWT": None}
    routing = entry.get("routing")
    if routing and routing["stages"]:
        last = routing["stages"][-1]
        routing.update(accuracy=last["accuracy"], per_task=last["per_task"], confusion=last["confusion"])


# --- the protocol --------------------------------------------------------------------------------------------

Log = Callable[[str], None]


def run(config: RunConfig, out: str | Path, log: Log = write_line, progress: bool = True, backbone=None,
        experts: str | Path | None = None) -> dict:
    """Run (or resume) every method of `config` on its benchmark; returns the results dict (also in
    `out/results.json`). `backbone`: an already loaded one instead of `config.backbone` (tests; the run then
    stays in this process, whatever `jobs` says); `experts`: where MR-LoRA's experts are kept (default
    `out/experts`; a sweep shares one folder across orders). With `jobs` > 1 the methods and the experts run
    in parallel worker processes (mllmcl/jobs.py); this process alone writes results.json."""
    from mllmcl.models import load_backbone

    sharding = sharded_parameters()
    if sharding:
        raise UserError(f"{sharding} shards the model's weights across processes, but mllmcl run evaluates the model "
                        "between training steps, outside the training wrapper, and needs them whole: launch it with "
                        "the ddp or deepspeed-zero2 configuration (docs/engine.md, \"Several processes\")")
    processes = Processes.start()
    main = is_main(processes)
    log = log if main else _silent
    folder = RunFolder(out)
    folder.check_config(config)
    started = time.perf_counter()
    given = backbone is not None
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    if not given and processes is None and may_run_parts_in_parallel(config):
        from mllmcl.jobs import warm_up

        warm_up()
    with main_first(processes):  # the main process writes the synthetic data; the others then read it
        bench = prepare_benchmark(config, progress and main)
    require_answers(bench)
    results = folder.finished_steps() or new_results(config, bench)
    if results.get("format") != FORMAT:
        raise UserError(f"{folder.results_file}: results format {results.get('format')!r}, this mllmcl writes "
                        f"{FORMAT}; use another --out")
    if results.get("tasks") != bench.names:
        raise UserError(f"{folder.results_file}: its tasks {results.get('tasks')} are not this run's {bench.names}")
    results["run"]["finished"] = None  # set again when every method of this call is done
    if processes is not None:
        results["run"]["processes"] = processes.world
    if main:
        folder.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder.path / "config.yaml", to_yaml(config))
    log(f"run: {config.setting} · {len(bench.tasks)} tasks ({', '.join(bench.names)}) · backbone {config.backbone} · "
        f"methods {', '.join(config.methods)} · out {folder.path}")
    backbone = backbone or load_backbone(config.backbone)
    ctx = Context(backbone, bench, config, folder.path, experts, progress and main, processes)

    if results["zero_shot"] is None:
        evaluation = evaluate(ctx, ZeroShot(ctx), bench.tasks, folder.predictions("zero-shot", "step0"))
        results["zero_shot"], results["zero_shot_format_valid"] = evaluation.accuracy, evaluation.format_valid
        _write_results(ctx, folder, results)
        log(f"zero-shot: {_row(bench.names, evaluation.accuracy)}  ({evaluation.seconds:.1f} s)")

    methods = [build_method(spec, ctx) for spec in config.methods]
    for method in methods:  # results.json lists the methods in the configuration's order
        results["methods"].setdefault(method.name, method_entry(method, results))
    jobs = 1 if given or processes is not None else job_count(config, ctx, methods, results)
    if jobs > 1:
        from mllmcl.jobs import run_in_parallel

        run_in_parallel(ctx, methods, folder, results, jobs, log)
    else:
        for method in methods:
            run_method(ctx, method, results["methods"][method.name], folder, results, log,
                       commit=_committer(ctx, folder, results, method.name))
    results["run"]["finished"] = now()
    results["run"]["seconds_this_session"] = round(time.perf_counter() - started, 1)
    _write_results(ctx, folder, results)
    return results


def job_count(config: RunConfig, ctx: Context, methods: Sequence[Method], results: dict) -> int:
    """How many processes run the parts of this run at once: `jobs`, or (0) one per CPU core but no more than
    there are parts to run at once, and 1 on a GPU (every process holds its own copy of the model)."""
    if config.jobs:
        return config.jobs
    import torch

    if torch.cuda.is_available():
        return 1
    from mllmcl.jobs import plan

    return max(1, min(cpu_cores(), plan(ctx, methods, results).width))


def may_run_parts_in_parallel(config: RunConfig) -> bool:
    """Whether `job_count` can come out above 1, judged from the configuration alone (before the data and
    the model are loaded): jobs > 1, or jobs = 0 on a CPU with several cores and several parts to run."""
    if config.jobs:
        return config.jobs > 1
    import torch

    if torch.cuda.is_available() or cpu_cores() < 2:
        return False
    kinds = [METHODS.get(parse_method_spec(spec).name) for spec in config.methods]
    learning = [kind for kind in kinds if getattr(kind, "learns", True)]
    return len(learning) > 1 or any(getattr(kind, "uses_experts", False) for kind in learning)


def _committer(ctx: Context, folder: RunFolder, results: dict, name: str) -> Callable[[int], None]:
    """What a step of method `name` does once its state is saved, in one process: results.json says the
    step is done, then the previous step's state goes."""
    def commit(step: int) -> None:
        _write_results(ctx, folder, results)
        if step > 1 and ctx.main:
            shutil.rmtree(folder.state(name, step - 1), ignore_errors=True)
    return commit


def _write_results(ctx: Context, folder: RunFolder, results: dict) -> None:
    """results.json, rewritten atomically by the main process; every process waits until it is there."""
    if ctx.main:
        write_json_atomic(folder.results_file, results)
    barrier(ctx.processes)


def _silent(_: str) -> None:
    pass


def run_method(ctx: Context, method: Method, entry: dict, folder: RunFolder, results: dict, log: Log,
               commit: Callable[[int], None]) -> None:
    """Train and evaluate `method` step by step from where `entry` (its part of `results`) stands. After each
    step its state is saved, `entry` updated, then `commit(step)` records it (results.json)."""
    tasks = ctx.benchmark.tasks
    if entry["final"] is not None:
        log(f"[{method.name}] finished earlier; kept")
        return
    if not getattr(method, "learns", True):
        entry["steps"] = len(tasks)
        finish_entry(entry, results["zero_shot"], results.get("zero_shot_format_valid"))
        commit(len(tasks))
        log(f"[{method.name}] final = the zero-shot row")
        return
    done = entry["steps"]
    if done:
        method.restore(folder.state(method.name, done), tasks[:done])
        log(f"[{method.name}] resumed after step {done}/{len(tasks)}")
    for step in range(done + 1, len(tasks) + 1):
        task = tasks[step - 1]
        start = time.perf_counter()
        method.learn(task)
        learn_seconds = time.perf_counter() - start
        line = f"[{method.name}] {step}/{len(tasks)} learned {task.name} in {learn_seconds:.1f} s"
        evaluated = method.sequential or step == len(tasks)
        evaluation = None
        if evaluated:
            label = f"step{step}" if method.sequential else "final"
            evaluation = evaluate(ctx, method, tasks, folder.predictions(method.name, label))
            line += f" · {_row(ctx.task_names, evaluation.accuracy)} ({evaluation.seconds:.1f} s)"
        state = folder.state(method.name, step)
        if ctx.main:  # the step's state is on disk before results.json says the step is done
            method.save(state)
            state.mkdir(parents=True, exist_ok=True)
        _record(entry, ctx, step, learn_seconds, evaluation)
        if evaluation is not None and entry.get("routing") is not None and evaluation.experts is not None:
            line += f" · routing {entry['routing']['stages'][-1]['accuracy']:.2f}%"
        if step == len(tasks):
            if method.sequential:
                finish_entry(entry, entry["matrix"][-1], entry["format_valid"][-1])
            else:
                finish_entry(entry, evaluation.accuracy, evaluation.format_valid)
        commit(step)
        log(line)


def _record(entry: dict, ctx: Context, step: int, learn_seconds: float, evaluation: Evaluation | None) -> None:
    entry["steps"] = step
    entry["seconds"]["learn"].append(round(learn_seconds, 2))
    entry["seconds"]["evaluate"].append(round(evaluation.seconds, 2) if evaluation else 0.0)
    if evaluation is None:
        return
    if entry["sequential"]:
        entry["matrix"].append(evaluation.accuracy)
        entry.setdefault("format_valid", []).append(evaluation.format_valid)
    if entry.get("routing") is not None and evaluation.experts is not None:
        seen = ctx.task_names[:step]
        entry["routing"]["stages"].append(routing_stage(ctx.task_names, seen, evaluation.experts))


def _row(names: Sequence[str], values: Sequence[float]) -> str:
    return " ".join(f"{n} {v:.1f}" for n, v in zip(names, values))
