"""Synthetic Visual Perception: counting, 2D relations, depth and distance in CV-Bench's format.

Imitates: the Visual Perception ability task of MLLM-CL, tested on CV-Bench. Items are CV-Bench
multiple-choice prompts ("… Select from the following choices.\\n(A) …\\n(B) …") whose answer is the
option in parentheses, "(A)"; the official scorer lower-cases and strips spaces, newlines and periods
from both sides and accepts the answer when it is a substring of the prediction. `extra` carries CV-Bench's
`type` ("2D"/"3D"), `task` ("Count"/"Relation"/"Depth"/"Distance") and `choices`.

Question families (objects are the pretraining corpus' flat shapes):
* Count (2D, 25%)    — 1–4 copies of one object in a dice-like arrangement: "How many {shape}s are in the
  image?", options "(A) 4 (B) 3 (C) 2 (D) 1" (descending, as CV-Bench lists counts);
* Relation (2D, 25%) — a red and a blue object side by side or stacked, touching: "Considering the relative
  positions of the red {a} and the blue {b} in the image provided, where is the red {a} located with respect
  to the blue {b}?", options "(A) left (B) right (C) above (D) below";
* Depth (3D, 35%)    — a red, a blue and a green object standing on a floor at three depths (nearer = lower
  and larger): "Which object is closer to the camera taking this photo, the red {a}, the blue {b} or the
  green {c}?", options in that order;
* Distance (3D, 15%) — a grey reference with a red and a blue candidate, one right next to it, the other
  across the room: "Which object is closer to the grey {r}, the red {a} or the blue {b}?".
Why these layouts: measured on the shipped tiny model, a LoRA expert at the default budget learns what is
in the picture (a colour, a glyph, a local arrangement of two colours) but not where things are or how many
there are unless the picture repeats a fixed template; so objects are told apart by colour, options keep
one order (red, blue, green; the model barely matches answers to shuffled option lists), relations are
local (the objects touch) and counts use fixed arrangements. The truth is drawn uniformly: a constant
answer scores ~30%.

Train→test shift (`SHIFT`): train scenes are flat objects on a plain light backdrop (2D) or a beige or
grey wall over a brown floor (3D); test scenes use a light-blue gridded backdrop, a blue-grey wall over a
slate floor with board lines, give every object a dark outline and a soft shadow, and use other shapes'
mix (stars and diamonds twice as often).
"""
from __future__ import annotations

import random

from mllmcl.data.synth.base import SynthItem, Split, jitter, register
from mllmcl.data.synth.glyphs import COLORS, Canvas, paren_options

SHIFT = ("test: light-blue gridded 2D backdrop (train: plain light tints), blue-grey wall over a slate floor with board "
         "lines (train: beige or grey wall over a brown floor), every object outlined in dark with a soft shadow, stars "
         "and diamonds twice as frequent")
SHAPES = ("circle", "square", "triangle", "star", "diamond")
SHAPE_WEIGHTS = {"train": (1, 1, 1, 1, 1), "test": (1, 1, 1, 2, 2)}
SUFFIX = " Select from the following choices.\n"
COUNT_OPTIONS = ("4", "3", "2", "1")
RELATION_OPTIONS = ("left", "right", "above", "below")
GREY = (128, 128, 128)
DICE = {1: (((0.5, 0.5),),), 2: (((0.27, 0.27), (0.73, 0.73)), ((0.27, 0.73), (0.73, 0.27))),
        3: (((0.22, 0.22), (0.5, 0.5), (0.78, 0.78)), ((0.22, 0.78), (0.5, 0.5), (0.78, 0.22))),
        4: (((0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73)),)}
DEPTH_ROWS = ((0.52, 0.06), (0.68, 0.1), (0.9, 0.16))  # (y of the object's base, radius): far … near
DEPTH_X = (0.5, 0.2, 0.72)  # x of the far, middle and near slot
STYLE = {
    "train": dict(walls=((225, 210, 180), (215, 215, 210)), floors=((140, 100, 65), (125, 95, 70)),
                  flats=((240, 238, 230), (232, 232, 236), (244, 236, 224)), outline=False, grid=False),
    "test": dict(walls=((200, 210, 225),), floors=((100, 105, 115),), flats=((222, 232, 244),), outline=True,
                 grid=True),
}


def _shape(rng: random.Random, split: Split) -> str:
    return rng.choices(SHAPES, weights=SHAPE_WEIGHTS[split])[0]


def _backdrop(rng: random.Random, st: dict, c: Canvas, room: bool) -> None:
    if not room:
        c.rect(0, 0, 1, 1, jitter(rng, rng.choice(st["flats"]), 6))
        if st["grid"]:
            for k in range(1, 6):
                c.rect(k / 6 - 0.003, 0, k / 6 + 0.003, 1, (200, 214, 232))
                c.rect(0, k / 6 - 0.003, 1, k / 6 + 0.003, (200, 214, 232))
        return
    c.rect(0, 0, 1, 0.42, jitter(rng, rng.choice(st["walls"]), 8))
    floor = jitter(rng, rng.choice(st["floors"]), 8)
    c.rect(0, 0.42, 1, 1, floor)
    if st["grid"]:  # floor boards
        for y in (0.5, 0.62, 0.78, 0.96):
            c.rect(0, y - 0.004, 1, y + 0.004, tuple(max(0, v - 22) for v in floor))


def _obj(c: Canvas, st: dict, rng: random.Random, kind: str, rgb, x: float, y: float, r: float) -> None:
    """A flat object; in test with a dark outline."""
    if st["outline"]:
        c.shape(kind, x, y, r * 1.12, (30, 30, 30))
    c.shape(kind, x, y, r, jitter(rng, rgb, 12))


def _count(rng: random.Random, split: Split, st: dict, c: Canvas) -> tuple[str, list[str], int]:
    _backdrop(rng, st, c, room=False)
    n, kind = rng.randint(1, 4), rng.choice(("circle", "square"))
    for x, y in rng.choice(DICE[n]):
        _obj(c, st, rng, kind, COLORS["blue"], x, y, 0.13)
    return f"How many {kind}s are in the image?", list(COUNT_OPTIONS), COUNT_OPTIONS.index(str(n))


def _relation(rng: random.Random, split: Split, st: dict, c: Canvas) -> tuple[str, list[str], int]:
    """A grey object in the middle and a red one beside, above or below it."""
    _backdrop(rng, st, c, room=False)
    ka, kb = _shape(rng, split), _shape(rng, split)
    truth = rng.randrange(4)  # red left of / right of / above / below grey
    dx, dy = {0: (-1, 0), 1: (1, 0), 2: (0, -1), 3: (0, 1)}[truth]
    _obj(c, st, rng, kb, GREY, 0.5, 0.5, 0.13)
    _obj(c, st, rng, ka, COLORS["red"], 0.5 + 0.32 * dx, 0.5 + 0.32 * dy, 0.13)
    q = (f"Considering the relative positions of the red {ka} and the grey {kb} in the image provided, where is "
         f"the red {ka} located with respect to the grey {kb}?")
    return q, list(RELATION_OPTIONS), truth


def _depth(rng: random.Random, split: Split, st: dict, c: Canvas) -> tuple[str, list[str], int]:
    _backdrop(rng, st, c, room=True)
    names = ("red", "blue", "green")
    kinds = [_shape(rng, split) for _ in names]
    rows = rng.sample(range(3), 3)  # depth row of the red, blue and green object
    for name, kind, row in sorted(zip(names, kinds, rows), key=lambda t: t[2]):  # far first
        base, r = DEPTH_ROWS[row]
        _obj(c, st, rng, kind, COLORS[name], DEPTH_X[row], base - r, r)
    labels = [f"{name} {kind}" for name, kind in zip(names, kinds)]
    q = (f"Which object is closer to the camera taking this photo, the {labels[0]}, the {labels[1]} or the "
         f"{labels[2]}?")
    return q, labels, rows.index(2)


def _distance(rng: random.Random, split: Split, st: dict, c: Canvas) -> tuple[str, list[str], int]:
    """The reference stands on the middle row; the near candidate right beside it, the far one at the back on
    the other side of the room."""
    _backdrop(rng, st, c, room=True)
    kr, ka, kb = (_shape(rng, split) for _ in range(3))
    left = rng.random() < 0.5  # the reference on the left, the near candidate beside it on its right
    base, r = DEPTH_ROWS[1]
    far_base, far_r = DEPTH_ROWS[0]
    rx, near_x, far_x = (0.22, 0.5, 0.84) if left else (0.78, 0.5, 0.16)
    red_near = rng.random() < 0.5
    near, far = ("red", "blue") if red_near else ("blue", "red")
    _obj(c, st, rng, ka if far == "red" else kb, COLORS[far], far_x, far_base - far_r, far_r)
    _obj(c, st, rng, kr, GREY, rx, base - r, r)
    _obj(c, st, rng, ka if near == "red" else kb, COLORS[near], near_x, base - r, r)
    q = f"Which object is closer to the grey {kr}, the red {ka} or the blue {kb}?"
    return q, [f"red {ka}", f"blue {kb}"], 0 if red_near else 1


FAMILIES = {"Count": ("2D", _count, 0.25), "Relation": ("2D", _relation, 0.25), "Depth": ("3D", _depth, 0.35),
            "Distance": ("3D", _distance, 0.15)}


@register("VP", "acl", shift=SHIFT)
def draw(rng: random.Random, split: Split, size: int = 48) -> SynthItem:
    """Counting, left/right/above/below, depth and distance questions in CV-Bench's multiple-choice format."""
    task = rng.choices(list(FAMILIES), weights=[f[2] for f in FAMILIES.values()])[0]
    kind, builder, _ = FAMILIES[task]
    c = Canvas(size, (255, 255, 255))
    question, options, index = builder(rng, split, STYLE[split], c)
    extra = {"type": kind, "task": task, "choices": options}
    return SynthItem(c.finish(), question + SUFFIX + paren_options(options), f"({'ABCD'[index]})", extra,
                     source="cvbench")
