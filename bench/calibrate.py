"""Measure the difficulty of the synthetic tasks on the shipped tiny backbone, through the real data path.

Writes the synthetic benchmark (or reuses it) with `mllmcl data synth`'s writer, reads it back with the
release loader, and for each task: answers the validation rows (`--split val`, the default: tune on these)
or the test set zero-shot, trains a fresh LoRA expert on the task alone at the default budget (2 epochs of
the training set, batch 32, the default LoRA recipe), answers again, and scores both with the task's
official scorer (per-item credit; for OCR that is the hit rate,
not OCRBench's hits/10). Prints a line per task, accuracy per question family, and a few wrong answers.

    python bench/calibrate.py --setting dcl                  # RS, Med, AD, Sci, Fin
    python bench/calibrate.py --setting acl --tasks OCR,VP
"""
from __future__ import annotations

import argparse
import collections
import fcntl
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mllmcl.data import load_benchmark
from mllmcl.data.synth.write import SynthSpec, cache_name, write_synth
from mllmcl.engine.adapters import add_adapter, delete_adapter
from mllmcl.engine.generate import generate
from mllmcl.engine.settings import TrainConfig
from mllmcl.engine.train import train
from mllmcl.eval import get_scorer
from mllmcl.models.load import load_backbone


def family(sample) -> str:
    """The question family: the row's `question_type` / `task` / `answer_type` when it has one, else the
    first words of the question proper."""
    for key in ("question_type", "task", "answer_type"):
        if isinstance(sample.row.get(key), str):
            return sample.row[key]
    return " ".join(sample.question.split("Question:", 1)[-1].split()[:4])


def calibrate(task, backbone, epochs: float, lr: float, seed: int, max_new_tokens: int, show: int,
              split: str = "val") -> dict:
    scorer = get_scorer(task.spec.scorer)
    test = task.val if split == "val" else task.test
    images, questions = [s.image for s in test], [s.question for s in test]
    tokens = min(task.spec.max_new_tokens, max_new_tokens)
    zero = generate(backbone, images, questions, max_new_tokens=tokens, batch_size=64)
    add_adapter(backbone, "expert")
    stats = train(backbone, task.train, "expert", TrainConfig(epochs=epochs, batch_size=32, lr=lr, seed=seed,
                                                              desc=task.name))
    expert = generate(backbone, images, questions, adapters=["expert"] * len(test), max_new_tokens=tokens,
                      batch_size=64)
    delete_adapter(backbone, "expert")
    zc = [scorer.judge(s.row, a) for s, a in zip(test, zero)]
    ec = [scorer.judge(s.row, a) for s, a in zip(test, expert)]
    result = {"task": task.name, "zero_shot": 100 * sum(zc) / len(test), "expert": 100 * sum(ec) / len(test),
              "train_seconds": stats.seconds, "steps": stats.steps}
    print(f"\n== {task.name}: zero-shot {result['zero_shot']:.2f}%  expert {result['expert']:.2f}%  "
          f"({stats.steps} steps, {stats.seconds:.1f} s train, final loss {stats.final_loss:.3f})")
    by_family = collections.defaultdict(list)
    for s, z, e in zip(test, zc, ec):
        by_family[family(s)].append((z, e))
    for name, pairs in sorted(by_family.items(), key=lambda kv: -len(kv[1])):
        print(f"   {name:<40} n={len(pairs):<4} zero {100 * sum(p[0] for p in pairs) / len(pairs):6.1f}  "
              f"expert {100 * sum(p[1] for p in pairs) / len(pairs):6.1f}")
    for s, a, c in [(s, a, c) for s, a, c in zip(test, expert, ec) if c < 1][:show]:
        print(f"   WRONG  q={s.question[-70:]!r}  gt={s.answer!r}  pred={a!r}")
    return result


def exclusive(path: str = "/tmp/mllmcl-calibrate.lock"):
    """Hold a machine-wide lock: two calibrations sharing the cores slow each other down many times over, so
    they queue instead and every printed time is measured alone."""
    handle = open(path, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("waiting for another calibration to finish ...", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=["dcl", "acl"], required=True, help="which synthetic benchmark")
    parser.add_argument("--tasks", default=None, help="comma-separated subset, e.g. RS,Med (default: all)")
    parser.add_argument("--train", type=int, default=SynthSpec.train, help="training items per task")
    parser.add_argument("--test", type=int, default=SynthSpec.test, help="test items per task")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed (default 0)")
    parser.add_argument("--epochs", type=float, default=2.0, help="expert epochs (default 2)")
    parser.add_argument("--lr", type=float, default=2e-3, help="expert learning rate (default 2e-3)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="answer length cap (default 32)")
    parser.add_argument("--data", default="runs/calibrate", help="where the synthetic data is cached")
    parser.add_argument("--show", type=int, default=6, help="wrong expert answers to print per task")
    parser.add_argument("--split", choices=["val", "test"], default="val",
                        help="score on the validation rows (default: tune drawers and recipes on these) or on test")
    args = parser.parse_args()
    lock = exclusive()  # noqa: F841 (held until exit)
    spec = SynthSpec(setting=args.setting, train=args.train, test=args.test, seed=args.seed)
    t0 = time.perf_counter()
    root = write_synth(Path(args.data) / cache_name(spec), spec)
    bench = load_benchmark(root, tasks=args.tasks.split(",") if args.tasks else None)
    print(f"data: {root} ({time.perf_counter() - t0:.1f} s)")
    backbone = load_backbone("tiny")
    results = [calibrate(task, backbone, args.epochs, args.lr, args.seed, args.max_new_tokens, args.show, args.split)
               for task in bench.tasks]
    print("\ntask   zero-shot  expert  train_s  steps")
    for r in results:
        print(f"{r['task']:<6} {r['zero_shot']:8.2f}  {r['expert']:6.2f}  {r['train_seconds']:7.1f}  {r['steps']}")


if __name__ == "__main__":
    main()
