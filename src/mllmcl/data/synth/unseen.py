"""Unseen — a held-out domain that no method trains on, for open-world checks: retail shelves, a shop's
shelving unit seen from the front (a wall, two to four planks between two uprights, rows of product boxes
in red, blue, green and yellow, price tags on the plank edges). Nothing in the five domains looks like it.

Only test-format rows are written (`OUT/unseen/test.json`, images in `OUT/unseen/images/`, recorded by the
manifest's `unseen` key and loaded as `Benchmark.unseen`); it is not a task of the benchmark. It honours
every knob: its shared-format and common-skill items use the same templates as the five domains.

Question families (`extra["question_type"]`, balanced closed answers):
  stock     "Is any shelf empty?"                        -> Yes / No
  colour    "What colour are most of the products?"      -> red / blue / green / yellow
  shelves   "How many shelves are there?"                -> 2 / 3 / 4

Shared formats (`overlap`, see `mllmcl.data.synth.shared`; yes/no 50%, letters and short answers 25% each):
the generic yes/no question means "is a shelf empty?", the generic letter question the colour of most
products, A red / B blue / C green / D yellow, the generic short-answer question the number of shelves.
Scored by exact match (every answer is one closed word or letter).
"""
from __future__ import annotations

import random

from mllmcl.data.synth.base import SynthItem, jitter, letters, register
from mllmcl.data.synth.draw import NO, OWN_LOOK, YES, Canvas, Look, shade

WALLS = ((236, 228, 208), (222, 224, 216), (242, 236, 198), (212, 216, 226))
PLANKS = ((150, 110, 70), (120, 120, 125), (170, 130, 90), (90, 90, 95))
PRODUCTS = {"red": (210, 45, 40), "blue": (40, 80, 200), "green": (40, 150, 60), "yellow": (235, 200, 30)}
SHELVES = (2, 3, 4)

STOCK_Q = ("Is any shelf empty?", "Is there an empty shelf?")
COLOUR_Q = ("What colour are most of the products?", "What is the colour of most products on the shelves?")
SHELVES_Q = ("How many shelves are there?", "How many shelves does the unit have?")
FAMILIES = ("stock", "colour", "shelves")
FORMATS = {"stock": "yesno", "colour": "text", "shelves": "number"}
MIX = {"yesno": 0.5, "letter": 0.25, "text": 0.25}


def _colours(rng: random.Random, n: int, majority: str | None) -> list[str]:
    """`n` product colours: uniform, or with `majority` strictly the most frequent."""
    names = list(PRODUCTS)
    colours = [majority if majority and rng.random() < 0.6 else rng.choice(names) for _ in range(n)]
    if majority:
        while max(colours.count(c) for c in names if c != majority) >= colours.count(majority):
            colours[rng.choice([k for k, c in enumerate(colours) if c != majority])] = majority
    return colours


def _unit(rng: random.Random, size: int, look: Look, shelves: int, empty: int | None, majority: str | None):
    """A shelving unit of `shelves` planks; shelf `empty` holds no products; `majority` colours most boxes."""
    c = Canvas(size, look.pick(rng, WALLS, "light", 10))
    plank = jitter(rng, rng.choice(PLANKS), 10)
    x0, x1 = rng.uniform(0.05, 0.1), rng.uniform(0.9, 0.95)
    c.rect(x0 - 0.04, 0.02, x0, 0.98, fill=shade(plank, 0.75))  # uprights
    c.rect(x1, 0.02, x1 + 0.04, 0.98, fill=shade(plank, 0.75))
    height = 0.96 / shelves
    boxes = []  # (x, width, box height, shelf bottom)
    for k in range(shelves):
        bottom = 0.02 + height * (k + 1)
        c.rect(x0, bottom - 0.04, x1, bottom, fill=plank)
        if k == empty:
            continue
        x = x0 + 0.01
        while x < x1 - 0.06:
            width = min(rng.uniform(0.07, 0.12), x1 - 0.01 - x)
            boxes.append((x, width, rng.uniform(0.5, 0.85) * (height - 0.06), bottom - 0.04))
            x += width + 0.015
    for (x, width, h, base), colour in zip(boxes, _colours(rng, len(boxes), majority)):
        fill = jitter(rng, PRODUCTS[colour], 15)
        c.rect(x, base - h, x + width, base, fill=fill, outline=shade(fill, 0.6), width=0.006)
    for k in range(shelves):  # price tags on the plank edges
        bottom = 0.02 + height * (k + 1)
        for _ in range(rng.randint(1, 3)):
            tx = rng.uniform(x0 + 0.02, x1 - 0.08)
            c.rect(tx, bottom - 0.035, tx + 0.06, bottom - 0.005, fill=(245, 245, 240))
    return c.finish()


def shared(rng: random.Random, family: str, size: int, look: Look) -> SynthItem:
    """Unseen's rule for a shared-format question (see the module doc); the question is the shared one."""
    shelves = rng.choice(SHELVES)
    if family == "yesno":  # an empty shelf?
        answer = rng.choice((YES, NO))
        empty = rng.randrange(shelves) if answer == YES else None
        return SynthItem(_unit(rng, size, look, shelves, empty, None), "", answer)
    if family == "text":  # short answer: how many shelves
        return SynthItem(_unit(rng, size, look, shelves, None, None), "", str(shelves))
    colour = rng.choice(list(PRODUCTS))  # letter: the colour of most products
    return SynthItem(_unit(rng, size, look, shelves, None, colour), "", letters(4)[list(PRODUCTS).index(colour)])


@register("Unseen", "dcl", shared=shared, mix=MIX, formats=FORMATS)
def draw(rng: random.Random, split: str, size: int = 48, look: Look = OWN_LOOK) -> SynthItem:
    """Retail shelves (a held-out domain): empty-shelf, product-colour and shelf-count questions."""
    family = rng.choice(FAMILIES)
    shelves = rng.choice(SHELVES)
    if family == "stock":
        answer = rng.choice((YES, NO))
        image = _unit(rng, size, look, shelves, rng.randrange(shelves) if answer == YES else None, None)
        question = rng.choice(STOCK_Q)
    elif family == "colour":
        answer = rng.choice(list(PRODUCTS))
        image, question = _unit(rng, size, look, shelves, None, answer), rng.choice(COLOUR_Q)
    else:
        answer = str(shelves)
        image, question = _unit(rng, size, look, shelves, None, None), rng.choice(SHELVES_Q)
    return SynthItem(image, question, answer, {"question_type": family})
