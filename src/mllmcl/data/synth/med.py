"""Med — synthetic pathology, imitating PathVQA (histology micrographs with yes/no and short-phrase
questions; scored by "lower-cased GT is a substring of the lower-cased prediction", so answers are
short phrases from small closed sets).

The image is a stained tissue field: a blotchy stroma texture with fibre streaks and scattered nuclei,
in one of three stain palettes (H&E pinks and purples, Masson trichrome blues with red cytoplasm,
silver (reticulin) black nuclei and fibres on a golden-brown ground), each jittered. On top of it the
drawer paints what the question is about: a dense nest of large dark nuclei (tumor), a deep pink-red
anucleate area with nuclear dust (necrosis), or a field of one cell type.

Question families (`extra["question_type"]`, balanced closed answers):
  presence   "Is there a tumor?" / "Does this image show necrosis?"     -> Yes / No
  cell_type  "What type of cells are shown?"                            -> lymphocytes / adipose cells /
                                                                           red blood cells / squamous cells
  stain      "What stain is used?"                                      -> h&e / trichrome / silver

Learnability (why the drawer draws what it does; `python bench/calibrate.py` measures each task's difficulty):
within an expert's short budget the tiny model learns answers carried by the colours of most of the field
(palette, which cells fill it) but not a lesion covering a small part of it, nor which side a lesion is on (so
there is no "where" family), nor a pale necrotic area on pale stroma. So a tumor or necrotic area fills about
half of the field in a colour of its own (dark purple nest / deep pink-red necrosis), and cell-type fields are
drawn in H&E only, the cells covering the field, as PathVQA's cell-type questions mostly show. Answers are few
tokens: a long answer such as "immunohistochemistry" (13 tokens) is not spelled out within the budget, so the
third stain is silver.

Shared formats (`overlap`, see `mllmcl.data.synth.shared`), asked mostly as PathVQA mixes its formats (yes/no
45%, short answers 40%, letters 15%): the generic yes/no question means "is there a tumor?" (the presence
drawing), the generic short-answer question the cell type (lymphocytes / adipose cells / red blood cells /
squamous cells), the generic letter question the stain (A h&e / B trichrome / C silver). Under the shared look (`visual_overlap`) the stroma takes a neutral
tone from the shared pool, except on stain questions, whose answer is the stroma's palette.
"""
from __future__ import annotations

import math
import random

from mllmcl.data.synth.base import SynthItem, jitter, letters, register
from mllmcl.data.synth.draw import NO, OWN_LOOK, YES, Canvas, Look, mix, np_rng, shade, texture

# stain -> (stroma tones, nucleus tones, accent tones: trichrome cytoplasm / silver-black fibre knots)
STAINS = {
    "h&e": (((235, 160, 195), (220, 150, 200), (240, 190, 210), (205, 135, 185)),
            ((85, 40, 125), (105, 55, 145), (65, 30, 105)), ((225, 110, 160),)),
    "trichrome": (((120, 160, 210), (100, 165, 185), (150, 180, 220), (120, 175, 160)),
                  ((55, 35, 70), (70, 40, 60)), ((200, 65, 75), (185, 55, 95))),
    "silver": (((215, 185, 110), (200, 165, 95), (230, 200, 130), (190, 160, 110)),
               ((45, 35, 25), (60, 45, 30)), ((25, 20, 20), (50, 35, 25))),
}
CELL_TYPES = ("lymphocytes", "adipose cells", "red blood cells", "squamous cells")

PRESENCE_Q = {"tumor": ("Is there a tumor?", "Does this image show a tumor?", "Is a tumor present?"),
              "necrosis": ("Is there necrosis?", "Does this image show necrosis?", "Is necrosis present?")}
CELL_Q = ("What type of cells are shown?", "What kind of cells are these?", "Which cells are seen in this image?")
STAIN_Q = ("What stain is used?", "Which stain was used for this slide?", "What is the stain of this slide?")
FAMILIES = ("presence", "cell_type", "stain")
FORMATS = {"presence": "yesno", "cell_type": "text", "stain": "text"}
MIX = {"yesno": 0.45, "text": 0.4, "letter": 0.15}


class Slide:
    """One stained field: the palette of its stain and a canvas already holding the stroma."""

    def __init__(self, rng: random.Random, size: int, stain: str, look: Look = OWN_LOOK):
        stroma, nuclei, accents = STAINS[stain]
        self.rng, self.stain = rng, stain
        self.base = look.pick(rng, stroma, "light", 14)
        self.nucleus = jitter(rng, rng.choice(nuclei), 12)
        self.accent = jitter(rng, rng.choice(accents), 12)
        self.canvas = Canvas(size, texture(np_rng(rng), size, self.base, amount=16, grain=7, cells=8))
        for _ in range(rng.randint(3, 6)):  # wavy fibre streaks
            y, x = rng.uniform(0, 1), rng.uniform(-0.2, 0.4)
            pts = [(x + k * 0.25, y + rng.uniform(-0.06, 0.06)) for k in range(5)]
            self.canvas.line(pts, shade(self.base, rng.choice((0.88, 1.15))), rng.uniform(0.01, 0.02))

    def scatter(self, n: int, radius: tuple[float, float], colour, box=(0.0, 0.0, 1.0, 1.0), ring=None):
        rng, (x0, y0, x1, y1) = self.rng, box
        for _ in range(n):
            r = rng.uniform(*radius)
            self.canvas.ellipse(rng.uniform(x0, x1), rng.uniform(y0, y1), r, r * rng.uniform(0.7, 1.0),
                                fill=jitter(rng, colour, 10), outline=ring, width=0.006)

    def background_cells(self, n: int) -> None:
        self.scatter(n, (0.012, 0.02), self.nucleus)
        if self.stain != "h&e":  # red cytoplasm (trichrome) or black fibre knots (silver)
            self.scatter(n // 3, (0.015, 0.025), self.accent)

    def tumor(self) -> None:
        """A nest of large, crowded, dark nuclei filling about half of the field."""
        rng = self.rng
        cx, cy, r = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.38, 0.44)
        self.canvas.ellipse(cx, cy, r, r * rng.uniform(0.8, 1.0), fill=shade(self.nucleus, 1.45))
        for _ in range(45):
            a, d = rng.uniform(0, 2 * math.pi), r * 0.9 * rng.random() ** 0.5
            self.canvas.ellipse(cx + d * math.cos(a), cy + d * math.sin(a), rng.uniform(0.035, 0.05),
                                fill=shade(self.nucleus, rng.uniform(0.55, 0.8)))

    def necrosis(self) -> None:
        """A hypereosinophilic (deep pink-red), anucleate area with dark nuclear dust, filling about half
        of the field: coagulative necrosis as H&E shows it."""
        rng = self.rng
        cx, cy, r = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.38, 0.44)
        self.canvas.ellipse(cx, cy, r, r * rng.uniform(0.8, 1.0), fill=jitter(rng, (225, 85, 125), 12))
        d = r / 1.5
        self.scatter(30, (0.008, 0.014), shade(self.nucleus, 0.6), box=(cx - d, cy - d, cx + d, cy + d))

    def cells(self, kind: str) -> None:
        rng, c = self.rng, self.canvas
        if kind == "lymphocytes":  # sheets of small, round, very dark nuclei
            self.scatter(rng.randint(110, 130), (0.025, 0.035), shade(self.nucleus, 0.7))
        elif kind == "adipose cells":  # large empty vacuoles with thin walls
            for i in range(4):
                for j in range(4):
                    r = rng.uniform(0.1, 0.125)
                    c.ellipse((i + 0.5 + rng.uniform(-0.15, 0.15)) / 4, (j + 0.5 + rng.uniform(-0.15, 0.15)) / 4,
                              r, fill=jitter(rng, (246, 240, 242), 6), outline=shade(self.base, 0.8), width=0.012)
            self.scatter(4, (0.01, 0.015), self.nucleus)
        elif kind == "red blood cells":  # bright red biconcave discs
            red = jitter(rng, rng.choice(((215, 45, 50), (230, 70, 40), (200, 40, 70))), 12)
            for _ in range(rng.randint(55, 65)):
                x, y, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.045, 0.055)
                c.ellipse(x, y, r, fill=red)
                c.ellipse(x, y, r * 0.4, fill=mix(red, (255, 220, 220), 0.4))
        else:  # squamous: a sheet of flat polygonal cells, keratinising orange-pink cytoplasm, small central nuclei
            cyto = jitter(rng, (240, 135, 105), 12)
            for i in range(5):
                for j in range(5):
                    x, y = (i + 0.5 + rng.uniform(-0.2, 0.2)) / 5, (j + 0.5 + rng.uniform(-0.2, 0.2)) / 5
                    c.rect(x - 0.095, y - 0.08, x + 0.095, y + 0.08, fill=cyto, outline=shade(cyto, 0.6), width=0.012)
                    c.ellipse(x, y, 0.02, fill=self.nucleus)


def shared(rng: random.Random, family: str, size: int, look: Look) -> SynthItem:
    """Med's rule for a shared-format question (see the module doc); the question is the shared one."""
    if family == "yesno":  # a tumor?
        answer = rng.choice((YES, NO))
        slide = Slide(rng, size, "h&e" if rng.random() < 0.7 else rng.choice(("trichrome", "silver")), look)
        slide.background_cells(rng.randint(15, 30))
        if answer == YES:
            slide.tumor()
        return SynthItem(slide.canvas.finish(), "", answer)
    if family == "letter":  # the stain, A h&e / B trichrome / C silver
        stain = rng.choice(list(STAINS))
        slide = Slide(rng, size, stain)  # the stroma's palette is the answer: never the shared look
        slide.background_cells(rng.randint(15, 30))
        return SynthItem(slide.canvas.finish(), "", letters(3)[list(STAINS).index(stain)])
    kind = rng.choice(CELL_TYPES)  # short answer: the cell type
    slide = Slide(rng, size, "h&e", look)
    slide.cells(kind)
    return SynthItem(slide.canvas.finish(), "", kind)


@register("Med", "dcl", shared=shared, mix=MIX, formats=FORMATS)
def draw(rng: random.Random, split: str, size: int = 48, look: Look = OWN_LOOK) -> SynthItem:
    """Stained tissue fields with PathVQA-style presence, cell type and stain questions."""
    family = rng.choice(FAMILIES)
    if family == "stain":
        stain = rng.choice(list(STAINS))
    else:  # cell types are shown in H&E; lesions mostly so
        stain = "h&e" if family == "cell_type" or rng.random() < 0.7 else rng.choice(("trichrome", "silver"))
    slide = Slide(rng, size, stain, OWN_LOOK if family == "stain" else look)  # a stain is asked by its palette
    if family == "cell_type":
        answer = rng.choice(CELL_TYPES)
        slide.cells(answer)
        question = rng.choice(CELL_Q)
    elif family == "presence":
        slide.background_cells(rng.randint(15, 30))
        target, answer = rng.choice(("tumor", "necrosis")), rng.choice((YES, NO))
        if answer == YES:
            getattr(slide, target)()
        question = rng.choice(PRESENCE_Q[target])
    else:
        slide.background_cells(rng.randint(15, 30))
        if rng.random() < 0.3:
            rng.choice((slide.tumor, slide.necrosis))()
        answer, question = stain, rng.choice(STAIN_Q)
    return SynthItem(slide.canvas.finish(), question, answer, {"question_type": family})
