"""The engine's settings as plain data: how a training call optimises (`TrainConfig`) and what a LoRA adapter
adapts (`LoraRecipe`; `MoELoraRecipe`, a mixture of LoRA experts; `BlockLoraRecipe`, one LoRA block per
task). No torch here: the run configuration composes these blocks and is checked before anything heavy loads (`mllmcl run --dry-run`, `mllmcl ls`).

The defaults are the engine's own (tuned for one LoRA expert on the tiny backbone, see docs/engine.md); the
run's recipe is the run configuration's default for these blocks (`mllmcl.cl.config.RunConfig`)."""
from __future__ import annotations

from dataclasses import asdict
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mllmcl.core.errors import UserError
from mllmcl.models.families import FAMILIES

_STRICT = ConfigDict(extra="forbid", use_attribute_docstrings=True)
_LM_LINEAR = r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@pydantic_dataclass(frozen=True, config=_STRICT)
class TrainConfig:
    """Optimisation settings. `epochs` may be fractional; `max_steps` (optimizer steps), when set, wins."""

    epochs: float = Field(2.0, gt=0)
    """passes over the training data (fractions allowed)"""
    max_steps: int | None = Field(None, ge=1)
    """optimizer steps; when set, wins over epochs"""
    batch_size: int = Field(32, ge=1)
    """samples per process and per micro-step"""
    grad_accum: int = Field(1, ge=1)
    """micro-steps per optimizer step"""
    lr: float = Field(2e-3, gt=0)
    """peak learning rate (tuned for LoRA experts on the tiny backbone; the llava-7b profiles use the official 2e-5)"""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay"""
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    """share of steps with linear warm-up"""
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """the cosine schedule decays to lr x min_lr_ratio"""
    max_grad_norm: float = Field(1.0, ge=0)
    """gradient clipping norm (0 disables clipping)"""
    bf16: bool = False
    """bfloat16 autocast (CPU with AMX, or GPU)"""
    seed: int = 0
    """shuffling and init; a run derives one seed per training call from it"""
    progress: bool = True
    """a tqdm bar with loss and samples/s"""
    desc: str = "train"
    """the progress bar's label"""


@pydantic_dataclass(frozen=True, config=_STRICT)
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

    kind: ClassVar[str] = "lora"
    """saved with the adapter (mllmcl_recipe.json), so a load rebuilds the same recipe class"""
    plain: ClassVar[bool] = True
    """nothing beyond peft's LoRA: the engine's mixed-adapter fast path applies"""

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def target_regex(self, vision_layers: int | None = None, family: str = "llava") -> str:
        """The peft target regex on a model of `family` (models/families.py). `vision_layers`: how many vision
        encoder layers feed the projector; LoRA on later layers would get no gradient (LLaVA-1.5 reads the
        second-to-last layer), which DDP rejects."""
        parts = []
        if self.language:
            parts.append(rf".*{FAMILIES.get(family).language}.*\.{_LM_LINEAR}")
        if self.vision:
            vision = FAMILIES.get(family).vision
            if vision is None:
                raise UserError(f"the {family} family's vision encoder runs over every image's patches at once, so "
                                "a per-sample adapter cannot reach it; set lora.vision=false")
            layers = r"\d+" if vision_layers is None else "(?:" + "|".join(map(str, range(vision_layers))) + ")"
            parts.append(".*" + vision.format(layers=layers))
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
        if not isinstance(values, dict):
            raise UserError(f"a LoRA recipe must be a JSON object, got {type(values).__name__}")
        values = dict(values)
        kind = values.pop("kind", "lora")
        recipe_cls = RECIPES.get(kind) if isinstance(kind, str) else None
        if recipe_cls is None:
            raise UserError(f"unknown adapter recipe kind {kind!r}; known: {', '.join(sorted(RECIPES))}")
        try:
            return TypeAdapter(recipe_cls).validate_python(values)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            raise UserError(f"LoRA recipe key {'.'.join(map(str, first['loc'])) or '?'!r}: {first['msg']}") from None


@pydantic_dataclass(frozen=True, config=_STRICT)
class MoELoraRecipe(LoraRecipe):
    """A LoRA recipe whose rank is split into `experts` experts of rank rank/experts, mixed per token by a
    softmax gate in every adapted layer (engine/moe.py)."""

    experts: int = Field(4, ge=1)
    """LoRA experts per adapted layer (each of rank rank / experts)"""
    gate_init: Literal["zeros", "random"] = "zeros"
    """the gates' initial weights: zeros (a uniform mixture at first) or torch's default Linear init"""

    kind = "moe"
    plain = False

    def __post_init__(self) -> None:
        if self.rank % self.experts:
            raise ValueError(f"rank {self.rank} does not split into {self.experts} experts of equal rank")


@pydantic_dataclass(frozen=True, config=_STRICT)
class BlockLoraRecipe(LoraRecipe):
    """A LoRA recipe whose rank is split into `blocks` blocks of rank rank/blocks, one per task, mixed by weights
    the owning method sets (engine/blocks.py: HiDe-LLaVA, DISCO)."""

    blocks: int = Field(5, ge=1)
    """task blocks per adapted layer (each of rank rank / blocks)"""

    kind = "blocks"
    plain = False

    def __post_init__(self) -> None:
        if self.rank % self.blocks:
            raise ValueError(f"rank {self.rank} does not split into {self.blocks} blocks of equal rank")


def in_parts(recipe: LoraRecipe, kind: type[LoraRecipe], parts: int, **fields) -> LoraRecipe:
    """`recipe` as `parts` parts of its own rank (an expert or block per task), at its scale (alpha / rank) per
    part: a `kind` recipe of rank parts × rank, its other fields kept, `fields` added."""
    values = {k: v for k, v in recipe.to_dict().items() if k != "kind"}
    return kind(**{**values, "rank": recipe.rank * parts, "alpha": recipe.alpha * parts, **fields})


RECIPES: dict[str, type[LoraRecipe]] = {recipe.kind: recipe for recipe in (LoraRecipe, MoELoraRecipe,
                                                                              BlockLoraRecipe)}
"""Recipe kind → class: what `LoraRecipe.from_dict` rebuilds a saved recipe as."""
