"""Engine benchmark: is the shared training loop as fast as a bare PyTorch loop, and does routing each sample
to its own adapter cost generation speed?

Training: the engine's `train` against a hand-written loop over the same backbone, LoRA recipe, data,
batch size, optimizer, schedule and clipping; runs alternate (engine, bare, engine, …) and the median of
each is reported with their ratio (target ≥ 0.9). Generation: one adapter for the whole batch against
batches that each mix 4 adapters 8 + 8 + 8 + 8 (target ≥ 0.9) and unevenly 14 + 9 + 6 + 3, against the
default path that groups samples by adapter first, and against peft's own mixed-batch forward
(`adapter_names=`) as the library reference. Adapters are freshly initialised (B = 0), so every
configuration decodes the same tokens.
"""
from __future__ import annotations

import statistics
import time

import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from mllmcl.engine.adapters import add_adapter
from mllmcl.engine.generate import generate, greedy_tokens
from mllmcl.engine.settings import LoraRecipe, TrainConfig
from mllmcl.engine.train import causal_lm_loss, seed_everything, train
from mllmcl.models.backbone import Backbone
from mllmcl.models.load import load_backbone
from mllmcl.pretrain.corpus import generate_corpus


def bare_loop(backbone: Backbone, examples, adapter: str, config: TrainConfig) -> float:
    """The reference: plain PyTorch, no accelerate, no progress bar. Returns samples/s."""
    seed_everything(config.seed)
    model = backbone.model
    model.set_adapter(adapter)
    params = [p for p in model.parameters() if p.requires_grad]
    loader = torch.utils.data.DataLoader(
        examples, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(config.seed),
        collate_fn=lambda items: backbone.encode_train([e.image for e in items], [e.question for e in items],
                                                       [e.answer for e in items]))
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(optimizer, int(config.warmup_ratio * config.max_steps),
                                                            config.max_steps, min_lr_rate=0.0)
    model.train()
    start, samples, steps = time.perf_counter(), 0, 0
    while steps < config.max_steps:
        for batch in loader:
            loss = causal_lm_loss(model, batch)
            loss.backward()
            loss.item()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            samples += batch["input_ids"].shape[0]
            steps += 1
            if steps >= config.max_steps:
                break
    seconds = time.perf_counter() - start
    model.eval()
    return samples / seconds


def generation_speed(backbone: Backbone, images, questions, adapters, max_new_tokens: int,
                     group_by_adapter: bool = True) -> float:
    start = time.perf_counter()
    generate(backbone, images, questions, adapters, max_new_tokens=max_new_tokens, batch_size=32,
             group_by_adapter=group_by_adapter)
    return len(questions) / (time.perf_counter() - start)


def peft_mixed_speed(backbone: Backbone, images, questions, adapters, max_new_tokens: int,
                     batch_size: int = 32) -> float:
    """Reference: the same batches, decoded the same way (finished rows leaving the batch), through peft's
    `adapter_names` forward instead of the engine's runs."""
    backbone.model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(questions), batch_size):
            rows = slice(first, first + batch_size)
            batch = backbone.encode_prompts(images[rows], questions[rows])
            greedy_tokens(backbone, batch, lambda names: {"adapter_names": names}, list(adapters[rows]),
                          [max_new_tokens] * len(questions[rows]))
    return len(questions) / (time.perf_counter() - start)


def run_engine_bench(steps: int, batch_size: int, seed: int, repeats: int, prompts: int,
                     backbone: str = "tiny") -> dict:
    torch.manual_seed(seed)
    bb = load_backbone(backbone)
    size = int(bb.processor.image_processor.crop_size["height"])
    examples = generate_corpus(steps * batch_size, seed, image_size=size)
    add_adapter(bb, "trained", LoraRecipe())
    for name in ("a0", "a1", "a2", "a3"):  # never trained: every configuration decodes the same tokens
        add_adapter(bb, name, LoraRecipe())
    config = TrainConfig(max_steps=steps, batch_size=batch_size, lr=1e-4, seed=seed, progress=False)
    engine, bare = [], []
    for _ in range(repeats):
        engine.append(train(bb, examples, "trained", config).samples_per_second)
        bare.append(bare_loop(bb, examples, "trained", config))
    result = {"engine_sps": statistics.median(engine), "bare_sps": statistics.median(bare)}
    result["train_ratio"] = result["engine_sps"] / result["bare_sps"]

    corpus = generate_corpus(prompts, seed + 1, image_size=size)
    images, questions = [e.image for e in corpus], [e.question for e in corpus]
    routed = [f"a{i % 4}" for i in range(prompts)]  # every batch of 32 holds all 4 adapters, 8 samples each
    uneven_runs = [f"a{k}" for k, length in enumerate((14, 9, 6, 3)) for _ in range(length)]
    uneven = [uneven_runs[i % 32] for i in range(prompts)]  # all 4 adapters, 14 + 9 + 6 + 3 samples per batch
    runs = {"single": lambda: generation_speed(bb, images, questions, ["a0"] * prompts, 16),
            "mixed": lambda: generation_speed(bb, images, questions, routed, 16, group_by_adapter=False),
            "uneven": lambda: generation_speed(bb, images, questions, uneven, 16, group_by_adapter=False),
            "grouped": lambda: generation_speed(bb, images, questions, routed, 16, group_by_adapter=True),
            "peft": lambda: peft_mixed_speed(bb, images, questions, routed, 16)}
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    runs["single"]()  # warm-up, not timed
    for repeat in range(repeats):  # the order rotates, so no configuration always runs first or last
        order = list(runs)[repeat % len(runs):] + list(runs)[:repeat % len(runs)]
        for name in order:
            speeds[name].append(runs[name]())
    result.update({f"{name}_sps" if name != "peft" else "peft_mixed_sps": statistics.median(values)
                   for name, values in speeds.items()})
    result["generation_ratio"] = result["mixed_sps"] / result["single_sps"]
    result["uneven_ratio"] = result["uneven_sps"] / result["single_sps"]
    result["grouped_ratio"] = result["grouped_sps"] / result["single_sps"]
    result["peft_ratio"] = result["mixed_sps"] / result["peft_mixed_sps"]

    print(f"backbone {bb.name}, batch {batch_size}, {steps} steps x {repeats} alternating runs; generation: "
          f"{prompts} prompts x {repeats} runs in rotating order, 16 new tokens; "
          f"{torch.get_num_threads()} threads, LoRA {LoraRecipe()}")
    print(f"{'measure':<40}{'samples/s':>12}")
    print(f"{'train: engine (accelerate)':<40}{result['engine_sps']:>12.1f}")
    print(f"{'train: bare PyTorch loop':<40}{result['bare_sps']:>12.1f}")
    print(f"{'train: engine / bare':<40}{result['train_ratio']:>12.3f}   (target >= 0.9)")
    print(f"{'generate: one adapter':<40}{result['single_sps']:>12.1f}")
    print(f"{'generate: mixed batches of 4 adapters':<40}{result['mixed_sps']:>12.1f}")
    print(f"{'generate: mixed, uneven (14/9/6/3)':<40}{result['uneven_sps']:>12.1f}")
    print(f"{'generate: 4 adapters, grouped (default)':<40}{result['grouped_sps']:>12.1f}")
    print(f"{'generate: mixed, peft adapter_names':<40}{result['peft_mixed_sps']:>12.1f}")
    print(f"{'generate: mixed / single':<40}{result['generation_ratio']:>12.3f}   (target >= 0.9)")
    print(f"{'generate: uneven mix / single':<40}{result['uneven_ratio']:>12.3f}")
    print(f"{'generate: grouped / single':<40}{result['grouped_ratio']:>12.3f}")
    print(f"{'generate: mixed, engine / peft':<40}{result['peft_ratio']:>12.3f}")
    return result
