"""Drawing helpers shared by the synthetic ability (ACL) tasks: a supersampled canvas, text drawn at a
chosen height in one of three styles, simple flat icons, and the option blocks of the real test sets.

Everything is drawn on a canvas `SUPERSAMPLE`× the target size with coordinates in relative units (0..1
of the side) and LANCZOS-downscaled at the end, exactly like the pretraining corpus, so a 48 px item
and a 224 px item show the same scene. Text uses only fonts that ship with Pillow (`base.font`), so every
machine draws the same pixels:

* `sans`   — Pillow's bundled TrueType face (smooth, proportional);
* `bold`   — the same face with a stroke of its own colour (heavier strokes, a "bold" style);
* `pixel`  — Pillow's fixed bitmap face drawn at its native 6×11 px cell and enlarged with NEAREST
  (blocky, monospaced: the style shift of the test splits).
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

from PIL import Image, ImageDraw

from mllmcl.data.synth.base import font, letters

RGB = tuple[int, int, int]
TextStyle = Literal["sans", "bold", "pixel"]
SUPERSAMPLE = 4

#: Named colours (the pretraining corpus' object colours, so the base model knows the words).
COLORS: dict[str, RGB] = {
    "red": (220, 35, 35), "green": (30, 160, 60), "blue": (35, 75, 225), "yellow": (250, 215, 25),
    "orange": (250, 135, 15), "purple": (135, 50, 185), "black": (20, 20, 20), "gray": (128, 128, 128),
}


class Canvas:
    """A supersampled RGB drawing surface; `xy`/`box` turn relative coordinates into pixels."""

    def __init__(self, size: int, background: RGB):
        self.size, self.side = size, size * SUPERSAMPLE
        self.image = Image.new("RGB", (self.side, self.side), background)
        self.draw = ImageDraw.Draw(self.image)

    def px(self, v: float) -> float:
        return v * self.side

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        s = self.side
        return x0 * s, y0 * s, x1 * s, y1 * s

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB, radius: float = 0.0,
             outline: RGB | None = None, width: float = 0.0) -> None:
        box = self.box(x0, y0, x1, y1)
        w = max(1, round(self.px(width))) if outline else 0
        if radius > 0:
            self.draw.rounded_rectangle(box, radius=self.px(radius), fill=fill, outline=outline, width=w)
        else:
            self.draw.rectangle(box, fill=fill, outline=outline, width=w)

    def disc(self, cx: float, cy: float, r: float, fill: RGB) -> None:
        self.draw.ellipse(self.box(cx - r, cy - r, cx + r, cy + r), fill=fill)

    def shape(self, kind: str, cx: float, cy: float, r: float, fill: RGB) -> None:
        """A flat shape of the pretraining corpus (`circle`, `square`, `triangle`, `diamond`, `star`) of
        half-extent `r` centred at (cx, cy)."""
        x, y, q = self.px(cx), self.px(cy), self.px(r)
        if kind == "circle":
            self.draw.ellipse((x - q, y - q, x + q, y + q), fill=fill)
        elif kind == "square":
            h = 0.85 * q
            self.draw.rectangle((x - h, y - h, x + h, y + h), fill=fill)
        elif kind == "triangle":
            self.draw.regular_polygon((x, y + 0.15 * q, 1.15 * q), 3, fill=fill)
        elif kind == "diamond":
            self.draw.polygon([(x, y - q), (x + 0.7 * q, y), (x, y + q), (x - 0.7 * q, y)], fill=fill)
        elif kind == "star":
            pts = [(x + (q if k % 2 == 0 else 0.45 * q) * math.sin(k * math.pi / 5),
                    y - (q if k % 2 == 0 else 0.45 * q) * math.cos(k * math.pi / 5)) for k in range(10)]
            self.draw.polygon(pts, fill=fill)
        else:
            raise ValueError(f"unknown shape {kind!r}")

    def text(self, text: str, cx: float, cy: float, height: float, fill: RGB, style: TextStyle = "sans",
             max_width: float = 0.94) -> None:
        """`text` centred at (cx, cy) with its ink `height` (relative) tall, shrunk to fit `max_width`."""
        mask = text_mask(text, style, round(self.px(height)))
        limit = self.px(max_width)
        if mask.width > limit:
            mask = mask.resize((round(limit), max(1, round(mask.height * limit / mask.width))),
                               Image.NEAREST if style == "pixel" else Image.LANCZOS)
        x, y = round(self.px(cx) - mask.width / 2), round(self.px(cy) - mask.height / 2)
        self.image.paste(Image.new("RGB", mask.size, fill), (x, y), mask)

    def finish(self) -> Image.Image:
        """The image at its target size: a 2× box reduction, then LANCZOS (as the pretraining corpus)."""
        return self.image.resize((self.size, self.size), Image.LANCZOS, reducing_gap=2.0)


def text_mask(text: str, style: TextStyle, height_px: int) -> Image.Image:
    """An 'L' mask of `text` cropped to its ink and scaled so the ink is `height_px` tall."""
    height_px = max(4, height_px)
    if style == "pixel":
        face = font(0, "bitmap")
        left, top, right, bottom = face.getbbox(text)
        mask = Image.new("L", (right + 2, bottom + 2), 0)
        ImageDraw.Draw(mask).text((1, 1), text, font=face, fill=255)
        mask = mask.crop(mask.getbbox())
        k = max(1, round(height_px / mask.height))
        return mask.resize((mask.width * k, mask.height * k), Image.NEAREST)
    px = round(height_px * 1.45)  # the face's digit/cap ink is ~0.7 of its nominal size
    face = font(px)
    stroke = max(1, px // 60) if style == "bold" else 0
    left, top, right, bottom = face.getbbox(text, stroke_width=stroke)
    mask = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(mask).text((2 - left, 2 - top), text, font=face, fill=255, stroke_width=stroke, stroke_fill=255)
    mask = mask.crop(mask.getbbox())
    scale = height_px / mask.height
    return mask.resize((max(1, round(mask.width * scale)), height_px), Image.LANCZOS)


def paren_options(options: Sequence[str]) -> str:
    """`(A) x\\n(B) y…`: the option block of CV-Bench and MathVista."""
    return "\n".join(f"({letter}) {option}" for letter, option in zip(letters(len(options)), options))
