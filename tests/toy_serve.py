"""Toy domains for the serving tests: each asks its own questions (a few wordings each), so the training-free
prototype router tells them apart from the question alone, and an unseen domain asks something else again.

- `Colors`: a flat colour fills the image; answer its name;
- `Codes`: a disc of a colour on black; answer the colour's code digit;
- `Bright` (the expert a test adds later): a light or dark grey image; answer bright or dark;
- unseen (no expert): a count of white squares."""
from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from mllmcl.data.tasks import TaskSpec, write_manifest

COLOURS = {"red": (220, 30, 30), "yellow": (235, 215, 30), "green": (40, 180, 40), "blue": (40, 60, 220)}
CODES = {"red": "1", "yellow": "2", "green": "3", "blue": "4"}
QUESTIONS = {
    "Colors": ["What colour fills this image?", "Name the colour of this picture.", "Which colour is shown here?"],
    "Codes": ["Which code digit belongs to the disc?", "Give the digit coding this disc.", "What code does the disc carry?"],
    "Bright": ["Is this picture bright or dark?", "Bright or dark image?", "Would you call this image bright or dark?"],
    "Unseen": ["How many white squares are there?", "Count the squares in the picture.", "Number of squares?"],
}
SPECS = (
    TaskSpec("Colors", "toy", "fin", "colours: name the colour filling the whole image", ("Colors",), ("Colors",),
             max_new_tokens=4),
    TaskSpec("Codes", "toy", "fin", "codes: the digit coding the colour of a disc on black", ("Codes",), ("Codes",),
             max_new_tokens=4),
)


def draw(task: str, rng: random.Random, size: int = 48) -> tuple[Image.Image, str]:
    """One image of `task` and its answer."""
    if task == "Bright":
        bright = rng.random() < 0.5
        level = rng.randint(190, 250) if bright else rng.randint(5, 60)
        return Image.new("RGB", (size, size), (level, level, level)), "bright" if bright else "dark"
    if task == "Unseen":
        n = rng.randint(1, 4)
        image = Image.new("RGB", (size, size), (90, 40, 120))
        for k in range(n):
            x = 4 + 11 * k
            ImageDraw.Draw(image).rectangle([x, 18, x + 7, 25], fill=(255, 255, 255))
        return image, str(n)
    colour = rng.choice(list(COLOURS))
    rgb = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in COLOURS[colour])
    if task == "Colors":
        return Image.new("RGB", (size, size), rgb), colour
    image = Image.new("RGB", (size, size), (0, 0, 0))
    r = rng.uniform(0.3, 0.42) * size
    ImageDraw.Draw(image).ellipse([size / 2 - r, size / 2 - r, size / 2 + r, size / 2 + r], fill=rgb)
    return image, CODES[colour]


def write_rows(folder: Path, task: str, split: str, n: int, seed: int, form: str) -> Path:
    """`folder/<split>.json` with `n` rows of `task` in LLaVA conversation form ("train") or test form ("test"),
    images in `folder/images/`."""
    rng = random.Random(f"{task}|{split}|{seed}")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        image, answer = draw(task, rng)
        name = f"images/{split}_{i}.png"
        image.save(folder / name)
        question = QUESTIONS[task][i % len(QUESTIONS[task])]
        if form == "train":
            rows.append({"id": f"{task}-{split}-{i}", "image": name, "conversations": [
                {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]})
        else:
            rows.append({"question_id": f"{task}-{split}-{i}", "image": name, "text": question, "answer": answer})
    path = folder / f"{split}.json"
    path.write_text(json.dumps(rows))
    return path


def write_toy_serve_benchmark(root: Path, train: int = 32, test: int = 12, val: int = 12) -> Path:
    """Colors and Codes in the MLLM-CL layout (train.json, val.json, test.json) plus unseen/test.json."""
    for spec in SPECS:
        folder = root / spec.name
        write_rows(folder, spec.name, "train", train, 0, "train")
        write_rows(folder, spec.name, "val", val, 0, "test")
        write_rows(folder, spec.name, "test", test, 0, "test")
    write_rows(root / "unseen", "Unseen", "test", test, 0, "test")
    write_manifest(root, "toy", SPECS, unseen="unseen/test.json")
    return root
