"""Methods benchmark: what does each continual-learning method cost beside seq-lora?

Each method learns two synthetic DCL tasks (RS then Med, 400 training items each, the run's default recipe)
on one backbone; the second task is where the methods differ (EWC's penalty, LwF's teacher pass and
distillation, O-LoRA's frozen-but-active first LoRA and orthogonality loss, replay's extra data), so its
learning time — everything `learn` does, the method's own extra passes included — is reported as training
samples/s (new-task samples over seconds) and relative to seq-lora. Then each answers both tasks' test
items (200): once with one new token per sample (the adapter's own cost: every method decodes the same
length) and once with up to 16 (as it answers; a method whose answers run longer decodes more steps), as
samples/s relative to seq-lora (o-lora and sefe answer with the merged sum of their LoRAs). Beside the
speeds, each method's parameter cost: the adapter parameters it holds after the two tasks (every adapter it
keeps, a merged sum included; gates and projector copies count).
"""
from __future__ import annotations

import tempfile
import time
from typing import Sequence

from mllmcl.cl.config import load_config
from mllmcl.cl.context import Context
from mllmcl.cl.methods.build import build_method
from mllmcl.engine.adapters import adapter_parameters
from mllmcl.models.load import load_backbone
from mllmcl.run.benchmark import eval_rows, prepare_benchmark


def run_methods_bench(methods: str | Sequence[str], cache: str, seed: int, train: int,
                      skill: float | None = None) -> dict:
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if "seq-lora" not in names:
        names.insert(0, "seq-lora")
    config = load_config(None, {"methods": names, "seed": seed,
                                "data": {"tasks": ["RS", "Med"], "train": train, "test": 100, "val": 1,
                                         "unseen": 0, "cache": cache, "skill": skill}})
    bench = prepare_benchmark(config, progress=False)
    backbone = load_backbone("tiny")
    report: dict = {"tasks": bench.names, "train_items": train, "methods": {}}
    with tempfile.TemporaryDirectory() as folder:
        ctx = Context(backbone, bench, config, folder, progress=False)
        queries = [s.query for t in bench.tasks for s in eval_rows(config, t)]
        for name in names:
            held = set(backbone.adapter_names)
            method = build_method(name, ctx)
            times = []
            for task in bench.tasks:
                start = time.perf_counter()
                method.learn(task)
                times.append(time.perf_counter() - start)
            new = len(ctx.train_rows(bench.tasks[1]))
            start = time.perf_counter()
            method.answer(queries, max_new_tokens=1)
            one_token = time.perf_counter() - start
            start = time.perf_counter()
            method.answer(queries, max_new_tokens=16)
            answer = time.perf_counter() - start
            params = sum(p.numel() for adapter in set(backbone.adapter_names) - held
                         for p in adapter_parameters(backbone, adapter).values())
            report["methods"][name] = {"learn_seconds": [round(t, 2) for t in times], "adapter_parameters": params,
                                       "train_samples_per_second": round(new / times[1], 2),
                                       "first_token_samples_per_second": round(len(queries) / one_token, 2),
                                       "answer_samples_per_second": round(len(queries) / answer, 2)}
    base = report["methods"]["seq-lora"]
    for entry in report["methods"].values():
        entry["train_vs_seq_lora"] = round(entry["train_samples_per_second"] / base["train_samples_per_second"], 3)
        entry["answer_vs_seq_lora"] = round(entry["answer_samples_per_second"] / base["answer_samples_per_second"], 3)
        entry["first_token_vs_seq_lora"] = round(entry["first_token_samples_per_second"]
                                                 / base["first_token_samples_per_second"], 3)
    return report


def print_methods_report(report: dict) -> None:
    print(f"methods benchmark: tasks {' → '.join(report['tasks'])}, {report['train_items']} training items each; "
          "second task's learning (everything learn does) and answering both test sets")
    print(f"   {'method':<18}{'adapter params':>15}{'learn s (1st, 2nd)':>20}{'train samples/s':>17}{'x seq-lora':>12}"
          f"{'1-token samples/s':>19}{'x seq-lora':>12}{'answer samples/s':>18}{'x seq-lora':>12}")
    for name, e in report["methods"].items():
        print(f"   {name:<18}{e['adapter_parameters']:>15,}{str(e['learn_seconds']):>20}{e['train_samples_per_second']:>17.2f}"
              f"{e['train_vs_seq_lora']:>12.3f}{e['first_token_samples_per_second']:>19.2f}"
              f"{e['first_token_vs_seq_lora']:>12.3f}{e['answer_samples_per_second']:>18.2f}{e['answer_vs_seq_lora']:>12.3f}")
