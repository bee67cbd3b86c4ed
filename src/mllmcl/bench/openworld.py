"""`mllmcl bench openworld` (figures in docs/serving.md): the library's router on the seen tasks' test rows (the
library calibrated its threshold on other rows: validation rows where the data has them) and on the
benchmark's unseen-domain rows: AUROC of the router's confidence (seen vs unseen), how many unseen rows reach
the base model, the seen rows falsely rejected, and what the fallback costs in accuracy on the seen tasks; also
with thresholds calibrated (per expert, on the library's held-out rows) to other target false-reject rates."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from mllmcl.cl.config import build_config
from mllmcl.cl.routing.answer import BASE, choose, threshold_of
from mllmcl.core.errors import UserError
from mllmcl.core.io import write_json_atomic
from mllmcl.data.mllm_cl import Sample
from mllmcl.data.tasks import UNSEEN
from mllmcl.eval import get_scorer
from mllmcl.run.benchmark import prepare_benchmark
from mllmcl.serve.library import Library
from mllmcl.serve.openworld import auroc, calibrate
from mllmcl.serve.routed import RoutedModel


def run_openworld_bench(path: str | Path, out: str | Path | None, split: str, targets: Sequence[float]) -> dict:
    if not Library.exists(path):
        raise UserError(f"{path}: bench openworld needs an expert library (its threshold is calibrated there)")
    library = Library(path)
    model = RoutedModel.from_library(library)
    config = build_config(library.version()["config"])
    bench = prepare_benchmark(config, progress=False)
    tasks = [t for t in bench.tasks if t.name in model.names]
    if not bench.unseen:
        raise UserError(f"{bench.root}: no unseen-domain rows (mllmcl data synth --unseen N writes them)")
    seen = {t.name: list(t.val if split == "val" else t.test) for t in tasks}
    every = [s for rows in seen.values() for s in rows]
    _, confidence, picked = choose(model.router, [s.query for s in every + list(bench.unseen)], model.names)
    seen_conf, unseen_conf = confidence[:len(every)], confidence[len(every):]
    unseen_picked = picked[len(every):]

    # answers with no fallback (the router's pick) and from the base model, once each; a threshold mixes them
    expert_texts = _answers(model, every, picked[:len(every)], tasks, seen)
    base_texts = _answers(model, every, [BASE] * len(every), tasks, seen)
    credits = {}
    start = 0
    for task in tasks:
        rows = seen[task.name]
        scorer = get_scorer(task.spec.scorer)
        credits[task.name] = [(float(scorer.judge(s.row, expert_texts[start + k])),
                               float(scorer.judge(s.row, base_texts[start + k]))) for k, s in enumerate(rows)]
        start += len(rows)

    policies = {"library": model.threshold}
    own: dict[str, list[float]] = {}
    for record in library.experts():
        _, conf, pick = choose(model.router, [s.query for s in library.heldout(record)], model.names)
        own[record.name] = [c for c, p in zip(conf, pick) if p == record.name]
    for target in targets:
        limits = {name: calibrate(values, target) for name, values in own.items()}
        policies[f"frr {target:.2f}"] = {name: t for name, t in limits.items() if t is not None}
    unseen_scorer = get_scorer(UNSEEN.scorer)
    unseen_expert = _plain_answers(model, list(bench.unseen), unseen_picked, config.eval.max_new_tokens)
    unseen_base = _plain_answers(model, list(bench.unseen), [BASE] * len(bench.unseen), config.eval.max_new_tokens)
    seen_picked = picked[:len(every)]

    def share_below(conf: Sequence[float], pick: Sequence[str], policy) -> float:
        hits = [(t := threshold_of(policy, p)) is not None and c < t for c, p in zip(conf, pick)]
        return 100 * sum(hits) / max(1, len(hits))

    rows = []
    for label, policy in policies.items():
        per_task, start = {}, 0
        for task in tasks:
            n = len(seen[task.name])
            conf, pick = seen_conf[start:start + n], seen_picked[start:start + n]
            with_fallback = [b if (t := threshold_of(policy, p)) is not None and c < t else e
                             for (e, b), c, p in zip(credits[task.name], conf, pick)]
            per_task[task.name] = {"accuracy": round(100 * sum(e for e, _ in credits[task.name]) / n, 2),
                                   "with_fallback": round(100 * sum(with_fallback) / n, 2),
                                   "rejected": round(share_below(conf, pick, policy), 2)}
            start += n
        mean = statistics.fmean(p["accuracy"] for p in per_task.values())
        mean_fb = statistics.fmean(p["with_fallback"] for p in per_task.values())
        rows.append({"policy": label, "thresholds": policy,
                     "seen_rejected": round(share_below(seen_conf, seen_picked, policy), 2),
                     "unseen_to_base": round(share_below(unseen_conf, unseen_picked, policy), 2),
                     "seen_accuracy": round(mean, 2), "seen_accuracy_with_fallback": round(mean_fb, 2),
                     "cost_points": round(mean - mean_fb, 2), "per_task": per_task})
    unseen_rows = list(bench.unseen)
    report = {"library": str(path), "version": library.current, "router": model.router.kind, "split": split,
              "seen": len(every), "unseen": len(unseen_rows), "auroc": round(auroc(seen_conf, unseen_conf), 4),
              "unseen_accuracy_forced_expert": round(100 * statistics.fmean(
                  unseen_scorer.judge(s.row, t) for s, t in zip(unseen_rows, unseen_expert)), 2),
              "unseen_accuracy_base": round(100 * statistics.fmean(
                  unseen_scorer.judge(s.row, t) for s, t in zip(unseen_rows, unseen_base)), 2),
              "policies": rows}
    print(f"open-world benchmark on {path} (version {library.current}, {model.router.kind} router): {len(every)} seen "
          f"{split} rows of {len(tasks)} tasks, {len(unseen_rows)} unseen-domain rows")
    print(f"   AUROC (router confidence, seen vs unseen): {report['auroc']:.4f}")
    print(f"   {'thresholds':<16}{'unseen->base':>14}{'seen rejected':>15}{'seen acc':>10}{'with fallback':>15}"
          f"{'cost':>7}")
    for row in rows:
        print(f"   {row['policy']:<16}{row['unseen_to_base']:>13.2f}%{row['seen_rejected']:>14.2f}%"
              f"{row['seen_accuracy']:>10.2f}{row['seen_accuracy_with_fallback']:>15.2f}{row['cost_points']:>7.2f}")
    print(f"   unseen rows answered by the router's forced expert: {report['unseen_accuracy_forced_expert']:.2f}% right; "
          f"by the base model: {report['unseen_accuracy_base']:.2f}%")
    if out:
        write_json_atomic(out, report)
    return report


def _answers(model: RoutedModel, samples: Sequence[Sample], models: Sequence[str], tasks, seen) -> list[str]:
    limits = [min(t.spec.max_new_tokens, model.ctx.config.eval.max_new_tokens) for t in tasks for _ in seen[t.name]]
    return model.answer_queries([s.query for s in samples], limits, list(models)).texts


def _plain_answers(model: RoutedModel, samples: Sequence[Sample], models: Sequence[str], limit: int) -> list[str]:
    return model.answer_queries([s.query for s in samples], limit, list(models)).texts


__all__ = ["run_openworld_bench"]
