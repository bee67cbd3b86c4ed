"""Calibrate the difficulty of synthetic tasks on the shipped tiny backbone.

For each task: draw train/test items (in memory, as `mllmcl data synth` would), answer the test zero-shot,
train a fresh LoRA expert at the default budget, answer again, and score both with the task's official
scorer. Prints one line per task plus the accuracy per question opening (a proxy for question family).

    python bench/calibrate.py --tasks RS,Med --train 2000 --test 300
"""
from __future__ import annotations

import argparse
import collections
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mllmcl.data.records import Example
from mllmcl.data.synth import item_rng, synth_task
from mllmcl.data.synth.rows import image_name, test_row
from mllmcl.data.tasks import builtin_spec
from mllmcl.engine import add_adapter, delete_adapter
from mllmcl.engine.generate import generate
from mllmcl.engine.train import TrainConfig, train
from mllmcl.models import load_backbone


def credits(task: str, rows: list[dict], answers: list[str]) -> list[float]:
    """Per-item credit from the task's official scorer."""
    from mllmcl.eval.scorers import SCORERS

    scorer = SCORERS.build(task.lower())
    return [scorer.judge(row, answer) for row, answer in zip(rows, answers)]


def opening(question: str, words: int = 4) -> str:
    """The first words of the question proper (after a MathVista-style `Question:` marker, if any)."""
    return " ".join(question.split("Question:", 1)[-1].split()[:words])


def calibrate(name: str, backbone, n_train: int, n_test: int, seed: int, size: int, epochs: float, lr: float,
              show: int) -> dict:
    task = synth_task(name)
    ask = builtin_spec(name).prompt  # the official prompt rule (Fin's answer-format suffix), as the writer applies it
    t0 = time.perf_counter()
    train_items = [task.draw(item_rng(seed, name, "train", i), "train", size) for i in range(n_train)]
    test_items = [task.draw(item_rng(seed, name, "test", i), "test", size) for i in range(n_test)]
    draw_s = time.perf_counter() - t0
    rows = [test_row(it, name, i, image_name(it, "test", i)) for i, it in enumerate(test_items)]
    images = [it.image for it in test_items]
    questions = [ask(it.question, it.answer) for it in test_items]
    zero = generate(backbone, images, questions, max_new_tokens=24, batch_size=64)
    add_adapter(backbone, "expert")
    stats = train(backbone, [Example(it.image, ask(it.question, it.answer), it.answer) for it in train_items], "expert",
                  TrainConfig(epochs=epochs, batch_size=32, lr=lr, seed=seed, desc=name))
    expert = generate(backbone, images, questions, adapters=["expert"] * n_test, max_new_tokens=24, batch_size=64)
    delete_adapter(backbone, "expert")
    zc, ec = credits(name, rows, zero), credits(name, rows, expert)
    by_family = collections.defaultdict(list)
    for q, z, e in zip(questions, zc, ec):
        by_family[opening(q)].append((z, e))
    print(f"\n== {name}: zero-shot {100 * sum(zc) / n_test:.2f}%  expert {100 * sum(ec) / n_test:.2f}%  "
          f"({stats.steps} steps, {stats.seconds:.1f} s train, {draw_s:.1f} s drawing, final loss {stats.final_loss:.3f})")
    for family, pairs in sorted(by_family.items(), key=lambda kv: -len(kv[1])):
        z = 100 * sum(p[0] for p in pairs) / len(pairs)
        e = 100 * sum(p[1] for p in pairs) / len(pairs)
        print(f"   {family:<40} n={len(pairs):<4} zero {z:6.1f}  expert {e:6.1f}")
    wrong = [(q, r["answer"], a) for q, r, a, c in zip(questions, rows, expert, ec) if c < 1][:show]
    for q, gt, a in wrong:
        print(f"   WRONG  q={q[-70:]!r}  gt={gt!r}  pred={a!r}")
    return {"task": name, "zero_shot": 100 * sum(zc) / n_test, "expert": 100 * sum(ec) / n_test,
            "train_seconds": stats.seconds, "steps": stats.steps}


def exclusive(path: str = "/tmp/mllmcl-calibrate.lock"):
    """Hold a machine-wide lock: two calibrations on 2 cores thrash each other's threads (measured: ~8x
    slower each), so they queue instead and every printed figure is measured alone."""
    import fcntl

    handle = open(path, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("waiting for another calibration to finish ...", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", required=True, help="comma-separated task names, e.g. RS,Med")
    parser.add_argument("--train", type=int, default=2000, help="training items (default 2000)")
    parser.add_argument("--test", type=int, default=300, help="test items (default 300)")
    parser.add_argument("--epochs", type=float, default=2.0, help="expert epochs (default 2)")
    parser.add_argument("--lr", type=float, default=2e-3, help="expert learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed (default 0)")
    parser.add_argument("--size", type=int, default=48, help="image side in px (default 48)")
    parser.add_argument("--show", type=int, default=8, help="wrong expert answers to print per task")
    args = parser.parse_args()
    lock = exclusive()  # noqa: F841 (held until exit)
    backbone = load_backbone("tiny")
    results = [calibrate(t, backbone, args.train, args.test, args.seed, args.size, args.epochs, args.lr, args.show)
               for t in args.tasks.split(",")]
    print("\ntask   zero-shot  expert  train_s")
    for r in results:
        print(f"{r['task']:<6} {r['zero_shot']:8.2f}  {r['expert']:6.2f}  {r['train_seconds']:7.1f}")


if __name__ == "__main__":
    main()
