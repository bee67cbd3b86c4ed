"""Shared fixtures: a ~0.3M-parameter LLaVA built from scratch in a fraction of a second, offline; and, built
once per test session, the two-task toy benchmark (`toy`) and a finished toy run with the expert library
exported from it (`served`), which the runner, sweep, jobs, serving and benchmark tests read but never change.

Tests that take more than a couple of seconds are marked `slow`: `make test-fast` (`pytest -m "not slow"`)
leaves them out, `make test` runs everything."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mllmcl.cl.config import load_config
from mllmcl.data import Example
from mllmcl.models.backbone import Backbone
from mllmcl.models.template import ChatTemplate
from mllmcl.models.tiny import TinyConfig, build_tiny
from mllmcl.run.protocol import run
from mllmcl.serve.grow import export_run
from toy_cl import write_toy_benchmark
from toy_serve import write_rows, write_toy_serve_benchmark

TEXTS = ["What color is the circle? red blue green yellow", "yes no left right 0 1 2 3 4 5",
         "How many squares are there? Is there a star?", "USER: ASSISTANT:"] * 20


def random_images(n: int, size: int = 32, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def check_finished_rows_leave_the_batch(backbone, adapters: list) -> None:
    """Answers decoded in spells, finished rows dropped between them (`engine/generate.py` `greedy_tokens`), equal
    one `generate` call per batch cut at each row's limit and first stop token; and rows do leave the batch.
    `adapters` names one adapter (or BASE) per row, in the order a batch holds them (sorted). An extra stop
    token taken from the answers themselves makes rows end at different steps even with random weights."""
    from mllmcl.engine.generate import FIRST_SPELL, _inference, _prompts, _stop_tokens, generate_detailed

    n = len(adapters)
    images, questions = random_images(n, 56, seed=5), [f"What is shown here, {i}?" for i in range(n)]
    limits = [2, 3 * FIRST_SPELL, 1, 2 * FIRST_SPELL + 1, FIRST_SPELL + 1][:n]
    model, tokenizer = backbone.model, backbone.tokenizer

    def one_call() -> list[list[int]]:
        with _inference(backbone, adapters) as route:
            batch = _prompts(backbone, images, questions)
            out = model.generate(**batch, **route(adapters), max_new_tokens=max(limits), do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        stops, rows = _stop_tokens(model, tokenizer), []
        for k, tokens in enumerate(out[:, batch["input_ids"].shape[1]:].tolist()):
            tokens = tokens[:limits[k]]
            end = next((j for j, t in enumerate(tokens) if t in stops), None)
            rows.append(tokens if end is None else tokens[:end + 1])
        return rows

    config = model.generation_config
    original = config.eos_token_id
    first = one_call()
    try:
        config.eos_token_id = [*(original if isinstance(original, list) else [original]), first[1][FIRST_SPELL + 1]]
        expected = one_call()
        sizes: list[int] = []
        hook = model.get_input_embeddings().register_forward_hook(lambda _m, args, _o: sizes.append(len(args[0])))
        try:
            answers = generate_detailed(backbone, images, questions, adapters, max_new_tokens=limits, batch_size=n)
        finally:
            hook.remove()
    finally:
        config.eos_token_id = original
    assert [a.text for a in answers] == [tokenizer.decode(t, skip_special_tokens=True).strip() for t in expected]
    assert len(expected[1]) <= FIRST_SPELL + 2 < limits[1]  # the extra stop ends row 1 early
    assert sizes[0] == n and min(sizes) < n  # finished rows left the batch


def colour_examples(n: int, size: int = 32, seed: int = 0) -> list[Example]:
    """A learnable toy task: the image is one flat colour; the answer names it."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
    rng = np.random.default_rng(seed)
    names = list(colours)
    out = []
    for _ in range(n):
        name = names[int(rng.integers(len(names)))]
        out.append(Example(Image.new("RGB", (size, size), colours[name]), "What color is the image?", name))
    return out


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Path:
    """The two-task toy benchmark (tests/toy_cl.py): Colors and Codes, 32 training and 8 test rows each."""
    return write_toy_benchmark(tmp_path_factory.mktemp("toy"), train=32, test=8)


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> dict:
    """A finished toy run (Colors, Codes; MR-LoRA with the prototype router; tests/toy_serve.py) and the
    library exported from it; `bright` holds the rows of an expert a test adds to a copy of the library."""
    root = tmp_path_factory.mktemp("serve")
    bench = write_toy_serve_benchmark(root / "toy")
    config = load_config(None, {"setting": "toy", "data": {"benchmark": str(bench)}, "methods": ["mr-lora"],
                                **SERVED_RECIPE})
    run(config, root / "run", log=lambda _: None, progress=False)
    export_run(root / "run", root / "lib", log=lambda _: None)
    bright = root / "bright"
    write_rows(bright, "Bright", "train", 32, 0, "train")
    write_rows(bright, "Bright", "test", 12, 0, "test")
    return {"root": root, "bench": bench, "run": root / "run", "lib": root / "lib", "bright": bright}


# the toy domains differ by their questions (tests/toy_serve.py), so the prototype router reads the question
SERVED_RECIPE = {"train": {"epochs": 2.0, "batch_size": 16},
                 "router": {"k": 8, "tokens": "text", "layer": 0, "grid": 1}, "eval": {"batch_size": 16}}


@pytest.fixture
def micro() -> Backbone:
    torch.manual_seed(0)
    model, processor = build_tiny(TEXTS, TinyConfig.micro(), seed=0)
    return Backbone("micro", model, processor, ChatTemplate(), max_length=TinyConfig.micro().max_length)


@pytest.fixture(scope="session")
def micro_checkpoint(tmp_path_factory):
    """The micro LLaVA saved as a transformers checkpoint, for the real `--backbone hf:<path>` route (it loads
    in tens of milliseconds), with one saved LoRA adapter beside it: `<root>/model`, `<root>/adapters/user`."""
    from mllmcl.engine.adapters import add_adapter, save_adapter
    from mllmcl.engine.settings import LoraRecipe

    root = tmp_path_factory.mktemp("micro")
    torch.manual_seed(0)
    model, processor = build_tiny(TEXTS, TinyConfig.micro(), seed=0)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    backbone = Backbone("micro", model, processor, ChatTemplate(), max_length=TinyConfig.micro().max_length)
    add_adapter(backbone, "user", LoraRecipe(rank=2))
    save_adapter(backbone, "user", root / "adapters")
    return root
