"""RS — synthetic remote sensing, imitating RSVQA-LR (low-resolution Sentinel-2 tiles with short
questions of four types: presence, comparison, count, rural/urban; scored by the "ai2d rule").

The image is a top-down tile: a land texture (grass, crops, dry soil, sand, olive scrub, or grey urban
ground, in jittered palettes), optionally a patchwork of field parcels, a lake, river or coast, straight
roads and buildings drawn as terracotta / brick-red roof rectangles with a shadow edge. As in RSVQA-LR,
counts are answered in ranges.

Question families (`extra["question_type"]`, balanced closed answers):
  presence     "Is there a water area?"                                   -> Yes / No
  count        "How many buildings are there?"                            -> 0 / between 1 and 10 /
                                                                             between 11 and 100
  comparison   "Is the area covered by water bigger than the area covered by buildings?" -> Yes / No
  rural_urban  "Is it a rural or an urban area?"                          -> rural / urban

Learnability (why the drawer draws what it does; `python bench/calibrate.py` measures each task's difficulty):
within an expert's short budget the tiny model learns answers carried by how much of the tile looks a certain
way (ground tone, share of water, share and amount of roof colour), not by one small object, by shapes or by
where things are: a small lake, an exact count of a few roofs, and count ranges drawn with roofs of mixed
colours (red, grey, white) were not learned. So water covers about half of the tile when present, roofs are
always red-brown (land palettes hold no red), count ranges are drawn as no roofs / 1-3 large roofs / a dense
grid of 14-16 (so the amount of roof colour separates them), and the comparison pits a large water body
against a few roofs or a small pond (or none) against many.

Shared formats (`overlap`, see `mllmcl.data.synth.shared`), asked mostly as RSVQA mixes its formats (yes/no
50%, short answers 35%, letters 15%): the generic yes/no question means "is there a large water body?"
(the presence drawing), the generic short-answer question the building count in RSVQA's ranges (the count
drawing), the generic letter question A rural / B urban.
"""
from __future__ import annotations

import random

from mllmcl.data.synth.base import SynthItem, jitter, letters, register
from mllmcl.data.synth.draw import NO, OWN_LOOK, ROOFS, WATER, YES, Canvas, Look, np_rng, place, shade, texture

LAND = ((96, 140, 70), (150, 160, 80), (140, 110, 80), (200, 180, 135), (110, 115, 75), (170, 150, 100))
URBAN_GROUND = ((150, 145, 135), (170, 160, 150), (125, 125, 120), (185, 175, 160))
FIELD_TONES = ((80, 130, 55), (170, 170, 90), (130, 100, 70), (190, 175, 110), (110, 150, 80))
ROAD = ((105, 105, 102), (125, 122, 115), (150, 145, 140), (175, 170, 160))
COUNTS = ("0", "between 1 and 10", "between 11 and 100")

PRESENCE_Q = ("Is there a water area?", "Is a water area present?", "Is there a water area in the image?")
COUNT_Q = ("How many buildings are there?", "What is the number of buildings?")
COMPARE_Q = ("Is the area covered by water bigger than the area covered by buildings?",
             "Is there more water than buildings?")
RURAL_Q = ("Is it a rural or an urban area?", "Is this a rural or an urban area?")
FAMILIES = ("presence", "count", "comparison", "rural_urban")
FORMATS = {"presence": "yesno", "count": "text", "comparison": "yesno", "rural_urban": "text"}
MIX = {"yesno": 0.5, "text": 0.35, "letter": 0.15}
SETTLEMENTS = ("rural", "urban")
"""The shared letter options of RS: A rural, B urban."""


def _fields(canvas: Canvas, rng: random.Random) -> None:
    """A patchwork of rectangular parcels, as in agricultural land seen from above."""
    cuts_x = sorted(rng.uniform(0.1, 0.9) for _ in range(rng.randint(1, 3)))
    cuts_y = sorted(rng.uniform(0.1, 0.9) for _ in range(rng.randint(1, 3)))
    for x0, x1 in zip([0.0, *cuts_x], [*cuts_x, 1.0]):
        for y0, y1 in zip([0.0, *cuts_y], [*cuts_y, 1.0]):
            if rng.random() < 0.6:
                canvas.rect(x0 + 0.01, y0 + 0.01, x1 - 0.01, y1 - 0.01, fill=jitter(rng, rng.choice(FIELD_TONES), 15))


def _water(canvas: Canvas, rng: random.Random, large: bool) -> list[tuple[float, float, float]]:
    """A large lake, river or coast (about half of the tile), or a small pond. Returns discs
    (x, y, r) covering it, where no building may stand."""
    colour = jitter(rng, rng.choice(WATER), 12)
    kind = rng.choice(("lake", "river", "coast")) if large else "pond"
    if kind in ("lake", "pond"):
        spread = (0.4, 0.6) if large else (0.2, 0.8)
        cx, cy = rng.uniform(*spread), rng.uniform(*spread)
        r = rng.uniform(0.38, 0.44) if large else rng.uniform(0.08, 0.11)
        for _ in range(3):
            canvas.ellipse(cx + rng.uniform(-0.2, 0.2) * r, cy + rng.uniform(-0.2, 0.2) * r,
                           r * rng.uniform(0.85, 1.0), r * rng.uniform(0.7, 0.9), fill=colour)
        return [(cx, cy, r * 1.1)]
    if kind == "river":
        pts = [(t / 4, rng.uniform(0.35, 0.65)) for t in range(5)]
        width = rng.uniform(0.4, 0.46)
    else:  # coast: open water beyond a wavy shore line along one edge
        pts = [(t / 4, rng.uniform(0.05, 0.2)) for t in range(5)]
        width = rng.uniform(0.75, 0.9)
        if rng.random() < 0.5:
            pts = [(x, 1 - y) for x, y in pts]
    if rng.random() < 0.5:
        pts = [(y, x) for x, y in pts]
    canvas.line(pts, colour, width)
    return [(x0 + (x1 - x0) * t / 4, y0 + (y1 - y0) * t / 4, width / 2)
            for (x0, y0), (x1, y1) in zip(pts, pts[1:]) for t in range(4)]


def _roads(canvas: Canvas, rng: random.Random, n: int) -> None:
    """`n` straight roads crossing the whole tile, alternating directions so they stay distinct."""
    colour = jitter(rng, rng.choice(ROAD), 10)
    horizontal = rng.random() < 0.5
    for k, off in enumerate(rng.sample([0.2, 0.35, 0.5, 0.65, 0.8], n)):
        a, b = off + rng.uniform(-0.05, 0.05), off + rng.uniform(-0.05, 0.05)
        ends = [(-0.05, a), (1.05, b)] if (horizontal ^ (k % 2 == 1)) else [(a, -0.05), (b, 1.05)]
        canvas.line(ends, colour, rng.uniform(0.045, 0.06))


def _roof(canvas: Canvas, rng: random.Random, cx: float, cy: float, extent: tuple[float, float]) -> None:
    w, h = rng.uniform(*extent) / 2, rng.uniform(*extent) / 2
    roof = jitter(rng, rng.choice(ROOFS), 12)
    canvas.rect(cx - w + 0.02, cy - h + 0.02, cx + w + 0.02, cy + h + 0.02, fill=shade(roof, 0.35))
    canvas.rect(cx - w, cy - h, cx + w, cy + h, fill=roof)


def _buildings(canvas: Canvas, rng: random.Random, n: int, avoid=(), dense: bool = False) -> int:
    """`n` roofs: a few large ones scattered clear of the water (`avoid`), or (`dense`) smaller ones on
    a jittered 4×4 grid. Returns how many were drawn."""
    if dense:
        free = [((i + 0.5) / 4, (j + 0.5) / 4) for i in range(4) for j in range(4)]
        free = [(x, y) for x, y in free if all((x - a) ** 2 + (y - b) ** 2 >= (r + 0.07) ** 2 for a, b, r in avoid)]
        cells = rng.sample(free, min(n, len(free)))
        for x, y in cells:
            _roof(canvas, rng, x + rng.uniform(-0.025, 0.025), y + rng.uniform(-0.025, 0.025), (0.12, 0.14))
        return len(cells)
    centres = place(rng, n, 0.12, (0.02, 0.02, 0.98, 0.98), avoid=avoid)
    for cx, cy in centres:
        _roof(canvas, rng, cx, cy, (0.15, 0.2))
    return len(centres)


def _ground(rng: random.Random, size: int, urban: bool, look: Look = OWN_LOOK) -> Canvas:
    base = look.pick(rng, URBAN_GROUND if urban else LAND, "ground", 15)
    canvas = Canvas(size, texture(np_rng(rng), size, base, amount=14 if urban else 22, grain=6))
    if urban:  # paved blocks, lighter than the ground
        for _ in range(rng.randint(2, 4)):
            x, y = rng.uniform(0, 0.8), rng.uniform(0, 0.8)
            canvas.rect(x, y, x + rng.uniform(0.15, 0.3), y + rng.uniform(0.15, 0.3), fill=shade(base, 1.12))
    elif rng.random() < 0.6:
        _fields(canvas, rng)
    return canvas


def _presence(canvas: Canvas, rng: random.Random, answer: str) -> None:
    wet = _water(canvas, rng, large=True) if answer == YES else []
    _roads(canvas, rng, rng.choice((0, 0, 1, 2)))
    _buildings(canvas, rng, rng.randint(0, 3), wet)


def _count(canvas: Canvas, rng: random.Random, answer: str) -> None:
    _roads(canvas, rng, rng.choice((0, 0, 1)))
    if answer == COUNTS[2]:
        _buildings(canvas, rng, rng.randint(14, 16), dense=True)
    else:
        wet = _water(canvas, rng, large=False) if rng.random() < 0.3 else []
        if answer == COUNTS[1] and _buildings(canvas, rng, rng.randint(1, 3), wet) == 0:
            _buildings(canvas, rng, 1)  # cannot happen beside one pond; keeps the answer true


def _settlement(canvas: Canvas, rng: random.Random, urban: bool) -> None:
    if not urban and rng.random() < 0.25:
        _water(canvas, rng, large=False)
    _roads(canvas, rng, rng.randint(2, 3) if urban else rng.randint(0, 1))
    _buildings(canvas, rng, rng.randint(10, 14) if urban else rng.randint(0, 2), dense=urban)


def shared(rng: random.Random, family: str, size: int, look: Look) -> SynthItem:
    """RS's rule for a shared-format question (see the module doc); the question is the shared one."""
    if family == "letter":  # rural or urban
        urban = rng.random() < 0.5
        canvas = _ground(rng, size, urban, look)
        _settlement(canvas, rng, urban)
        return SynthItem(canvas.finish(), "", letters(2)[urban])
    answer = rng.choice((YES, NO) if family == "yesno" else COUNTS)
    canvas = _ground(rng, size, False, look)
    (_presence if family == "yesno" else _count)(canvas, rng, answer)
    return SynthItem(canvas.finish(), "", answer)


@register("RS", "dcl", shared=shared, mix=MIX, formats=FORMATS)
def draw(rng: random.Random, split: str, size: int = 48, look: Look = OWN_LOOK) -> SynthItem:
    """Aerial tiles with RSVQA-style presence, count, comparison and rural/urban questions."""
    family = rng.choice(FAMILIES)
    urban = family == "rural_urban" and rng.random() < 0.5
    canvas = _ground(rng, size, urban, look)
    if family == "presence":
        answer = rng.choice((YES, NO))
        _presence(canvas, rng, answer)
        question = rng.choice(PRESENCE_Q)
    elif family == "count":
        answer = rng.choice(COUNTS)
        _count(canvas, rng, answer)
        question = rng.choice(COUNT_Q)
    elif family == "comparison":
        answer = rng.choice((YES, NO))
        _roads(canvas, rng, rng.choice((0, 1)))
        if answer == YES:
            _buildings(canvas, rng, rng.randint(1, 3), _water(canvas, rng, large=True))
        else:
            pond = _water(canvas, rng, large=False) if rng.random() < 0.5 else []
            _buildings(canvas, rng, rng.randint(10, 14), pond, dense=True)
        question = rng.choice(COMPARE_Q)
    else:
        answer = "urban" if urban else "rural"
        _settlement(canvas, rng, urban)
        question = rng.choice(RURAL_Q)
    return SynthItem(canvas.finish(), question, answer, {"question_type": family})
