"""Fin — synthetic stock charts, imitating StockQA (the MLLM-CL authors' candlestick-chart questions,
answered "Yes"/"No" or with an option letter; scored by exact match after lower-casing and removing
spaces and periods). The official evaluation appends an answer-format suffix chosen by the answer ("Only
answer with yes or no directly." / "Answer with the given letter directly, e.g., A, B, C, D."); that is
Fin's prompt rule in `mllmcl.data.tasks`, applied by the writer and the evaluation to train and test
prompts alike, so the drawer returns the question without it (it would otherwise appear twice).

The image is a price chart of 16 days on a light or dark chart background with faint grid lines and an
axis: a filled area under the closing price, price columns, or candlesticks (green/teal up, red/orange
down) over volume bars coloured by the day's direction; the up-day question shows the daily changes as
green/red bars above and below a zero line. Area and column charts are coloured by the period's change,
green when it rose and red when it fell, as finance apps draw them. The series is built from the answer:
a steady drift for the trend and the sentiment, a given number of up days for the up-day count.

Question families (`extra["question_type"]`, balanced closed answers):
  trend       "Is the stock price going up over the period?"                -> Yes / No
  sentiment   "Is the chart bullish or bearish?" A. bullish B. bearish      -> A / B
  up_days     "On how many days did the stock close higher than it opened?"
              A. fewer than 5 B. between 5 and 10 C. more than 10         -> A / B / C

Learnability (why the drawer draws what it does; `python bench/calibrate.py` measures each task's difficulty):
within an expert's short budget the tiny model learns what colour fills most of the picture, not geometry,
texture or thin strokes: the direction of an uncoloured line, the month of the peak, which half swings more,
whole-period volatility, the chart type, and even colour-coded thin lines and 16 thin candles (a small share
of the pixels) were not learned. Hence large colour-coded areas, columns, volume bars and change bars, whose
balance of green and red is the answer.

Shared formats (`overlap`, see `mllmcl.data.synth.shared`), asked as StockQA mixes its formats (half yes/no,
half letters; no short answers, which Fin's official prompt rule would ask with the letter instruction): the
generic yes/no question means "did the price go up?" (the trend drawing), the generic letter question the
number of up days on the daily-change chart, A fewer than 5 / B between 5 and 10 / C more than 10 of the 16
days. Under the shared look (`visual_overlap`) the chart background takes a neutral tone from the shared
pool (light or dark, as with its own look); the green and red that carry the answers stay.
"""
from __future__ import annotations

import random

from mllmcl.data.synth.base import SynthItem, jitter, letters, register
from mllmcl.data.synth.draw import NO, OWN_LOOK, YES, Canvas, Look, mix

LIGHT = ((252, 252, 252), (245, 242, 230), (230, 232, 236), (235, 245, 250))
DARK = ((18, 20, 28), (30, 34, 48), (45, 45, 50), (20, 35, 60))
UP = ((40, 170, 90), (0, 150, 136), (60, 200, 120))
DOWN = ((220, 60, 60), (240, 90, 40), (200, 40, 80))
STYLES = ("area", "columns", "candles")
DAYS = 16

SENTIMENTS = ("bullish", "bearish")
UP_DAYS = {"fewer than 5": (1, 3), "between 5 and 10": (7, 9), "more than 10": (13, 15)}

TREND_Q = ("Is the stock price going up over the period?", "Did the stock price rise over the period shown?")
SENTIMENT_Q = ("Is the chart bullish or bearish?", "What is the overall sentiment of this stock chart?")
UP_DAYS_Q = ("On how many days did the stock close higher than it opened?",
             "On how many days did the stock price rise?")
FAMILIES = ("trend", "sentiment", "up_days")
FORMATS = {"trend": "yesno", "sentiment": "letter", "up_days": "letter"}
MIX = {"yesno": 0.5, "letter": 0.5}
"""No short answers: Fin's official prompt rule appends the letter instruction to every answer but Yes/No."""


def trend_closes(rng: random.Random, rising: bool) -> list[float]:
    """16 closing prices on a steady drift: nearly every day moves with the trend."""
    drift = rng.uniform(0.6, 1.0) * (1 if rising else -1)
    return [drift * t / (DAYS - 1) + rng.gauss(0, 0.03) for t in range(DAYS)]


def up_day_closes(rng: random.Random, ups: int) -> list[float]:
    """16 closing prices of which exactly `ups` close above the previous close (the first above its open)."""
    moves = [1] * ups + [-1] * (DAYS - ups)
    rng.shuffle(moves)
    closes, price = [], 0.0
    for move in moves:
        price += move * rng.uniform(0.05, 0.12)
        closes.append(price)
    return closes


def chart(rng: random.Random, size: int, closes: list[float], style: str, look: Look = OWN_LOOK):
    """Draw `closes` (day 0 opens at 0) as an area, columns, candlesticks over volume, or daily changes, on a
    light or dark chart background."""
    dark = rng.random() < 0.4
    bg = look.pick(rng, DARK if dark else LIGHT, "dark" if dark else "light", 8)
    ink = mix(bg, (255, 255, 255) if dark else (0, 0, 0), 0.55)
    c = Canvas(size, bg)
    x0, x1, y0, y1 = 0.07, 0.97, 0.05, 0.9  # plot area
    for k in range(1, 4):
        c.line([(x0, y0 + (y1 - y0) * k / 4), (x1, y0 + (y1 - y0) * k / 4)], mix(bg, ink, 0.3), 0.008)
    c.line([(x0, y0), (x0, y1 + 0.03), (x1, y1 + 0.03)], ink, 0.012)
    up, down = jitter(rng, rng.choice(UP), 12), jitter(rng, rng.choice(DOWN), 12)
    step = (x1 - x0) / DAYS
    xs = [x0 + step * (t + 0.5) for t in range(DAYS)]
    opens = [0.0, *closes[:-1]]
    if style == "changes":  # each day's change as a bar from the zero line, scaled to the largest
        mid, biggest = (y0 + y1) / 2, max(abs(cl - op) for op, cl in zip(opens, closes))
        for x, op, cl in zip(xs, opens, closes):
            h = (cl - op) / biggest * (y1 - y0) * 0.45
            c.rect(x - step * 0.42, mid - h, x + step * 0.42, mid, fill=up if cl > op else down)
        return c.finish()
    bottom = y1 - (0.22 if style == "candles" else 0.0)  # candles leave room for the volume bars
    lo, hi = min(0.0, *closes) - 0.05, max(0.0, *closes) + 0.05
    ys = [bottom - (v - lo) / (hi - lo) * (bottom - y0) for v in closes]
    if style == "candles":
        oys = [bottom - (v - lo) / (hi - lo) * (bottom - y0) for v in opens]
        for x, o, y, op, cl in zip(xs, oys, ys, opens, closes):
            colour = up if cl > op else down
            c.line([(x, min(o, y) - rng.uniform(0.01, 0.04)), (x, max(o, y) + rng.uniform(0.01, 0.04))], colour, 0.01)
            c.rect(x - step * 0.38, min(o, y), x + step * 0.38, max(o, y) + 0.012, fill=colour)
            c.rect(x - step * 0.42, y1 - rng.uniform(0.1, 0.2), x + step * 0.42, y1, fill=colour)  # volume
        return c.finish()
    colour = up if closes[-1] >= 0 else down
    if style == "columns":
        for x, y in zip(xs, ys):
            c.rect(x - step * 0.42, y, x + step * 0.42, y1, fill=colour)
    else:
        c.polygon([(x0, y1), (x0, ys[0]), *zip(xs, ys), (x1, ys[-1]), (x1, y1)], fill=mix(bg, colour, 0.7))
        c.line([(x0, ys[0]), *zip(xs, ys), (x1, ys[-1])], colour, 0.03)
    return c.finish()


def shared(rng: random.Random, family: str, size: int, look: Look) -> SynthItem:
    """Fin's rule for a shared-format question (see the module doc); the question is the shared one."""
    if family == "yesno":  # did the price go up?
        answer = rng.choice((YES, NO))
        return SynthItem(chart(rng, size, trend_closes(rng, answer == YES), rng.choice(STYLES), look), "", answer)
    band = rng.randrange(len(UP_DAYS))  # letter: how many up days
    closes = up_day_closes(rng, rng.randint(*list(UP_DAYS.values())[band]))
    return SynthItem(chart(rng, size, closes, "changes", look), "", letters(4)[band])


@register("Fin", "dcl", shared=shared, mix=MIX, formats=FORMATS)
def draw(rng: random.Random, split: str, size: int = 48, look: Look = OWN_LOOK) -> SynthItem:
    """Stock price charts with StockQA-style trend, sentiment and up-day questions."""
    family = rng.choice(FAMILIES)
    extra: dict = {"question_type": family}
    if family == "trend":
        answer = rng.choice((YES, NO))
        closes, style = trend_closes(rng, answer == YES), rng.choice(STYLES)
        question = rng.choice(TREND_Q)
    else:
        options = SENTIMENTS if family == "sentiment" else tuple(UP_DAYS)
        correct = rng.choice(options)
        if family == "sentiment":
            closes, style = trend_closes(rng, correct == "bullish"), rng.choice(STYLES)
        else:
            closes, style = up_day_closes(rng, rng.randint(*UP_DAYS[correct])), "changes"
        marks = letters(len(options))
        lines = "\n".join(f"{m}. {o}" for m, o in zip(marks, options))
        question = f"{rng.choice(SENTIMENT_Q if family == 'sentiment' else UP_DAYS_Q)}\n{lines}"
        answer = marks[options.index(correct)]
        extra["choices"] = list(options)
    return SynthItem(chart(rng, size, closes, style, look), question, answer, extra)
