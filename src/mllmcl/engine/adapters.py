"""Named LoRA adapters on a backbone: the recipe (what to adapt, how strongly), adding, saving and loading.

Every adapter is a peft LoRA adapter with its own name; any number live side by side on one frozen base and
can be mixed inside one batch (see engine/mixed.py). The projector can be trained per adapter: its linear layers
go to `modules_to_save`, so each adapter carries its own projector copy and mixed batches still work.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

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
        """A recipe from plain data (a saved `mllmcl_recipe.json`); a bad key or value is a UserError."""
        try:
            return TypeAdapter(cls).validate_python(values)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            raise UserError(f"LoRA recipe key {'.'.join(map(str, first['loc'])) or '?'!r}: {first['msg']}") from None


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


def peft_config(backbone: Backbone, recipe: LoraRecipe):
    from peft import LoraConfig

    modules_to_save = projector_linears(backbone.base_model) if recipe.projector else None
    target = recipe.target_regex(used_vision_layers(backbone.base_model))
    return LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                      target_modules=target, modules_to_save=modules_to_save, bias="none")


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
    config = peft_config(backbone, recipe)
    if backbone.adapter_names:
        backbone.model.add_adapter(name, config)
    else:
        backbone.model = get_peft_model(backbone.model, config, adapter_name=name)
    _recipes(backbone)[name] = recipe


def _recipes(backbone: Backbone) -> dict[str, LoraRecipe]:
    if not hasattr(backbone.model, "_mllmcl_recipes"):
        backbone.model._mllmcl_recipes = {}
    return backbone.model._mllmcl_recipes


def delete_adapter(backbone: Backbone, name: str) -> None:
    """Remove adapter `name`; removing the last one gives back the bare transformers model."""
    require(backbone, [name])
    recipes = _recipes(backbone)
    recipes.pop(name, None)
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
        (written / "mllmcl_recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
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
    backbone.model.to(backbone.device)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
