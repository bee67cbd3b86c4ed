"""The regression gate: measure a candidate version on every expert's held-out rows through the routed model,
then accept it only if no existing expert got worse by more than `max_drop` points (with the router's pick;
see `verdict`), the router still sends at least `min_routing` % of the held-out rows to their own expert,
and an added expert beats the base model on its own held-out rows by `min_gain` points (`gain`): an expert
that routes well but learned nothing would otherwise pass.

`measure` routes all held-out rows once, calibrates each expert's fallback threshold on the confidences of
its own rows (serve/openworld.py), then answers each expert's rows with the experts that routing (and the fallback) chose
and scores them with the expert's rule. `verdict` compares with the scores the library recorded."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

from mllmcl.cl.routing.answer import BASE, choose, threshold_of
from mllmcl.data.mllm_cl import Sample
from mllmcl.eval import get_scorer
from mllmcl.serve.library import ExpertRecord
from mllmcl.serve.openworld import calibrate
from mllmcl.serve.routed import RoutedModel
from mllmcl.serve.settings import GateSettings


@dataclass(frozen=True)
class Measured:
    """A version measured on held-out rows: per expert `accuracy` (% served: with the fallback),
    `routed_accuracy` (% with the router's pick, no fallback: what the gate compares), `routing` (% routed to
    it by the router's pick), `fallback` (% sent to the base model) and n; overall routing; the thresholds."""

    experts: dict[str, dict]
    routing: float
    threshold: dict[str, float] | None
    target_frr: float


def measure(model: RoutedModel, heldout: Mapping[str, Sequence[Sample]], records: Mapping[str, ExpertRecord],
            target_frr: float | None) -> Measured:
    """Calibrate `model.threshold`, one per expert, on the held-out rows (each expert rejects at most
    `target_frr` of its own rows that the router sends to it; None: no fallback) and measure every expert's
    held-out rows through the routed model."""
    names = [name for name in model.names if heldout.get(name)]
    rows = {name: list(heldout[name]) for name in names}
    every = [s for name in names for s in rows[name]]
    _, confidence, picked = choose(model.router, [s.query for s in every], model.names)
    spans, start = {}, 0
    for name in names:
        spans[name] = (start, start + len(rows[name]))
        start += len(rows[name])
    thresholds = {}
    if target_frr is not None:
        for name in names:
            a, b = spans[name]
            own = [c for c, p in zip(confidence[a:b], picked[a:b]) if p == name]
            limit = calibrate(own, target_frr)
            if limit is not None:
                thresholds[name] = limit
    model.threshold = thresholds or None
    experts, right = {}, 0
    for name in names:
        a, b = spans[name]
        n, conf, pick = b - a, confidence[a:b], picked[a:b]
        chosen = [BASE if (t := threshold_of(model.threshold, p)) is not None and c < t else p
                  for c, p in zip(conf, pick)]
        limit = records[name].max_new_tokens
        queries = [s.query for s in rows[name]]
        routed = model.answer_queries(queries, limit, pick).texts       # the router's pick, no fallback
        served = list(routed)                                            # ... and the fallback's base answers
        fallen = [i for i, c in enumerate(chosen) if c == BASE]
        if fallen:
            base = model.answer_queries([queries[i] for i in fallen], limit, [BASE] * len(fallen)).texts
            for i, text in zip(fallen, base):
                served[i] = text
        scorer = get_scorer(records[name].scorer)
        hits = sum(p == name for p in pick)
        right += hits
        experts[name] = {"accuracy": accuracy(scorer, rows[name], served),
                         "routed_accuracy": accuracy(scorer, rows[name], routed),
                         "routing": round(100 * hits / n, 4), "fallback": round(100 * len(fallen) / n, 4), "n": n,
                         "confusion": {e: pick.count(e) for e in dict.fromkeys(pick)}}
    routing = round(100 * right / max(1, len(every)), 4)
    return Measured(experts, routing, model.threshold, target_frr if target_frr is not None else 0.0)


def gain(model: RoutedModel, name: str, rows: Sequence[Sample], record: ExpertRecord) -> dict:
    """Expert `name` answering its own held-out `rows` itself, against the base model on the same rows:
    {"expert", "base"} accuracy in %."""
    queries, scorer = [s.query for s in rows], get_scorer(record.scorer)
    own = model.answer_queries(queries, record.max_new_tokens, [name] * len(rows)).texts
    base = model.answer_queries(queries, record.max_new_tokens, [BASE] * len(rows)).texts
    return {"expert": accuracy(scorer, rows, own), "base": accuracy(scorer, rows, base)}


def accuracy(scorer, rows: Sequence[Sample], texts: Sequence[str]) -> float:
    """% of `rows` that `scorer` (a scorer object) judges `texts` right on."""
    return round(100 * sum(float(scorer.judge(s.row, t)) for s, t in zip(rows, texts)) / len(rows), 4)


@dataclass(frozen=True)
class Verdict:
    """The gate's decision: `passed`, one line per failed check, and every comparison made."""

    passed: bool
    failures: list[str]
    checks: list[dict] = field(default_factory=list)
    max_drop: float = GateSettings.max_drop
    min_routing: float = GateSettings.min_routing
    min_gain: float = GateSettings.min_gain

    def to_dict(self) -> dict:
        return asdict(self)


def verdict(recorded: Mapping[str, float], measured: Measured, max_drop: float = GateSettings.max_drop,
            min_routing: float = GateSettings.min_routing, gains: Mapping[str, dict] | None = None,
            min_gain: float = GateSettings.min_gain) -> Verdict:
    """Every expert with a recorded routed accuracy keeps it within `max_drop` points; overall routing of the
    held-out rows stays at `min_routing` % or more; each added expert in `gains` (`gain`) answers its own rows
    at least `min_gain` points better than the base model.

    The gate compares the accuracy with the router's pick, not the served accuracy: the fallback sends a
    calibrated share (the target false-reject rate) of each expert's rows to the base model in every
    version, but which rows, among many of equal confidence, moves with each refit, so the served accuracy
    of an expert that the change does not touch can move by a few points (say from 99 to 97 after another
    expert is added, with routing unchanged at 100%)."""
    failures, checks = [], []
    for name, before in recorded.items():
        if name not in measured.experts:
            continue
        after = measured.experts[name]["routed_accuracy"]
        drop = round(before - after, 4)
        ok = drop <= max_drop + 1e-9
        checks.append({"expert": name, "recorded": before, "candidate": after, "drop": drop, "passed": ok})
        if not ok:
            failures.append(f"{name}: held-out accuracy (routed) {before:.2f} -> {after:.2f} (drop {drop:.2f} > "
                            f"{max_drop:.2f} points)")
    for name, scores in (gains or {}).items():
        better = round(scores["expert"] - scores["base"], 4)
        ok = better >= min_gain - 1e-9
        checks.append({"expert": name, **scores, "gain": better, "min_gain": min_gain, "passed": ok})
        if not ok:
            failures.append(f"{name}: held-out accuracy {scores['expert']:.2f} against the base model's "
                            f"{scores['base']:.2f} (gain {better:.2f} < {min_gain:.2f} points)")
    ok = measured.routing >= min_routing - 1e-9
    checks.append({"routing": measured.routing, "min_routing": min_routing, "passed": ok})
    if not ok:
        worst = sorted(measured.experts.items(), key=lambda kv: kv[1]["routing"])[:2]
        detail = ", ".join(f"{name} {m['routing']:.2f}%" for name, m in worst)
        failures.append(f"routing: {measured.routing:.2f}% of held-out rows reach their own expert < {min_routing:.2f}% "
                        f"(lowest: {detail})")
    return Verdict(not failures, failures, checks, max_drop, min_routing, min_gain)


__all__ = ["Measured", "Verdict", "accuracy", "gain", "measure", "verdict"]
