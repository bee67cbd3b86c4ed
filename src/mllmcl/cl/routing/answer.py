"""Route, then answer: the one step that MR-LoRA's evaluation (`methods/mr_lora.py`) and serving
(`serve/routed.py`) share, so that a served answer is the answer the benchmark scored.

    router.route(queries)            one pass: per query an expert and a confidence
    confidence < threshold  → base   the open-world fallback: one threshold, or one per expert (a query is
                                     held to its chosen expert's); off when None
    forced[i]                        a caller may name the expert (or "base") of a query: no routing for it
    generate_detailed(..., adapters) batched generation, one adapter per query (the base model's queries
                                     in a call of their own: its answers run long); answers already in the
                                     caller's memo are not generated again

The router's experts are given by name, in the order it was fitted; `adapters[i]` is the adapter of
expert `names[i]` on the context's backbone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, MutableMapping, Sequence, Union

from mllmcl.cl.context import Context
from mllmcl.cl.routing.router import Router
from mllmcl.data.records import Query
from mllmcl.engine.generate import Generation, generate_detailed

BASE = "base"
"""The name under which the base model (no adapter) answers: the fallback, or what a caller asks for."""

Threshold = Union[float, Mapping[str, float], None]
"""The fallback threshold: one for every expert, one per expert name (an expert without one never falls
back), or None (no fallback)."""


def threshold_of(threshold: Threshold, expert: str) -> float | None:
    if threshold is None or isinstance(threshold, (int, float)):
        return threshold
    return threshold.get(expert)


@dataclass(frozen=True)
class RoutedAnswers:
    """Answers to some queries: `texts[i]` answers query i, `experts[i]` names the expert that produced it
    (`"base"` for the base model), `confidence[i]` is the router's confidence in its choice (1.0 where the
    caller named the expert), `routed[i]` is the router's own pick before the fallback (what routing accuracy
    counts), `generations[i]` adds token counts and how the answer ended."""

    texts: list[str]
    experts: list[str]
    confidence: list[float]
    routed: list[str]
    generations: list[Generation]


def choose(router: Router, queries: Sequence[Query], names: Sequence[str], threshold: Threshold = None,
           forced: Sequence[str | None] | None = None) -> tuple[list[str], list[float], list[str]]:
    """Per query the name of the expert that answers it (or `BASE`), the router's confidence, and the
    router's own pick before the fallback. Queries with a `forced` name are not routed; the others are, in
    one pass."""
    forced = list(forced) if forced is not None else [None] * len(queries)
    if len(forced) != len(queries):
        raise ValueError(f"{len(forced)} forced names for {len(queries)} queries")
    chosen: list[str] = [name or "" for name in forced]
    confidence = [1.0] * len(queries)
    picked = list(chosen)
    routed = [i for i, name in enumerate(forced) if name is None]
    if routed:
        decision = router.route([queries[i] for i in routed])
        for i, expert, conf in zip(routed, decision.experts, decision.confidence):
            limit = threshold_of(threshold, names[expert])
            below = limit is not None and conf < limit
            picked[i] = names[expert]
            chosen[i], confidence[i] = (BASE if below else names[expert]), float(conf)
    return chosen, confidence, picked


Memo = MutableMapping[tuple, Generation]
"""Answers already generated, kept by a caller across calls: `(adapter, query, token limit) → Generation`."""


def route_and_answer(ctx: Context, router: Router, queries: Sequence[Query], names: Sequence[str],
                     adapters: Sequence[str], max_new_tokens: int | Sequence[int], threshold: Threshold = None,
                     forced: Sequence[str | None] | None = None, memo: Memo | None = None) -> RoutedAnswers:
    """Route `queries` among the experts `names` (adapter `adapters[i]` each) and answer each with its chosen
    expert, greedily, in batches of `eval.batch_size` where every query carries its own adapter.

    `memo` is for adapters that never change (MR-LoRA's trained experts, the base model): an answer found
    there is reused, one generated is added. A run's evaluation passes one, so that an expert answers a test
    query once, not again at every later step; a server passes none."""
    adapter_of = dict(zip(names, adapters))
    experts, confidence, picked = choose(router, queries, names, threshold, forced)
    limits = [max_new_tokens] * len(queries) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    adapter = [None if e == BASE else adapter_of[e] for e in experts]
    keys = list(zip(adapter, queries, limits))  # hashed only with a memo: a served query may hold a PIL image
    generations: list = [memo.get(key) for key in keys] if memo is not None else [None] * len(queries)
    # the queries the base model answers are generated in a call of their own: batches of adapter rows only
    # take the stacked path (engine/mixed.py)
    todo = [i for i, g in enumerate(generations) if g is None]
    groups = [[i for i in todo if adapter[i] is not None], [i for i in todo if adapter[i] is None]]
    for rows in (g for g in groups if g):
        done = generate_detailed(ctx.backbone, [queries[i].image for i in rows], [queries[i].question for i in rows],
                                 adapters=[adapter[i] for i in rows], max_new_tokens=[limits[i] for i in rows],
                                 batch_size=ctx.config.eval.batch_size, processes=ctx.processes)
        for i, generation in zip(rows, done):
            generations[i] = generation
            if memo is not None:
                memo[keys[i]] = generation
    return RoutedAnswers([g.text for g in generations], experts, confidence, picked, generations)


__all__ = ["BASE", "Memo", "RoutedAnswers", "Threshold", "choose", "route_and_answer", "threshold_of"]
