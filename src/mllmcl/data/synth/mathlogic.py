"""Synthetic Math & Logic: bar charts, dot counts and rendered sums asked in MathVista's format.

Imitates: the Math & Logic ability task of MLLM-CL, tested on MathVista testmini. Every item carries
MathVista's fields in `extra` (`question_type` multi_choice|free_form, `answer_type` integer|text,
`choices`, `answer_option`, `precision`, `unit`, and `metadata` with MathVista's category/context/skills),
the question has MathVista's hint header ("Hint: Please answer the question requiring an integer answer
…\\nQuestion: …", or "…correct option letter…" with a "Choices:" block), and a multiple-choice `answer` is
the option *text* as in MathVista (`answer_option` holds its letter). Training targets are that number or
option text; MathVista's prefetch decides both (a raw integer equal to the answer; exactly one option text
inside the prediction), and a bare option letter as well.

Question families:
* bar (30%, multi_choice, statistical reasoning) — 3–4 bars of distinct colours, one towering over the
  rest: "Which bar is the tallest?" / "Which bar has the largest value?", options the bar colours in
  shuffled order;
* compare (20%, multi_choice Yes/No, logical reasoning) — a red and a blue bar: "Is the red bar taller than
  the blue bar?";
* more (15%, free_form, arithmetic on counts) — red and blue dots on a 3×3 layout: "How many more red dots
  than blue dots are there?" (0–3, uniform);
* arithmetic (35%, free_form, algebraic reasoning) — a rendered sum "a+b" (a, b in 1–3) in large glyphs:
  "What is the value of the expression in the image?".
Why so plain: a LoRA expert on the tiny model at the default budget learns what is in the picture (which
colour dominates, which glyphs sit in fixed places) far more readily than it reads heights off an axis or
counts (the "more" family, a count, is kept as the hard part); so the tallest bar towers over the others,
and the sum's glyphs are large and never move. `python bench/calibrate.py` measures the task's
difficulty.

Train→test shift (`SHIFT`): train bar charts are wide bars on white with one axis line, test ones narrower
bars on a light-grey panel with grid lines and a frame; train dots are circles on white paper, test dots
squares on grid paper; train sums are printed on white paper filling the image, test sums on a card lying
on a dark desk (a thin dark margin) under a blue header rule. Glyph slots, colours and number ranges are
shared, so the skill transfers while the pixels do not match.
"""
from __future__ import annotations

import random

from mllmcl.data.synth.base import SynthItem, Split, jitter, register
from mllmcl.data.synth.glyphs import COLORS, Canvas, paren_options

SHIFT = ("test bar charts: narrower bars on a grey panel with grid lines and a frame (train: wide bars on white, one "
         "axis); test dots: squares on grid paper (train: circles on white); test sums: on a card on a dark desk (thin "
         "margin) under a header rule (train: white paper filling the image)")
INT_HINT = ("Hint: Please answer the question requiring an integer answer and provide the final value, "
            "e.g., 1, 2, 3, at the end.\nQuestion: ")
CHOICE_HINT = ("Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, "
               "at the end.\nQuestion: ")
BAR_COLORS = ("red", "green", "blue", "yellow", "orange", "purple")
SLOTS = (0.2, 0.5, 0.8)
PAPER = (250, 250, 248)
META = {  # MathVista metadata of the family: (category, context, skill)
    "bar": ("general-vqa", "bar chart", "statistical reasoning"),
    "more": ("math-targeted-vqa", "synthetic scene", "arithmetic reasoning"),
    "compare": ("math-targeted-vqa", "synthetic scene", "logical reasoning"),
    "arithmetic": ("math-targeted-vqa", "abstract scene", "algebraic reasoning"),
}


def _fields(family: str, **fields) -> dict:
    category, context, skill = META[family]
    return {**fields, "precision": None, "unit": None,
            "metadata": {"category": category, "context": context, "skills": [skill], "source": "synthetic"}}


def _free(family: str, question: str, answer: int) -> tuple[str, str, dict]:
    return INT_HINT + question, str(answer), _fields(family, question_type="free_form", answer_type="integer",
                                                     choices=None, answer_option=None)


def _mc(family: str, question: str, correct: str, options: list[str]) -> tuple[str, str, dict]:
    """A MathVista multiple-choice item over `options` (already ordered)."""
    extra = _fields(family, question_type="multi_choice", answer_type="text", choices=list(options),
                    answer_option="ABCDEFGH"[options.index(correct)])
    return CHOICE_HINT + question + "\nChoices:\n" + paren_options(options), correct, extra


def _chart(rng: random.Random, split: Split, c: Canvas, names: list[str], tallest: int) -> None:
    """Bars of the given colours; the tallest one towers over the rest (the tiny model compares areas of
    colour, not heights on an axis)."""
    n = len(names)
    heights = [rng.uniform(0.7, 0.78) if i == tallest else rng.uniform(0.1, 0.25) for i in range(n)]
    bottom = 0.9
    if split == "test":
        c.rect(0.03, 0.03, 0.97, 0.97, (228, 228, 231), outline=(120, 120, 120), width=0.015)
        for k in range(1, 4):
            y = bottom - k * 0.2
            c.rect(0.05, y - 0.004, 0.95, y + 0.004, (180, 180, 185))
    else:
        c.rect(0.05, bottom, 0.95, bottom + 0.015, (60, 60, 60))
    slot = 0.86 / n
    width = slot * (0.75 if split == "train" else 0.6)
    for i, (name, h) in enumerate(zip(names, heights)):
        x = 0.07 + slot * i + (slot - width) / 2
        c.rect(x, bottom - h, x + width, bottom, jitter(rng, COLORS[name], 12))


def _bar(rng: random.Random, split: Split, c: Canvas) -> tuple[str, str, dict]:
    names = rng.sample(BAR_COLORS, rng.choice((3, 4)))
    tallest = rng.randrange(len(names))
    _chart(rng, split, c, names, tallest)
    options = list(names)
    rng.shuffle(options)
    q = rng.choice(("Which bar is the tallest?", "Which bar has the largest value?"))
    return _mc("bar", q, names[tallest], options)


def _compare(rng: random.Random, split: Split, c: Canvas) -> tuple[str, str, dict]:
    names = ["red", "blue"] if rng.random() < 0.5 else ["blue", "red"]
    tallest = rng.randrange(2)
    _chart(rng, split, c, names, tallest)
    truth = "Yes" if names[tallest] == "red" else "No"
    return _mc("compare", "Is the red bar taller than the blue bar?", truth, ["Yes", "No"])


def _dots(rng: random.Random, split: Split, c: Canvas, red: int, blue: int) -> None:
    """`red` red and `blue` blue dots on random cells of a 3×3 layout (squares on grid paper in test)."""
    if split == "test":
        for k in range(1, 6):
            c.rect(k / 6 - 0.004, 0, k / 6 + 0.004, 1, (200, 210, 225))
            c.rect(0, k / 6 - 0.004, 1, k / 6 + 0.004, (200, 210, 225))
    colours = ["red"] * red + ["blue"] * blue
    for cell, name in zip(rng.sample(range(9), len(colours)), colours):
        c.shape("circle" if split == "train" else "square", SLOTS[cell % 3], SLOTS[cell // 3], 0.1,
                jitter(rng, COLORS[name], 15))


def _more(rng: random.Random, split: Split, c: Canvas) -> tuple[str, str, dict]:
    diff = rng.randint(0, 3)
    blue = rng.randint(0 if diff else 1, min(5 - diff, (9 - diff) // 2))
    _dots(rng, split, c, blue + diff, blue)
    return _free("more", "How many more red dots than blue dots are there?", diff)


def _arithmetic(rng: random.Random, split: Split, c: Canvas) -> tuple[str, str, dict]:
    """`a+b`, the glyphs in fixed slots: the tiny model reads glyphs only at the pixel placement it was
    trained on, so the slots do not move between splits."""
    a, b = rng.randint(1, 3), rng.randint(1, 3)
    if split == "test":  # a card on a desk, under a header rule
        c.rect(0, 0, 1, 1, jitter(rng, (65, 60, 58), 10))
        c.rect(0.03, 0.03, 0.97, 0.97, jitter(rng, PAPER, 4))
        c.rect(0.1, 0.1, 0.9, 0.115, (150, 170, 210))
    ink = (20, 20, 24)
    c.text(str(a), 0.23, 0.52, 0.62, ink, "sans")
    c.text(str(b), 0.77, 0.52, 0.62, ink, "sans")
    c.rect(0.44, 0.505, 0.56, 0.535, ink)  # the plus sign as strokes: a glyph's ink box would be stretched
    c.rect(0.485, 0.46, 0.515, 0.58, ink)
    q = rng.choice(("What is the value of the expression in the image?", "What is the result of the calculation?"))
    return _free("arithmetic", q, a + b)


FAMILIES = {"bar": _bar, "more": _more, "compare": _compare, "arithmetic": _arithmetic}
WEIGHTS = (0.3, 0.15, 0.2, 0.35)


@register("Math", "acl", shift=SHIFT)
def draw(rng: random.Random, split: Split, size: int = 48) -> SynthItem:
    """Bar charts, dot counts and rendered sums, asked MathVista-style with integer or option answers."""
    family = rng.choices(list(FAMILIES), weights=WEIGHTS)[0]
    c = Canvas(size, jitter(rng, PAPER if split == "train" else (244, 246, 250), 5))
    question, answer, extra = FAMILIES[family](rng, split, c)
    return SynthItem(c.finish(), question, answer, extra, source="mathvista")
