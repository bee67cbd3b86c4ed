"""Synthetic Visual Perception: counting, 2D relations, depth and distance in CV-Bench's format.

Imitates: the Visual Perception ability task of MLLM-CL, tested on CV-Bench. Test rows are CV-Bench
multiple-choice prompts ("… Select from the following choices.\n(A) …\n(B) …") whose answer is the
option in parentheses, "(A)" (`extra["answer"]`, which the writer puts in the test row); the official
scorer lower-cases and strips spaces, newlines and periods from both sides and accepts the answer when it
is a substring of the prediction. `extra` also carries CV-Bench's `type` ("2D"/"3D"), `task`
("Count"/"Relation"/"Depth"/"Distance") and `choices`. The training target names the option and then
its letter, "red star (A)", which the scorer accepts as well: a bare "(A)" is a bracketed letter that says
nothing about the picture, and a LoRA expert on the tiny model at the default budget learns it far less
readily than a target that names the option first.

Question families (a quarter each; objects are the pretraining corpus' flat shapes):
* Count (2D)    — 1–4 blue circles or squares in a dice-like arrangement: "How many {shape}s are in the
  image?", options "(A) 4 (B) 3 (C) 2 (D) 1" (descending, as CV-Bench lists counts);
* Relation (2D) — a grey object, one candidate right against its left side, the two others apart from it
  (right, above or below): "Considering the relative positions of the objects in the image provided,
  which object is located to the left of the grey {s}?", options red, blue, green;
* Depth (3D)    — a red, a blue and a green object standing on a floor at three depths (nearer = lower and
  larger): "Which object is closer to the camera taking this photo, the red {a}, the blue {b} or the
  green {c}?";
* Distance (3D) — a grey reference with a red and a blue candidate, one on its row, one at the back across
  the room: "Which object is closer to the grey {r}, the red {a} or the blue {b}?".
Why so plain: on the tiny model, the expert learns *what* is in a picture (a colour, a size, two colours
touching) and a few repeated arrangements, but not positions in general (whether a red object is left or
right of a grey one), counts on random cells, nor matching an answer to a shuffled option list. So options
keep one order (4 3 2 1; red, blue, green), objects are told apart by colour, and each family repeats a
few arrangements. The truth is drawn uniformly, so a constant answer scores chance in each family (one in
four options for Count, three for Relation and Depth, two for Distance). `python bench/calibrate.py`
measures the task's difficulty.

Train→test shift (`SHIFT`): train 2D items sit on plain light backdrops (three tints), test ones on a
light-blue backdrop with a faint grid; train 3D scenes have a beige or grey wall over a brown floor, test
scenes a blue-grey wall over a grey-brown floor with board lines; stars and diamonds are twice as frequent
in test.
"""
from __future__ import annotations

import random

from mllmcl.data.synth.base import SynthItem, Split, jitter, register
from mllmcl.data.synth.glyphs import COLORS, Canvas, paren_options

SHIFT = ("test: light-blue 2D backdrop with a faint grid (train: plain light tints); blue-grey wall over a grey-brown "
         "floor with board lines (train: beige or grey wall over a brown floor); stars and diamonds twice as frequent")
SHAPES = ("circle", "square", "triangle", "star", "diamond")
SHAPE_WEIGHTS = {"train": (1, 1, 1, 1, 1), "test": (1, 1, 1, 2, 2)}
SUFFIX = " Select from the following choices.\n"
COUNT_OPTIONS = ("4", "3", "2", "1")
GREY = (128, 128, 128)
DICE = {1: (((0.5, 0.5),),), 2: (((0.27, 0.27), (0.73, 0.73)), ((0.27, 0.73), (0.73, 0.27))),
        3: (((0.22, 0.22), (0.5, 0.5), (0.78, 0.78)), ((0.22, 0.78), (0.5, 0.5), (0.78, 0.22))),
        4: (((0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73)),)}
DEPTH_ROWS = ((0.52, 0.06), (0.68, 0.1), (0.9, 0.16))  # (y of the object's base, radius): far … near
DEPTH_X = (0.5, 0.2, 0.72)  # x of the far, middle and near slot
STYLE = {
    "train": dict(walls=((225, 210, 180), (215, 215, 210)), floors=((140, 100, 65), (125, 95, 70)),
                  flats=((240, 238, 230), (232, 232, 236), (244, 236, 224)), grid=False),
    "test": dict(walls=((200, 210, 225),), floors=((112, 100, 92),), flats=((222, 232, 244),), grid=True),
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


def _obj(c: Canvas, rng: random.Random, kind: str, rgb, x: float, y: float, r: float) -> None:
    c.shape(kind, x, y, r, jitter(rng, rgb, 12))


def _count(rng: random.Random, split: Split, st: dict, c: Canvas) -> tuple[str, list[str], int]:
    _backdrop(rng, st, c, room=False)
    n, kind = rng.randint(1, 4), rng.choice(("circle", "square"))
    for x, y in rng.choice(DICE[n]):
        _obj(c, rng, kind, COLORS["blue"], x, y, 0.13)
    return f"How many {kind}s are in the image?", list(COUNT_OPTIONS), COUNT_OPTIONS.index(str(n))


def _relation(rng: random.Random, split: Split, st: dict, c: Canvas) -> tuple[str, list[str], int]:
    """A grey object in the middle; one candidate right against its left side, the two others apart from it,
    to its right and above or below it (which colour goes where is drawn)."""
    _backdrop(rng, st, c, room=False)
    kinds = [_shape(rng, split) for _ in range(4)]
    spots = [(0.27, 0.5), (0.82, 0.5), (0.5, rng.choice((0.16, 0.84)))]  # left (touching), right, above/below
    order = rng.sample(range(3), 3)  # spot of the red, blue and green candidate
    _obj(c, rng, kinds[3], GREY, 0.5, 0.5, 0.12)
    for name, kind, k in zip(("red", "blue", "green"), kinds, order):
        _obj(c, rng, kind, COLORS[name], *spots[k], 0.12)
    labels = [f"{name} {kind}" for name, kind in zip(("red", "blue", "green"), kinds)]
    q = (f"Considering the relative positions of the objects in the image provided, which object is located to "
         f"the left of the grey {kinds[3]}?")
    return q, labels, order.index(0)


def _depth(rng: random.Random, split: Split, st: dict, c: Canvas) -> tuple[str, list[str], int]:
    _backdrop(rng, st, c, room=True)
    names = ("red", "blue", "green")
    kinds = [_shape(rng, split) for _ in names]
    rows = rng.sample(range(3), 3)  # depth row of the red, blue and green object
    for name, kind, row in sorted(zip(names, kinds, rows), key=lambda t: t[2]):  # far first
        base, r = DEPTH_ROWS[row]
        _obj(c, rng, kind, COLORS[name], DEPTH_X[row], base - r, r)
    labels = [f"{name} {kind}" for name, kind in zip(names, kinds)]
    q = (f"Which object is closer to the camera taking this photo, the {labels[0]}, the {labels[1]} or the "
         f"{labels[2]}?")
    return q, labels, rows.index(2)


def _distance(rng: random.Random, split: Split, st: dict, c: Canvas) -> tuple[str, list[str], int]:
    """The grey reference stands on the middle row at one side; the near candidate on the same row in the
    middle, the far one at the back on the other side of the room."""
    _backdrop(rng, st, c, room=True)
    kr, ka, kb = (_shape(rng, split) for _ in range(3))
    left = rng.random() < 0.5
    rx, near_x, far_x = (0.22, 0.5, 0.84) if left else (0.78, 0.5, 0.16)
    red_near = rng.random() < 0.5
    (near_rgb, near_kind), (far_rgb, far_kind) = sorted(
        [(COLORS["red"], ka), (COLORS["blue"], kb)], key=lambda t: (t[0] != COLORS["red"]) == red_near)
    far_base, far_r = DEPTH_ROWS[0]
    base, r = DEPTH_ROWS[1]
    _obj(c, rng, far_kind, far_rgb, far_x, far_base - far_r, far_r)
    _obj(c, rng, kr, GREY, rx, base - r, r)
    _obj(c, rng, near_kind, near_rgb, near_x, base - r, r)
    q = f"Which object is closer to the grey {kr}, the red {ka} or the blue {kb}?"
    return q, [f"red {ka}", f"blue {kb}"], 0 if red_near else 1


FAMILIES = {"Count": ("2D", _count), "Relation": ("2D", _relation), "Depth": ("3D", _depth),
            "Distance": ("3D", _distance)}


@register("VP", "acl", shift=SHIFT)
def draw(rng: random.Random, split: Split, size: int = 48) -> SynthItem:
    """Counting, relation, depth and distance questions in CV-Bench's multiple-choice format."""
    task = rng.choice(list(FAMILIES))
    kind, builder = FAMILIES[task]
    c = Canvas(size, (255, 255, 255))
    question, options, index = builder(rng, split, STYLE[split], c)
    letter = f"({'ABCD'[index]})"
    extra = {"type": kind, "task": task, "choices": options, "answer": letter}
    return SynthItem(c.finish(), question + SUFFIX + paren_options(options), f"{options[index]} {letter}", extra,
                     source="cvbench")
