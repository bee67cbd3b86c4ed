"""Route, then answer: the one step that MR-LoRA's evaluation (`methods/mr_lora.py`) and serving
(`serve/routed.py`) share, so that a served answer is the answer the benchmark scored.

    router.route(samples)            one pass: per sample an expert and a confidence
    confidence < threshold  → base   the open-world fallback: one threshold, or one per expert (a sample is
                                     held to its chosen expert's); off when None
    forced[i]                        a caller may name the expert (or "base") of a sample: no routing for it
    generate_detailed(..., adapters) batched generation, one adapter per sample (the base model's samples
                                     in a call of their own: its answers run long); answers already in the
                                     caller's memo are not generated again

The router's experts are given by name, in the order it was fitted; `adapters[i]` is the adapter of
expert `names[i]` on the context's backbone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, MutableMapping, Sequence, Union

from mllmcl.data.mllm_cl import Sample
from mllmcl.engine import Generation, generate_detailed

if TYPE_CHECKING:
    from mllmcl.context import Context
    from mllmcl.routing import Router

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
    """Answers to some samples: `texts[i]` answers sample i, `experts[i]` names the expert that produced it
    (`"base"` for the base model), `confidence[i]` is the router's confidence in its choice (1.0 where the
    caller named the expert), `routed[i]` is the router's own pick before the fallback (what routing accuracy
    counts), `generations[i]` adds token counts and how the answer ended."""

    texts: list[str]
    experts: list[str]
    confidence: list[float]
    routed: list[str]
    generations: list[Generation]


def choose(router: "Router", samples: Sequence[Sample], names: Sequence[str], threshold: Threshold = None,
           forced: Sequence[str | None] | None = None) -> tuple[list[str], list[float], list[str]]:
    """Per sample the name of the expert that answers it (or `BASE`), the router's confidence, and the
    router's own pick before the fallback. Samples with a `forced` name are not routed; the others are, in
    one pass."""
    forced = list(forced) if forced is not None else [None] * len(samples)
    if len(forced) != len(samples):
        raise ValueError(f"{len(forced)} forced names for {len(samples)} samples")
    chosen: list[str] = [name or "" for name in forced]
    confidence = [1.0] * len(samples)
    picked = list(chosen)
    routed = [i for i, name in enumerate(forced) if name is None]
    if routed:
        decision = router.route([samples[i] for i in routed])
        for i, expert, conf in zip(routed, decision.experts, decision.confidence):
            limit = threshold_of(threshold, names[expert])
            below = limit is not None and conf < limit
            picked[i] = names[expert]
            chosen[i], confidence[i] = (BASE if below else names[expert]), float(conf)
    return chosen, confidence, picked


Memo = MutableMapping[tuple, Generation]
"""Answers already generated, kept by a caller across calls: `(adapter, sample, token limit) → Generation`."""


def route_and_answer(ctx: "Context", router: "Router", samples: Sequence[Sample], names: Sequence[str],
                     adapters: Sequence[str], max_new_tokens: int | Sequence[int], threshold: Threshold = None,
                     forced: Sequence[str | None] | None = None, memo: Memo | None = None) -> RoutedAnswers:
    """Route `samples` among the experts `names` (adapter `adapters[i]` each) and answer each with its chosen
    expert, greedily, in batches of `eval.batch_size` where every sample carries its own adapter.

    `memo` is for adapters that never change (MR-LoRA's trained experts, the base model): an answer found
    there is reused, one generated is added. A run's evaluation passes one, so that an expert answers a test
    sample once, not again at every later step; a server passes none."""
    adapter_of = dict(zip(names, adapters))
    experts, confidence, picked = choose(router, samples, names, threshold, forced)
    limits = [max_new_tokens] * len(samples) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    adapter = [None if e == BASE else adapter_of[e] for e in experts]
    keys = list(zip(adapter, samples, limits))  # hashed only with a memo: a served sample may hold a PIL image
    generations: list = [memo.get(key) for key in keys] if memo is not None else [None] * len(samples)
    # a batch decodes until its longest answer, and the base model's answers run long where the experts' stop
    # after a word: the samples the base model answers are generated in a call of their own
    todo = [i for i, g in enumerate(generations) if g is None]
    groups = [[i for i in todo if adapter[i] is not None], [i for i in todo if adapter[i] is None]]
    for rows in (g for g in groups if g):
        done = generate_detailed(ctx.backbone, [samples[i].image for i in rows], [samples[i].question for i in rows],
                                 adapters=[adapter[i] for i in rows], max_new_tokens=[limits[i] for i in rows],
                                 batch_size=ctx.config.eval.batch_size, processes=ctx.processes)
        for i, generation in zip(rows, done):
            generations[i] = generation
            if memo is not None:
                memo[keys[i]] = generation
    return RoutedAnswers([g.text for g in generations], experts, confidence, picked, generations)


__all__ = ["BASE", "Memo", "RoutedAnswers", "Threshold", "choose", "route_and_answer", "threshold_of"]
