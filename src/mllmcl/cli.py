"""The `mllmcl` command line: one dispatch table from sub-command to handler.

Errors a user can cause print one line `mllmcl: error: …` and exit with status 2; nothing else is written.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Callable

from mllmcl.errors import UserError

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _ls(args: argparse.Namespace) -> int:
    """List the registered components (backbones for now; methods, benchmarks, scorers and routers join them)."""
    from mllmcl.models import BACKBONES

    for kind, registry in {"backbones": BACKBONES}.items():
        print(f"{kind}:")
        for name, description in registry.describe():
            print(f"  {name:<10} {description}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from mllmcl.models.tiny import WEIGHTS_DIR
    from mllmcl.pretrain.pretrain import PretrainConfig, evaluate_general, pretrain

    if args.check:
        from mllmcl.models import load_backbone

        backbone = load_backbone(args.backbone)
        result = evaluate_general(backbone, args.eval_examples, args.seed)
        _print_general(result)
        if result["accuracy"] < args.min_accuracy:
            print(f"FAIL: held-out accuracy {result['accuracy']}% < {args.min_accuracy}%", file=sys.stderr)
            return 1
        print(f"OK: held-out accuracy {result['accuracy']}% >= {args.min_accuracy}%")
        return 0
    config = PretrainConfig(seed=args.seed, pool=args.pool, epochs=args.epochs, batch_size=args.batch_size,
                            lr=args.lr, eval_examples=args.eval_examples)
    out = args.out or WEIGHTS_DIR
    report = pretrain(out, config)
    _print_general(report["heldout"])
    print(f"saved to {out} ({report['steps']} steps, {report['train_seconds']} s of training, "
          f"{report['train_samples_per_second']} samples/s)")
    return 0


def _print_general(result: dict) -> None:
    print(f"{'family':<12} accuracy")
    for family, accuracy in result["per_family"].items():
        print(f"{family:<12} {accuracy:6.2f}%")
    print(f"{'overall':<12} {result['accuracy']:6.2f}%  ({result['examples']} held-out examples)")


def _ask(args: argparse.Namespace) -> int:
    from mllmcl.engine import load_adapter
    from mllmcl.models import load_backbone

    backbone = load_backbone(args.backbone)
    adapters = None
    if args.adapter:
        load_adapter(backbone, "user", args.adapter)
        adapters = ["user"] * len(args.image)
    questions = [args.question] * len(args.image)
    for image, answer in zip(args.image, backbone.generate(args.image, questions, args.max_new_tokens, adapters)):
        print(json.dumps({"image": image, "question": args.question, "answer": answer}))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mllmcl.demo import run_demo

    return run_demo(seed=args.seed, out=args.out)


def _bench(args: argparse.Namespace) -> int:
    from mllmcl.bench.engine import run_engine_bench

    run_engine_bench(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mllmcl", description="Continual learning of multimodal LLMs (MLLM-CL, MR-LoRA and baselines).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        commands[name] = handler
        return sub.add_parser(name, help=help, description=help)

    command("ls", _ls, "list registered backbones (and, later, methods, benchmarks, scorers, routers)")

    p = command("pretrain", _pretrain, "rebuild the embedded tiny backbone from a seed, or --check the shipped one")
    p.add_argument("--check", action="store_true",
                   help="do not train: evaluate a backbone on held-out general questions and exit 1 below --min-accuracy")
    p.add_argument("--backbone", default="tiny", help="backbone to --check: tiny or hf:<path> (default: tiny)")
    p.add_argument("--min-accuracy", type=float, default=30.0,
                   help="pass mark for --check in percent (default: 30; the shipped weights measure 36.8)")
    p.add_argument("--out", default=None, help="where to write the checkpoint (default: the package's shipped weights)")
    p.add_argument("--seed", type=int, default=0, help="seed of model init, data and order (default: 0)")
    p.add_argument("--pool", type=_positive_int, default=40_000, help="number of distinct training examples (default: 40000)")
    p.add_argument("--epochs", type=_positive_float, default=2.0, help="passes over the pool (default: 2)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="examples per step (default: 32)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="peak learning rate, cosine schedule (default: 1e-3)")
    p.add_argument("--eval-examples", type=_positive_int, default=1000, help="held-out examples to evaluate (default: 1000)")

    p = command("ask", _ask, "answer one question about one or more image files")
    p.add_argument("question", help="the question, e.g. 'What color is the circle?'")
    p.add_argument("--image", nargs="+", required=True, help="image file(s)")
    p.add_argument("--backbone", default="tiny", help="tiny or hf:<path> (default: tiny)")
    p.add_argument("--adapter", default=None, help="a saved LoRA adapter folder to answer with (default: base model)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=32, help="answer length limit in tokens (default: 32)")

    p = command("demo", _demo, "the tiny backbone answers general questions, then learns a new task with a LoRA expert")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--out", default="runs/demo", help="folder for the demo's adapter and results (default: runs/demo)")

    p = command("bench", _bench, "benchmarks; `mllmcl bench engine`: engine vs bare PyTorch loop, generation speed")
    p.add_argument("which", choices=["engine"], help="what to benchmark")
    p.add_argument("--steps", type=_positive_int, default=20, help="timed training steps per loop (default: 20)")
    p.add_argument("--batch-size", type=_positive_int, default=32,
                   help="training batch size (default: 32; generation always uses 32)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")

    parser.set_defaults(_commands=commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    # deprecation chatter from transformers/peft internals is not the user's concern
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._commands[args.command](args)
    except UserError as err:
        print(f"mllmcl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mllmcl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
