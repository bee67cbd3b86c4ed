"""`RoutedModel`: MR-LoRA as an inference API that needs no benchmark, no `Task` and no label — images and
questions in (as `Query`s), answers and the name of the expert that gave each out.

    model = RoutedModel.load("lib")           # an expert library (serve/library.py), or a finished run folder
    model.route(images, questions)             # -> Routes(experts=["RS", "base", …], confidence=[0.93, 0.01, …])
    model.answer(images, questions, max_new_tokens=32, model="auto")   # -> RoutedAnswers(texts, experts, …)

`model="auto"` routes each query (below its expert's calibrated threshold it goes to the base model), an expert's
name forces that expert, `"base"` the base model. Routing and answering are `routing/answer.py`'s
`route_and_answer`, the very step MR-LoRA's evaluation in a run calls.

The routers are built with a `Context` like in a run; serving has no benchmark, so it holds an empty one
(the routers only read the backbone and the configuration). A router that needs labels (the oracle: its
card in cl/routing/catalog.py says so) cannot serve: loading a library or run that uses one is refused. Experts are attached under names keyed by their
adapter's sha256, so a newer version loaded onto the same backbone reuses the adapters it shares with the
one it replaces (`RoutedModel.load(..., backbone=old.backbone)`, then `old.release(keep=new)`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from mllmcl.cl.config import RunConfig, build_config, load_config
from mllmcl.cl.context import Context, adapter_name
from mllmcl.cl.methods.catalog import parse_method_spec
from mllmcl.cl.methods.experts import ExpertPool
from mllmcl.cl.routing.answer import BASE, RoutedAnswers, Threshold, choose, route_and_answer
from mllmcl.cl.routing.build import build_router
from mllmcl.cl.routing.catalog import ROUTERS
from mllmcl.cl.routing.router import Router
from mllmcl.core.errors import UserError
from mllmcl.core.io import is_dir
from mllmcl.core.parallel import cpu_cores
from mllmcl.data.mllm_cl import Benchmark, load_layout
from mllmcl.data.records import ImageLike, Query, split_instruction
from mllmcl.data.tasks import BUILTIN, FORMAT_INSTRUCTIONS
from mllmcl.engine.adapters import delete_adapter, load_adapter
from mllmcl.models.backbone import Backbone
from mllmcl.models.load import load_backbone
from mllmcl.run.folder import RunFolder
from mllmcl.serve.library import ExpertRecord, Library

AUTO = "auto"


@dataclass(frozen=True)
class ServedExpert:
    """An expert as the routed model holds it: its name, description, the adapter's name on the backbone and
    the folder it was loaded from."""

    name: str
    description: str
    adapter: str
    folder: Path | None = None


@dataclass(frozen=True)
class Routes:
    """Per query the expert chosen (or "base": the fallback) and the router's confidence."""

    experts: list[str]
    confidence: list[float]


def as_queries(images: Sequence[ImageLike], questions: Sequence[str]) -> list[Query]:
    """What a router and the engine read of requests: each image and question, and the answer-format
    instruction the question carries."""
    if len(images) != len(questions):
        raise UserError(f"{len(images)} images for {len(questions)} questions")
    return [Query(str(i), image, question, split_instruction(question, FORMAT_INSTRUCTIONS)[1])
            for i, (image, question) in enumerate(zip(images, questions))]


def servable(kind: str, where: Path) -> None:
    """Refuse a router that reads labels (the oracle): a request carries none."""
    if ROUTERS.get(kind).needs_labels:
        raise UserError(f"{where}: its router {kind!r} reads the true task of each input, which a request does not "
                        "carry; it exists for evaluation only and cannot serve (use a run's mr-lora with the "
                        "prototype or mllm router)")


class RoutedModel:
    """A base backbone, its experts and a router (see the module docstring)."""

    def __init__(self, ctx: Context, router: Router, experts: Sequence[ServedExpert], threshold: Threshold,
                 source: Path, version: int | None = None):
        self.ctx = ctx
        self.router = router
        self.experts = list(experts)
        self.threshold = threshold
        self.source = Path(source)
        self.version = version

    # -- loading
    @classmethod
    def load(cls, path: str | Path, backbone: Backbone | None = None, version: int | None = None,
             fallback: bool = True, method: str = "mr-lora") -> "RoutedModel":
        """From an expert library (its current version, or `version`) or a finished run folder (its
        `method`'s experts and final router; a run has no calibrated threshold, so no fallback).
        `fallback=False` turns the library's threshold off."""
        path = Path(path)
        if Library.exists(path):
            return cls.from_library(Library(path), version, backbone, fallback)
        if (path / "results.json").is_file():
            return cls.from_run(path, method, backbone)
        raise UserError(f"{path}: neither an expert library (library.json) nor a run folder (results.json)")

    @classmethod
    def from_library(cls, library: Library, version: int | None = None, backbone: Backbone | None = None,
                     fallback: bool = True) -> "RoutedModel":
        if not library.current:
            raise UserError(f"{library.path}: the library has no version yet")
        manifest = library.version(version)
        try:
            config = build_config(manifest["config"])
        except UserError as err:
            raise UserError(f"{library.manifest_file(version)}: the version's run configuration: {err}") from None
        servable(manifest["router"]["kind"], library.path)
        records = [ExpertRecord.from_dict(e, library.path) for e in manifest["experts"]]
        ctx = library_context(library.path, config, backbone)
        experts = []
        for r in records:
            folder = library.path / r.path / "adapter"
            experts.append(ServedExpert(r.name, r.description, attach(ctx.backbone, r.name, folder, r.sha256), folder))
        router = build_router(manifest["router"]["kind"], ctx)
        if not router.load(library.path / manifest["router"]["state"]):
            raise UserError(f"{library.path / manifest['router']['state']}: no saved {manifest['router']['kind']} "
                            "router state")
        threshold = manifest.get("threshold") if fallback else None
        return cls(ctx, router, experts, threshold, library.path, manifest["version"])

    @classmethod
    def from_run(cls, run: str | Path, method: str = "mr-lora", backbone: Backbone | None = None) -> "RoutedModel":
        if not is_dir(run):
            raise UserError(f"{run}: no such run folder")
        folder = RunFolder(run)
        results = folder.load()
        methods = results.methods if results else {}
        entry = methods.get(method)
        if entry is None or entry.final is None or entry.routing is None:
            raise UserError(f"{folder.path}: no finished routed method {method!r} in results.json; finish the run "
                            f"with `mllmcl run --out {folder.path}` (methods there: {', '.join(methods) or 'none'})")
        config = load_config(folder.path / "config.yaml")
        spec = parse_method_spec(method)
        kind = spec.router or config.router.kind
        servable(kind, folder.path)
        ctx = library_context(folder.path, config, backbone)
        names = list(results.tasks)
        descriptions = run_descriptions(config)
        experts = []
        for name in names:
            saved = folder.experts(config.seed) / ExpertPool.adapter(name)
            experts.append(ServedExpert(name, descriptions.get(name, ""), attach(ctx.backbone, name, saved), saved))
        router = build_router(kind, ctx)
        state = folder.state(method, len(names))
        if not router.load(state):
            raise UserError(f"{state}: no saved router state; this run predates saved router states, export it "
                            "again after rerunning it")
        return cls(ctx, router, experts, None, folder.path)

    # -- what it serves
    @property
    def backbone(self) -> Backbone:
        return self.ctx.backbone

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.experts]

    def models(self) -> list[str]:
        """What a client may name: auto, base and every expert."""
        return [AUTO, BASE, *self.names]

    def check_model(self, model: str) -> None:
        if model not in self.models():
            raise UserError(f"unknown model {model!r}; this library serves: {', '.join(self.models())}")

    # -- inference
    def route(self, images: Sequence[ImageLike], questions: Sequence[str]) -> Routes:
        """Which expert (or "base") `answer(..., model="auto")` would use for each query, and the confidence."""
        experts, confidence, _ = choose(self.router, as_queries(images, questions), self.names, self.threshold)
        return Routes(experts, confidence)

    def route_queries(self, queries: Sequence[Query], models: Sequence[str]) -> Routes:
        """`route`, for queries that each name a model: "auto" is routed, an expert or "base" is kept (with
        confidence 1): what `answer_queries` would answer each with, without answering."""
        experts, confidence, _ = choose(self.router, queries, self.names, self.threshold, self._forced(models))
        return Routes(experts, confidence)

    def answer(self, images: Sequence[ImageLike], questions: Sequence[str], max_new_tokens: int | Sequence[int] = 32,
               model: str | Sequence[str] = AUTO) -> RoutedAnswers:
        """Greedy answers. `model`: "auto", "base" or an expert's name, for all queries or one per query."""
        models = [model] * len(questions) if isinstance(model, str) else list(model)
        return self.answer_queries(as_queries(images, questions), max_new_tokens, models)

    def answer_queries(self, queries: Sequence[Query], max_new_tokens: int | Sequence[int],
                       models: Sequence[str] | None = None) -> RoutedAnswers:
        models = list(models) if models is not None else [AUTO] * len(queries)
        return route_and_answer(self.ctx, self.router, queries, self.names, [e.adapter for e in self.experts],
                                max_new_tokens, self.threshold, self._forced(models))

    def _forced(self, models: Sequence[str]) -> list[str | None]:
        """Each query's forced expert or "base" (None: routed), every name checked first."""
        for model in set(models):
            self.check_model(model)
        return [None if m == AUTO else m for m in models]

    def release(self, keep: "RoutedModel | None" = None) -> None:
        """Detach this model's expert adapters that `keep` (the model replacing it) does not use."""
        used = {e.adapter for e in keep.experts} if keep is not None else set()
        for expert in self.experts:
            if expert.adapter not in used and expert.adapter in self.backbone.adapter_names:
                delete_adapter(self.backbone, expert.adapter)


def library_context(folder: Path, config: RunConfig, backbone: Backbone | None = None) -> Context:
    """A Context for routers and training outside a run: the configuration's backbone (or `backbone`) and an
    empty benchmark (nothing is drawn from one: experts bring their buffers)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    backbone = backbone or load_backbone(config.backbone, **config.model.load_options())
    if backbone.name != config.backbone:
        raise UserError(f"{folder}: its experts were trained on backbone {config.backbone!r}, not {backbone.name!r}")
    return Context(backbone, Benchmark(config.setting, Path(folder), ()), config, Path(folder), progress=False)


def use_threads(threads: int | None) -> None:
    """Torch's CPU threads for serving: None keeps what the loaded configuration set, 0 takes every core."""
    if threads is not None:
        torch.set_num_threads(threads or cpu_cores())


def attach(backbone: Backbone, name: str, folder: Path, sha256: str | None = None) -> str:
    """Load the adapter in `folder` onto `backbone` (once: an adapter of the same name and sha256 is reused);
    returns its name there."""
    adapter = adapter_name("expert", name, *([sha256[:12]] if sha256 else []))
    if adapter not in backbone.adapter_names:
        load_adapter(backbone, adapter, folder)
    return adapter


def run_descriptions(config: RunConfig) -> dict[str, str]:
    """Task name → description of a run's tasks, from their definitions (no data rows are read)."""
    if config.data.benchmark == "synth":
        return {s.name: s.description for s in BUILTIN.get(config.setting, ())}
    try:
        _, layout = load_layout(config.data.benchmark, config.setting)
    except UserError:
        return {}
    return {s.name: s.description for s in layout.specs}


__all__ = ["AUTO", "BASE", "RoutedModel", "Routes", "ServedExpert", "as_queries", "library_context", "servable",
           "use_threads"]
