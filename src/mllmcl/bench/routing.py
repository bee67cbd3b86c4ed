"""Routing benchmark: what does MR-LoRA's live two-stage inference cost?

On the test sets of a finished run (its experts and final router, read from the run folder), three ways to
answer every test sample are timed on the same backbone:
- **oracle** (one stage): each sample straight to its own task's expert (the true task is known);
- **routed** (two stages, mllmcl's way): the router reads image and question once and picks an expert,
  then the chosen experts answer in batches where every sample carries its own adapter;
- **answer lookup** (the official code's way): every expert answers every test set, and the router's choice
  selects one of the precomputed answers — T generations per sample.
Each is run `repeats` times (alternating) and the best time is kept. The answers of the routed path and of
the lookup are checked to be the same (they must: same expert, same greedy decoding).
"""
from __future__ import annotations

import time
from pathlib import Path

from mllmcl.cl.config import load_config
from mllmcl.cl.context import Context, answer_with
from mllmcl.cl.methods.build import build_method
from mllmcl.core.errors import UserError
from mllmcl.models.load import load_backbone
from mllmcl.run.benchmark import eval_rows, prepare_benchmark
from mllmcl.run.folder import RunFolder


def run_routing_bench(run_dir: str | Path, method: str, repeats: int) -> dict:
    folder = RunFolder(run_dir)
    results = folder.load()
    entry = results.methods.get(method) if results else None
    if entry is None or entry.final is None:
        raise UserError(f"{folder.path}: no finished {method!r} run here; run `mllmcl run --out {folder.path}` first")
    config = load_config(folder.path / "config.yaml")
    bench = prepare_benchmark(config, progress=False)
    ctx = Context(load_backbone(config.backbone, **config.model.load_options()), bench, config, folder.path)
    mr = build_method(method, ctx)
    mr.restore(folder.state(method, len(bench.tasks)), bench.tasks)
    tasks = bench.tasks
    samples = {t.name: [s.query for s in eval_rows(config, t)] for t in tasks}
    limit = {t.name: ctx.max_new_tokens(t) for t in tasks}
    n = sum(len(s) for s in samples.values())

    def oracle():
        return {t.name: answer_with(ctx, samples[t.name], [mr.experts.adapter(t.name)] * len(samples[t.name]),
                                    limit[t.name]) for t in tasks}

    def routed():
        ctx.expert_answers.clear()  # MR-LoRA keeps its experts' answers for later steps: time them afresh
        return {t.name: mr.answer(samples[t.name], limit[t.name]).texts for t in tasks}

    def lookup():
        every = {(t.name, e.name): answer_with(ctx, samples[t.name], [mr.experts.adapter(e.name)] * len(samples[t.name]),
                                               limit[t.name]) for t in tasks for e in tasks}
        out = {}
        for t in tasks:
            chosen = mr.router.route(samples[t.name]).experts
            out[t.name] = [every[(t.name, tasks[c].name)][i] for i, c in enumerate(chosen)]
        return out

    timings = {"oracle": [], "routed": [], "lookup": []}
    answers = {}
    for _ in range(repeats):
        for name, fn in (("oracle", oracle), ("routed", routed), ("lookup", lookup)):
            start = time.perf_counter()
            answers[name] = fn()
            timings[name].append(time.perf_counter() - start)
    speed = {name: n / min(times) for name, times in timings.items()}
    report = {"samples": n, "tasks": len(tasks), "router": mr.router.kind,
              "samples_per_second": {k: round(v, 1) for k, v in speed.items()},
              "routed_vs_oracle": round(speed["routed"] / speed["oracle"], 3),
              "routed_vs_lookup": round(speed["routed"] / speed["lookup"], 3),
              "lookup_matches_routed": answers["lookup"] == answers["routed"]}
    print(f"routing benchmark on {folder.path}: {n} test samples of {len(tasks)} tasks, router {mr.router.kind}, "
          f"best of {repeats}")
    print(f"   {'inference':<44}{'samples/s':>10}")
    print(f"   {'oracle: true task -> its expert (1 stage)':<44}{speed['oracle']:>10.1f}")
    print(f"   {'routed: router pass + chosen experts, live':<44}{speed['routed']:>10.1f}")
    print(f"   {'official lookup: every expert on every set':<44}{speed['lookup']:>10.1f}")
    print(f"   routed / oracle = {report['routed_vs_oracle']:.3f} (target >= 0.8); "
          f"routed / lookup = {report['routed_vs_lookup']:.3f}; lookup answers == routed answers: "
          f"{report['lookup_matches_routed']}")
    return report
