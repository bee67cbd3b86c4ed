"""The configuration of a continual-learning run: typed, validated settings (pydantic), filled from the
defaults, then a YAML file (or a shipped profile), then `section.key=value` overrides from the command line.

    setting: dcl              # dcl (RS, Med, AD, Sci, Fin) or acl (OCR, Math, VP, APP)
    methods: [zero-shot, seq-lora, mr-lora, oracle]
    train: {epochs: 1, batch_size: 8, lr: 0.003}
    router: {kind: prototype, k: 20}
    ewc: {lambda: 5000}       # a method's own block, declared in the methods' catalog

Every settings block is a `Settings` model whose field docstrings are its help text (`mllmcl ls` prints
them). The run's own sections are declared here, the engine's (`train`, `lora`) in engine/settings.py; each
method and each router declares its block in its catalog (cl/methods/catalog.py, cl/routing/catalog.py): a
method's block is a top-level section named after the method (`ewc.lambda`), a router's fields join the
`router` section (`router.shrinkage`). Everything is checked when the configuration loads — unknown keys,
bad values, unknown methods and routers — so a typo fails in a second, before anything is trained (or
torch is imported), with one line naming the key. The resolved configuration is written next to the results
(`config.yaml`).
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from mllmcl.cl.methods.catalog import METHODS, check_methods
from mllmcl.cl.routing.catalog import ROUTERS
from mllmcl.core.errors import UserError
from mllmcl.core.settings import Settings
from mllmcl.engine.settings import LoraRecipe, TrainConfig
from mllmcl.models.catalog import check_backbone

DEFAULT_METHODS = ("zero-shot", "seq-lora", "mr-lora", "oracle")
PROFILES = "configs"  # package folder of shipped configurations: `--config NAME` finds NAME.yaml there


def _names(value: Any) -> Any:
    """`"a,b"` → `("a", "b")`: lists may be written comma-separated on the command line."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


class DataConfig(Settings):
    """Where the tasks come from, and in which order they are learned."""

    benchmark: str = "synth"
    """"synth" (the synthetic benchmark, generated offline and cached) or the path of an MLLM-CL data root"""
    tasks: tuple[str, ...] = ()
    """a subset of the tasks, e.g. [RS, Med]; empty = every task"""
    order: str = ""
    """training order: empty = the benchmark's; a permutation (Fin,Sci,AD,Med,RS); or random:<k>, the k-th
    seeded permutation (random:0 is the benchmark's own order)"""
    seed: int | None = None
    """what is drawn: synthetic items, router and replay buffers (default: the run's `seed`)"""
    train: int = Field(1500, ge=1)
    """synth only: training items per task"""
    test: int = Field(200, ge=1)
    """synth only: test items per task"""
    val: int = Field(100, ge=0)
    """synth only: validation items per task (the split to tune on; see eval.split)"""
    unseen: int | None = Field(None, ge=0)
    """synth only: test items of a held-out domain no method trains on, for open-world checks (default: 100
    for dcl, 0 for acl, which has none)"""
    overlap: float | None = Field(None, ge=0.0, le=1.0)
    """synth only: share of items asked with question templates shared by all tasks, so that only the image
    tells the task (default: 1 for dcl; acl has none); the rest are asked in each task's own words"""
    visual_overlap: float = Field(0.0, ge=0.0, le=1.0)
    """synth only: share of items whose background and palette come from a pool shared by all tasks"""
    skill: float | None = Field(None, ge=0.0, le=1.0)
    """synth only: share of items asking a skill common to all domains, with one rule everywhere (a marker
    badge over the domain's image), which later tasks train again (default: 0.5 for dcl, chosen on the
    validation split; acl has none)"""
    cache: str = "runs/data"
    """synth only: where generated datasets are kept (reused across runs)"""
    train_limit: int = Field(0, ge=0)
    """use at most this many training rows per task (0 = all; for quick trials)"""
    test_limit: int = Field(0, ge=0)
    """evaluate at most this many rows per task (0 = all)"""

    _split = field_validator("tasks", mode="before")(_names)

    @field_validator("order")
    @classmethod
    def _order(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("random:"):
            if not re.fullmatch(r"random:\d+", value):
                raise ValueError(f"random:<k> needs a non-negative integer k, got {value!r}")
            return value
        names = _names(value)
        if len(set(names)) != len(names):
            raise ValueError(f"a task is listed twice in {value!r}")
        return ",".join(names)


class EvalConfig(Settings):
    """How answers are generated and scored."""

    batch_size: int = Field(64, ge=1)
    """samples per generation batch"""
    max_new_tokens: int = Field(32, ge=1)
    """cap on each task's own answer length (Math allows 2048; short answers stop early)"""
    split: Literal["test", "val"] = "test"
    """the split every evaluation reads: tune recipes and thresholds on val, report test"""


class ModelConfig(Settings):
    """How the backbone loads: passed to transformers as they are (models/hf.py)."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """weights' dtype (auto: float32 on a CPU, bfloat16 on a GPU)"""
    attention: Literal["", "eager", "sdpa", "flash_attention_2"] = ""
    """attention implementation (empty: transformers' default for the model)"""
    device_map: Literal["", "auto"] = ""
    """empty: the whole model on this process's device; auto: spread over the visible GPUs (one process)"""
    min_pixels: int | None = Field(None, ge=1)
    """dynamic-resolution families (Qwen-VL): the fewest pixels an image is resized to (empty: the checkpoint's)"""
    max_pixels: int | None = Field(None, ge=1)
    """dynamic-resolution families (Qwen-VL): the most pixels, which bounds the image tokens per sample"""

    def load_options(self) -> dict:
        """Keyword arguments of `load_backbone` (models/load.py)."""
        pixels = {k: v for k, v in (("min_pixels", self.min_pixels), ("max_pixels", self.max_pixels)) if v}
        return {"dtype": None if self.dtype == "auto" else self.dtype, "attention": self.attention or None,
                "device_map": self.device_map or None, "processor_options": pixels}


class RouterConfig(Settings):
    """MR-LoRA's router: which one, what it learns from. The fields of every router's own block
    (cl/routing/catalog.py) join this section, e.g. `router.shrinkage` (prototype) or `router.lr` (mllm)."""

    model_config = ConfigDict(extra="allow", frozen=True, use_attribute_docstrings=True)
    kind: str = "prototype"
    """prototype (training-free; the default on the tiny backbone), mllm (router LoRA, the paper's), oracle
    (the true task)"""
    k: int | None = Field(None, ge=1)
    """router-buffer samples per task (default: the router's own: mllm 20, as the release's router files;
    prototype 200, training rows adding to the router file's, since a mean of 20 is a noisy prototype)"""

    @model_validator(mode="before")
    @classmethod
    def _router_blocks(cls, values: Any) -> Any:
        if not isinstance(values, Mapping):
            return values
        own = {k: v for k, v in values.items() if k in cls.model_fields}
        given = {k: v for k, v in values.items() if k not in cls.model_fields}
        for block in ROUTERS.settings().values():
            fields = {k: given.pop(k) for k in list(given) if k in _keys(block)}
            own.update(_validate(block, fields, "router").model_dump(by_alias=True))
        if given:
            raise _unknown(f"router.{sorted(given)[0]}", cls.model_fields.keys() | router_keys())
        return own


class RunConfig(Settings):
    """One continual-learning run (see docs/results.md for what it writes). Besides these sections, each
    method that declares settings has its own block, named after it (`replay`, `ewc`, `o-lora`, …)."""

    model_config = ConfigDict(extra="allow", frozen=True, use_attribute_docstrings=True)
    setting: str = "dcl"
    """dcl or acl; a data root's own manifest may name another"""
    methods: tuple[str, ...] = DEFAULT_METHODS
    """in order; `mllmcl ls` lists them (mr-lora[router] picks a router, name+replay adds replay)"""
    backbone: str = "tiny"
    """tiny, or hf:<path> of a checkpoint saved by transformers (docs/engine.md, "Model families")"""
    model: ModelConfig = ModelConfig()
    seed: int = 0
    """default of data.seed (what is drawn) and train.seed (inits, data order)"""
    threads: int = Field(0, ge=0)
    """CPU threads for torch in each process (0 = the cores shared among the jobs; one process alone gets
    torch's default, one per core); results are bit-identical for the same thread count (docs/results.md)"""
    jobs: int = Field(0, ge=0)
    """processes running the independent parts of a run at once: each method, and each MR-LoRA expert
    (0 = one per CPU core, as many as there are parts to run at once; 1 on a GPU; 1 = all in this process).
    Every part runs in a fresh process: the results are those of one process at the same `threads`
    (docs/engine.md, "Parallel jobs")"""
    data: DataConfig = DataConfig()
    # The run's recipe (the engine's defaults are for one expert on its own): the few-minute default, chosen on
    # the validation split (docs/methods.md, "The default recipe"); `--config full` is the slower recipe with
    # stronger experts. A block the user gives in part is filled from these, not from the engine's defaults.
    train: TrainConfig = TrainConfig(epochs=1.0, batch_size=8, lr=3e-3)
    lora: LoraRecipe = LoraRecipe(rank=16, alpha=32.0, vision=False)
    router: RouterConfig = Field(default_factory=RouterConfig)
    eval: EvalConfig = EvalConfig()

    _split = field_validator("methods", mode="before")(_names)

    @model_validator(mode="before")
    @classmethod
    def _seeds_and_blocks(cls, values: Any) -> Any:
        if not isinstance(values, Mapping):
            return values
        values = dict(values)
        seed = values.get("seed", 0)
        for section in ("data", "train"):  # `seed` is the default of data.seed and train.seed
            block = values.get(section)
            if block is None:
                values[section] = {"seed": seed}
            elif isinstance(block, Mapping) and block.get("seed") is None:
                values[section] = {**block, "seed": seed}
        for section in ("train", "lora"):  # the run's recipe (these fields' defaults) under what the user gave
            block = values.get(section)
            if block is None or isinstance(block, Mapping):
                values[section] = {**asdict(cls.model_fields[section].default), **(block or {})}
        blocks = METHODS.settings()
        for key in [k for k in values if k not in cls.model_fields]:
            if key not in blocks:
                raise _unknown(str(key), cls.model_fields.keys() | blocks.keys())
            values[key] = _validate(blocks[key], values[key] if values[key] is not None else {}, str(key))
        for key, block in blocks.items():
            values.setdefault(key, block())
        return values

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        if not self.setting:
            raise ValueError("config key 'setting': must not be empty")
        if self.data.benchmark == "synth" and self.setting not in ("dcl", "acl"):
            raise ValueError(f"config key 'setting': the synthetic benchmark has dcl and acl, got {self.setting!r}")
        if not self.methods:
            raise ValueError("config key 'methods': name at least one method")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"config key 'methods': a method is listed twice in {list(self.methods)}")
        for key, check in (("router.kind", lambda: ROUTERS.get(self.router.kind)),
                           ("methods", lambda: check_methods(self)),
                           ("backbone", lambda: check_backbone(self.backbone))):
            try:
                check()
            except UserError as err:
                raise ValueError(f"config key {key!r}: {err}") from None
        return self

    def block(self, name: str) -> Settings:
        """The settings block of method `name` (e.g. "ewc", "o-lora", "replay")."""
        try:
            return self.model_extra[name]
        except KeyError:
            raise KeyError(f"no settings block {name!r}; blocks: {sorted(self.model_extra)}") from None


# --- the blocks declared by methods and routers ---------------------------------------------------------

def _keys(block: type[Settings]) -> set[str]:
    return {f.alias or name for name, f in block.model_fields.items()}


def router_keys() -> set[str]:
    return set().union(*map(_keys, ROUTERS.settings().values()))


def _unknown(key: str, known) -> ValueError:
    return ValueError(f"unknown config key {key!r}; known there: {', '.join(sorted(known))}")


def _validate(block: type[Settings], values: Any, section: str) -> Settings:
    """`values` as the settings block `block` of `section`, a problem named with its full key."""
    try:
        return block.model_validate(values)
    except ValidationError as err:
        raise ValueError(_describe(err, section, block)) from None


# --- loading --------------------------------------------------------------------------------------------

def _nest(key: str, value: Any) -> dict:
    head, _, rest = key.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _merge(into: dict, extra: Mapping) -> dict:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), Mapping):
            into[key] = _merge(dict(into[key]), value)
        else:
            into[key] = value
    return into


def parse_overrides(items: Sequence[str]) -> dict:
    """`["train.epochs=1", "methods=seq-lora,mr-lora"]` → nested dict; values are read as YAML scalars."""
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise UserError(f"override {item!r}: expected key=value, e.g. train.epochs=1")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        _merge(out, _nest(key.strip(), value))
    return out


def profile_path(name: str) -> Path | None:
    """The shipped configuration `name` (`mllmcl ls` lists them), or None."""
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        return None
    path = Path(str(resources.files("mllmcl").joinpath(PROFILES, f"{name}.yaml")))
    return path if path.is_file() else None


def profiles() -> dict[str, str]:
    """Shipped configuration name → its first comment line."""
    folder = Path(str(resources.files("mllmcl").joinpath(PROFILES)))
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        out[path.stem] = first.lstrip("# ").strip()
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from `path`, or from the shipped profile of that name when no such file exists."""
    path = Path(path)
    if not path.exists() and path.suffix not in (".yaml", ".yml") and profile_path(str(path)):
        path = profile_path(str(path))
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found (shipped profiles: {', '.join(profiles())})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the config file ({err})") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config file must be a mapping of keys, got {type(data).__name__}")
    return data


def build_config(values: Mapping) -> RunConfig:
    """A validated `RunConfig` from plain nested data; any problem is one UserError naming the key."""
    try:
        return RunConfig.model_validate(dict(values))
    except ValidationError as err:
        raise UserError(_describe(err)) from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] | Mapping = ()) -> RunConfig:
    """Defaults → YAML file `path` (or shipped profile name) → overrides (`key=value` strings or a mapping)."""
    values = read_yaml(path) if path else {}
    extra = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    try:
        return build_config(_merge(values, extra))
    except UserError as err:
        raise UserError(f"{path}: {err}" if path else str(err)) from None


def _describe(err: ValidationError, section: str = "", model: type | None = None) -> str:
    """The first problem of a pydantic error as one line naming the key: `config key 'train.lr': …`."""
    first = err.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"] if not str(part).startswith(("function-", "tagged-union"))]
    key = ".".join([section, *loc] if section else loc)
    message = first["msg"].removeprefix("Value error, ")
    if message.startswith(("config key ", "unknown config key ")):  # already names its key (a nested block)
        return message
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        known = _known(model or RunConfig, loc[:-1])
        return f"unknown config key {key!r}" + (f"; known there: {', '.join(sorted(known))}" if known else "")
    shown = repr(first.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    where = f"config key {key!r}" if key else "config"
    return f"{where}: {message}" + (f", got {shown}" if "input" in first and first["type"] != "value_error" else "")


def _known(model: type, path: Sequence[str]) -> set[str]:
    """The keys a user may write at `path` inside `model` (empty if the path leads nowhere known)."""
    for part in path:
        fields = getattr(model, "model_fields", None) or getattr(model, "__pydantic_fields__", {})
        if part not in fields:
            return set()
        model = fields[part].annotation
    fields = getattr(model, "model_fields", None) or getattr(model, "__pydantic_fields__", None)
    if fields is None:
        return set()
    known = {f.alias or name for name, f in fields.items()}
    return known | (router_keys() if model is RouterConfig else set())


def to_dict(config: RunConfig) -> dict:
    """Plain data (lists, not tuples; block keys as users write them) for YAML and JSON."""
    return config.model_dump(mode="json", by_alias=True)


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def resolve_order(order: str, names: Sequence[str]) -> list[str]:
    """The training order of the tasks `names` (benchmark order) under `data.order`. `random:k` is the k-th
    of a fixed seeded stream of distinct permutations that starts with the benchmark's own order (k = 0), so
    the first N orders of a sweep are N different orders (cycling once all n! are used)."""
    names = list(names)
    if not order:
        return names
    if order.startswith("random:"):
        k = int(order.split(":", 1)[1]) % math.factorial(len(names))
        stream, rng = [names], random.Random("mllmcl-order")
        while len(stream) <= k:
            candidate = list(names)
            rng.shuffle(candidate)
            if candidate not in stream:
                stream.append(candidate)
        return stream[k]
    wanted = order.split(",")
    if sorted(wanted) != sorted(names):
        raise UserError(f"config key 'data.order': {order!r} is not an order of the run's tasks "
                        f"{', '.join(names)}")
    return wanted


def cells(config: RunConfig, orders: int, seeds: int) -> list[tuple[str, RunConfig]]:
    """The runs of a sweep (`mllmcl sweep`, run/sweep.py): (folder name, configuration) of every cell — seeds
    `config.seed` … `config.seed + seeds - 1`, orders random:0 … random:orders-1."""
    if orders < 1 or seeds < 1:
        raise UserError(f"sweep: --orders and --seeds must be at least 1, got {orders} and {seeds}")
    if orders > 1 and config.data.order:
        raise UserError(f"sweep: data.order is {config.data.order!r}; --orders {orders} sets the order of each cell, "
                        "so leave data.order unset (or use --orders 1)")
    base = to_dict(config)
    out = []
    for seed in range(config.seed, config.seed + seeds):
        for k in range(orders):
            values = {**base, "seed": seed, "data": {**base["data"], "seed": seed},
                      "train": {**base["train"], "seed": seed}}
            if orders > 1:
                values["data"]["order"] = f"random:{k}"
            out.append((f"s{seed}-o{k}", build_config(values)))
    return out
