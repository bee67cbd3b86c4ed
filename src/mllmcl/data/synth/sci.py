"""Sci — synthetic science diagrams, imitating the Sci task of MLLM-CL (AI2D and TQA textbook diagrams
answered with an option letter, MapQA choropleth maps answered in words).

Scoring follows the image-name prefix (`source`, case-sensitive as in the official script): `AI2D` / `TQA`
items are exact-match on the option letter; `MapQA` items are substring matches (the scorer's partial
credit applies to "Which states…" prompts, which this stand-in does not ask: see below). Multiple-choice
items carry `extra["choices"]` and end with the real instruction "Answer with the option's letter from
the given choices directly.".

Diagrams are flat clip-art on light paper (white, cream, pale blue, green or grey, jittered) or, for
astronomy, on a dark sky; maps are four-state choropleths (North, South, East, West) on one sequential
colour ramp (blues, greens, oranges, purples or reds) with a legend strip.

Question families (`extra["question_type"]`, balanced closed answers):
  plant_part   (AI2D)   "Which part of a plant does the diagram show?" A. flower B. leaf C. root D. fruit
  moon_phase   (TQA)    "Which phase of the moon is shown?"  A. new moon B. first quarter C. full moon
  map_majority (MapQA)  "Are most states in the highest value range?" -> Yes / No

Learnability (why the drawer draws what it does; `python bench/calibrate.py` measures each task's difficulty):
the tiny model does not match a drawn property against shuffled option texts, and within an expert's short
budget it does not learn to, so options are listed in their natural order (as many textbook items are) and the
letter follows from what is drawn. It learns which colours fill the picture, not where a thing is: a highlight
box around one part of a whole plant, quarter moons lit on the left vs. right, "Is North higher than South?"
and "Which states have the highest value?" (answered with the other map question's "Yes"/"No") were not
learned, and a waxing crescent is too close to the first quarter. So the plant item is a close-up of one part
in a colour of its own (violet petals, green leaf, brown soil, red fruit), the three phases differ in how much
of a large disc is lit, and the map question is answered by the overall shade of the map.

Shared formats (`overlap`, see `mllmcl.data.synth.shared`), asked mostly as the Sci sources mix their formats
(letters 50%, yes/no 30%, short answers 20%): the generic letter question means the plant part (A flower /
B leaf / C root / D fruit) on a plant close-up and the moon phase (A new moon / B first quarter / C full
moon) on a sky, the generic short-answer question the same part or phase by name, the generic yes/no
question "are most states in the highest value range?" on a choropleth map. Under the shared
look (`visual_overlap`) paper and night sky take tones from the shared pool.
"""
from __future__ import annotations

import math
import random

from mllmcl.data.synth.base import SynthItem, jitter, letters, register
from mllmcl.data.synth.draw import NO, OWN_LOOK, YES, Canvas, Look, mix, shade

PAPER = ((250, 250, 248), (245, 240, 225), (225, 235, 245), (230, 240, 225), (225, 225, 228), (200, 210, 225))
NIGHT = ((20, 25, 45), (35, 35, 40), (15, 15, 20), (45, 50, 75))
PETALS = ((150, 90, 230), (110, 100, 235), (130, 80, 210), (170, 120, 245))
FRUIT = ((225, 50, 30), (240, 110, 20), (215, 35, 45), (235, 85, 25))
LEAF = ((60, 150, 60), (90, 170, 60), (40, 120, 70))
SOIL = ((120, 85, 55), (100, 75, 50), (140, 100, 65))
RAMPS = (((235, 243, 255), (8, 48, 107)), ((240, 250, 235), (0, 90, 40)), ((255, 240, 225), (150, 50, 5)),
         ((245, 240, 250), (75, 20, 120)), ((255, 235, 235), (140, 10, 20)))
PARTS = ("flower", "leaf", "root", "fruit")
PHASES = ("new moon", "first quarter", "full moon")
STATES = ("North", "South", "East", "West")

PLANT_Q = ("Which part of a plant does the diagram show?", "What plant part is shown in the picture?")
MOON_Q = ("Which phase of the moon is shown?", "What moon phase does the diagram show?")
MAJORITY_Q = ("Are most states in the highest value range?", "Do most states have a high value?")
FAMILIES = ("plant_part", "moon_phase", "map_majority")
FORMATS = {"plant_part": "letter", "moon_phase": "letter", "map_majority": "yesno"}
MIX = {"letter": 0.5, "yesno": 0.3, "text": 0.2}


def _choice_item(image, stem: str, options: tuple[str, ...], correct: str, family: str, source: str) -> SynthItem:
    """A multiple-choice item: options in their natural order, the letter of `correct` as answer."""
    marks = letters(len(options))
    lines = [f"{m}. {o}" for m, o in zip(marks, options)]
    question = "\n".join([stem, *lines])
    answer = marks[options.index(correct)]
    return SynthItem(image, question, answer, {"question_type": family, "choices": list(options)}, source)


def _plant(rng: random.Random, size: int, part: str, look: Look):
    """A textbook close-up of one plant part, filling most of the picture."""
    c = Canvas(size, look.pick(rng, PAPER, "light", 8))
    cx, cy = rng.uniform(0.45, 0.55), rng.uniform(0.45, 0.55)
    green = jitter(rng, rng.choice(LEAF), 15)
    if part == "flower":
        petal, n = jitter(rng, rng.choice(PETALS), 15), rng.randint(5, 7)
        c.line([(cx, cy), (cx + rng.uniform(-0.05, 0.05), 1.0)], green, 0.04)
        for k in range(n):
            a = 2 * math.pi * k / n + rng.uniform(0, 0.3)
            c.ellipse(cx + 0.24 * math.cos(a), cy + 0.24 * math.sin(a), 0.2, fill=petal, outline=shade(petal, 0.7),
                      width=0.01)
        c.ellipse(cx, cy, 0.09, fill=jitter(rng, (90, 60, 40), 15))  # dark disc florets
    elif part == "leaf":
        tilt = rng.uniform(-0.1, 0.1)
        c.polygon([(0.04, 0.96), (cx - 0.42, cy - 0.3 + tilt), (0.96, 0.04), (cx + 0.42, cy + 0.3 - tilt)], fill=green)
        c.line([(0.04, 0.96), (0.96, 0.04)], shade(green, 1.35), 0.025)  # midrib and veins
        for t in (0.3, 0.45, 0.6, 0.75):
            x, y = 0.04 + 0.92 * t, 0.96 - 0.92 * t
            c.line([(x, y), (x - 0.16, y - 0.12)], shade(green, 1.3), 0.014)
            c.line([(x, y), (x + 0.12, y + 0.16)], shade(green, 1.3), 0.014)
    elif part == "root":  # a soil cross-section: the roots spread through brown earth under a thin stem
        soil, brown = jitter(rng, rng.choice(SOIL), 12), jitter(rng, (235, 215, 170), 12)
        c.rect(0, 0.12, 1, 1, fill=soil)
        c.line([(cx, 0.0), (cx, 0.14)], green, 0.05)
        for k in range(rng.randint(6, 8)):  # taproot with branching side roots
            x = cx + rng.uniform(-0.4, 0.4)
            c.line([(cx, 0.14), (x, rng.uniform(0.55, 0.95))], brown, rng.uniform(0.03, 0.045))
            c.line([(x * 0.5 + cx * 0.5, 0.5), (x * 0.5 + cx * 0.5 + rng.uniform(-0.2, 0.2), 0.75)], brown, 0.02)
        c.line([(cx, 0.14), (cx, 0.95)], brown, 0.06)
    else:
        skin, r = jitter(rng, rng.choice(FRUIT), 15), rng.uniform(0.38, 0.42)
        c.ellipse(cx, cy + 0.05, r, r * rng.uniform(0.9, 1.0), fill=skin)
        c.ellipse(cx - r * 0.4, cy - r * 0.3, r * 0.2, fill=mix(skin, (255, 255, 255), 0.5))  # highlight
        c.line([(cx, cy - r + 0.05), (cx + 0.03, cy - r - 0.06)], (100, 70, 40), 0.025)
        c.ellipse(cx + 0.1, cy - r - 0.02, 0.08, 0.04, fill=green)
    return c.finish()


def _moon(rng: random.Random, size: int, phase: str, look: Look):
    """A moon disc on a dark sky, lit on the right as the phase waxes, with a few stars."""
    sky = look.pick(rng, NIGHT, "dark", 8)
    c = Canvas(size, sky)
    for _ in range(rng.randint(3, 8)):
        c.ellipse(rng.uniform(0.03, 0.97), rng.uniform(0.03, 0.97), 0.008, fill=(220, 220, 200))
    cx, cy, r = rng.uniform(0.47, 0.53), rng.uniform(0.47, 0.53), rng.uniform(0.43, 0.46)
    lit, dark = jitter(rng, (235, 230, 200), 12), mix(sky, (90, 90, 100), 0.4)  # the unlit side barely shows
    box = (cx - r, cy - r, cx + r, cy + r)
    c.ellipse(cx, cy, r, fill=lit if phase == "full moon" else dark)
    if phase == "first quarter":
        c.draw.pieslice([v * c.side for v in box], -90, 90, fill=lit)
    return c.finish()


def _country(rng: random.Random) -> tuple[list[tuple[float, float]], tuple[float, float]]:
    """The corners of a country and the point where its four states meet."""
    cx, cy = rng.uniform(0.46, 0.54), rng.uniform(0.44, 0.5)
    rx, ry = rng.uniform(0.36, 0.42), rng.uniform(0.33, 0.38)
    corners = [(cx - rx, cy - ry), (cx + rx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)]
    return corners, (cx + rng.uniform(-0.04, 0.04), cy + rng.uniform(-0.04, 0.04))


def _map(rng: random.Random, size: int, levels: dict[str, int], look: Look):
    """A country split into four states (North, South, East, West) shaded by `levels` (0 light … 3 dark)
    on one sequential ramp, with a legend strip in the corner."""
    c = Canvas(size, look.pick(rng, PAPER, "light", 8))
    light, dark = rng.choice(RAMPS)
    fills = [mix(light, dark, 0.08 + 0.3 * k) for k in range(4)]
    corners, centre = _country(rng)
    for state, (a, b) in zip(STATES, ((0, 1), (2, 3), (1, 2), (3, 0))):
        c.polygon([corners[a], corners[b], centre], fill=fills[levels[state]], outline=(255, 255, 255))
    for k in range(4):  # legend
        c.rect(0.6 + 0.08 * k, 0.88, 0.68 + 0.08 * k, 0.94, fill=fills[k])
    return c.finish()


def _majority(rng: random.Random, size: int, answer: str, look: Look):
    """A map on which three or four states lie in the highest range (Yes), or three or four in the lowest."""
    many = rng.sample(STATES, rng.randint(3, 4))
    high = answer == YES
    levels = {s: (3 if high else 0) if s in many else (rng.randint(0, 1) if high else rng.randint(2, 3))
              for s in STATES}
    return _map(rng, size, levels, look)


def shared(rng: random.Random, family: str, size: int, look: Look) -> SynthItem:
    """Sci's rule for a shared-format question (see the module doc); the question is the shared one."""
    if family == "yesno":  # are most states in the highest range?
        answer = rng.choice((YES, NO))
        return SynthItem(_majority(rng, size, answer, look), "", answer, source="MapQA")
    named = family == "text"  # short answer: its name; letter: its letter
    if rng.random() < 0.5:  # the plant part, or the moon phase
        part = rng.choice(PARTS)
        return SynthItem(_plant(rng, size, part, look), "", part if named else letters(4)[PARTS.index(part)],
                         source="AI2D")
    phase = rng.choice(PHASES)
    return SynthItem(_moon(rng, size, phase, look), "", phase if named else letters(4)[PHASES.index(phase)],
                     source="TQA")


@register("Sci", "dcl", shared=shared, mix=MIX, formats=FORMATS)
def draw(rng: random.Random, split: str, size: int = 48, look: Look = OWN_LOOK) -> SynthItem:
    """Science diagrams: AI2D plant parts, TQA moon phases, MapQA choropleth questions."""
    family = rng.choice(FAMILIES)
    if family == "plant_part":
        part = rng.choice(PARTS)
        return _choice_item(_plant(rng, size, part, look), rng.choice(PLANT_Q), PARTS, part, family, "AI2D")
    if family == "moon_phase":
        phase = rng.choice(PHASES)
        return _choice_item(_moon(rng, size, phase, look), rng.choice(MOON_Q), PHASES, phase, family, "TQA")
    answer = rng.choice((YES, NO))  # map_majority: three or four states dark, or three or four light
    return SynthItem(_majority(rng, size, answer, look), rng.choice(MAJORITY_Q), answer, {"question_type": family},
                     "MapQA")
