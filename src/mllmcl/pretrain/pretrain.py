"""Pretraining of the embedded `tiny` backbone on the general corpus (`corpus.py`), and its check.

`pretrain()` builds the tokenizer and an untrained tiny LLaVA from a seed and trains it in two stages with
the shared engine: (1) the vision tower alone learns shapes, colours, sizes and backgrounds
(`vision.py`); (2) with the tower frozen, the projector and language model learn from a pool of general
image-question-answer examples. It evaluates the result on held-out examples of the same families and
writes a transformers checkpoint (safetensors) plus `pretrain_report.json`. The package ships the result,
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

from mllmcl.engine.train import TrainConfig, seed_everything, train
from mllmcl.errors import UserError
from mllmcl.models.backbone import Backbone
from mllmcl.models.template import ChatTemplate
from mllmcl.models.tiny import WEIGHTS_DIR, TinyConfig, build_tiny
from mllmcl.pretrain.corpus import generate_labelled, tokenizer_texts
from mllmcl.pretrain.vision import VisionStageConfig, pretrain_vision
from mllmcl.utils.io import is_dir, is_file

EVAL_SEED_OFFSET = 10_000  # held-out examples come from a different seed than any training pool


@dataclass(frozen=True)
class PretrainConfig:
    """What `mllmcl pretrain` does. The defaults reproduce the shipped weights (about 19 minutes on 2 cores)."""

    seed: int = 0
    pool: int = 40_000          # distinct training examples, drawn once
    epochs: float = 2.0
    batch_size: int = 32
    lr: float = 1e-3
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.05
    eval_examples: int = 1_000
    vision: VisionStageConfig = VisionStageConfig()  # stage 1
    freeze_vision: bool = True  # keep the stage-1 tower frozen in stage 2 (as LLaVA-1.5 keeps CLIP frozen)


def normalise(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def evaluate_general(backbone: Backbone, n: int, seed: int, batch_size: int = 64) -> dict:
    """Exact-match accuracy (case and final period ignored) on `n` held-out general examples, overall and per
    question family."""
    labelled = generate_labelled(n, seed + EVAL_SEED_OFFSET, image_size=_image_size(backbone))
    examples = [e for _, e in labelled]
    answers = backbone.generate([e.image for e in examples], [e.question for e in examples],
                                max_new_tokens=16, batch_size=batch_size)
    hits: dict[str, list[bool]] = defaultdict(list)
    for (family, example), answer in zip(labelled, answers):
        hits[family].append(normalise(answer) == normalise(example.answer))
    per_family = {f: round(100 * sum(h) / len(h), 2) for f, h in sorted(hits.items())}
    overall = round(100 * sum(sum(h) for h in hits.values()) / len(labelled), 2)
    return {"accuracy": overall, "per_family": per_family, "examples": n, "predictions": answers,
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
    pool = [e for _, e in generate_labelled(config.pool, config.seed, image_size=tiny.image_size)]
    data_seconds = time.perf_counter() - data_started
    stats = train(backbone, pool, adapter=None, freeze="vision_tower" if config.freeze_vision else "",
                  config=TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                     warmup_ratio=config.warmup_ratio, min_lr_ratio=config.min_lr_ratio,
                                     seed=config.seed, progress=progress, desc="pretrain tiny: language"))
    evaluation = evaluate_general(backbone, config.eval_examples, config.seed)
    report = {
        "pretrain": asdict(config), "tiny": tiny.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()), "vision_stage": vision,
        "steps": stats.steps, "train_samples_per_second": round(stats.samples_per_second, 1),
        "final_loss": round(stats.final_loss, 4), "data_seconds": round(data_seconds, 1),
        "train_seconds": round(stats.seconds, 1), "total_seconds": round(time.perf_counter() - started, 1),
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
