"""Routers benchmark: can each router tell the synthetic DCL tasks apart as their questions stop telling?

At each `data.overlap` level (the share of items asked with the generic questions shared by all five
domains; visual_overlap 0, so the images still differ), every router variant is fitted on its own router
buffers (`router.k` unset: 200 training items per task for the prototype router, 20 for the MLLM router)
and routes the validation split (or the test split) of all five tasks. At overlap 1 the question tells a
task only through the domain's mix of answer formats. Variants:

- `prototype`: the default prototype router, layer-2 image tokens pooled on a 3 x 3 grid;
- `prototype[text]`: question-token input embeddings, one mean;
- `prototype[all]`: every prompt token's input embedding, image tokens included, one mean;
- `prototype[mean-image]`: input-layer image tokens, one mean;
- `mllm`: the MLLM router (a router LoRA reading image and prompt), 20 samples per task as the release;
- `mllm[vision]`, `mllm[k200]`: a LoRA on the vision tower too; 200 samples per task for 3 epochs;
- any router with settings of its own, `kind[key=value,…]` over the `router` block, e.g.
  `mllm[epochs=24,lr=5e-3]`: what a choice of defaults on the validation split compares.
"""
from __future__ import annotations

import re
import tempfile
import time
from typing import Sequence

import yaml

from mllmcl.cl.config import load_config
from mllmcl.cl.context import Context
from mllmcl.cl.routing.build import build_router
from mllmcl.cl.routing.router import expert_of
from mllmcl.core.errors import UserError
from mllmcl.models.load import load_backbone
from mllmcl.run.benchmark import prepare_benchmark

VARIANTS: dict[str, dict] = {
    "prototype": {"kind": "prototype"},
    "prototype[text]": {"kind": "prototype", "tokens": "text", "layer": 0, "grid": 1},
    "prototype[all]": {"kind": "prototype", "tokens": "all", "layer": 0, "grid": 1},
    "prototype[mean-image]": {"kind": "prototype", "tokens": "image", "layer": 0, "grid": 1},
    "mllm": {"kind": "mllm"},
    "mllm[vision]": {"kind": "mllm", "vision": True},
    "mllm[k200]": {"kind": "mllm", "k": 200, "epochs": 3},
}


def variant(name: str) -> dict:
    """The `router` block of a variant: a named one, or `kind[key=value,…]` (values read as YAML scalars)."""
    if name in VARIANTS:
        return VARIANTS[name]
    match = re.fullmatch(r"([a-z]+)\[(.+)\]", name)
    if match is None or not all("=" in item for item in match[2].split(",")):
        raise UserError(f"--routers: unknown variant {name!r}; known: {', '.join(VARIANTS)}, or kind[key=value,…]")
    settings = {k.strip(): yaml.safe_load(v) for k, v in (item.split("=", 1) for item in match[2].split(","))}
    return {"kind": match[1], **settings}


def split_routers(routers: str) -> list[str]:
    """`a,b[x=1,y=2],c` → the variants, commas inside brackets kept."""
    return [r.strip() for r in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", routers) if r.strip()]


def run_routers_bench(overlaps: Sequence[float], seed: int, cache: str, split: str, routers: str | None,
                      train: int, skill: float | None = None) -> dict:
    names = split_routers(routers) if routers else list(VARIANTS)
    blocks = {name: variant(name) for name in names}
    backbone = load_backbone("tiny")
    report: dict = {"split": split, "seed": seed, "skill": skill, "overlaps": list(overlaps), "routers": {}}
    with tempfile.TemporaryDirectory() as folder:
        for overlap in overlaps:
            data = {"overlap": overlap, "train": train, "test": 100 if split == "test" else 1, "val": 100,
                    "unseen": 0, "seed": seed, "cache": cache, "skill": skill}
            for name in names:
                config = load_config(None, {"data": data, "seed": seed, "router": blocks[name]})
                bench = prepare_benchmark(config, progress=False)
                ctx = Context(backbone, bench, config, folder, progress=False)
                rows = [s for task in bench.tasks for s in (task.val if split == "val" else task.test)]
                router = build_router(blocks[name]["kind"], ctx)
                start = time.perf_counter()
                router.fit([expert_of(ctx, task, router.kind) for task in bench.tasks])
                fitted = time.perf_counter() - start
                chosen = router.route([s.query for s in rows]).experts
                right = sum(bench.tasks[c].name == s.task for c, s in zip(chosen, rows))
                per_task = {t.name: round(100 * sum(bench.tasks[c].name == s.task for c, s in zip(chosen, rows)
                                                    if s.task == t.name) / sum(s.task == t.name for s in rows), 2)
                            for t in bench.tasks}
                report["routers"].setdefault(name, {})[str(overlap)] = {
                    "accuracy": round(100 * right / len(rows), 2), "per_task": per_task,
                    "fit_seconds": round(fitted, 1), "samples": len(rows)}
    return report


def print_routers_report(report: dict) -> None:
    overlaps = [str(o) for o in report["overlaps"]]
    skill = "default" if report["skill"] is None else report["skill"]
    print(f"routing accuracy (%) on the {report['split']} split of the five synthetic DCL tasks (chance 20.00), "
          f"seed {report['seed']}, visual_overlap 0, skill {skill}")
    print(f"   {'router':<18}" + "".join(f"{'overlap ' + o:>14}" for o in overlaps))
    for name, by_overlap in report["routers"].items():
        print(f"   {name:<18}" + "".join(f"{by_overlap[o]['accuracy']:>14.2f}" for o in overlaps))
    for name, by_overlap in report["routers"].items():
        for o in overlaps:
            print(f"   {name} at overlap {o}: per task {by_overlap[o]['per_task']} (fit {by_overlap[o]['fit_seconds']} s)")
