"""Synthetic GUI agent: phone screens asked which element is in a given state, MMT-Bench style.

Imitates: the GUI-agent ability task of MLLM-CL, tested on the GUI-navigation subset of MMT-Bench
(multiple choice over screen elements, answered with the option letter; the scorer compares
`prediction.strip().upper()` with the letter). The answer is read off the screen, as a GUI agent must;
the options list the elements by name in one fixed order, so a letter always names the same element.

Question families (half each; the truth is drawn uniformly over A-D):
* settings     — a quick-settings panel of four tiles (Wi-Fi, Bluetooth, Flashlight, Airplane mode) in a
  shuffled order, only the switched-on tile in its colour: "Which setting is currently turned on?";
* notification — a lock screen with one notification card carrying the sending app's icon colour
  (Messages, Mail, Calendar, Music): "Which app should be opened to read the new notification?".

Train→test shift (`SHIFT`): train screens are a light panel with rounded-square tiles and lock screens with
a blue or teal wallpaper and a rectangular card; test screens use circular tiles, a purple wallpaper and a
pill-shaped card, and half of them a dark theme (dark-grey panel, dark idle tiles, near-black wallpaper).
"""
from __future__ import annotations

import random

from mllmcl.data.synth.base import SynthItem, Split, jitter, register
from mllmcl.data.synth.glyphs import Canvas

SHIFT = ("test: circular instead of rounded-square quick-settings tiles, a purple instead of blue/teal lock-screen "
         "wallpaper, a pill-shaped instead of rectangular notification card, and half of the screens in a dark theme "
         "(dark-grey panel, dark idle tiles, near-black wallpaper)")
#: setting → colour of its tile when switched on; app → brand colour of its icon. Options list them in this
#: order, so a letter always names the same element (see module doc).
SETTINGS = {"Wi-Fi": (40, 100, 230), "Bluetooth": (140, 60, 190), "Flashlight": (245, 205, 30),
            "Airplane mode": (240, 130, 20)}
APPS = {"Messages": (40, 170, 70), "Mail": (40, 90, 225), "Calendar": (220, 40, 40), "Music": (240, 130, 20)}
QUESTIONS = {
    "settings": ("Which setting is currently turned on?", "Which quick setting is switched on?"),
    "notification": ("Which app should be opened to read the new notification?",
                     "Which app sent the notification on the lock screen?"),
}
INSTRUCTION = "Answer with the option's letter from the given choices directly."
TILES = ((0.28, 0.42), (0.72, 0.42), (0.28, 0.76), (0.72, 0.76))
THEMES = {
    "train": dict(panel=((238, 238, 242), (228, 232, 238)), idle=(200, 200, 206), tile="square",
                  walls=(((40, 80, 160), (90, 150, 210)), ((30, 110, 120), (110, 180, 170))), card="rect", clock=0.2),
    "test": dict(panel=((244, 238, 228),), idle=(205, 200, 192), tile="circle",
                 walls=(((70, 60, 150), (150, 120, 200)),), card="pill", clock=0.2),
    "dark": dict(panel=((40, 40, 46),), idle=(78, 78, 84), tile="circle",
                 walls=(((25, 25, 40), (60, 60, 90)),), card="pill", clock=0.2),
}
TEST_DARK = 0.5


def _settings(rng: random.Random, c: Canvas, th: dict, target: int) -> None:
    """A quick-settings panel: four tiles in a shuffled order, only the switched-on one in its colour."""
    c.rect(0, 0, 1, 1, jitter(rng, rng.choice(th["panel"]), 4))
    c.rect(0.06, 0.1, 0.45, 0.16, th["idle"])  # panel title
    names = list(SETTINGS)
    order = rng.sample(range(4), 4)
    for spot, k in zip(TILES, order):
        colour = jitter(rng, SETTINGS[names[k]], 10) if k == target else jitter(rng, th["idle"], 4)
        x, y = spot
        if th["tile"] == "circle":
            c.disc(x, y, 0.15, colour)
        else:
            c.rect(x - 0.18, y - 0.13, x + 0.18, y + 0.13, colour, radius=0.05)
        c.disc(x, y, 0.04, (250, 250, 250))


def _notification(rng: random.Random, c: Canvas, th: dict, target: int) -> None:
    """A lock screen: wallpaper gradient, clock placeholder, one notification card with the app's icon."""
    top, bottom = th["walls"][rng.randrange(len(th["walls"]))]
    for k in range(12):
        t = k / 11
        tone = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom))
        c.rect(0, k / 12, 1, (k + 1) / 12 + 0.01, jitter(rng, tone, 3))
    c.rect(0.3, th["clock"] - 0.05, 0.7, th["clock"] + 0.05, (245, 245, 245))
    y = 0.55 if th["clock"] < 0.5 else 0.45
    radius = 0.12 if th["card"] == "pill" else 0.03
    c.rect(0.05, y - 0.13, 0.95, y + 0.13, (245, 245, 248), radius=radius)
    c.rect(0.1, y - 0.1, 0.3, y + 0.1, jitter(rng, list(APPS.values())[target], 10), radius=0.04)
    c.rect(0.38, y - 0.05, rng.uniform(0.6, 0.88), y - 0.01, (150, 150, 155))
    c.rect(0.38, y + 0.03, rng.uniform(0.5, 0.8), y + 0.06, (190, 190, 195))


@register("APP", "acl", shift=SHIFT)
def draw(rng: random.Random, split: Split, size: int = 48) -> SynthItem:
    """Phone screens (quick settings, lock-screen notification) asked which element, answered by letter."""
    variant = "dark" if split == "test" and rng.random() < TEST_DARK else split
    th = THEMES[variant]
    family = rng.choice(list(QUESTIONS))
    target = rng.randrange(4)
    c = Canvas(size, (0, 0, 0))
    (_settings if family == "settings" else _notification)(rng, c, th, target)
    names = list(SETTINGS if family == "settings" else APPS)
    question = "\n".join([rng.choice(QUESTIONS[family]), *(f"{L}. {o}" for L, o in zip("ABCD", names)),
                          INSTRUCTION])
    extra = {"category": "GUI Navigation", "choices": names}
    return SynthItem(c.finish(), question, "ABCD"[target], extra, source="mmtbench")
