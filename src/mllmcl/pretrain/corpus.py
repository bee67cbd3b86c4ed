"""General synthetic vision-language corpus for pretraining the tiny LLaVA-style model.

The tiny model (CLIP-like ViT + Llama LM) is pretrained from scratch on this corpus before it is
LoRA-tuned on the continual-learning benchmark, so the corpus teaches only *generic* skills: naming
colours and shapes, counting, left/right and above/below, large/small, existence, short captions,
background colour, answering multiple choice with a letter, and copying words so the LM learns to
emit the whole benchmark vocabulary (VOCABULARY). Images are 1-5 flat shapes on plain, gradient or
lightly textured backgrounds, drawn supersampled and downscaled with LANCZOS.

The *instruction* corpus (`instructions=True`, stage 3 of the pretraining) asks the same families, plus yes/no
checks of one attribute (`verify`), the way LLaVA-1.5's instruction-tuning mixture binds each answer format to
an instruction that ends the question: a word or a number under "Answer the question using a single word or
phrase.", yes/no under that instruction or the release's "Only answer with yes or no directly.", a letter
choice under "Answer with the option's letter from the given choices directly." or the release's Fin
variant. The same content is asked in every format (the colour of a shape as a word, a letter choice and a
yes/no check), so the format follows the instruction, not the content: a later fine-tuning that sees one
format cannot take the others over. `FORMATS` names each answer's format.

It deliberately contains none of the later tasks: no aerial/remote-sensing scenes, no medical or
tissue images, no road/driving scenes, no science diagrams, no finance charts, no text, letters or
digits drawn in images (no OCR), no arithmetic and no GUI screens. Their words appear only as text
(in VOCABULARY, copy prompts and tokenizer_texts), never as visual content.

Every example is drawn from its own sub-seed derived from (seed, index), so the corpus is
deterministic and generate_corpus(n, s) is a prefix of generate_corpus(n + k, s).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from mllmcl.data.records import Example
from mllmcl.data.tasks import FIN_LETTER, FIN_YES_NO, LETTER_INSTRUCTION, SHORT_INSTRUCTION

RGB = tuple[int, int, int]

#: Object colours: nine clearly distinct named colours.
COLORS: dict[str, RGB] = {
    "red": (220, 35, 35), "green": (30, 160, 60), "blue": (35, 75, 225), "yellow": (250, 215, 25),
    "orange": (250, 135, 15), "purple": (135, 50, 185), "black": (20, 20, 20),
    "white": (250, 250, 250), "gray": (128, 128, 128),
}
#: Tones used for plain backgrounds (named, for the "background" family) and as texture bases.
BACKGROUNDS: dict[str, RGB] = {
    "white": (242, 242, 240), "black": (28, 28, 32), "gray": (175, 175, 175),
    "blue": (95, 140, 220), "green": (110, 185, 105), "red": (205, 75, 70),
    "yellow": (240, 225, 115), "orange": (240, 155, 70), "purple": (155, 105, 200),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross", "hexagon")
PLURALS: dict[str, str] = {s: ("crosses" if s == "cross" else s + "s") for s in SHAPES}
#: Object extent (fraction of the image side) for each size word.
SIZES: dict[str, float] = {"small": 0.24, "large": 0.44}
LETTERS = "ABCDEFGHIJ"
FAMILIES: tuple[str, ...] = (
    "color", "shape", "count", "position", "size", "exists", "caption", "choice", "background", "copy",
)
INSTRUCTION_WEIGHTS: dict[str, float] = {
    "color": 8, "shape": 8, "count": 8, "position": 8, "size": 5, "exists": 8, "verify": 10, "caption": 4,
    "choice": 25, "background": 6, "copy": 4,
}
"""How often the instruction corpus asks each family: the closed formats a benchmark asks carry the mixture,
multiple choice most, because matching an option to what is seen is the slowest skill to learn."""
FORMATS = ("letter", "yesno", "word", "number", "free")
"""The answer formats of the corpus (`Record.format`): a letter choice, yes/no, a word, a number, free text."""
SUPERSAMPLE = 4
MIN_CONTRAST = 110.0  # minimum RGB distance between an object colour and any background tone
MAX_WORDS = 25  # longest question, in whitespace-separated words

# Question templates, one tuple of paraphrases per slot pattern (also filled by tokenizer_texts).
COLOR_Q = ("What color is the {shape}?", "What is the color of the {shape}?", "Which color is the {shape}?")
SHAPE_Q = ("What shape is the {color} object?", "What is the shape of the {color} object?",
           "Which shape is {color}?")
COUNT_SHAPE_Q = ("How many {plural} are there?", "How many {plural} are in the image?")
COUNT_COLOR_Q = ("How many {color} objects are there?",)
COUNT_ALL_Q = ("How many objects are in the image?", "How many shapes are there?")
SIDE_Q = ("Is the {d} on the left or the right?", "Is the {d} on the left or right side of the image?",
          "Which side is the {d} on, left or right?")
RELATION_Q = {"above": "Is the {a} above the {b}?", "below": "Is the {a} below the {b}?",
              "left": "Is the {a} to the left of the {b}?", "right": "Is the {a} to the right of the {b}?"}
SIZE_Q = ("Is the {d} large or small?", "Is the {d} small or large?", "What size is the {d}, large or small?")
EXISTS_Q = ("Is there {ad} in the image?", "Does the image contain {ad}?", "Is there {ad} in the picture?")
CAPTION_Q = ("Describe the image briefly.", "Write a short caption for the image.",
             "What is in the picture? Answer briefly.")
BACKGROUND_Q = ("What color is the background?", "What is the background color?",
                "Which color is the background of the image?")
CHOICE_INSTRUCTIONS = ("Answer with the option's letter from the given choices directly.",
                       "Answer with the letter of the correct option.", "Answer with the letter.")
VERIFY_COLOR_Q = ("Is the {shape} {color}?", "Is the color of the {shape} {color}?")
VERIFY_BACKGROUND_Q = ("Is the background {color}?", "Is the background of the image {color}?")
VERIFY_SIZE_Q = ("Is the {d} {size}?",)
VERIFY_COUNT_Q = ("Are there {n} objects in the image?", "Does the image show {n} objects?")
COPY1_Q = ("Repeat the word: {w}", "Say {w}.", "Write the word {w}.")
COPY2_Q = ("Repeat: {w1} {w2}", "Copy this: {w1} {w2}")
NUMERALS: tuple[str, ...] = tuple(str(i) for i in range(100))

VOCABULARY: tuple[str, ...] = (
    "0", "1", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "2", "20", "3", "4", "5", "6", "7",
    "8", "9", "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "a", "abnormal", "about", "above", "absent",
    "accelerate", "account", "action", "add", "adipose", "adult", "aerial", "ahead", "airplane", "airplanes",
    "airport", "alarm", "all", "an", "and", "animal", "animals", "another", "answer", "any", "app", "appear",
    "appears", "are", "area", "around", "arrow", "arrows", "as", "at", "autumn", "average", "back",
    "background", "bar", "bare", "barrier", "bars", "basal", "baseball", "based", "basketball", "battery",
    "be", "beach", "bearish", "behind", "beige", "below", "benign", "between", "bicycle", "big", "bigger",
    "biggest", "bike", "bird", "black", "blood", "blue", "boat", "boats", "bone", "both", "bottom", "brain",
    "brake", "breast", "bridge", "bridges", "brief", "briefly", "bright", "brown", "browser", "building",
    "buildings", "bullish", "bus", "buses", "butterfly", "button", "buttons", "buy", "by", "calculate",
    "calendar", "call", "camera", "can", "cancel", "cancer", "candle", "candles", "candlestick",
    "candlesticks", "car", "carbon", "carcinoma", "carnivore", "cars", "caution", "cell", "cells", "center",
    "chain", "change", "chaparral", "chart", "charts", "chest", "choices", "choose", "church", "circle",
    "circles", "circular", "city", "click", "clock", "close", "closing", "cloud", "clouds", "cold", "colon",
    "color", "colored", "colors", "colour", "commercial", "condensation", "cone", "confirm", "consumer",
    "contact", "contacts", "contain", "contains", "corner", "correct", "count", "course", "court", "crop",
    "crops", "cross", "crosses", "crossing", "crosswalk", "curb", "cyan", "cycle", "cyclist", "danger",
    "dark", "day", "days", "debris", "decomposer", "decrease", "decreased", "decreasing", "delete", "dense",
    "describe", "desert", "diagnosis", "diagram", "diamond", "diamonds", "difference", "different", "digit",
    "digits", "dioxide", "directly", "disease", "distance", "do", "does", "dot", "dots", "down", "download",
    "drive", "driving", "each", "earth", "east", "edit", "egg", "ego", "eight", "eighteen", "eleven", "email",
    "energy", "enter", "epithelial", "equals", "equation", "evaporation", "even", "every", "exit", "fall",
    "falling", "false", "far", "farm", "farmland", "fat", "fibrous", "field", "fields", "fifteen", "first",
    "fish", "five", "flat", "flower", "following", "food", "for", "forest", "forward", "four", "fourteen",
    "freeway", "freeze", "frog", "from", "front", "fruit", "gain", "gallery", "gas", "given", "gland",
    "glands", "go", "gold", "golf", "grass", "grassland", "gray", "green", "grey", "harbor", "healthy",
    "heart", "heat", "help", "herbivore", "hexagon", "hexagons", "high", "highest", "highway", "histology",
    "hold", "home", "hot", "house", "houses", "how", "huge", "ice", "icon", "image", "images", "in",
    "increase", "increased", "increasing", "industrial", "inflammation", "inflammatory", "info", "insect",
    "inside", "install", "intersection", "into", "is", "island", "it", "item", "its", "junction", "keep",
    "keratosis", "keyboard", "kidney", "kind", "label", "labeled", "labels", "lake", "land", "lane", "lanes",
    "large", "larger", "largest", "larva", "last", "layer", "layers", "lead", "leaf", "least", "leaves",
    "left", "lesion", "lesions", "less", "letter", "letters", "life", "light", "lights", "line", "lines",
    "liquid", "list", "liver", "log", "login", "long", "loss", "lot", "low", "lower", "lowest", "lung",
    "lymphocyte", "lymphocytes", "magenta", "magma", "maintain", "malignant", "many", "map", "market",
    "meadow", "medium", "melanoma", "melt", "menu", "merge", "message", "messages", "microscope", "middle",
    "minus", "mobile", "mode", "mole", "month", "months", "moon", "more", "most", "motorcycle", "mountain",
    "mountains", "moving", "much", "mucus", "muscle", "music", "narrow", "navy", "near", "necrosis",
    "negative", "nevus", "new", "next", "night", "nine", "nineteen", "no", "normal", "north", "not",
    "notification", "nuclei", "nucleus", "number", "numbers", "object", "objects", "ocean", "odd", "of",
    "off", "ok", "omnivore", "on", "one", "only", "open", "opening", "option", "options", "or", "orange",
    "orbit", "organ", "other", "out", "outside", "oval", "over", "overpass", "overtake", "oxygen", "page",
    "palace", "park", "parked", "parking", "part", "parts", "password", "patch", "pathology", "pause", "peak",
    "pedestrian", "pedestrians", "pentagon", "percent", "period", "phase", "phases", "photo", "photos",
    "photosynthesis", "picture", "pictures", "pink", "plane", "planes", "plant", "plants", "play", "please",
    "plus", "polyp", "pond", "port", "position", "positive", "precipitation", "predator", "present",
    "previous", "prey", "price", "prices", "process", "producer", "product", "profile", "pupa", "purple",
    "question", "railway", "rain", "read", "rectangle", "rectangular", "red", "represent", "represents",
    "residential", "resistance", "result", "return", "reverse", "right", "rising", "river", "rivers", "road",
    "roads", "rock", "roof", "root", "roots", "rotation", "round", "roundabout", "runway", "rural", "safe",
    "same", "satellite", "save", "scene", "school", "screen", "scroll", "sea", "search", "season", "seasons",
    "second", "seed", "seeds", "select", "sell", "send", "settings", "seven", "seventeen", "shape", "shapes",
    "share", "ship", "ships", "short", "should", "show", "shown", "shows", "side", "sidewalk", "sideways",
    "sign", "signal", "signals", "signs", "silver", "six", "sixteen", "size", "skin", "slide", "slow",
    "small", "smaller", "smallest", "smooth", "snow", "soil", "solid", "some", "south", "sparse", "speed",
    "spring", "squamous", "square", "squares", "stable", "stadium", "stage", "stages", "stain", "star",
    "stars", "station", "stationary", "stem", "stock", "stocks", "stop", "stopped", "storage", "straight",
    "stroma", "structure", "submit", "sum", "summer", "sun", "support", "swipe", "switch", "system", "tab",
    "tall", "tank", "tanks", "tap", "teal", "temperature", "ten", "tennis", "terrace", "text", "than", "that",
    "the", "then", "there", "these", "third", "thirteen", "this", "those", "three", "through", "times",
    "tiny", "tissue", "title", "to", "toggle", "top", "total", "town", "traffic", "tree", "trees", "trend",
    "triangle", "triangles", "truck", "trucks", "true", "tumor", "turn", "turning", "twelve", "twenty", "two",
    "type", "under", "up", "update", "upload", "upper", "urban", "user", "username", "value", "vegetation",
    "vehicle", "vehicles", "vessel", "view", "village", "violet", "visible", "volcano", "volume", "was",
    "water", "weather", "web", "week", "weeks", "were", "west", "wetland", "what", "when", "where", "which",
    "white", "who", "why", "wide", "wifi", "winter", "with", "word", "words", "written", "year", "yellow",
    "yes", "yield", "you", "zero",
)


@dataclass(frozen=True)
class Obj:
    """One drawn object; x, y (centre) and extent are fractions of the image side."""

    shape: str
    color: str
    size: str
    x: float
    y: float
    extent: float
    rgb: RGB

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """What an image shows: its objects and background (name only when the background is plain)."""

    objects: tuple[Obj, ...]
    background: str | None
    texture: str  # "plain", "gradient" or "noise"
    tones: tuple[RGB, ...]


@dataclass(frozen=True)
class Record:
    """A generated example with its family, its answer's format (`FORMATS`) and the scene it was drawn from."""

    family: str
    example: Example
    scene: Scene
    format: str = ""


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _jitter(rnd: random.Random, rgb: RGB, amount: int) -> RGB:
    r, g, b = (min(255, max(0, c + rnd.randint(-amount, amount))) for c in rgb)
    return r, g, b


def _make_scene(rnd: random.Random, n_objects: int, shapes: Sequence[str] = SHAPES,
                plain: bool = False) -> Scene:
    """Pick a background, then place up to n_objects non-overlapping objects that contrast with it."""
    texture = "plain" if plain or rnd.random() < 0.4 else rnd.choice(("gradient", "noise"))
    base_name = rnd.choice(list(BACKGROUNDS))
    base = _jitter(rnd, BACKGROUNDS[base_name], 12)
    tones: tuple[RGB, ...] = (base,)
    if texture == "gradient":
        tones = (base, _jitter(rnd, base, 50))
    palette = [c for c, rgb in COLORS.items()
               if c != base_name and all(math.dist(rgb, t) >= MIN_CONTRAST for t in tones)]
    objects: list[Obj] = []
    for _ in range(n_objects):
        for _attempt in range(30):
            size = "large" if rnd.random() < 0.35 else "small"
            extent = SIZES[size] * rnd.uniform(0.92, 1.08)
            half = extent / 2
            x, y = (rnd.uniform(half + 0.03, 1 - half - 0.03) for _ in range(2))
            if all(math.dist((x, y), (o.x, o.y)) >= 1.1 * (half + o.extent / 2) for o in objects):
                break
        else:
            continue
        used = {(o.shape, o.color) for o in objects}
        combos = [(s, c) for s in shapes for c in palette if (s, c) not in used]
        if combos:
            shape, color = rnd.choice(combos)
            objects.append(Obj(shape, color, size, x, y, extent, _jitter(rnd, COLORS[color], 10)))
    return Scene(tuple(objects), base_name if texture == "plain" else None, texture, tones)


def _render(scene: Scene, size: int, nrng: np.random.Generator) -> Image.Image:
    """Draw the scene at SUPERSAMPLE x the size and downscale with LANCZOS."""
    base = np.asarray(scene.tones[0], dtype=np.float32)
    if scene.texture == "gradient":
        t = np.linspace(0.0, 1.0, size, dtype=np.float32)
        ramp = {0: t[None, :], 1: t[:, None], 2: (t[None, :] + t[:, None]) / 2}[int(nrng.integers(3))]
        ramp = np.broadcast_to(ramp, (size, size))[..., None]
        pixels = base + ramp * (np.asarray(scene.tones[1], dtype=np.float32) - base)
    else:
        pixels = np.broadcast_to(base, (size, size, 3)).astype(np.float32)
        if scene.texture == "noise":
            coarse = nrng.normal(0.0, 14.0, (size // 8 + 1, size // 8 + 1, 1)).astype(np.float32)
            blobs = np.asarray(Image.fromarray(coarse[..., 0]).resize((size, size), Image.BICUBIC))
            pixels = pixels + blobs[..., None] + nrng.normal(0.0, 7.0, (size, size, 3)).astype(np.float32)
    big = size * SUPERSAMPLE
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize((big, big), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_shape(draw, obj, big)
    return image.resize((size, size), Image.LANCZOS, reducing_gap=2.0)  # 2x box reduce, then LANCZOS


def _draw_shape(draw: ImageDraw.ImageDraw, obj: Obj, side: int, fill: RGB | int | None = None) -> None:
    """Draw `obj` in its colour, or in `fill` (e.g. a label on a single-channel canvas)."""
    cx, cy, r = obj.x * side, obj.y * side, obj.extent * side / 2
    fill = obj.rgb if fill is None else fill
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif obj.shape == "square":
        h = 0.85 * r
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
    elif obj.shape == "triangle":  # circumradius chosen so the bounding box is about 2r tall, centred
        draw.regular_polygon((cx, cy + 0.15 * r, 1.15 * r), 3, fill=fill)
    elif obj.shape == "hexagon":
        draw.regular_polygon((cx, cy, r), 6, fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)], fill=fill)
    elif obj.shape == "star":
        pts = [(cx + (r if k % 2 == 0 else 0.45 * r) * math.sin(k * math.pi / 5),
                cy - (r if k % 2 == 0 else 0.45 * r) * math.cos(k * math.pi / 5)) for k in range(10)]
        draw.polygon(pts, fill=fill)
    elif obj.shape == "cross":
        w = 0.33 * r
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


# --- question families: each returns (question, answer) or None when the scene does not fit ---
QA = tuple[str, str] | None


def _unique(objs: Sequence[Obj], key: Callable[[Obj], str]) -> list[Obj]:
    return [o for o in objs if sum(key(p) == key(o) for p in objs) == 1]


def _q_color(rnd: random.Random, scene: Scene) -> QA:
    objs = _unique(scene.objects, lambda o: o.shape)
    if not objs:
        return None
    o = rnd.choice(objs)
    return rnd.choice(COLOR_Q).format(shape=o.shape), o.color


def _q_shape(rnd: random.Random, scene: Scene) -> QA:
    objs = _unique(scene.objects, lambda o: o.color)
    if not objs:
        return None
    o = rnd.choice(objs)
    return rnd.choice(SHAPE_Q).format(color=o.color), o.shape


def _q_count(rnd: random.Random, scene: Scene) -> QA:
    objs, r = scene.objects, rnd.random()
    if r < 0.2:
        return rnd.choice(COUNT_ALL_Q), str(len(objs))
    if r < 0.35:
        color = rnd.choice(list(COLORS) if rnd.random() < 0.25 else [o.color for o in objs])
        return rnd.choice(COUNT_COLOR_Q).format(color=color), str(sum(o.color == color for o in objs))
    absent = [s for s in SHAPES if all(o.shape != s for o in objs)]
    shape = rnd.choice(absent) if absent and rnd.random() < 0.15 else rnd.choice(objs).shape
    return rnd.choice(COUNT_SHAPE_Q).format(plural=PLURALS[shape]), str(sum(o.shape == shape for o in objs))


def _q_position(rnd: random.Random, scene: Scene) -> QA:
    objs = scene.objects
    if len(objs) >= 2 and rnd.random() < 0.6:
        a, b = rnd.sample(objs, 2)
        relation = rnd.choice(list(RELATION_Q))
        vertical = relation in ("above", "below")
        delta = (b.y - a.y) if vertical else (b.x - a.x)  # > 0: a is above / left of b
        if abs(delta) < 0.15:
            return None
        truth = delta > 0 if relation in ("above", "left") else delta < 0
        return RELATION_Q[relation].format(a=a.name, b=b.name), "yes" if truth else "no"
    o = rnd.choice(objs)
    if abs(o.x - 0.5) < 0.12:
        return None
    return rnd.choice(SIDE_Q).format(d=o.name), "left" if o.x < 0.5 else "right"


def _q_size(rnd: random.Random, scene: Scene) -> QA:
    want = rnd.choice(list(SIZES))
    objs = [o for o in scene.objects if o.size == want]
    if not objs:
        return None
    o = rnd.choice(objs)
    return rnd.choice(SIZE_Q).format(d=o.name), o.size


def _q_exists(rnd: random.Random, scene: Scene) -> QA:
    if rnd.random() < 0.5:
        return rnd.choice(EXISTS_Q).format(ad=_article(rnd.choice(scene.objects).name)), "yes"
    names = {o.name for o in scene.objects}
    near = [f"{c} {s}" for c in COLORS for s in SHAPES if f"{c} {s}" not in names
            and any(o.color == c or o.shape == s for o in scene.objects)]
    absent = [f"{c} {s}" for c in COLORS for s in SHAPES if f"{c} {s}" not in names]
    name = rnd.choice(near if near and rnd.random() < 0.5 else absent)
    return rnd.choice(EXISTS_Q).format(ad=_article(name)), "no"


def _q_verify(rnd: random.Random, scene: Scene) -> QA:
    """A yes/no check of one attribute the scene shows: an object's colour or size, the background's colour, or
    the number of objects. Half of the checks hold."""
    holds, kind = rnd.random() < 0.5, rnd.choice(("color", "background", "size", "count"))
    answer = "yes" if holds else "no"
    if kind == "color":
        objs = _unique(scene.objects, lambda o: o.shape)
        if not objs:
            return None
        o = rnd.choice(objs)
        color = o.color if holds else rnd.choice([c for c in COLORS if c != o.color])
        return rnd.choice(VERIFY_COLOR_Q).format(shape=o.shape, color=color), answer
    if kind == "background":
        if scene.background is None:
            return None
        color = scene.background if holds else rnd.choice([c for c in BACKGROUNDS if c != scene.background])
        return rnd.choice(VERIFY_BACKGROUND_Q).format(color=color), answer
    if kind == "size":
        o = rnd.choice(scene.objects)
        size = o.size if holds else next(z for z in SIZES if z != o.size)
        return rnd.choice(VERIFY_SIZE_Q).format(d=o.name, size=size), answer
    n = len(scene.objects)
    shown = n if holds else rnd.choice([k for k in range(1, 5) if k != n])
    return rnd.choice(VERIFY_COUNT_Q).format(n=shown), answer


def caption_of(objects: Sequence[Obj]) -> str:
    """'a red circle', 'a red circle and a blue square', 'a, b and c' (objects left to right)."""
    names = [_article(o.name) for o in sorted(objects, key=lambda o: o.x)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _q_caption(rnd: random.Random, scene: Scene) -> QA:
    xs = sorted(o.x for o in scene.objects)
    if not 1 <= len(xs) <= 3 or any(b - a < 0.08 for a, b in zip(xs, xs[1:])):
        return None
    return rnd.choice(CAPTION_Q), caption_of(scene.objects)


def _q_background(rnd: random.Random, scene: Scene) -> QA:
    return (rnd.choice(BACKGROUND_Q), scene.background) if scene.background else None


def _q_choice(rnd: random.Random, scene: Scene) -> QA:
    kind = rnd.choice(("color", "shape", "count"))
    qa = {"color": _q_color, "shape": _q_shape, "count": _q_count}[kind](rnd, scene)
    if qa is None:
        return None
    values = {"color": list(COLORS), "shape": list(SHAPES), "count": [str(i) for i in range(6)]}[kind]
    stem, truth = qa
    k = rnd.randint(3, 5)
    room = MAX_WORDS - len(stem.split()) - 2 * k  # an option line is 2 words
    fitting = [t for t in CHOICE_INSTRUCTIONS if len(t.split()) <= room]
    instruction = rnd.choice(fitting or CHOICE_INSTRUCTIONS[-1:])
    pos = rnd.randrange(k)
    options = rnd.sample([v for v in values if v != truth], k - 1)
    options.insert(pos, truth)
    lines = [f"{LETTERS[i]}. {v}" for i, v in enumerate(options)]
    return "\n".join([stem, *lines, instruction]), LETTERS[pos]


def _q_copy(rnd: random.Random, scene: Scene) -> QA:
    pool = VOCABULARY + NUMERALS
    if rnd.random() < 0.75:
        w = rnd.choice(pool)
        return rnd.choice(COPY1_Q).format(w=w), w
    w1, w2 = rnd.choice(pool), rnd.choice(pool)
    return rnd.choice(COPY2_Q).format(w1=w1, w2=w2), f"{w1} {w2}"


_BUILDERS: dict[str, Callable[[random.Random, Scene], QA]] = {
    "color": _q_color, "shape": _q_shape, "count": _q_count, "position": _q_position, "size": _q_size,
    "exists": _q_exists, "caption": _q_caption, "choice": _q_choice, "background": _q_background,
    "copy": _q_copy, "verify": _q_verify,
}


def answer_format(family: str, answer: str) -> str:
    """The format of an answer of `family`: a letter choice, yes/no, a number, a word, or free text."""
    if family == "choice":
        return "letter"
    if family in ("caption", "copy"):
        return "free"
    if answer in ("yes", "no"):
        return "yesno"
    return "number" if answer.isdigit() else "word"


def instructed(rnd: random.Random, question: str, fmt: str) -> str:
    """`question` ending with an instruction of its answer format, as LLaVA-1.5's mixture and the release's
    prompts bind them: a word or number under the short-answer instruction (a few bare), yes/no under it or the
    release's yes/no instruction, a letter choice under LLaVA's instruction, another wording or the release's
    Fin variant (which follows the last option on its line); free text under none."""
    r = rnd.random()
    if fmt in ("word", "number"):
        return f"{question}\n{SHORT_INSTRUCTION}" if r < 0.9 else question
    if fmt == "yesno":
        return f"{question}\n{SHORT_INSTRUCTION}" if r < 0.5 else question + FIN_YES_NO
    if fmt == "letter":
        *options, _ = question.split("\n")  # the choice builder's own instruction line
        if r < 0.3:
            return "\n".join(options) + FIN_LETTER
        return "\n".join([*options, LETTER_INSTRUCTION if r < 0.8 else rnd.choice(CHOICE_INSTRUCTIONS[1:])])
    return question


def _scene_for(family: str, rnd: random.Random) -> Scene:
    # Mostly one or two objects: a from-scratch 3M model learns colour, shape, size and position words on
    # such scenes quickly, and stays near chance on shape, size and position for thousands of steps on
    # crowded ones (1-5 objects).
    if family == "count":
        n = rnd.randint(1, 3)
    else:
        n = rnd.choice((1, 1, 1, 2, 2))
    shapes: Sequence[str] = SHAPES
    if family == "count" or (family == "choice" and rnd.random() < 0.4):  # repeated shapes -> counts > 1
        shapes = rnd.sample(SHAPES, rnd.randint(1, 3))
    return _make_scene(rnd, n, shapes, plain=family == "background")


def generate_record(seed: int, index: int, image_size: int = 64, families: Sequence[str] | None = None,
                    instructions: bool = False) -> Record:
    """The index-th example of the corpus with this seed; depends only on (seed, index, size, families,
    instructions). The general corpus draws its families uniformly; the instruction corpus (`instructions`)
    draws them by `INSTRUCTION_WEIGHTS`, from a stream of its own, and ends each question with the instruction
    of its answer format."""
    families = tuple(families) if families else (tuple(INSTRUCTION_WEIGHTS) if instructions else FAMILIES)
    unknown = [f for f in families if f not in _BUILDERS]
    if unknown:
        raise ValueError(f"unknown corpus families {unknown}; known: {', '.join(_BUILDERS)}")
    rnd = random.Random(f"mllmcl.corpus{'.instructed' if instructions else ''}:{seed}:{index}")
    nrng = np.random.default_rng(rnd.getrandbits(64))
    if instructions:
        family = rnd.choices(families, weights=[INSTRUCTION_WEIGHTS.get(f, 1.0) for f in families])[0]
    else:
        family = rnd.choice(families)
    question_seed = rnd.getrandbits(64)
    for _ in range(200):
        scene = _scene_for(family, rnd)
        # The question RNG restarts on every retry, so its first draws (e.g. "ask about a large
        # object") are fixed per example and rejecting a scene does not bias the answer balance.
        qa = _BUILDERS[family](random.Random(question_seed), scene) if scene.objects else None
        if qa is not None:
            break
    else:  # pragma: no cover - every family fits a large share of scenes
        raise RuntimeError(f"could not build a {family!r} example for seed {seed}, index {index}")
    question, answer = qa
    fmt = answer_format(family, answer)
    if instructions:
        question = instructed(random.Random(question_seed + 1), question, fmt)
    return Record(family, Example(_render(scene, image_size, nrng), question, answer), scene, fmt)


def generate_records(n: int, seed: int, image_size: int = 64, families: Sequence[str] | None = None,
                     instructions: bool = False) -> list[Record]:
    """n records (family, example, scene, format); a prefix of the same call with a larger n."""
    return [generate_record(seed, i, image_size, families, instructions) for i in range(n)]


def generate_labelled(n: int, seed: int, image_size: int = 64, families: Sequence[str] | None = None,
                      instructions: bool = False) -> list[tuple[str, Example]]:
    """n (family, example) pairs, for per-family accuracy reports."""
    return [(r.family, r.example) for r in generate_records(n, seed, image_size, families, instructions)]


def generate_corpus(n: int, seed: int, image_size: int = 64, families: Sequence[str] | None = None,
                    instructions: bool = False) -> list[Example]:
    """n examples of the corpus, deterministic in (n, seed, image_size, families, instructions)."""
    return [r.example for r in generate_records(n, seed, image_size, families, instructions)]


@dataclass(frozen=True)
class SceneView:
    """A scene of one or two objects and where each object is, pixel by pixel, for the vision tower's first
    stage: `object_map[y, x]` is 1 + the index of the object covering that pixel, 0 for the background."""

    image: Image.Image
    scene: Scene
    object_map: np.ndarray


def _object_map(scene: Scene, size: int) -> np.ndarray:
    """Draw each object with its own label instead of its colour, at the same geometry as `_render`."""
    big = size * SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    for k, obj in enumerate(scene.objects, start=1):
        _draw_shape(draw, obj, big, fill=k)
    return np.asarray(canvas.resize((size, size), Image.NEAREST))


def generate_scene_view(seed: int, index: int, image_size: int = 64) -> SceneView:
    """The index-th one- or two-object scene with this seed; depends only on (seed, index, size)."""
    rnd = random.Random(f"mllmcl.views:{seed}:{index}")
    nrng = np.random.default_rng(rnd.getrandbits(64))
    scene = _make_scene(rnd, rnd.choice((1, 1, 2)))
    return SceneView(_render(scene, image_size, nrng), scene, _object_map(scene, image_size))


def generate_scene_views(n: int, seed: int, image_size: int = 64) -> list[SceneView]:
    """n scenes of the corpus's kind (all textures, sizes, colours and shapes); a prefix of a larger n."""
    return [generate_scene_view(seed, i, image_size) for i in range(n)]


def tokenizer_texts() -> list[str]:
    """Texts to train the BPE tokenizer on: every template filled with every value, every answer,
    VOCABULARY, numerals and the LLaVA template words."""
    names = [f"{c} {s}" for c in COLORS for s in SHAPES]
    texts: list[str] = ["USER:", "ASSISTANT:", "yes", "no", "left", "right", *SIZES, *LETTERS,
                        *COLORS, *SHAPES, *PLURALS.values(), *VOCABULARY, *NUMERALS]
    texts += [t.format(shape=s) for t in COLOR_Q for s in SHAPES]
    texts += [t.format(color=c) for t in SHAPE_Q + COUNT_COLOR_Q for c in COLORS]
    texts += [t.format(plural=p) for t in COUNT_SHAPE_Q for p in PLURALS.values()]
    texts += [*COUNT_ALL_Q, *CAPTION_Q, *BACKGROUND_Q, *CHOICE_INSTRUCTIONS]
    texts += [t.format(d=d) for t in SIDE_Q + SIZE_Q for d in names]
    texts += [t.format(ad=_article(d)) for t in EXISTS_Q for d in names]
    texts += [t.format(a=a, b=names[i - 1]) for t in RELATION_Q.values() for i, a in enumerate(names)]
    texts += [_article(d) for d in names]
    texts += [f"{L}. {v}" for L in LETTERS for v in [*COLORS, *SHAPES, *(str(i) for i in range(21))]]
    texts += [t.format(w=w) for t in COPY1_Q for w in VOCABULARY]
    texts += [t.format(w1=w, w2=NUMERALS[i % 100]) for t in COPY2_Q for i, w in enumerate(VOCABULARY)]
    return list(dict.fromkeys(texts))
