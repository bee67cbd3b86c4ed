"""Pretraining of the embedded `tiny` backbone on the general corpus (`corpus.py`), and its check.

`pretrain()` builds the tokenizer and an untrained tiny LLaVA from a seed and trains it in three stages with
the shared engine: (1) the vision tower alone learns shapes, colours, sizes and backgrounds
(`vision.py`); (2) with the tower frozen, the projector and language model learn from a pool of general
image-question-answer examples; (3) instruction tuning, as LLaVA-1.5's second stage: the same model learns
the instruction corpus, where each question ends with the instruction of its answer format. It evaluates
the result on held-out examples of the instruction corpus (per family and per answer format) and writes a
transformers checkpoint (safetensors) plus `pretrain_report.json`. The package ships the result,
so nobody has to run this to use `tiny`.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from mllmcl.core.errors import UserError
from mllmcl.core.io import is_dir, is_file
from mllmcl.data.answer_formats import fits
from mllmcl.engine.generate import generate
from mllmcl.engine.settings import TrainConfig
from mllmcl.engine.train import seed_everything, train
from mllmcl.models.backbone import Backbone
from mllmcl.models.template import ChatTemplate
from mllmcl.models.tiny import WEIGHTS_DIR, TinyConfig, build_tiny
from mllmcl.pretrain.corpus import generate_corpus, generate_records, tokenizer_texts
from mllmcl.pretrain.vision import VisionStageConfig, pretrain_vision

EVAL_SEED_OFFSET = 10_000  # held-out examples come from a different seed than any training pool


@dataclass(frozen=True)
class PretrainConfig:
    """What `mllmcl pretrain` does. The defaults reproduce the shipped weights."""

    seed: int = 0
    pool: int = 40_000          # distinct training examples, drawn once
    epochs: float = 2.0
    batch_size: int = 32
    lr: float = 1e-3
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.05
    eval_examples: int = 1_000
    vision: VisionStageConfig = VisionStageConfig()  # stage 1
    freeze_vision: bool = True  # keep the stage-1 tower frozen in stages 2 and 3 (as LLaVA-1.5 keeps CLIP frozen)
    instruction_pool: int = 24_000  # stage 3: distinct instruction examples (0: no stage 3)
    instruction_epochs: float = 2.0
    instruction_lr: float = 1e-3


def normalise(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def evaluate_general(backbone: Backbone, n: int, seed: int, batch_size: int = 64) -> dict:
    """Exact-match accuracy (case and final period ignored) on `n` held-out general examples, overall, per
    question family and per answer format (letter, yes/no, word, number, free text), and per closed format the
    share of answers in the format its instruction asks for, right or wrong."""
    records = generate_records(n, seed + EVAL_SEED_OFFSET, image_size=_image_size(backbone), instructions=True)
    examples = [r.example for r in records]
    answers = generate(backbone, [e.image for e in examples], [e.question for e in examples],
                       max_new_tokens=16, batch_size=batch_size)
    hits: dict[str, list[bool]] = defaultdict(list)
    by_format: dict[str, list[bool]] = defaultdict(list)
    valid: dict[str, list[bool]] = defaultdict(list)
    for record, answer in zip(records, answers):
        hit = normalise(answer) == normalise(record.example.answer)
        hits[record.family].append(hit)
        by_format[record.format].append(hit)
        if record.format != "free":
            valid[record.format].append(fits(answer, "text" if record.format == "word" else record.format))
    share = lambda found: {k: round(100 * sum(v) / len(v), 2) for k, v in sorted(found.items())}  # noqa: E731
    overall = round(100 * sum(sum(h) for h in hits.values()) / len(records), 2)
    return {"accuracy": overall, "per_family": share(hits), "per_format": share(by_format),
            "format_valid": share(valid), "examples": n, "predictions": answers,
            "samples": [{"question": e.question, "answer": e.answer, "prediction": a}
                        for e, a in zip(examples[:12], answers[:12])]}


def _image_size(backbone: Backbone) -> int:
    crop = backbone.processor.image_processor.crop_size
    return int(crop["height"])


def pretrain(out: str | Path = WEIGHTS_DIR, config: PretrainConfig = PretrainConfig(),
             tiny: TinyConfig = TinyConfig(), progress: bool = True) -> dict:
    """Build, train, evaluate and save the tiny backbone into `out` (replaced atomically). Returns the report."""
    out = Path(out)
    check_out(out)
    started = time.perf_counter()
    seed_everything(config.seed)
    model, processor = build_tiny(tokenizer_texts(), tiny, seed=config.seed)
    backbone = Backbone("tiny", model, processor, ChatTemplate(system=""), max_length=tiny.max_length)
    vision = pretrain_vision(backbone, config.vision, config.seed, progress) if config.vision.steps else None
    data_started = time.perf_counter()
    pool = generate_corpus(config.pool, config.seed, image_size=tiny.image_size)
    data_seconds = time.perf_counter() - data_started
    freeze = "vision_tower" if config.freeze_vision else ""
    stats = train(backbone, pool, adapter=None, freeze=freeze,
                  config=TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                     warmup_ratio=config.warmup_ratio, min_lr_ratio=config.min_lr_ratio,
                                     seed=config.seed, progress=progress, desc="pretrain tiny: language"))
    instruction = None
    if config.instruction_pool:
        started_3 = time.perf_counter()
        pool = generate_corpus(config.instruction_pool, config.seed, image_size=tiny.image_size, instructions=True)
        data_seconds += time.perf_counter() - started_3
        stage3 = train(backbone, pool, adapter=None, freeze=freeze,
                       config=TrainConfig(epochs=config.instruction_epochs, batch_size=config.batch_size,
                                          lr=config.instruction_lr, warmup_ratio=config.warmup_ratio,
                                          min_lr_ratio=config.min_lr_ratio, seed=config.seed, progress=progress,
                                          desc="pretrain tiny: instructions"))
        instruction = {"steps": stage3.steps, "train_seconds": round(stage3.seconds, 1),
                       "train_samples_per_second": round(stage3.samples_per_second, 1),
                       "final_loss": round(stage3.final_loss, 4)}
    evaluation = evaluate_general(backbone, config.eval_examples, config.seed)
    report = {
        "pretrain": asdict(config), "tiny": tiny.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()), "vision_stage": vision,
        "steps": stats.steps, "train_samples_per_second": round(stats.samples_per_second, 1),
        "final_loss": round(stats.final_loss, 4), "data_seconds": round(data_seconds, 1),
        "train_seconds": round(stats.seconds, 1), "instruction_stage": instruction,
        "total_seconds": round(time.perf_counter() - started, 1),
        "heldout": {k: v for k, v in evaluation.items() if k != "predictions"},
    }
    _save_atomically(backbone, report, out)
    return report


def check_out(out: Path) -> None:
    """`out` must be new, empty or a checkpoint folder: the save replaces the whole folder (and deletes the
    old one), so any other folder would be lost. Checked before training, not after it."""
    blocked = next((p for p in (out, *out.parents) if is_file(p)), None)
    if blocked is not None:
        raise UserError(f"{out}: cannot write the checkpoint here ({blocked} is a file, not a folder)")
    if is_dir(out) and any(out.iterdir()) and not is_file(out / "config.json"):
        raise UserError(f"{out}: holds files but no checkpoint (no config.json); pretrain replaces the whole "
                        "folder, so give a new folder or an earlier checkpoint")


def _save_atomically(backbone: Backbone, report: dict, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    backbone.model.save_pretrained(tmp)
    backbone.processor.save_pretrained(tmp)
    (tmp / "pretrain_report.json").write_text(json.dumps(report, indent=2))
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
