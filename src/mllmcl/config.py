"""The configuration of a continual-learning run: strict dataclasses, filled from the defaults, then a YAML
file, then `section.key=value` overrides from the command line. An unknown key anywhere is an error that
names it, so a typo never silently runs the default.

    setting: dcl              # dcl (RS, Med, AD, Sci, Fin) or acl (OCR, Math, VP, APP)
    methods: [zero-shot, seq-lora, mr-lora, oracle]
    train: {epochs: 2, lr: 0.002}
    router: {kind: mllm, k: 20}

The resolved configuration is written next to the results (`config.yaml`); a run folder refuses to resume
under a different one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from mllmcl.engine.adapters import LoraRecipe
from mllmcl.engine.train import TrainConfig
from mllmcl.errors import UserError

DEFAULT_METHODS = ("zero-shot", "seq-lora", "mr-lora", "oracle")


@dataclass(frozen=True)
class DataConfig:
    """Where the tasks come from."""

    benchmark: str = "synth"     # "synth" (generated offline, cached) or the path of an MLLM-CL data root
    tasks: tuple[str, ...] = ()  # a subset in benchmark order, e.g. [RS, Med]; empty = every task
    train: int = 2000            # synth only: training items per task
    test: int = 300              # synth only: test items per task
    cache: str = "runs/data"     # synth only: where generated datasets are kept (reused across runs)
    train_limit: int = 0         # use at most this many training rows per task (0 = all; for quick trials)
    test_limit: int = 0          # evaluate at most this many test rows per task (0 = all)


@dataclass(frozen=True)
class EvalConfig:
    """How answers are generated and scored."""

    batch_size: int = 64         # samples per generation batch
    max_new_tokens: int = 32     # cap on each task's own answer length (Math allows 2048; short answers stop early)


@dataclass(frozen=True)
class RouterConfig:
    """MR-LoRA's router: which one, what it learns from, and how the MLLM router is trained."""

    kind: str = "prototype"      # prototype (training-free; the default: see docs/methods.md), mllm (router LoRA,
                                 # the paper's), oracle (true task)
    k: int = 20                  # router-buffer samples per task (the release's router files hold 20)
    describe: str = "short"      # expert descriptions in the router prompt: short (up to the first ':') or full
    epochs: float = 12.0         # MLLM router: passes over the buffer at each stage
    lr: float = 2e-3             # MLLM router learning rate
    batch_size: int = 4          # MLLM router: small batches, many steps (20 samples per task are few)
    rank: int = 8                # MLLM router's LoRA rank (alpha = 2 x rank)
    vision: bool = False         # MLLM router's LoRA also adapts the vision tower
    layer: int = 0               # prototype router: hidden layer pooled (0 = input embeddings, -1 = last)
    tokens: str = "text"         # prototype router: pool over text, image or all tokens
    shrinkage: float = 0.3       # prototype router: shared covariance shrunk this far toward a scaled identity


@dataclass(frozen=True)
class ReplayConfig:
    """The replay baseline's buffer."""

    k: int = 200                 # stored samples per past task, mixed into each new task's data
    source: str = "train"        # train: drawn from each task's training rows; file: the release's replay file


@dataclass(frozen=True)
class RunConfig:
    """One continual-learning run (see docs/results.md for what it writes)."""

    setting: str = "dcl"          # dcl or acl; a data root's own manifest may name another setting
    methods: tuple[str, ...] = DEFAULT_METHODS
    backbone: str = "tiny"       # tiny, or hf:<path> of a LLaVA checkpoint saved by transformers
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2.0, batch_size=32, lr=2e-3))
    lora: LoraRecipe = field(default_factory=LoraRecipe)
    router: RouterConfig = field(default_factory=RouterConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.data.benchmark == "synth" and self.setting not in ("dcl", "acl"):
            raise UserError(f"config key 'setting': the synthetic benchmark has dcl and acl, got {self.setting!r}")
        if not self.setting:
            raise UserError("config key 'setting': must not be empty")
        if not self.methods:
            raise UserError("config key 'methods': name at least one method")
        if len(set(self.methods)) != len(self.methods):
            raise UserError(f"config key 'methods': a method is listed twice in {list(self.methods)}")
        if self.router.kind not in ("mllm", "prototype", "oracle"):
            raise UserError(f"config key 'router.kind': expected mllm, prototype or oracle, got {self.router.kind!r}")
        if not 0.0 < self.router.shrinkage <= 1.0:
            raise UserError(f"config key 'router.shrinkage': must be in (0, 1], got {self.router.shrinkage}")
        if self.router.tokens not in ("all", "text", "image"):
            raise UserError(f"config key 'router.tokens': expected all, text or image, got {self.router.tokens!r}")
        if self.router.describe not in ("short", "full"):
            raise UserError(f"config key 'router.describe': expected short or full, got {self.router.describe!r}")
        if self.replay.source not in ("train", "file"):
            raise UserError(f"config key 'replay.source': expected train or file, got {self.replay.source!r}")
        for key, value in (("router.k", self.router.k), ("replay.k", self.replay.k), ("data.train", self.data.train),
                           ("data.test", self.data.test), ("eval.batch_size", self.eval.batch_size),
                           ("eval.max_new_tokens", self.eval.max_new_tokens)):
            if value < 1:
                raise UserError(f"config key {key!r}: must be at least 1, got {value}")


# --- building a config from plain data ---------------------------------------------------------------------

def _convert(value: Any, default: Any, key: str) -> Any:
    """`value` in the type of `default` (a nested dataclass, tuple, bool, int, float, str or None)."""
    if dataclasses.is_dataclass(default):
        if not isinstance(value, Mapping):
            raise UserError(f"config key {key!r}: expected a mapping of settings, got {value!r}")
        return _build(type(default), value, key + ".", base=default)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise UserError(f"config key {key!r}: expected a list of names, got {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"config key {key!r}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int) or (default is None and isinstance(value, int)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"config key {key!r}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls, values: Mapping[str, Any], prefix: str = "", base=None):
    base = base if base is not None else cls()
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; "
                        f"known under {prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(known))}")
    changes = {name: _convert(value, getattr(base, name), prefix + name) for name, value in values.items()}
    return dataclasses.replace(base, **changes)


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
        if not sep or not key.strip():
            raise UserError(f"override {item!r}: expected key=value, e.g. train.epochs=1")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        _merge(out, _nest(key.strip(), value))
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config file must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] | Mapping = ()) -> RunConfig:
    """Defaults → YAML file `path` → overrides (`key=value` strings or a nested mapping)."""
    values = read_yaml(path) if path else {}
    extra = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    try:
        return _build(RunConfig, _merge(values, extra))
    except UserError as err:
        raise UserError(f"{path}: {err}" if path else str(err)) from None


def to_dict(config: RunConfig) -> dict:
    """Plain data (lists, not tuples) for YAML and JSON."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return plain(config)


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
