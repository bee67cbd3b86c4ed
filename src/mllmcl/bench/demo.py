"""`mllmcl demo`: the embedded tiny backbone at work, in about a minute on a laptop CPU.

1. The shipped base model answers held-out general questions (the skills it was pretrained on).
2. A new domain it never saw — traffic signals — is learned by a fresh LoRA expert with the shared engine.
3. The expert answers the new domain; the base, asked through the same model with the adapter off, keeps
   every one of its general answers (parameter isolation, the idea behind MR-LoRA).
Results and the expert are written to `--out`.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

from PIL import Image, ImageDraw

from mllmcl.core.errors import UserError
from mllmcl.core.io import is_file, write_json_atomic
from mllmcl.data import Example
from mllmcl.engine.adapters import add_adapter, save_adapter
from mllmcl.engine.generate import generate
from mllmcl.engine.settings import LoraRecipe, TrainConfig
from mllmcl.engine.train import seed_everything, train
from mllmcl.models.load import load_backbone
from mllmcl.pretrain.pretrain import evaluate_general, normalise

LAMPS = {"red": (235, 40, 30), "yellow": (240, 200, 20), "green": (40, 210, 70)}
ACTION = {"red": "stop", "yellow": "slow", "green": "go"}


def traffic_signals(n: int, seed: int, size: int = 64) -> list[Example]:
    """A traffic signal (three lamps, one lit) on a street-like background; asks which lamp is lit or what the
    car should do."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lit = rng.choice(list(LAMPS))
        sky = tuple(rng.randint(90, 200) for _ in range(3))
        image = Image.new("RGB", (size, size), sky)
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, int(size * rng.uniform(0.65, 0.8)), size, size], fill=(70, 70, 75))
        w = int(size * rng.uniform(0.22, 0.3))
        h = 3 * w
        x0 = rng.randint(2, size - w - 2)
        y0 = rng.randint(2, max(2, size - h - 2))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=(25, 25, 25))
        for i, name in enumerate(LAMPS):
            colour = LAMPS[name] if name == lit else tuple(c // 5 for c in LAMPS[name])
            cy = y0 + i * w
            draw.ellipse([x0 + 2, cy + 2, x0 + w - 2, cy + w - 2], fill=colour)
        if rng.random() < 0.5:
            out.append(Example(image, "Which light of the traffic signal is on?", lit))
        else:
            out.append(Example(image, "Should the car stop, slow down or go?", ACTION[lit]))
    return out


def _accuracy(answers: list[str], examples: list[Example]) -> float:
    return round(100 * sum(normalise(a) == normalise(e.answer) for a, e in zip(answers, examples)) / len(examples), 2)


def run_demo(seed: int, out: str | Path) -> int:
    out = Path(out)
    blocked = next((p for p in (out, *out.parents) if is_file(p)), None)
    if blocked is not None:  # found now, not after a minute of training
        raise UserError(f"{out}: cannot write the demo's results here ({blocked} is a file, not a folder)")
    started = time.perf_counter()
    print("loading the embedded tiny backbone …")
    backbone = load_backbone("tiny")
    size = int(backbone.processor.image_processor.crop_size["height"])
    general = evaluate_general(backbone, 300, seed)
    print("\n1) general questions (pretraining skills, held-out images):")
    for s in general["samples"][:6]:
        mark = "ok " if normalise(s["prediction"]) == normalise(s["answer"]) else "bad"
        print(f"   [{mark}] {s['question'].splitlines()[0][:60]:<60} -> {s['prediction']!r} (truth {s['answer']!r})")
    print(f"   accuracy on 300 held-out general questions: {general['accuracy']}%")

    train_set, test_set = traffic_signals(2000, seed, size), traffic_signals(200, seed + 1, size)
    images, questions = [e.image for e in test_set], [e.question for e in test_set]
    zero_shot = _accuracy(generate(backbone, images, questions, max_new_tokens=4), test_set)
    print(f"\n2) a new domain, traffic signals: zero-shot accuracy {zero_shot}% (chance 33%)")
    seed_everything(seed)  # the adapter's random init, independent of what ran before
    add_adapter(backbone, "traffic", LoraRecipe())
    stats = train(backbone, train_set, "traffic", TrainConfig(epochs=2, batch_size=32, seed=seed,
                                                              desc="LoRA expert 'traffic'"))
    print(f"   trained a LoRA expert: {stats.steps} steps in {stats.seconds:.1f} s "
          f"({stats.samples_per_second:.0f} samples/s), final loss {stats.final_loss:.3f}")
    mixed = ["traffic" if i % 2 == 0 else None for i in range(len(test_set))]
    expert = _accuracy(generate(backbone, images, questions, ["traffic"] * len(test_set), max_new_tokens=4), test_set)
    general_after = evaluate_general(backbone, 300, seed)
    print(f"   expert accuracy on the new domain: {expert}%")
    unchanged = general_after["predictions"] == general["predictions"]
    print(f"\n3) the base without the adapter, same 300 general questions: {general_after['accuracy']}% "
          f"(before: {general['accuracy']}%); every answer identical: {unchanged}")
    save_adapter(backbone, "traffic", out)
    results = {"general_before": general["accuracy"], "general_after": general_after["accuracy"],
               "general_answers_identical": unchanged,
               "traffic_zero_shot": zero_shot, "traffic_expert": expert, "train_seconds": round(stats.seconds, 1),
               "total_seconds": round(time.perf_counter() - started, 1), "seed": seed,
               "mixed_batch_example": generate(backbone, images[:4], questions[:4], mixed[:4], max_new_tokens=4)}
    write_json_atomic(out / "results.json", results)
    print(f"\nsummary\n   {'measure':<40}{'value':>8}")
    for key in ("general_before", "general_after", "traffic_zero_shot", "traffic_expert"):
        print(f"   {key:<40}{results[key]:>7.2f}%")
    print(f"   {'wall time (s)':<40}{results['total_seconds']:>8.1f}")
    print(f"expert saved to {out / 'traffic'}; results in {out / 'results.json'}")
    return 0 if unchanged else 1
