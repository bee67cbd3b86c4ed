"""The continual-learning methods there are, as data: each one's card (what it is: sequential? routed? does
it learn, train on its data, take a router, use the shared experts?), one-line description and settings
block. The configuration and `mllmcl ls` read this without loading torch or a model; each method's code is
its own module (`seq-lora` → `seq_lora.py`), and `build.py` maps the names to it.

A method entry in a configuration is `name`, `name[router]` (a method that takes a router:
`mr-lora[prototype]`) or `name+replay` (a method that trains on its data, plus a replay buffer:
`ewc+replay`); `check_method_spec` validates one when the configuration loads."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal

from pydantic import Field, field_validator

from mllmcl.cl.routing.catalog import ROUTERS
from mllmcl.core.errors import UserError
from mllmcl.core.registry import Registry
from mllmcl.core.settings import Settings


@dataclass(frozen=True)
class MethodCard:
    """What a method is, as data the runner and the configuration check:

    - `sequential`: it has a T×T accuracy matrix, evaluated after every task (else only its final accuracies);
    - `routed`: it reports which expert answered each sample;
    - `learns`: it trains (False: its final accuracies are the run's zero-shot row);
    - `replayable`: it trains on its data, so `name+replay` can add a replay buffer;
    - `takes_router`: a router may be named in brackets, `name[router]`;
    - `uses_experts`: it answers with the run's per-task expert pool (methods/experts.py);
    - `check`: what it checks of the whole configuration when it loads (raises a UserError), if anything."""

    sequential: bool = True
    routed: bool = False
    learns: bool = True
    replayable: bool = False
    takes_router: bool = False
    uses_experts: bool = False
    check: Callable[[Any], None] | None = None


# --- the methods' settings blocks (a top-level section of the configuration each, named after the method) ---

class ReplaySettings(Settings):
    """The replay buffer of every `+replay` method. By default each past task gives a share of its training
    rows, by the position of the task being learned: the release's replay files `task2replay30` …
    `task5replay20`, read as percentages (docs/methods.md, "Differences from the paper")."""

    share: tuple[float, ...] = (0.3, 0.3, 0.2)
    """share of every past task's training rows replayed while learning the 2nd, 3rd, … task (the last entry
    holds for every later task)"""
    k: int | None = Field(None, ge=1)
    """stored samples per past task instead of a share (a count, for any benchmark)"""
    source: Literal["train", "file"] = "train"
    """train: drawn from each task's training rows; file: the release's replay file"""

    @field_validator("share")
    @classmethod
    def _shares(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0 < v <= 1 for v in value):
            raise ValueError("replay.share needs one or more shares in (0, 1]")
        return value

    def size(self, past_rows: int, learning: int) -> int:
        """Rows replayed from a past task of `past_rows` training rows while learning task number `learning`
        (1-based; the first task replays nothing)."""
        if self.k is not None:
            return min(self.k, past_rows)
        share = self.share[min(learning - 2, len(self.share) - 1)]
        return min(past_rows, max(1, round(share * past_rows)))


class EWCSettings(Settings):
    """Online EWC's penalty."""

    lambda_: float = Field(5000.0, alias="lambda", ge=0)
    """weight λ of the penalty λ/2 · Σ F (θ − θ*)² (0 = seq-lora)"""
    gamma: float = Field(1.0, ge=0, le=1)
    """online decay of the running Fisher: F ← γ·F + F_task"""
    samples: int = Field(200, ge=1)
    """training rows of the task whose squared per-sample gradients estimate its Fisher (one backward pass each)"""


class LwFSettings(Settings):
    """LwF's distillation term."""

    temperature: float = Field(2.0, gt=0)
    """softening temperature T of teacher and student (the term is scaled by T²)"""
    alpha: float = Field(1.0, ge=0)
    """weight of the distillation term beside the new task's cross-entropy (0 = seq-lora)"""
    top_k: int = Field(0, ge=0)
    """keep the teacher's k largest logits per position (0 = all; bounds the cache for large vocabularies)"""


class MoELoRASettings(Settings):
    """MoELoRA's experts."""

    experts: int = Field(4, ge=1)
    """LoRA experts per adapted layer, each of rank lora.rank / experts"""


def _moelora_fits(config) -> None:
    experts, rank = config.block("moelora").experts, config.lora.rank
    if rank % experts:
        raise UserError(f"moelora.experts={experts} does not divide lora.rank={rank} into experts of equal rank")


class OLoRASettings(Settings):
    """O-LoRA's per-task LoRA and its losses."""

    rank: int = Field(16, ge=1)
    """rank of each task's LoRA (the tasks' subspaces must fit side by side: T x rank <= the layers' width)"""
    lambda1: float = Field(0.5, ge=0)
    """weight of the orthogonality loss Σ ‖A_t A_jᵀ‖₁ (0.5 in O-LoRA; MCITlib uses 0.05)"""
    lambda2: float = Field(0.0, ge=0)
    """weight of an L2 penalty on the new task's LoRA (0 in O-LoRA)"""
    projector: bool = False
    """train one projector copy across the tasks, as MCITlib does (needs lora.projector; false: the base's)"""


class CLMoESettings(Settings):
    """CL-MoE's momentum merge of the experts between tasks."""

    merge: bool = False
    """merge the experts with their weights before each task (false: MCITlib's CL-MoE, the paper's row)"""
    momentum: float = Field(0.7, ge=0, le=1)
    """α of the merge: an expert kept α of its weights before the task (1 − α if only the last task used it)"""
    usage_top: int = Field(8, ge=1)
    """an expert is "used" by a task when among its usage_top most chosen (each token's top-2)"""


class HiDeSettings(Settings):
    """HiDe-LLaVA's top-layer expansion."""

    temperature: float = Field(0.1, gt=0)
    """softmax temperature over the tasks' anchor similarities in the top layer"""
    fuse: bool = True
    """fuse the blocks below the top layer (false: every layer weighs the blocks as the top layer does)"""


class DiscoSettings(Settings):
    """DISCO's subspace-selective activation."""

    temperature: float = Field(0.05, gt=0)
    """softmax temperature over the tasks' prototype similarities"""


class SEFESettings(Settings):
    """SEFE: RegLoRA's penalty and Answer Style Diversification."""

    lambda_: float = Field(2500.0, alias="lambda", ge=0)
    """weight of the L1 penalty on the new update at the earlier tasks' key positions (0 = plain merged LoRA)"""
    key_share: float = Field(0.02, gt=0, le=1)
    """share of each matrix's largest |B A| entries that become key positions after a task"""
    asd: float = Field(0.0, ge=0, le=1)
    """share of each task's training rows rewritten into another answer style (0 = off, the paper's row)"""
    projector: bool = False
    """train one projector copy across the tasks, as MCITlib does (needs lora.projector; false: the base's)"""


# --- the catalog -----------------------------------------------------------------------------------------------

METHODS: Registry[MethodCard] = Registry("method")
METHODS.add("zero-shot", MethodCard(sequential=False, learns=False),
            "the base model without any training (reference row)")
METHODS.add("seq-lora", MethodCard(replayable=True), "LoRA-FT: one LoRA trained on each task in turn (forgets)")
METHODS.add("replay", MethodCard(), "seq-lora + a replay buffer of every past task (= seq-lora+replay)",
            settings=ReplaySettings)
METHODS.add("joint", MethodCard(sequential=False), "one LoRA trained on all tasks at once (multi-task upper bound)")
METHODS.add("mr-lora", MethodCard(routed=True, takes_router=True, uses_experts=True),
            "MR-LoRA: a LoRA expert per task + a router choosing among the learned experts")
METHODS.add("oracle", MethodCard(sequential=False, uses_experts=True),
            "the mr-lora experts with the true task identity (upper reference)")
METHODS.add("ewc", MethodCard(replayable=True),
            "online EWC: seq-lora + a Fisher-weighted pull toward the earlier tasks' weights", settings=EWCSettings)
METHODS.add("lwf", MethodCard(replayable=True),
            "LwF: seq-lora + distillation from the model before each task on its new data", settings=LwFSettings)
METHODS.add("moelora", MethodCard(replayable=True, check=_moelora_fits),
            "MoELoRA: seq-lora with a mixture of LoRA experts and a per-token gate in every layer",
            settings=MoELoRASettings)
METHODS.add("o-lora", MethodCard(replayable=True),
            "O-LoRA: a new LoRA per task, orthogonal to the earlier ones; answers with their sum", settings=OLoRASettings)
METHODS.add("cl-moe", MethodCard(replayable=True),
            "CL-MoE: a mixture of one LoRA expert per task with a per-token router, optional momentum merge",
            settings=CLMoESettings)
METHODS.add("hide-llava", MethodCard(replayable=True),
            "HiDe-LLaVA: a LoRA block per task, picked by anchor similarity in the top layer, fused below",
            settings=HiDeSettings)
METHODS.add("sefe", MethodCard(replayable=True),
            "SEFE (RegLoRA): a merged LoRA per task, penalised at earlier tasks' key positions", settings=SEFESettings)
METHODS.add("disco", MethodCard(replayable=True),
            "DISCO: a LoRA subspace per task, weighted by the prompt's similarity to each task's prototype",
            settings=DiscoSettings)


# --- method entries ----------------------------------------------------------------------------------------------

_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+?)(?:\[(?P<router>[^\]]*)\])?(?P<replay>\+replay)?$")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method entry: its registered `name`, the `router` in brackets, whether `+replay` is added,
    and the `label` (the entry as written: its key in results.json)."""

    name: str
    router: str | None
    replay: bool
    label: str

    @property
    def blocks(self) -> set[str]:
        """The settings blocks the entry reads (its own, and `replay` for `+replay`)."""
        return {self.name} | ({"replay"} if self.replay else set())


def parse_method_spec(spec: str) -> MethodSpec:
    match = _SPEC.match(spec.strip())
    if not match or match["router"] == "":
        raise UserError(f"method {spec!r}: expected name, name[router] or name+replay, e.g. mr-lora[prototype], "
                        "ewc+replay")
    return MethodSpec(match["name"], match["router"], bool(match["replay"]), spec.strip())


def check_method_spec(spec: str) -> MethodSpec:
    """Parse `spec` and check it against the catalogs: a known method, a known router for a method that
    takes one, `+replay` only for a method that trains on its data. Raises a UserError naming the entry."""
    parsed = parse_method_spec(spec)
    try:
        card = METHODS.get(parsed.name)
    except UserError as err:
        raise UserError(f"method {spec!r}: {err}") from None
    if parsed.router is not None:
        if not card.takes_router:
            takes = [n for n in METHODS.names() if METHODS.get(n).takes_router]
            raise UserError(f"method {spec!r}: a router in brackets goes only with {', '.join(takes)}")
        try:
            ROUTERS.get(parsed.router)
        except UserError as err:
            raise UserError(f"method {spec!r}: {err}") from None
    if parsed.replay and not card.replayable:
        able = [n for n in METHODS.names() if METHODS.get(n).replayable]
        raise UserError(f"method {spec!r}: +replay applies to the methods that train on their data: {', '.join(able)}")
    return parsed


def card_of(spec: str) -> MethodCard:
    """The card of a method entry (`ewc+replay` is ewc's, less `replayable`)."""
    parsed = check_method_spec(spec)
    card = METHODS.get(parsed.name)
    return replace(card, replayable=False) if parsed.replay else card


def check_methods(config) -> None:
    """Every method entry of `config`, and what each method checks of the whole configuration (e.g. that
    MoELoRA's experts divide the LoRA rank)."""
    for spec in config.methods:
        card = METHODS.get(check_method_spec(spec).name)
        if card.check is not None:
            card.check(config)
