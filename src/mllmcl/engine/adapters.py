"""Named LoRA adapters on a backbone: adding one by its recipe (engine/settings.py), saving and loading.

Every adapter is a peft LoRA adapter with its own name; any number live side by side on one frozen base and
can be mixed inside one batch (see engine/mixed.py). The projector can be trained per adapter: its linear layers
go to `modules_to_save`, so each adapter carries its own projector copy and mixed batches still work.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mllmcl.core.errors import UserError, one_line
from mllmcl.core.io import is_dir, is_file, read_json
from mllmcl.engine import blocks, moe
from mllmcl.engine.settings import BlockLoraRecipe, LoraRecipe, MoELoraRecipe
from mllmcl.models.backbone import Backbone
from mllmcl.models.families import FAMILIES

BASE = "__base__"  # peft's name for "no adapter" inside a mixed batch
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # no '.': peft keeps adapters in a ModuleDict
EXTRA_STATE = "mllmcl_extra.safetensors"


def peft_config(backbone: Backbone, recipe: LoraRecipe):
    """The peft LoraConfig of `recipe` on `backbone`."""
    family = FAMILIES.get(backbone.family)
    if recipe.projector and family.projector is None:
        raise UserError(f"backbone {backbone.name}: the {backbone.family} family's projector maps every image's "
                        "patches at once, so an adapter cannot carry a per-sample copy of it; set lora.projector=false")
    modules_to_save = projector_linears(backbone.base_model, family.projector) if recipe.projector else None
    target = recipe.target_regex(used_vision_layers(backbone.base_model), backbone.family)
    return LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                      target_modules=target, modules_to_save=modules_to_save, bias="none")


# What an adapter is beyond peft's LoRA is up to its recipe: a MoE recipe adds per-token gates (engine/moe.py), a
# block recipe a hook that mixes its task blocks (engine/blocks.py).
# These three are the only places that tell recipe kinds apart.

def _attach(backbone: Backbone, name: str, recipe: LoraRecipe) -> None:
    """Called once adapter `name` exists on `backbone` (added or loaded)."""
    if isinstance(recipe, MoELoraRecipe):
        moe.attach_gates(backbone, name, recipe.experts, recipe.gate_init)
    elif isinstance(recipe, BlockLoraRecipe):
        blocks.attach(backbone, name, recipe.blocks)


def _detach(backbone: Backbone, name: str, recipe: LoraRecipe) -> None:
    """Called before adapter `name` is deleted."""
    if isinstance(recipe, MoELoraRecipe):
        moe.detach_gates(backbone, name)
    elif isinstance(recipe, BlockLoraRecipe):
        blocks.detach(backbone, name)


def _extra_parameters(backbone: Backbone, name: str, recipe: LoraRecipe) -> dict[str, torch.nn.Parameter]:
    """Parameters of adapter `name` outside peft's LoRA weights (trained, saved and anchored with them)."""
    if isinstance(recipe, MoELoraRecipe):
        return moe.gate_parameters(backbone, name)
    return {}


def _extra_state(backbone: Backbone, name: str, recipe: LoraRecipe) -> dict[str, torch.Tensor]:
    """The extra parameters as saved: keyed without the adapter's name (it may load under another)."""
    return {_unnamed(k, name): p.detach() for k, p in _extra_parameters(backbone, name, recipe).items()}


def _load_extra_state(backbone: Backbone, name: str, recipe: LoraRecipe, tensors: dict[str, torch.Tensor]) -> None:
    params = {_unnamed(k, name): p for k, p in _extra_parameters(backbone, name, recipe).items()}
    if set(tensors) != set(params):
        raise ValueError(f"saved extra state holds {sorted(tensors)[:3]}…, the recipe expects {sorted(params)[:3]}…")
    with torch.no_grad():
        for key, param in params.items():
            param.copy_(tensors[key])


def _unnamed(key: str, name: str) -> str:
    return key.replace(f".{name}.", ".<adapter>.", 1)


def _renamed(key: str, name: str, other: str) -> str:
    """The key of the same tensor in adapter `other`."""
    return key.replace(f".{name}.", f".{other}.", 1)


def projector_linears(model: torch.nn.Module, pattern: str) -> list[str]:
    """Names of the projector's linear layers (`modules_to_save` targets that keep mixed batching; `pattern`
    is the family's, models/families.py), found the same way whether or not earlier adapters wrapped them."""
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".modules_to_save." in name:
            continue
        name = name.removesuffix(".original_module")
        if not re.search(pattern, name):
            continue
        if name not in names:
            names.append(name)
    return names


def used_vision_layers(model: torch.nn.Module) -> int | None:
    """Number of vision encoder layers whose output reaches the projector (None if unknown)."""
    config = model.config
    layer = getattr(config, "vision_feature_layer", None)
    total = getattr(getattr(config, "vision_config", None), "num_hidden_layers", None)
    if not isinstance(layer, int) or total is None:
        return None
    return layer + 1 if layer >= 0 else total + 1 + layer


def check_name(name: str) -> str:
    if name == BASE or not _NAME.match(name):
        raise UserError(f"invalid adapter name {name!r}: use letters, digits, '_' and '-'")
    if name in "lora_":  # peft warns that such a name can clash with its "lora_" weight prefix
        raise UserError(f"invalid adapter name {name!r}: it is part of peft's 'lora_' prefix")
    if hasattr(torch.nn.Module, name):  # peft stores adapters as submodules named after them
        raise UserError(f"invalid adapter name {name!r}: it is a torch.nn.Module attribute")
    return name


def add_adapter(backbone: Backbone, name: str, recipe: LoraRecipe = LoraRecipe()) -> None:
    """Attach a fresh LoRA adapter `name` (randomly initialised B=0, so it starts as the base model)."""
    check_name(name)
    if name in backbone.adapter_names:
        raise UserError(f"adapter {name!r} already exists on backbone {backbone.name}")
    config = peft_config(backbone, recipe)
    if backbone.adapter_names:
        backbone.model.add_adapter(name, config)
    else:
        backbone.model = get_peft_model(backbone.model, config, adapter_name=name)
    _recipes(backbone)[name] = recipe
    _attach(backbone, name, recipe)


def _recipes(backbone: Backbone) -> dict[str, LoraRecipe]:
    if not hasattr(backbone.model, "_mllmcl_recipes"):
        backbone.model._mllmcl_recipes = {}
    return backbone.model._mllmcl_recipes


def recipe_of(backbone: Backbone, name: str) -> LoraRecipe:
    """The recipe adapter `name` was made with (plain LoRA for an adapter loaded without one)."""
    require(backbone, [name])
    return _recipes(backbone).get(name) or LoraRecipe()


def adapter_parameters(backbone: Backbone, name: str) -> dict[str, torch.nn.Parameter]:
    """Every parameter of adapter `name`, by name: its LoRA weights, its projector copy, and what its recipe
    adds. What a method reads, anchors or regularises (EWC's Fisher, O-LoRA's orthogonality)."""
    require(backbone, [name])
    marker = re.compile(rf"\.{re.escape(name)}(\.|$)")
    params = {key: p for key, p in backbone.model.named_parameters()
              if marker.search(key) and (".lora_" in key or ".modules_to_save." in key)}
    params.update(_extra_parameters(backbone, name, recipe_of(backbone, name)))
    return params


def delete_adapter(backbone: Backbone, name: str) -> None:
    """Remove adapter `name`; removing the last one gives back the bare transformers model."""
    require(backbone, [name])
    _detach(backbone, name, recipe_of(backbone, name))
    _recipes(backbone).pop(name, None)
    backbone.model.delete_adapter(name)
    if not backbone.adapter_names:
        backbone.model = backbone.model.unload()  # restores the original projector layers too


def require(backbone: Backbone, names) -> None:
    """Fail clearly when a requested adapter is not attached."""
    known = set(backbone.adapter_names)
    for name in names:
        if name != BASE and name not in known:
            raise UserError(f"adapter {name!r} is not loaded on backbone {backbone.name}; "
                            f"loaded: {sorted(known) or 'none'}")


def save_adapter(backbone: Backbone, name: str, directory: str | Path) -> Path:
    """Write adapter `name` to `directory/name/` (peft's adapter_model.safetensors + adapter_config.json,
    plus mllmcl's recipe). Written to a temporary folder first, so a killed save leaves no half adapter."""
    require(backbone, [name])
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{directory}: cannot create the adapter folder ({err})") from None
    final = directory / name
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}."))
    # the base embeddings and head are not the adapter's: never copy them into it (peft would, for lm_head LoRA)
    backbone.model.save_pretrained(tmp, selected_adapters=[name], save_embedding_layers=False)
    # peft writes a non-default adapter into a subfolder named after it
    written = tmp / name if (tmp / name / "adapter_config.json").is_file() else tmp
    recipe = _recipes(backbone).get(name)
    if recipe is not None:
        (written / "mllmcl_recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2))
        extra = _extra_state(backbone, name, recipe)
        if extra:
            save_file({k: v.contiguous().cpu() for k, v in extra.items()}, str(written / EXTRA_STATE))
    old = None
    if final.exists():  # keep the previous adapter until the new one is in place
        old = Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}.old."))
        final.rename(old / name)
    written.rename(final)
    for leftover in (tmp, old):
        if leftover is not None and leftover.exists():
            _rmtree(leftover)
    return final


WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
RECIPE = "mllmcl_recipe.json"


def _shapes(weights: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from the safetensors header, or a UserError naming the file (missing, cut
    short, not safetensors). Reads the header only."""
    if not is_file(weights):
        raise UserError(f"{weights}: missing; a saved adapter holds its weights in {WEIGHTS}")
    try:
        with safe_open(str(weights), framework="pt") as f:
            return {key: list(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as err:  # SafetensorError (header too large, cut short, …), OSError
        raise UserError(f"{weights}: not a readable safetensors file ({one_line(str(err))[:200]})") from None


def _adapter_config(path: Path) -> dict:
    """adapter_config.json, checked for what must hold before peft touches the model."""
    file = path / CONFIG
    config = read_json(file, "adapter config")
    if not isinstance(config, dict):
        raise UserError(f"{file}: must be a JSON object, got {type(config).__name__}")
    if config.get("peft_type") != "LORA":
        raise UserError(f"{file}: not a LoRA adapter (peft_type {config.get('peft_type')!r}, expected 'LORA')")
    r, alpha = config.get("r"), config.get("lora_alpha")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise UserError(f"{file}: 'r' must be a positive integer, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise UserError(f"{file}: 'lora_alpha' must be a number, got {alpha!r}")
    dropout = config.get("lora_dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise UserError(f"{file}: 'lora_dropout' must be a number in [0, 1), got {dropout!r}")
    targets = config.get("target_modules")
    if not (isinstance(targets, str) and targets) and not (
            isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)):
        raise UserError(f"{file}: 'target_modules' must be a regex or a list of module names, got {targets!r}")
    if isinstance(targets, str):
        try:
            re.compile(targets)
        except re.error as err:
            raise UserError(f"{file}: 'target_modules' is not a valid regex ({err})") from None
    saved = config.get("modules_to_save")
    if saved is not None and not (isinstance(saved, list) and all(isinstance(m, str) and m for m in saved)):
        raise UserError(f"{file}: 'modules_to_save' must be a list of module names or null, got {saved!r}")
    for key in ("rank_pattern", "alpha_pattern"):
        if not isinstance(config.get(key) or {}, dict):
            raise UserError(f"{file}: {key!r} must be an object, got {config[key]!r}")
    _check_plain_lora(config, file)
    return config


# Settings a saved LoRA adapter may carry with any value: what mllmcl itself sets (rank, alpha, dropout,
# targets, projector copies, patterns), bookkeeping, and options that only matter when an adapter is
# initialised for training. Every other LoraConfig option (DoRA, LoRA bias, aLoRA, layer replication,
# fan-in-fan-out, layer selection, …) changes what a layer computes or which layers are adapted, which the
# engine's per-sample mixed batches do not implement, so it must keep peft's default.
_FREE_KEYS = {"task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
              "inference_mode", "r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save",
              "rank_pattern", "alpha_pattern", "use_rslora", "init_lora_weights", "loftq_config", "eva_config",
              "corda_config", "lora_ga_config", "qalora_group_size", "megatron_core"}


def _check_plain_lora(config: dict, file: Path) -> None:
    def off(value) -> bool:
        return value is None or value is False or value == {} or value == [] or value == "none"

    defaults = LoraConfig().to_dict()
    for key, value in config.items():
        if key in _FREE_KEYS or key not in defaults:
            continue
        default = defaults[key]
        if value != default and not (off(value) and off(default)):
            raise UserError(f"{file}: {key!r} is {value!r}; mllmcl loads plain LoRA adapters (as it saves them), "
                            f"where it is {default!r}")


def _check_fits(backbone: Backbone, path: Path, config: dict, shapes: dict[str, list[int]]) -> None:
    """Every tensor of the adapter must belong to a module of this backbone, with the shape it has there
    and the rank the config states: an adapter trained on another base model fails here, before peft
    changes anything, instead of half-way through loading."""
    model = backbone.base_model
    weights = path / WEIGHTS
    if not shapes:
        raise UserError(f"{weights}: holds no tensors")
    rank_fixed = not config.get("rank_pattern")
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        part = next((p for p in (".lora_A.", ".lora_B.") if p in name), None)
        module_name = name.split(part)[0] if part else name.rpartition(".")[0]
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            raise UserError(f"{weights}: made for another base model: backbone {backbone.name} has no module "
                            f"{module_name!r} (tensor {key})") from None
        module = getattr(module, "original_module", module)  # already wrapped by an earlier adapter
        module = getattr(module, "base_layer", module)
        if not isinstance(module, torch.nn.Linear):
            continue  # peft checks the rest
        out_features, in_features = module.weight.shape
        if part is None:
            tensor = getattr(module, key.rpartition(".")[2], None)
            expected = list(tensor.shape) if isinstance(tensor, torch.Tensor) else None
        elif part == ".lora_A.":
            expected = [shape[0], in_features] if len(shape) == 2 else None
            if rank_fixed and len(shape) == 2 and shape[0] != config["r"]:
                raise UserError(f"{path / CONFIG}: 'r' is {config['r']}, but {WEIGHTS} holds rank {shape[0]} "
                                f"(tensor {key})")
        else:
            expected = [out_features, shape[1]] if len(shape) == 2 else None
        if shape != expected:
            raise UserError(f"{weights}: made for another base model: tensor {key} has shape {shape}, backbone "
                            f"{backbone.name} needs {expected}")
    expected = _expected_tensors(model, config)
    saved = config.get("modules_to_save") or []
    names = [n for n, _ in model.named_modules()]
    absent = [m for m in saved if not any(_is_saved(n, [m]) for n in names)]
    if absent or not any(".lora_A." in key for key in expected):
        what = (f"'modules_to_save' names {absent[0]!r}" if absent else
                f"'target_modules' {config['target_modules']!r} matches no layer")
        raise UserError(f"{path / CONFIG}: made for another base model: {what} of backbone {backbone.name}")
    missing = sorted(expected - set(shapes))
    if missing:  # peft would only warn, and answer with the freshly initialised matrix in its place
        raise UserError(f"{weights}: incomplete: {len(missing)} tensor(s) that {CONFIG} asks for are missing, "
                        f"e.g. {missing[0]}")


def _is_saved(name: str, saved: list[str]) -> bool:
    """Whether module `name` is one of `modules_to_save` (full names, or trailing parts as peft allows)."""
    return any(name == m or name.endswith("." + m) for m in saved)


def _expected_tensors(model: torch.nn.Module, config: dict) -> set[str]:
    """The tensor names a complete save of this adapter holds on this base model: lora_A and lora_B of
    every linear layer its `target_modules` match (as peft matches them), the weights of every
    `modules_to_save` layer."""
    targets = config["target_modules"]
    saved = config.get("modules_to_save") or []

    def targeted(name: str) -> bool:
        if isinstance(targets, str):
            return re.fullmatch(targets, name) is not None
        return any(name == t or name.endswith("." + t) for t in targets)

    expected = set()
    for name, module in model.named_modules():
        if any(part in ("base_layer", "original_module", "modules_to_save") or part.startswith("lora_")
               for part in name.split(".")):
            continue  # the inside of a layer an earlier adapter wrapped
        layer = getattr(module, "base_layer", module)
        if _is_saved(name, saved):
            layer = getattr(module, "original_module", module)
            expected |= {f"base_model.model.{name}.{p}" for p, _ in layer.named_parameters(recurse=False)}
        elif isinstance(layer, torch.nn.Linear) and targeted(name):
            expected |= {f"base_model.model.{name}.lora_A.weight", f"base_model.model.{name}.lora_B.weight"}
    return expected


def _unwrap_failed(model: torch.nn.Module) -> None:
    """Undo a half-finished first load: peft wraps layers of the base model in place before it reads the
    weights, so a failure there leaves LoRA wrappers behind; put the original layers back."""
    for name, module in list(model.named_modules()):
        original = getattr(module, "base_layer", None) if hasattr(module, "lora_A") else \
            getattr(module, "original_module", None)
        if isinstance(original, torch.nn.Module) and name:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, original)


def load_adapter(backbone: Backbone, name: str, path: str | Path) -> None:
    """Attach a saved adapter under `name` (frozen; train it again by passing its name to `train`).

    The folder is checked before peft sees it: adapter_config.json (JSON, a LoRA config), the safetensors
    header (not cut short or corrupt), every tensor's module and shape against this backbone (an adapter of
    another base model), mllmcl_recipe.json. Any problem is a UserError naming the file, and a load that
    fails leaves the backbone as it was."""
    check_name(name)
    path = Path(path)
    if not is_dir(path):
        raise UserError(f"{path}: no saved adapter here (no such folder)")
    if not is_file(path / CONFIG):
        raise UserError(f"{path}: no saved adapter here ({CONFIG} missing)")
    if name in backbone.adapter_names:
        raise UserError(f"adapter {name!r} already exists on backbone {backbone.name}")
    config = _adapter_config(path)
    _check_fits(backbone, path, config, _shapes(path / WEIGHTS))
    recipe = None
    if (path / RECIPE).exists():
        try:
            recipe = LoraRecipe.from_dict(read_json(path / RECIPE, "recipe"))
        except UserError as err:
            message = str(err)
            raise UserError(message if message.startswith(str(path)) else f"{path / RECIPE}: {message}") from None
    base, first = backbone.model, not backbone.adapter_names
    try:
        if first:
            backbone.model = PeftModel.from_pretrained(backbone.model, str(path), adapter_name=name)
        else:
            backbone.model.load_adapter(str(path), adapter_name=name)
    except Exception as err:  # whatever else peft refuses in a folder the checks above let through
        if first:
            backbone.model = base
            _unwrap_failed(base)
            if hasattr(base, "peft_config"):  # peft copies its config onto the model it wraps
                del base.peft_config
        elif name in backbone.adapter_names:
            backbone.model.delete_adapter(name)
        raise UserError(f"{path}: cannot load this adapter onto backbone {backbone.name} "
                        f"({type(err).__name__}: {one_line(str(err))[:300]})") from err
    if recipe is not None:
        _recipes(backbone)[name] = recipe
        _attach(backbone, name, recipe)
        if (path / EXTRA_STATE).exists():
            try:
                _load_extra_state(backbone, name, recipe, load_file(str(path / EXTRA_STATE)))
            except Exception as err:  # SafetensorError (cut short, corrupt), IsADirectoryError, shape mismatch
                delete_adapter(backbone, name)
                raise UserError(f"{path / EXTRA_STATE}: cannot load the adapter's extra state "
                                f"({type(err).__name__}: {one_line(str(err))[:200]})") from None
    backbone.model.to(backbone.device)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path)


def sum_adapters(backbone: Backbone, names: list[str], into: str,
                 projector: dict[str, torch.Tensor] | None = None) -> None:
    """A new adapter `into` whose update is exactly the sum of the plain LoRA adapters `names`: their A rows and
    B columns concatenated (peft's "cat" combination; the tasks share one alpha / rank scale), e.g. to answer
    with every task's LoRA in one pass. `projector` (a `projector_state`) gives `into` a projector copy with
    those weights. Adapters with a projector copy or a recipe of their own cannot be summed."""
    require(backbone, names)
    recipes = [recipe_of(backbone, name) for name in names]
    if any(not r.plain or r.projector for r in recipes):
        raise ValueError("only plain LoRA adapters without a projector copy can be summed")
    if len({r.alpha / r.rank for r in recipes}) > 1:
        raise ValueError("the summed adapters must share one alpha / rank scale")
    rank = sum(r.rank for r in recipes)
    add_adapter(backbone, into, replace(recipes[0], rank=rank, alpha=recipes[0].alpha / recipes[0].rank * rank,
                                        projector=projector is not None))
    sources = [adapter_parameters(backbone, name) for name in names]
    with torch.no_grad():
        for key, param in adapter_parameters(backbone, into).items():
            if ".modules_to_save." in key:
                param.copy_(projector[_unnamed(key, into)])
                continue
            parts = [source[_renamed(key, into, name)] for name, source in zip(names, sources)]
            param.copy_(torch.cat(parts, dim=0 if ".lora_A." in key else 1))
            param.requires_grad_(False)


def projector_state(backbone: Backbone, name: str) -> dict[str, torch.Tensor]:
    """A copy of adapter `name`'s projector copy, keyed without the adapter's name (empty without one)."""
    return {_unnamed(k, name): p.detach().clone() for k, p in adapter_parameters(backbone, name).items()
            if ".modules_to_save." in k}


def load_projector_state(backbone: Backbone, name: str, state: dict[str, torch.Tensor]) -> None:
    """Set adapter `name`'s projector copy to `state` (a `projector_state`, of this or another adapter)."""
    params = {_unnamed(k, name): p for k, p in adapter_parameters(backbone, name).items() if ".modules_to_save." in k}
    if set(params) != set(state):
        raise ValueError(f"adapter {name!r}'s projector copy holds {sorted(params)[:2]}…, the state {sorted(state)[:2]}…")
    with torch.no_grad():
        for key, param in params.items():
            param.copy_(state[key])


def drop_projector(backbone: Backbone, name: str) -> dict[str, torch.Tensor]:
    """Make adapter `name` plain LoRA: its projector copy is removed (and returned, as `projector_state`), its
    LoRA weights stay. A plain adapter can be summed, and can stay active beside another adapter's copy."""
    recipe, projector = recipe_of(backbone, name), projector_state(backbone, name)
    lora = {_unnamed(k, name): p.detach().clone() for k, p in adapter_parameters(backbone, name).items()
            if ".lora_" in k}
    others = [n for n in backbone.adapter_names if n != name]
    if others:  # peft warns when the active adapter is deleted
        backbone.model.set_adapter(others[0])
    delete_adapter(backbone, name)
    add_adapter(backbone, name, replace(recipe, projector=False))
    with torch.no_grad():
        for key, param in adapter_parameters(backbone, name).items():
            param.copy_(lora[_unnamed(key, name)])
    return projector
