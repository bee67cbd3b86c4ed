"""A two-task continual-learning benchmark small enough for tests, written in the MLLM-CL layout.

Both tasks ask the same question, "What is this?", about a colour: `Colors` shows a flat colour and wants
its name; `Codes` shows a disc of that colour on black and wants the colour's code, a digit. One adapter
trained on Codes after Colors learns to answer digits and so forgets Colors; a per-task expert with a
router that tells a flat image from a disc on black does not."""
from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from mllmcl.data.tasks import TaskSpec, write_manifest

COLOURS = {"red": (220, 30, 30), "yellow": (235, 215, 30), "green": (40, 180, 40), "blue": (40, 60, 220)}
CODES = {"red": "1", "yellow": "2", "green": "3", "blue": "4"}
QUESTION = "What is this?"
SPECS = (
    TaskSpec("Colors", "toy", "fin", "colours: name the colour filling the whole image", ("Colors",), ("Colors",),
             max_new_tokens=4),
    TaskSpec("Codes", "toy", "fin", "codes: the digit coding the colour of a disc on black", ("Codes",), ("Codes",),
             max_new_tokens=4),
)


def _image(task: str, colour: str, rng: random.Random, size: int = 48) -> Image.Image:
    rgb = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in COLOURS[colour])
    if task == "Colors":
        return Image.new("RGB", (size, size), rgb)
    image = Image.new("RGB", (size, size), (0, 0, 0))
    r = rng.uniform(0.3, 0.42) * size
    ImageDraw.Draw(image).ellipse([size / 2 - r, size / 2 - r, size / 2 + r, size / 2 + r], fill=rgb)
    return image


def write_toy_benchmark(root: Path, train: int = 96, test: int = 24, seed: int = 0) -> Path:
    """Write both tasks (train.json, test.json, images/) and a manifest naming them; returns `root`."""
    rng = random.Random(seed)
    for spec in SPECS:
        folder = root / spec.name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        for split, n in (("train", train), ("test", test)):
            rows = []
            for i in range(n):
                colour = list(COLOURS)[i % len(COLOURS)]
                name = f"images/{split}_{i}.png"
                _image(spec.name, colour, rng).save(folder / name)
                answer = colour if spec.name == "Colors" else CODES[colour]
                if split == "train":
                    rows.append({"id": f"{spec.name}-{i}", "image": name, "conversations": [
                        {"from": "human", "value": f"<image>\n{QUESTION}"}, {"from": "gpt", "value": answer}]})
                else:
                    rows.append({"question_id": f"{spec.name}-{i}", "image": name, "text": QUESTION,
                                 "answer": answer})
            (folder / f"{split}.json").write_text(json.dumps(rows))
    write_manifest(root, "toy", SPECS, router=None, replay=None)
    return root
