"""What a synthetic task is: a seeded drawer of (image, question, answer) items for one split.

Every synthetic task imitates one task of the real MLLM-CL release in look and question style and is
registered under the real task's name (`RS`, `Med`, … `APP`) in `SYNTH_TASKS`. The writer
(`mllmcl.data.synth.write`) turns the items into the official on-disk layout, so the loader that reads
the real release reads the synthetic one unchanged.

Determinism: each item is drawn from its own `random.Random` seeded by (seed, task, split, index), so an
item never depends on how many items were drawn before it or on the order of drawing. The validation
split ("val") is drawn by the test drawer (`split="test"`) from generators seeded with "val", so it
follows the test distribution with items of its own.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from PIL import Image, ImageFont

from mllmcl.core.registry import Registry

Split = Literal["train", "test"]
"""The distribution a drawer draws from (ACL drawers shift the test split)."""
SeedSplit = Literal["train", "val", "test"]
"""The split an item's generator is seeded with: validation items are drawn like test items, from seeds of
their own."""


@dataclass(frozen=True)
class SynthItem:
    """One drawn item.

    `question` is the user's turn without the `<image>` placeholder; `answer` the reference answer (a
    string, as the official files store it; OCR items may carry a list in `extra["answer"]`).
    `extra` holds the task-specific fields the official test rows carry and the scorers read
    (`answer_type`, `question_type`, `choices`, `type`, `task`, …); they are copied into test rows.
    `source` names the sub-dataset the item imitates; it prefixes the image file name where the official
    scorer reads the prefix (Sci: `ai2d_…`, `mapqa_…`).
    """

    image: Image.Image
    question: str
    answer: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""


Drawer = Callable[..., SynthItem]
"""`draw(rng, split, size) -> SynthItem`: one item of `split` on a `size`×`size` canvas. Domain drawers also
take `look=` (a `draw.Look`: their own backdrop palette, or the pool shared by all domains)."""

SharedRule = Callable[..., SynthItem]
"""`shared(rng, family, size, look) -> SynthItem`: a domain's one fixed rule for the shared-format question
`family` ("yesno", "letter", "text"; `mllmcl.data.synth.shared`): the image and the answer it determines (the
question is left empty; the shared module writes it, identical in every domain)."""


@dataclass(frozen=True)
class SynthTask:
    """A registered synthetic task: its drawer, the documented train→test shift (empty for IID), the answer
    format of each of its own question families (`formats`: family → yesno, letter, text or number) and, for a
    domain, its rule for the shared-format questions (None: the task has none, as the ACL tasks) with the share
    of each shared format among its items (`mix`, after the real task's mix of answer formats)."""

    name: str
    setting: Literal["dcl", "acl"]
    draw: Drawer
    shift: str = ""
    shared: SharedRule | None = None
    mix: Mapping[str, float] = field(default_factory=dict)
    formats: Mapping[str, str] = field(default_factory=dict)


SYNTH_TASKS: Registry[SynthTask] = Registry("synthetic task")


def register(name: str, setting: Literal["dcl", "acl"], shift: str = "", shared: SharedRule | None = None,
             mix: Mapping[str, float] | None = None, formats: Mapping[str, str] | None = None
             ) -> Callable[[Drawer], Drawer]:
    """Decorator: register `draw` as the synthetic stand-in for the real task `name` (with `shared`, its
    rule for the shared-format questions, and `mix`, how often it asks each of them; `formats`, the answer
    format of each of its own families)."""
    if shared is not None and not mix:
        raise ValueError(f"synthetic task {name}: a shared-format rule needs its mix of formats")

    def decorate(draw: Drawer) -> Drawer:
        description = (draw.__doc__ or "").strip().split("\n")[0]
        task = SynthTask(name, setting, draw, shift, shared, dict(mix or {}), dict(formats or {}))
        SYNTH_TASKS.register(name, description)(lambda: task)
        return draw

    return decorate


def item_rng(seed: int, task: str, split: SeedSplit, index: int) -> random.Random:
    """The private generator of one item (string seeds are hashed deterministically by `random`)."""
    return random.Random(f"mllmcl-synth/{seed}/{task}/{split}/{index}")


# ---------------------------------------------------------------- drawing helpers shared by the tasks
def font(px: int, kind: Literal["sans", "bitmap"] = "sans") -> ImageFont.ImageFont:
    """A font that ships with Pillow, so every machine draws the same pixels: `sans` is Pillow's bundled
    TrueType face at `px` pixels, `bitmap` its fixed-size bitmap face (a different style, used as a shift)."""
    if kind == "bitmap":
        return ImageFont.load_default_imagefont()
    return ImageFont.load_default(px)


def jitter(rng: random.Random, rgb: tuple[int, int, int], amount: int = 20) -> tuple[int, int, int]:
    """`rgb` with each channel moved by up to ±amount: no task may be told apart by one exact colour."""
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def multiple_choice(rng: random.Random, correct: str, distractors: list[str], n: int = 4) -> tuple[str, str, list[str]]:
    """Shuffle `correct` among `n-1` distinct distractors. Returns (options text `A. x\\nB. y…`, the
    correct letter, the option texts in order)."""
    pool = [d for d in dict.fromkeys(distractors) if d != correct]
    options = [correct] + rng.sample(pool, n - 1)
    rng.shuffle(options)
    text = "\n".join(f"{letter}. {option}" for letter, option in zip(letters(n), options))
    return text, letters(n)[options.index(correct)], options
