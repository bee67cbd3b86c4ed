"""Probe the synthetic benchmark's transfer pair (RS → Sci) and conflict pair (Sci → Fin) on the tiny backbone.

Writes a DCL dataset in which every item is asked in a shared format (`overlap` 1), trains one LoRA expert on
RS and one on Fin (each alone, from the base model), and scores the base model and both experts on the
validation rows (never test) of RS, Sci and Fin with each task's official scorer, per shared template:

* transfer: the RS expert should answer Sci's letter questions (dominant land cover) well above zero-shot;
* conflict: the Fin expert should answer Sci's yes/no questions (same charts, opposite rule) below chance.

    python bench/overlap_pairs.py                 # 800 training items per task, 2 epochs: ~2 min on 2 cores
"""
from __future__ import annotations

import argparse
import collections
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mllmcl.data import load_benchmark
from mllmcl.data.synth.write import SynthSpec, synth_fingerprint, write_synth
from mllmcl.engine.adapters import add_adapter, delete_adapter
from mllmcl.engine.generate import generate
from mllmcl.engine.settings import TrainConfig
from mllmcl.engine.train import train
from mllmcl.eval import get_scorer
from mllmcl.models.load import load_backbone


def scores(backbone, task, adapter: str | None) -> dict[str, float]:
    """Accuracy (%) per shared template on the task's validation rows, answered by `adapter` (None: base)."""
    rows = task.val
    answers = generate(backbone, [s.image for s in rows], [s.question for s in rows], max_new_tokens=16,
                       batch_size=64, adapters=None if adapter is None else [adapter] * len(rows))
    scorer, by_family = get_scorer(task.spec.scorer), collections.defaultdict(list)
    for sample, answer in zip(rows, answers):
        by_family[sample.meta["family"]].append(scorer.judge(sample.row, answer))
    return {family: 100 * sum(c) / len(c) for family, c in sorted(by_family.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=800, help="training items per task (default 800)")
    parser.add_argument("--val", type=int, default=100, help="validation items per task (default 100)")
    parser.add_argument("--epochs", type=float, default=2.0, help="expert epochs (default 2)")
    parser.add_argument("--lr", type=float, default=2e-3, help="expert learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed (default 0)")
    parser.add_argument("--data", default="runs/overlap-pairs", help="where the synthetic data is cached")
    args = parser.parse_args()
    spec = SynthSpec(train=args.train, test=1, val=args.val, seed=args.seed, overlap=1.0, unseen=0)
    root = write_synth(Path(args.data) / f"dcl-o1-{args.train}-s{args.seed}-{synth_fingerprint()}", spec)
    bench = load_benchmark(root)
    backbone = load_backbone("tiny")
    table = {name: {"zero-shot": scores(backbone, bench.task(name), None)} for name in ("RS", "Sci", "Fin")}
    for expert in ("RS", "Fin"):
        add_adapter(backbone, expert)
        start = time.perf_counter()
        stats = train(backbone, bench.task(expert).train, expert,
                      TrainConfig(epochs=args.epochs, batch_size=32, lr=args.lr, seed=args.seed, desc=expert))
        print(f"{expert} expert: {stats.steps} steps, {time.perf_counter() - start:.1f} s")
        for name in ("RS", "Sci", "Fin"):
            table[name][f"{expert} expert"] = scores(backbone, bench.task(name), expert)
        delete_adapter(backbone, expert)
    print(f"\nvalidation accuracy (%) per shared template, {args.val} rows per task, overlap 1")
    for name, columns in table.items():
        for family in ("yesno", "letter"):
            cells = "  ".join(f"{column} {values.get(family, float('nan')):6.1f}" for column, values in columns.items())
            print(f"{name:<4} {family:<7} {cells}")


if __name__ == "__main__":
    main()
