"""Synthetic OCR: large rendered digits and short words on paper, signs and price tags, OCRBench style.

Imitates: the OCR ability task of MLLM-CL, whose test set is OCRBench (1000 items; `answer` a string or a
list of acceptable strings; `answer_type` one of ten OCRBench categories; a hit when any reference is a
substring of the lower-cased prediction). Reading glyphs is new to the tiny model (its pretraining corpus
never drew text) and at 48 px only a few large glyphs are legible, so the answer set is closed: the ten
digits and six short words that are single tokens of its vocabulary (WORDS).

Question families (a quarter each; `answer_type` is the OCRBench category):
* "Digit String Recognition"   — one digit on a sheet of paper: "what is the number in the image?";
* "Regular Text Recognition"   — one word on a sheet of paper: "what is written in the image?";
* "Scene Text-centric VQA"     — a digit on a round road sign in an outdoor scene: "What number is on the sign?";
* "Key Information Extraction" — a digit on a price tag hanging on a wall: "What is the price on the tag?".
The glyphs have one size, place and colour in every family and both splits: a LoRA expert on the tiny
model at the default budget reads glyphs well only at the pixel placement, size and colours it was
trained on (a pixel of jitter, several inks and papers, or many glyph classes of varied size cost it most
of its accuracy); what changes is everything around the text. `python bench/calibrate.py` measures the
task's difficulty.

Train→test shift (`SHIFT`): train paper fills the image, test paper is a card lying on a dark desk (a thin
margin) under a blue header rule; the train sign has a red ring in front of a blue sky over grass, the
test sign a blue ring in a dusk sky over a grey road; the train tag hangs on a wooden wall, the test tag
on a grey board; and 15% of the test text is bold (the same face with a heavier stroke), a glyph-level
shift the expert never sees in training, kept as the hard part.
"""
from __future__ import annotations

import random

from mllmcl.data.synth.base import SynthItem, Split, jitter, register
from mllmcl.data.synth.glyphs import Canvas

WORDS: tuple[str, ...] = ("go", "sun", "hot", "stop", "open", "help")
CATEGORIES = ("Digit String Recognition", "Regular Text Recognition", "Scene Text-centric VQA",
              "Key Information Extraction")
SHIFT = ("test: the paper is a card on a dark desk (thin margin, shadow) under a blue header rule instead of "
         "filling the image; the round sign has a blue instead of a red ring, in a dusk sky over a grey road instead "
         "of a blue sky over grass; the price tag hangs on a grey board instead of a wooden wall; 15% of the test "
         "text is bold")
TEST_BOLD = 0.15  # share of test text drawn bold (a heavier stroke of the same face)
#: Glyph geometry (centre x, centre y, ink height), the same in every family and both splits (see module doc).
DIGIT, WORD = (0.5, 0.5, 0.72), (0.5, 0.5, 0.45)
PAPER, INK = (248, 247, 242), (20, 20, 24)
QUESTIONS = {
    "Digit String Recognition": ("what is the number in the image?", "What number is shown in the image?"),
    "Regular Text Recognition": ("what is written in the image?", "What word is written in the image?"),
    "Scene Text-centric VQA": ("What number is on the sign?", "what is written on the sign?"),
    "Key Information Extraction": ("What is the price on the tag?", "What number is written on the tag?"),
}


def _paper(rng: random.Random, split: Split, size: int) -> Canvas:
    """White paper filling the image (train), or a card on a dark desk with a shadow and a header rule (test)."""
    if split == "train":
        return Canvas(size, jitter(rng, PAPER, 3))
    c = Canvas(size, jitter(rng, rng.choice(((70, 50, 35), (60, 62, 68), (40, 55, 45))), 10))
    c.rect(0.05, 0.06, 1, 1, (30, 30, 30))  # shadow
    c.rect(0.03, 0.03, 0.97, 0.97, jitter(rng, PAPER, 3))
    c.rect(0.12, 0.055, 0.88, 0.07, (150, 170, 210))
    return c


def _sign(rng: random.Random, split: Split, size: int) -> Canvas:
    """A round white sign with a coloured ring, filling the view in front of sky and ground (scene text)."""
    sky, ground, ring = (((150, 190, 235), (95, 130, 70), (210, 30, 30)) if split == "train"
                         else ((235, 170, 120), (110, 110, 110), (40, 70, 190)))
    c = Canvas(size, jitter(rng, sky, 12))
    c.rect(0, rng.uniform(0.75, 0.85), 1, 1, jitter(rng, ground, 12))
    c.disc(0.5, 0.5, 0.5, jitter(rng, ring, 10))
    c.disc(0.5, 0.5, 0.43, jitter(rng, PAPER, 3))
    return c


def _tag(rng: random.Random, split: Split, size: int) -> Canvas:
    """A white price tag with a punched hole and a string, hanging on a wall (key-information items)."""
    wall = (160, 115, 75) if split == "train" else (150, 152, 158)
    c = Canvas(size, jitter(rng, wall, 12))
    c.rect(0.06, 0.06, 0.94, 0.97, jitter(rng, PAPER, 3), radius=0.04)
    c.disc(0.13, 0.13, 0.025, jitter(rng, wall, 12))
    c.draw.line(c.box(0.13, 0.13, 0.0, 0.0), fill=(60, 60, 60), width=max(1, round(c.px(0.02))))
    return c


@register("OCR", "acl", shift=SHIFT)
def draw(rng: random.Random, split: Split, size: int = 48) -> SynthItem:
    """Large rendered digits and words asked OCRBench-style (on paper, on a sign, on a price tag)."""
    category = rng.choice(CATEGORIES)
    question = rng.choice(QUESTIONS[category])
    if category == "Regular Text Recognition":
        answer, (cx, cy, height) = rng.choice(WORDS), WORD
    else:
        answer, (cx, cy, height) = str(rng.randrange(10)), DIGIT
    background = {"Scene Text-centric VQA": _sign, "Key Information Extraction": _tag}.get(category, _paper)
    canvas = background(rng, split, size)
    style = "bold" if split == "test" and rng.random() < TEST_BOLD else "sans"
    canvas.text(answer, cx, cy, height, INK, style, max_width=0.92)
    accepted = [answer, answer.upper()] if answer.isalpha() else [answer]
    return SynthItem(canvas.finish(), question, answer, {"answer": accepted, "answer_type": category},
                     source="ocrbench")
