"""Drawing helpers shared by the five synthetic DCL (domain) tasks.

Every domain scene is laid out in *relative* units (0..1 of the image side) on a canvas supersampled ×4,
then downscaled with LANCZOS, exactly like the pretraining corpus (`mllmcl.pretrain.corpus`); a larger
`size` therefore gives a sharper copy of the same scene. Textures come from a numpy Generator seeded
from the item's `random.Random`, so the item's generator stays the only source of randomness.

Looks (`visual_overlap`): every domain drawer takes its backdrop colours (the ground of an aerial tile, the
stroma of a slide, the sky and roadside of a street, the paper of a diagram, the background of a chart, the
wall of a shop) through `Look.pick`. With the task's own look it picks from the task's own palette; with
`SHARED_LOOK` it picks from `SHARED_BACKDROPS`, one pool of neutral tones used by every domain, so the
backdrop does not tell the domains apart. Colours that carry an answer (water, roofs, lamps, the green/red
of a chart, a stain's palette when the stain is asked) stay the task's own.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageDraw

from mllmcl.data.synth.base import jitter

RGB = tuple[int, int, int]
SUPERSAMPLE = 4

#: Yes/no answers are written capitalised. The tiny base model was pretrained on lower-case "yes"/"no"
#: answers, a strong prior of its own; an expert trained on the same tokens has to unlearn that prior within
#: its short budget, while "Yes"/"No" are other tokens that the expert ties to the image afresh. Every DCL
#: scorer lower-cases, so scoring is unchanged.
YES, NO = "Yes", "No"

#: Colours of water and roofs in aerial tiles.
WATER = ((40, 80, 140), (30, 95, 120), (50, 70, 110), (35, 110, 140), (55, 90, 105))
ROOFS = ((200, 70, 55), (175, 65, 50), (215, 95, 60), (165, 55, 60), (190, 80, 45))

Backdrop = Literal["light", "dark", "ground"]

#: The pool of backdrops every domain draws from under the shared look: neutral greys, stones and
#: charcoals, no hue that any task uses as an answer (blue water, red roofs, green/red price moves, lamps).
SHARED_BACKDROPS: dict[str, tuple[RGB, ...]] = {
    "light": ((238, 236, 230), (226, 228, 232), (232, 226, 218), (214, 218, 222), (242, 240, 236)),
    "dark": ((28, 28, 32), (42, 40, 38), (34, 38, 46), (50, 48, 52)),
    "ground": ((146, 142, 134), (128, 124, 118), (160, 152, 140), (118, 120, 122), (138, 132, 122)),
}


@dataclass(frozen=True)
class Look:
    """Where a drawer takes its backdrop colours from: its own palette, or (`shared`) the pool of one
    `Backdrop` kind shared by all domains. Both draw the same number of values from the item's generator."""

    shared: bool = False

    def pick(self, rng: random.Random, own: Sequence[RGB], kind: Backdrop, amount: int = 15) -> RGB:
        """A jittered backdrop colour: one of `own`, or of the shared pool of `kind`."""
        return jitter(rng, rng.choice(SHARED_BACKDROPS[kind] if self.shared else own), amount)


OWN_LOOK, SHARED_LOOK = Look(False), Look(True)


def np_rng(rng: random.Random) -> np.random.Generator:
    """A numpy Generator for textures, seeded from (and only from) the item's generator."""
    return np.random.default_rng(rng.getrandbits(32))


def mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    """Linear blend of two colours, `t` = 0 gives `a`, 1 gives `b`."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def shade(rgb: Sequence[float], factor: float) -> RGB:
    """`rgb` darkened (factor < 1) or lightened towards white (factor > 1)."""
    if factor <= 1:
        return tuple(int(c * factor) for c in rgb)  # type: ignore[return-value]
    return mix(rgb, (255, 255, 255), min(1.0, factor - 1))


def texture(nrng: np.random.Generator, size: int, base: Sequence[float], amount: float = 18.0,
            grain: float = 6.0, cells: int = 6) -> Image.Image:
    """A `size`×`size` RGB field: `base` plus smooth low-frequency blotches (`cells` per side, ±`amount`)
    and per-pixel grain. Drawn at the final resolution, then upscaled: cheap and size-independent."""
    coarse = nrng.normal(0.0, amount, (cells + 1, cells + 1)).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))
    pixels = np.asarray(base, dtype=np.float32) + blotches[..., None]
    if grain:
        pixels = pixels + nrng.normal(0.0, grain, (size, size, 3)).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class Canvas:
    """A supersampled drawing surface addressed in relative coordinates.

    `Canvas(size, background)` accepts a colour or an image (e.g. a `texture`); shapes are given as
    fractions of the side; `finish()` returns the `size`×`size` LANCZOS-downscaled image."""

    def __init__(self, size: int, background: Sequence[int] | Image.Image):
        self.size = size
        self.side = size * SUPERSAMPLE
        if isinstance(background, Image.Image):
            self.image = background.convert("RGB").resize((self.side, self.side), Image.BILINEAR)
        else:
            self.image = Image.new("RGB", (self.side, self.side), tuple(background))
        self.draw = ImageDraw.Draw(self.image)

    def _xy(self, points: Sequence[float]) -> list[float]:
        return [v * self.side for v in points]

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill=None, outline=None, width: float = 0.0):
        x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        self.draw.rectangle(self._xy((x0, y0, x1, y1)), fill=fill, outline=outline,
                            width=max(1, round(width * self.side)) if outline else 0)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float | None = None, fill=None, outline=None,
                width: float = 0.0):
        ry = rx if ry is None else ry
        self.draw.ellipse(self._xy((cx - rx, cy - ry, cx + rx, cy + ry)), fill=fill, outline=outline,
                          width=max(1, round(width * self.side)) if outline else 0)

    def polygon(self, points: Sequence[tuple[float, float]], fill=None, outline=None):
        self.draw.polygon([(x * self.side, y * self.side) for x, y in points], fill=fill, outline=outline)

    def line(self, points: Sequence[tuple[float, float]], fill, width: float):
        self.draw.line([(x * self.side, y * self.side) for x, y in points], fill=fill,
                       width=max(1, round(width * self.side)), joint="curve")

    def arrow(self, start: tuple[float, float], end: tuple[float, float], fill, width: float = 0.025,
              head: float = 0.07):
        """A straight arrow from `start` to `end` with a filled triangular head at `end`."""
        (x0, y0), (x1, y1) = start, end
        length = max(1e-6, ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5)
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        bx, by = x1 - ux * head, y1 - uy * head
        self.line([(x0, y0), (bx, by)], fill, width)
        self.polygon([(x1, y1), (bx - uy * head * 0.6, by + ux * head * 0.6),
                      (bx + uy * head * 0.6, by - ux * head * 0.6)], fill=fill)

    def finish(self) -> Image.Image:
        return self.image.resize((self.size, self.size), Image.LANCZOS, reducing_gap=2.0)


def pick_balanced(rng: random.Random, answers: Sequence[str]) -> str:
    """The target answer of an item, uniform over the family's closed set: drawers decide the answer
    first and then draw a scene that has it, so no family can be beaten by always giving one answer."""
    return rng.choice(list(answers))


def place(rng: random.Random, n: int, radius: float, box: tuple[float, float, float, float] = (0, 0, 1, 1),
          gap: float = 1.15, tries: int = 60, avoid: Sequence[tuple[float, float, float]] = ()
          ) -> list[tuple[float, float]]:
    """Up to `n` centres inside `box` (x0, y0, x1, y1) whose discs of `radius` overlap neither each other
    (×`gap`) nor the `avoid` discs (x, y, r). Returns fewer only if the box is too crowded; callers size
    boxes so that this is rare, and count what was placed rather than what was asked for."""
    x0, y0, x1, y1 = box
    points: list[tuple[float, float]] = []
    for _ in range(tries * max(1, n)):
        if len(points) == n:
            break
        p = (rng.uniform(x0 + radius, x1 - radius), rng.uniform(y0 + radius, y1 - radius))
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= (2 * radius * gap) ** 2 for q in points) and \
                all((p[0] - x) ** 2 + (p[1] - y) ** 2 >= (radius + r) ** 2 for x, y, r in avoid):
            points.append(p)
    return points
