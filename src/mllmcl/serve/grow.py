"""Changing an expert library: export a finished run, add an expert through the regression gate, remove one,
roll back. Every change holds the library's lock, writes a report and appends an audit line; only an
accepted change writes a version and moves the pointer (serve/library.py).

    export_run(run, out)                    version 1: the run's experts, its router, their held-out rows
    add_expert(lib, name, train, test)      train an expert on LLaVA rows, refit the router, measure, gate
    remove_expert(lib, name)                refit the router without it, measure, gate
    rollback(lib, to)                       move the pointer to an earlier (or any) version
"""
from __future__ import annotations

import random
import shutil
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

from mllmcl.cl.config import to_dict
from mllmcl.cl.context import Context, adapter_name, fresh_adapter, sample_rows, train_adapter
from mllmcl.cl.routing.build import build_router
from mllmcl.cl.routing.router import Expert, buffer_size, router_buffer
from mllmcl.core.errors import UserError
from mllmcl.data.mllm_cl import Problem, Sample, parse_rows, read_rows, summarise
from mllmcl.data.tasks import TaskSpec
from mllmcl.engine.adapters import delete_adapter, save_adapter
from mllmcl.eval import SCORERS
from mllmcl.run.benchmark import prepare_benchmark
from mllmcl.serve.gate import Measured, gain, measure, verdict
from mllmcl.serve.library import (ExpertRecord, Library, check_expert_name, data_fingerprint, folder_sha256,
                                  write_expert_rows)
from mllmcl.serve.routed import RoutedModel, ServedExpert, attach
from mllmcl.serve.settings import ExpertSettings, GateSettings

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


# --- export ------------------------------------------------------------------------------------------------

def export_run(run: str | Path, out: str | Path, method: str = ExpertSettings.method,
               heldout: int = ExpertSettings.heldout, target_frr: float = ExpertSettings.target_frr,
               log: Log = _stderr) -> dict:
    """A new library at `out` from a finished run: its `method`'s experts and final router as version 1, each
    expert with its router buffer and up to `heldout` held-out rows (the validation split where the data has
    one, else the test split), measured through the routed model with a threshold calibrated to
    `target_frr`. Returns the version manifest."""
    model = RoutedModel.from_run(run, method)
    config = model.ctx.config
    bench = prepare_benchmark(config, progress=False)
    if bench.names != model.names:
        raise UserError(f"{run}: its results list tasks {model.names}, its configuration now gives {bench.names}")
    ctx = Context(model.backbone, bench, config, Path(run), progress=False)
    library = Library.create(out, config.backbone, {"run": str(Path(run).resolve()), "method": method})
    with library.lock():
        records, rows = [], {}
        for task, expert in zip(bench.tasks, model.experts):
            staged = library.staging()
            shutil.copytree(expert.folder, staged / "adapter")
            held = (task.val or task.test)[:heldout]
            write_expert_rows(staged, router_buffer(ctx, task, model.router.kind), held)
            sha = folder_sha256(staged / "adapter")
            path = library.adopt_expert(staged, task.name, sha)
            records.append(ExpertRecord(task.name, task.spec.description, path, sha,
                                        data_fingerprint(ctx.train_rows(task)), task.spec.scorer,
                                        ctx.max_new_tokens(task), len(held)))
            rows[task.name] = library.heldout(records[-1])
            log(f"export: expert {task.name} ({len(held)} held-out rows, adapter sha256 {sha[:12]})")
        measured = measure(model, rows, {r.name: r for r in records}, target_frr)
        manifest = _manifest(config, model, records, measured, {"command": "library export", "run": str(run)})
        number = library.commit(manifest, model.router.save, {"action": "export"})
        report = {"action": "export", "run": str(run), "measured": _measured(measured), "version": number}
        library.write_report("export", report)
        library.audit({"command": f"library export --run {run}", "action": "export", "version": number,
                       "data": {r.name: r.data for r in records}, "gate": None})
    log(f"export: version {number} with {len(records)} experts, routing {measured.routing:.2f}%, thresholds "
        f"{_fmt(measured.threshold)}")
    return library.version(number)


# --- add and remove --------------------------------------------------------------------------------------

def add_expert(library_path: str | Path, name: str, train: str | Path, test: str | Path | None = None,
               description: str | None = None, max_drop: float = GateSettings.max_drop,
               min_routing: float = GateSettings.min_routing, epochs: float | None = None,
               scorer: str = ExpertSettings.scorer, max_new_tokens: int | None = None,
               heldout: int = ExpertSettings.heldout, min_gain: float = GateSettings.min_gain,
               log: Log = _stderr) -> dict:
    """Train expert `name` on the LLaVA conversation rows of `train`, refit the router on every expert's
    buffer, measure every expert's held-out rows (the new one's: `test`, else a seeded 20% of `train` kept
    out of training) and promote the candidate only if the gate passes, the new expert beating the base model
    on its own rows by `min_gain` points. Returns the report (`passed`)."""
    library = Library(library_path)
    check_expert_name(name)
    SCORERS.get(scorer)
    with library.lock():
        current = RoutedModel.from_library(library)
        if name in current.names:
            raise UserError(f"{library.path}: expert {name!r} already exists in version {library.current}; "
                            "remove it first or choose another name")
        ctx, config = current.ctx, current.ctx.config
        description = description or name
        train_rows = read_train(Path(train), name)
        if test is not None:
            held = read_heldout(Path(test), name, scorer, description)
        else:
            train_rows, held = split_heldout(train_rows, ctx.data_seed("heldout", name))
        held = held[:heldout]
        limit = max_new_tokens or config.eval.max_new_tokens
        log(f"add: training expert {name} on {len(train_rows)} rows ({len(held)} held out)")
        staged = library.staging()
        try:
            record, buffer = _train_expert(ctx, library, staged, name, description, train_rows, held, scorer, limit,
                                           epochs, current.router.kind)
            experts = [*library.experts(), record]
            return _change(library, current, experts, {record.name: buffer}, {record.name: held},
                           {"command": _command("expert add", library_path, name=name, train=train, test=test),
                            "action": "add", "expert": name, "data": record.data},
                           max_drop, min_routing, staged=(staged, name, record.sha256), min_gain=min_gain, log=log)
        finally:
            shutil.rmtree(staged, ignore_errors=True)


def remove_expert(library_path: str | Path, name: str, max_drop: float = GateSettings.max_drop,
                  min_routing: float = GateSettings.min_routing, log: Log = _stderr) -> dict:
    """A new version without expert `name`, through the gate like an addition."""
    library = Library(library_path)
    with library.lock():
        current = RoutedModel.from_library(library)
        if name not in current.names:
            raise UserError(f"{library.path}: no expert {name!r} in version {library.current} "
                            f"(experts: {', '.join(current.names)})")
        if len(current.names) == 1:
            raise UserError(f"{library.path}: {name!r} is the only expert; a library keeps at least one")
        experts = [r for r in library.experts() if r.name != name]
        return _change(library, current, experts, {}, {}, {"command": _command("expert remove", library_path, name=name),
                                                           "action": "remove", "expert": name, "data": None},
                       max_drop, min_routing, log=log)


def rollback(library_path: str | Path, to: int | None = None, log: Log = _stderr) -> int:
    """Point the library at version `to` (default: the current version's parent). Returns the version."""
    library = Library(library_path)
    with library.lock():
        current = library.current
        target = to if to is not None else library.version().get("parent")
        if target is None:
            raise UserError(f"{library.path}: version {current} has no earlier version to roll back to")
        library.version(target)  # exists?
        if target == current:
            raise UserError(f"{library.path}: version {target} is already current")
        library.set_current(target, {"action": "rollback"})
        library.audit({"command": _command("expert rollback", library_path, to=to), "action": "rollback",
                       "from": current, "to": target, "data": None, "gate": None})
    log(f"rollback: current version {current} -> {target}")
    return target


def _change(library: Library, current: RoutedModel, records: Sequence[ExpertRecord], new_buffers: dict,
            new_heldout: dict, change: dict, max_drop: float, min_routing: float, log: Log,
            staged: tuple[Path, str, str] | None = None, min_gain: float = GateSettings.min_gain) -> dict:
    """Refit the router on `records`' buffers, measure the candidate, gate it (an added expert, the one in
    `new_heldout`, also against the base model), then commit it or leave the library as it was. The report is
    written either way."""
    ctx = current.ctx
    buffers = {r.name: new_buffers.get(r.name) or library.buffer(r) for r in records}
    heldout = {r.name: new_heldout.get(r.name) or library.heldout(r) for r in records}
    served = {e.name: e for e in current.experts}
    experts = [served.get(r.name) or ServedExpert(r.name, r.description, attach(ctx.backbone, r.name,
                                                                                 _adapter_folder(library, r, staged),
                                                                                 r.sha256)) for r in records]
    kind = library.version()["router"]["kind"]
    log(f"{change['action']}: refitting the {kind} router on {len(records)} experts")
    router = build_router(kind, ctx)
    router.fit([Expert(r.name, r.description, tuple(buffers[r.name])) for r in records])
    candidate = RoutedModel(ctx, router, experts, None, library.path)
    target_frr = library.version().get("target_frr", ExpertSettings.target_frr)
    measured = measure(candidate, heldout, {r.name: r for r in records}, target_frr)
    recorded = {r.name: r.scores["routed_accuracy"] for r in library.experts() if "routed_accuracy" in r.scores}
    gains = {r.name: gain(candidate, r.name, heldout[r.name], r) for r in records if r.name in new_heldout}
    decision = verdict(recorded, measured, max_drop, min_routing, gains, min_gain)
    report = {"action": change["action"], "expert": change.get("expert"), "base_version": library.current,
              "passed": decision.passed, "failures": decision.failures, "gate": decision.to_dict(),
              "measured": _measured(measured), "version": None}
    if decision.passed:
        if staged is not None:
            folder, name, sha = staged
            path = library.adopt_expert(folder, name, sha)
            records = [r if r.name != name else _with(r, path=path) for r in records]
        manifest = _manifest(ctx.config, candidate, records, measured, change)
        report["version"] = library.commit(manifest, router.save, {"action": change["action"]})
    report["report"] = str(library.write_report(change["action"], report))
    library.audit({"command": change["command"], "action": change["action"], "expert": change.get("expert"),
                   "data": change.get("data"), "base_version": report["base_version"], "version": report["version"],
                   "gate": {"passed": decision.passed, "failures": decision.failures, "routing": measured.routing}})
    if decision.passed:
        log(f"{change['action']}: gate passed; version {report['version']} is current")
    else:
        log(f"{change['action']}: gate FAILED; version {library.current} stays current:")
        for line in decision.failures:
            log(f"  {line}")
    return report


def _adapter_folder(library: Library, record: ExpertRecord, staged: tuple[Path, str, str] | None) -> Path:
    if staged is not None and record.name == staged[1]:
        return staged[0] / "adapter"
    return library.path / record.path / "adapter"


def _train_expert(ctx: Context, library: Library, staged: Path, name: str, description: str,
                  train_rows: Sequence[Sample], held: Sequence[Sample], scorer: str, limit: int,
                  epochs: float | None, router: str) -> tuple[ExpertRecord, tuple[Sample, ...]]:
    """A fresh expert trained with the library's recipe and seeds (as a run trains a task's expert), saved
    into `staged/adapter` with its buffer (sized for `router`, the library's router kind) and held-out rows."""
    adapter = adapter_name("candidate", name)
    fresh_adapter(ctx, adapter, ctx.train_seed("expert", name, "init"))
    try:
        train_adapter(ctx, adapter, train_rows, ctx.train_seed("expert", name), f"expert <- {name}",
                      **({"epochs": epochs} if epochs else {}))
        save_adapter(ctx.backbone, adapter, staged).rename(staged / "adapter")
    finally:
        with warnings.catch_warnings():  # peft notes that the deleted adapter was the active one: it is done with
            warnings.simplefilter("ignore", UserWarning)
            delete_adapter(ctx.backbone, adapter)
    buffer = tuple(sample_rows(train_rows, buffer_size(ctx, router), ctx.data_seed("router-buffer", name)))
    write_expert_rows(staged, buffer, held)
    sha = folder_sha256(staged / "adapter")
    record = ExpertRecord(name, description, f".staging/{staged.name}", sha, data_fingerprint(train_rows), scorer,
                          limit, len(held))
    return record, buffer


# --- reading new data --------------------------------------------------------------------------------------------

def read_train(path: Path, name: str) -> tuple[Sample, ...]:
    """LLaVA conversation rows (image paths relative to the file's folder), every problem named."""
    problems: list[Problem] = []
    rows = read_rows(path, problems)
    parsed = parse_rows(rows or [], path, problems, kind="train", base=path.parent, task=name)
    if problems:
        raise UserError(summarise(problems, path.parent))
    if not parsed:
        raise UserError(f"{path}: no training rows")
    return tuple(s for _, s in parsed)


def read_heldout(path: Path, name: str, scorer: str, description: str) -> tuple[Sample, ...]:
    """Held-out rows: LLaVA conversation rows (the first turn is the question and its answer) or test rows
    (`question_id`, `image`, `text`, `answer`), images relative to the file's folder."""
    problems: list[Problem] = []
    rows = read_rows(path, problems) or []
    if problems:
        raise UserError(str(problems[0]))
    if rows and all(isinstance(r, dict) and "conversations" in r for r in rows):
        samples = read_train(path, name)
        return tuple(Sample(s.id, name, s.image, s.question, s.answer, ((s.question, s.answer),), s.meta,
                            {**s.meta, "question_id": s.id, "text": s.question, "answer": s.answer}) for s in samples)
    spec = TaskSpec(name, "library", scorer, description, (".",), (".",))
    parsed = parse_rows(rows, path, problems, kind="test", spec=spec, base=path.parent)
    if problems:
        raise UserError(summarise(problems, path.parent))
    if not parsed:
        raise UserError(f"{path}: no held-out rows")
    return tuple(s for _, s in parsed)


def split_heldout(rows: Sequence[Sample], seed: int, share: float = 0.2) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """A seeded `share` of `rows` kept out of training as held-out rows (test form), the rest to train on."""
    if len(rows) < 2:
        raise UserError("too few training rows to hold some out; pass --test")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    k = max(1, round(share * len(rows)))
    held = sorted(order[:k])
    keep = sorted(order[k:])
    heldout = tuple(Sample(rows[i].id, rows[i].task, rows[i].image, rows[i].question, rows[i].answer,
                           ((rows[i].question, rows[i].answer),), rows[i].meta,
                           {"question_id": rows[i].id, "text": rows[i].question, "answer": rows[i].answer})
                    for i in held)
    return tuple(rows[i] for i in keep), heldout


# --- manifests and reports -----------------------------------------------------------------------------------------

def _manifest(config, model: RoutedModel, records: Sequence[ExpertRecord], measured: Measured, change: dict) -> dict:
    scored = [_with(r, scores={k: measured.experts[r.name][k]
                               for k in ("accuracy", "routed_accuracy", "routing", "fallback")})
              if r.name in measured.experts else r for r in records]
    return {"backbone": config.backbone, "config": to_dict(config), "router": {"kind": model.router.kind},
            "threshold": measured.threshold, "target_frr": measured.target_frr, "routing": measured.routing,
            "experts": [r.to_dict() for r in scored], "change": change}


def _with(record: ExpertRecord, **changes) -> ExpertRecord:
    return ExpertRecord(**{**record.to_dict(), **changes})


def _measured(measured: Measured) -> dict:
    return {"experts": measured.experts, "routing": measured.routing, "threshold": measured.threshold,
            "target_frr": measured.target_frr}


def _command(verb: str, library: str | Path, **options) -> str:
    parts = [f"mllmcl {verb} {library}"] + [f"--{k} {v}" for k, v in options.items() if v is not None]
    return " ".join(parts)


def _fmt(thresholds: dict | None) -> str:
    return "none" if not thresholds else ", ".join(f"{k} {v:.4g}" for k, v in thresholds.items())


__all__ = ["add_expert", "export_run", "read_heldout", "read_train", "remove_expert", "rollback", "split_heldout"]
