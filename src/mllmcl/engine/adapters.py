"""Named LoRA adapters on a backbone: the recipe (what to adapt, how strongly), adding, saving and loading.

Every adapter is a peft LoRA adapter with its own name; any number live side by side on one frozen base and
can be mixed inside one batch (see engine/mixed.py). The projector can be trained per adapter: its linear layers
go to `modules_to_save`, so each adapter carries its own projector copy and mixed batches still work.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mllmcl.errors import UserError
from mllmcl.models.backbone import Backbone

BASE = "__base__"  # peft's name for "no adapter" inside a mixed batch
_LM_LINEAR = r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
_VISION_LINEAR = r"(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # no '.': peft keeps adapters in a ModuleDict


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class LoraRecipe:
    """What a LoRA adapter adapts and how. The defaults are tuned for the tiny backbone (see docs/engine.md);
    MR-LoRA's 7B recipe is `rank=128, alpha=256, dropout=0.05, lm_head=False` (+ `vision=True` for ability
    tasks, `vision=False` for domain tasks)."""

    rank: int = Field(64, ge=1)
    """LoRA rank r"""
    alpha: float = Field(128.0, gt=0)
    """LoRA alpha: the update is scaled by alpha / rank"""
    dropout: float = Field(0.0, ge=0, lt=1)
    """dropout on the LoRA input"""
    language: bool = True
    """adapt every linear layer of the language model"""
    vision: bool = True
    """also the vision tower's attention and MLP linears"""
    lm_head: bool = True
    """also the output head (a tiny base needs it to emit new answers)"""
    projector: bool = True
    """a full per-adapter copy of the projector (peft modules_to_save)"""
    extra_targets: str = ""
    """an extra regex alternative over module names, e.g. .*\\.fc2"""

    # What an adapter is beyond peft's LoRA is up to its recipe: a recipe class may add modules of its own
    # (`attach`), name the parameters they train (`extra_parameters`), save and load them (`extra_state`,
    # `load_extra_state`), and say whether the mixed-adapter fast path applies (`plain`). Plain LoRA adds none.
    kind: ClassVar[str] = "lora"
    plain: ClassVar[bool] = True

    def peft_config(self, backbone: Backbone):
        """The peft LoraConfig of this recipe on `backbone`."""
        from peft import LoraConfig

        modules_to_save = projector_linears(backbone.base_model) if self.projector else None
        target = self.target_regex(used_vision_layers(backbone.base_model))
        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=target, modules_to_save=modules_to_save, bias="none")

    def attach(self, backbone: Backbone, name: str) -> None:
        """Called once adapter `name` exists on `backbone` (added or loaded)."""

    def detach(self, backbone: Backbone, name: str) -> None:
        """Called before adapter `name` is deleted."""

    def extra_parameters(self, backbone: Backbone, name: str) -> dict[str, torch.nn.Parameter]:
        """Parameters of adapter `name` outside peft's LoRA weights (trained, saved and anchored with them)."""
        return {}

    def extra_state(self, backbone: Backbone, name: str) -> dict[str, torch.Tensor]:
        """The extra parameters as saved: keyed without the adapter's name (it may load under another)."""
        return {_unnamed(k, name): p.detach() for k, p in self.extra_parameters(backbone, name).items()}

    def load_extra_state(self, backbone: Backbone, name: str, tensors: dict[str, torch.Tensor]) -> None:
        params = {_unnamed(k, name): p for k, p in self.extra_parameters(backbone, name).items()}
        if set(tensors) != set(params):
            raise ValueError(f"saved extra state holds {sorted(tensors)[:3]}…, the recipe expects {sorted(params)[:3]}…")
        with torch.no_grad():
            for key, param in params.items():
                param.copy_(tensors[key])

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def target_regex(self, vision_layers: int | None = None) -> str:
        """The peft target regex. `vision_layers`: how many vision encoder layers feed the projector; LoRA
        on later layers would get no gradient (LLaVA-1.5 reads the second-to-last layer), which DDP rejects."""
        parts = []
        if self.language:
            parts.append(rf".*language_model.*\.{_LM_LINEAR}")
        if self.vision:
            layers = r"\d+" if vision_layers is None else "(?:" + "|".join(map(str, range(vision_layers))) + ")"
            parts.append(rf".*vision_tower.*\.layers\.{layers}\..*\.{_VISION_LINEAR}")
        if self.lm_head:
            parts.append(r"lm_head")
        if self.extra_targets:
            parts.append(self.extra_targets)
        if not parts:
            raise ValueError("a LoRA recipe must target something")
        return "|".join(f"(?:{p})" for p in parts)

    @classmethod
    def from_dict(cls, values: dict) -> "LoraRecipe":
        """A recipe from plain data (a saved `mllmcl_recipe.json`: its `kind` picks the recipe class); a bad key
        or value is a UserError."""
        values = dict(values)
        kind = values.pop("kind", "lora")
        recipe_cls = RECIPES.get(kind)
        if recipe_cls is None:
            raise UserError(f"unknown adapter recipe kind {kind!r}; known: {', '.join(sorted(RECIPES))}")
        try:
            return TypeAdapter(recipe_cls).validate_python(values)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            raise UserError(f"LoRA recipe key {'.'.join(map(str, first['loc'])) or '?'!r}: {first['msg']}") from None


def _unnamed(key: str, name: str) -> str:
    return key.replace(f".{name}.", ".<adapter>.", 1)


RECIPES: dict[str, type[LoraRecipe]] = {"lora": LoraRecipe}
"""Recipe kind → class (a recipe module registers its class here: `RECIPES[MyRecipe.kind] = MyRecipe`)."""
EXTRA_STATE = "mllmcl_extra.safetensors"


def projector_linears(model: torch.nn.Module) -> list[str]:
    """Names of the projector's linear layers (`modules_to_save` targets that keep mixed batching), found
    the same way whether or not earlier adapters already wrapped them."""
    names = []
    for name, module in model.named_modules():
        if "multi_modal_projector" not in name or not isinstance(module, torch.nn.Linear) or ".modules_to_save." in name:
            continue
        name = name.removesuffix(".original_module")
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
    from peft import get_peft_model

    check_name(name)
    if name in backbone.adapter_names:
        raise UserError(f"adapter {name!r} already exists on backbone {backbone.name}")
    config = recipe.peft_config(backbone)
    if backbone.adapter_names:
        backbone.model.add_adapter(name, config)
    else:
        backbone.model = get_peft_model(backbone.model, config, adapter_name=name)
    _recipes(backbone)[name] = recipe
    recipe.attach(backbone, name)


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
    params.update(recipe_of(backbone, name).extra_parameters(backbone, name))
    return params


def delete_adapter(backbone: Backbone, name: str) -> None:
    """Remove adapter `name`; removing the last one gives back the bare transformers model."""
    require(backbone, [name])
    recipe_of(backbone, name).detach(backbone, name)
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
    import tempfile

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
        extra = recipe.extra_state(backbone, name)
        if extra:
            from safetensors.torch import save_file

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


def load_adapter(backbone: Backbone, name: str, path: str | Path) -> None:
    """Attach a saved adapter under `name` (frozen; train it again by passing its name to `train`)."""
    from peft import PeftModel

    check_name(name)
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"{path}: no saved adapter here (adapter_config.json missing)")
    if name in backbone.adapter_names:
        raise UserError(f"adapter {name!r} already exists on backbone {backbone.name}")
    try:
        recipe_file = path / "mllmcl_recipe.json"
        recipe = LoraRecipe.from_dict(json.loads(recipe_file.read_text())) if recipe_file.is_file() else None
        if backbone.adapter_names:
            backbone.model.load_adapter(str(path), adapter_name=name)
        else:
            backbone.model = PeftModel.from_pretrained(backbone.model, str(path), adapter_name=name)
    except (RuntimeError, ValueError, KeyError, OSError) as err:  # e.g. an adapter of another base model
        raise UserError(f"{path}: cannot load this adapter onto backbone {backbone.name} "
                        f"({str(err).splitlines()[0][:300]})") from None
    if recipe is not None:
        _recipes(backbone)[name] = recipe
        recipe.attach(backbone, name)
        if (path / EXTRA_STATE).is_file():
            from safetensors.torch import load_file

            try:
                recipe.load_extra_state(backbone, name, load_file(str(path / EXTRA_STATE)))
            except (OSError, ValueError, RuntimeError) as err:
                delete_adapter(backbone, name)
                raise UserError(f"{path / EXTRA_STATE}: cannot load the adapter's extra state ({err})") from None
    backbone.model.to(backbone.device)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def sum_adapters(backbone: Backbone, names: list[str], into: str) -> None:
    """A new adapter `into` whose update is exactly the sum of the plain LoRA adapters `names` (their ranks
    concatenated: peft's "cat" combination), e.g. to answer with every task's LoRA in one pass. Adapters
    with a projector copy or a recipe of their own cannot be summed."""
    require(backbone, names)
    check_name(into)
    recipes = [recipe_of(backbone, name) for name in names]
    if any(not r.plain or r.projector for r in recipes):
        raise ValueError("only plain LoRA adapters without a projector copy can be summed")
    backbone.model.add_weighted_adapter(names, [1.0] * len(names), into, combination_type="cat")
    config = backbone.model.peft_config[into]
    _recipes(backbone)[into] = replace(recipes[0], rank=config.r, alpha=float(config.lora_alpha))
