"""Commands about the components and the backbone itself: `ls` (what exists and how it is configured), `ask`
(answer a question about images), `demo` (a one-minute tour), `pretrain` (rebuild or check the tiny
backbone)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from mllmcl.cl.config import RunConfig, profiles
from mllmcl.cl.methods.catalog import METHODS
from mllmcl.cl.routing.catalog import ROUTERS
from mllmcl.cli.options import default_of, positive_float, positive_int
from mllmcl.core.errors import UserError
from mllmcl.eval import SCORERS
from mllmcl.models.catalog import BACKBONES
from mllmcl.models.families import FAMILIES

DEFAULT_BACKBONE = default_of(RunConfig, "backbone")


def register(commands) -> None:
    commands.add("ls", _ls, "list registered backbones, methods, routers and scorers")

    p = commands.add("pretrain", _pretrain, "rebuild the embedded tiny backbone from a seed, or --check the shipped one")
    p.add_argument("--check", action="store_true",
                   help="do not train: evaluate a backbone on held-out general questions and exit 1 below --min-accuracy")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="backbone to --check: tiny or hf:<path> (default: %(default)s)")
    p.add_argument("--min-accuracy", type=float, default=45.0,
                   help="pass mark for --check: overall held-out accuracy in percent (default: %(default)s)")
    p.add_argument("--min-format-valid", type=float, default=95.0,
                   help="pass mark for --check: the share of answers in the format their instruction asks for, in "
                        "every closed format (letter, yes/no, word, number), in percent (default: %(default)s)")
    p.add_argument("--out", default=None, help="where to write the checkpoint (default: the package's shipped weights)")
    # the recipe's defaults are PretrainConfig's (mllmcl/pretrain/pretrain.py): an option left out keeps it
    recipe = "(default: the shipped weights' recipe, PretrainConfig)"
    p.add_argument("--seed", type=int, default=None, help=f"seed of model init, data and order {recipe}")
    p.add_argument("--pool", type=positive_int, default=None, help=f"number of distinct training examples {recipe}")
    p.add_argument("--epochs", type=positive_float, default=None, help=f"passes over the pool {recipe}")
    p.add_argument("--batch-size", type=positive_int, default=None, help=f"examples per step {recipe}")
    p.add_argument("--lr", type=positive_float, default=None, help=f"peak learning rate, cosine schedule {recipe}")
    p.add_argument("--eval-examples", type=positive_int, default=None, help=f"held-out examples to evaluate {recipe}")
    p.add_argument("--vision-steps", type=int, default=None,
                   help=f"steps of stage 1: the vision tower alone names what lies under each image patch; 0 skips it "
                        f"{recipe}")
    p.add_argument("--train-vision", action="store_true",
                   help="let stages 2 and 3 also train the vision tower (default: frozen, as in LLaVA-1.5)")
    p.add_argument("--instruction-pool", type=int, default=None,
                   help=f"stage 3, instruction tuning: distinct examples of the instruction corpus; 0 skips it {recipe}")
    p.add_argument("--instruction-epochs", type=positive_float, default=None, help=f"stage 3: passes over its pool {recipe}")
    p.add_argument("--instruction-lr", type=positive_float, default=None, help=f"stage 3: peak learning rate {recipe}")

    p = commands.add("ask", _ask, "answer one question about one or more image files")
    p.add_argument("question", help="the question, e.g. 'What color is the circle?'")
    p.add_argument("--image", nargs="+", required=True, help="image file(s)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="tiny or hf:<path> (default: %(default)s)")
    p.add_argument("--adapter", default=None, help="a saved LoRA adapter folder to answer with (default: base model)")
    p.add_argument("--max-new-tokens", type=positive_int, default=32,
                   help="answer length limit in tokens (default: %(default)s)")

    p = commands.add("demo", _demo, "the tiny backbone answers general questions, then learns a new task with a LoRA expert")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--out", default="runs/demo", help="folder for the demo's adapter and results (default: %(default)s)")


def _ls(args: argparse.Namespace) -> int:
    """List the registered components (backbones, methods, routers, scorers), the settings each method and
    router declares, and the shipped configurations."""
    for kind, registry in {"backbones": BACKBONES, "methods": METHODS, "routers": ROUTERS,
                           "scorers": SCORERS}.items():
        print(f"{kind}:")
        blocks = registry.settings()
        for name, description in registry.describe():
            print(f"  {name:<10} {description}")
            section = "router" if registry is ROUTERS else name
            block = blocks.get(name)
            for key, field in (block.model_fields.items() if block else ()):
                default = field.get_default(call_default_factory=True)
                help_text = " ".join((field.description or "").split())
                print(f"      {section}.{field.alias or key} = {default!r}  {help_text}".rstrip())
    print("model families (backbone=hf:<path>; found from its config.json):")
    for name, description in FAMILIES.describe():
        family = FAMILIES.get(name)
        print(f"  {name:<10} {description}")
        print(f"      {family.classes}; projector copy (lora.projector): {'yes' if family.projector else 'no'}; "
              f"vision LoRA (lora.vision): {'yes' if family.vision else 'no'}; e.g. {family.checkpoints}")
    print("configurations (--config NAME):")
    for name, description in profiles().items():
        print(f"  {name:<10} {description}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from mllmcl.models.load import load_backbone  # loads torch: only when the command runs
    from mllmcl.models.tiny import WEIGHTS_DIR  # loads torch, as above
    from mllmcl.pretrain.pretrain import PretrainConfig, evaluate_general, pretrain  # loads torch, as above

    default = PretrainConfig()
    seed = default.seed if args.seed is None else args.seed
    eval_examples = args.eval_examples or default.eval_examples
    if args.check:
        backbone = load_backbone(args.backbone)
        result = evaluate_general(backbone, eval_examples, seed)
        _print_general(result)
        worst = min(result["format_valid"].items(), key=lambda item: item[1])
        if result["accuracy"] < args.min_accuracy or worst[1] < args.min_format_valid:
            print(f"FAIL: held-out accuracy {result['accuracy']}% (pass mark {args.min_accuracy}%), {worst[0]} answers "
                  f"in their format {worst[1]}% (pass mark {args.min_format_valid}%)", file=sys.stderr)
            return 1
        print(f"OK: held-out accuracy {result['accuracy']}% >= {args.min_accuracy}%, every format's answers in their "
              f"format >= {args.min_format_valid}% (lowest: {worst[0]} {worst[1]}%)")
        return 0
    for option, value in (("--vision-steps", args.vision_steps), ("--instruction-pool", args.instruction_pool)):
        if value is not None and value < 0:
            raise UserError(f"{option} must be 0 or more, got {value}")
    given = {"seed": args.seed, "pool": args.pool, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
             "eval_examples": args.eval_examples, "instruction_pool": args.instruction_pool,
             "instruction_epochs": args.instruction_epochs, "instruction_lr": args.instruction_lr}
    config = replace(default, **{k: v for k, v in given.items() if v is not None}, freeze_vision=not args.train_vision)
    if args.vision_steps is not None:
        config = replace(config, vision=replace(config.vision, steps=args.vision_steps))
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
    print(f"{'format':<12} accuracy  in its format")
    for fmt, accuracy in result["per_format"].items():
        valid = result["format_valid"].get(fmt)
        print(f"{fmt:<12} {accuracy:6.2f}%  " + ("" if valid is None else f"{valid:6.2f}%"))
    print(f"{'overall':<12} {result['accuracy']:6.2f}%  ({result['examples']} held-out examples)")


def _ask(args: argparse.Namespace) -> int:
    from mllmcl.engine.adapters import load_adapter  # loads torch: only when the command runs
    from mllmcl.engine.generate import generate  # loads torch, as above
    from mllmcl.models.load import load_backbone  # loads torch, as above

    backbone = load_backbone(args.backbone)
    adapters = None
    if args.adapter:
        load_adapter(backbone, "user", args.adapter)
        adapters = ["user"] * len(args.image)
    questions = [args.question] * len(args.image)
    answers = generate(backbone, args.image, questions, adapters=adapters, max_new_tokens=args.max_new_tokens)
    for image, answer in zip(args.image, answers):
        print(json.dumps({"image": image, "question": args.question, "answer": answer}))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mllmcl.bench.demo import run_demo  # loads torch: only when the command runs

    return run_demo(seed=args.seed, out=args.out)
