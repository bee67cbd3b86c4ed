"""The `mllmcl` command line: one dispatch table from sub-command to handler.

Errors a user can cause (a `UserError`, or a bad option) print one line `mllmcl: error: …` and exit with
status 2; nothing else is written. Anything else is a bug in mllmcl: one line `mllmcl: error: internal
error: …`, status 1. `--debug` (or `MLLMCL_DEBUG=1`) shows the Python traceback of either instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Callable, NoReturn

from mllmcl.errors import UserError, one_line
from mllmcl.reproducible import pin_cpu_kernels

pin_cpu_kernels()  # before torch loads: the same numbers on any AVX2 machine (mllmcl/reproducible.py)
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _ls(args: argparse.Namespace) -> int:
    """List the registered components (backbones, methods, routers, scorers), the settings each method and
    router declares, and the shipped configurations."""
    from mllmcl.config import profiles
    from mllmcl.eval import SCORERS
    from mllmcl.methods import METHODS
    from mllmcl.models import BACKBONES
    from mllmcl.routing import ROUTERS

    for kind, registry in {"backbones": BACKBONES, "methods": METHODS, "routers": ROUTERS,
                           "scorers": SCORERS}.items():
        print(f"{kind}:")
        blocks = registry.settings()
        for name, description in registry.describe():
            print(f"  {name:<10} {description}")
            section = "router" if registry is ROUTERS else name
            for key, field in blocks.get(name, type("none", (), {"model_fields": {}})).model_fields.items():
                default = field.default if field.default_factory is None else field.default_factory()
                help_text = " ".join((field.description or "").split())
                print(f"      {section}.{field.alias or key} = {default!r}  {help_text}".rstrip())
    print("configurations (--config NAME):")
    for name, description in profiles().items():
        print(f"  {name:<10} {description}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from mllmcl.models.tiny import WEIGHTS_DIR
    from mllmcl.pretrain.pretrain import PretrainConfig, evaluate_general, pretrain
    from mllmcl.pretrain.vision import VisionStageConfig

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
    if args.vision_steps < 0:
        raise UserError(f"--vision-steps must be 0 or more, got {args.vision_steps}")
    config = PretrainConfig(seed=args.seed, pool=args.pool, epochs=args.epochs, batch_size=args.batch_size,
                            lr=args.lr, eval_examples=args.eval_examples, freeze_vision=not args.train_vision,
                            vision=replace(VisionStageConfig(), steps=args.vision_steps))
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


def _bench_engine(args: argparse.Namespace) -> int:
    from mllmcl.bench.engine import run_engine_bench

    run_engine_bench(steps=args.steps, batch_size=args.batch_size, seed=args.seed, repeats=args.repeats)
    return 0


def _bench_routing(args: argparse.Namespace) -> int:
    from mllmcl.bench.routing import run_routing_bench

    run_routing_bench(args.run, method=args.method, repeats=args.repeats)
    return 0


def _bench_routers(args: argparse.Namespace) -> int:
    from mllmcl.bench.routers import print_routers_report, run_routers_bench

    print_routers_report(run_routers_bench(overlaps=args.overlaps, seed=args.seed, cache=args.cache,
                                           split=args.split, routers=args.routers))
    return 0


def _bench_methods(args: argparse.Namespace) -> int:
    from mllmcl.bench.methods import print_methods_report, run_methods_bench

    print_methods_report(run_methods_bench(methods=args.methods, cache=args.cache, seed=args.seed))
    return 0


def _bench_scale(args: argparse.Namespace) -> int:
    from mllmcl.bench.scale import ScaleConfig, print_scale_report, run_scale_bench

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: no CUDA device here")
    print_scale_report(run_scale_bench(ScaleConfig(layers=args.layers, device=args.device, dtype=args.dtype,
                                                   steps=args.steps, samples=args.samples)))
    return 0


def _subcommand(args: argparse.Namespace) -> int:
    """`mllmcl data|bench|… <SUBCOMMAND>`: hand over to the sub-command's handler (set by its parser)."""
    return args.sub_handler(args)


def subcommands(parser: argparse.ArgumentParser, metavar: str):
    """A function that adds sub-commands to `parser`, each with its handler (run by `_subcommand`)."""
    sub = parser.add_subparsers(dest=metavar.lower(), required=True, metavar=metavar,
                                help="one of those listed below")

    def add(name: str, handler, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help, description=help, parents=[_debug_option()])
        q.set_defaults(sub_handler=handler)
        return q
    return add


def _data_check(args: argparse.Namespace) -> int:
    from mllmcl.data.check import check_benchmark

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    folders = {}
    for item in args.folder:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise UserError(f"--folder takes TASK=FOLDER, got {item!r}")
        folders[name] = folder
    report = check_benchmark(args.root, args.setting, tasks, folders=folders or None, decode=args.decode,
                             workers=args.workers, progress=not args.no_progress)
    print(json.dumps(report.to_json()) if args.json else report.format(limit=args.limit))
    return 0 if report.ok else 1


def _data_synth(args: argparse.Namespace) -> int:
    from mllmcl.data.synth.write import SynthSpec, write_synth

    spec = SynthSpec(setting=args.setting, train=args.train, test=args.test, val=args.val, seed=args.seed,
                     image_size=args.image_size, router_k=args.router_k, replay_k=args.replay_k,
                     overlap=args.overlap, visual_overlap=args.visual_overlap, unseen=args.unseen)
    out = write_synth(args.out, spec, progress=not args.no_progress)
    print(f"synthetic {args.setting} data in {out} (check it with: mllmcl data check --root {out})")
    return 0


def _score(args: argparse.Namespace) -> int:
    from mllmcl.eval.files import score_files

    summary = score_files(args.task, args.questions, args.predictions, submission=args.submission,
                          judge_url=args.judge_url, judge_model=args.judge_model, judge_key_env=args.judge_key_env)
    print(json.dumps(summary))
    return 0


def _config(args: argparse.Namespace):
    """The validated run configuration of `run` and `sweep`: --config, then --setting/--methods, then KEY=VALUE."""
    from mllmcl.config import load_config, parse_overrides

    overrides = parse_overrides(args.overrides)
    if args.setting:
        overrides["setting"] = args.setting
    if args.methods:
        overrides["methods"] = args.methods
    return load_config(args.config, overrides)


def _run(args: argparse.Namespace) -> int:
    from mllmcl.config import to_yaml
    from mllmcl.report import render_report
    from mllmcl.report.tables import summary_table
    from mllmcl.runner import run

    config = _config(args)
    if args.dry_run:
        print(to_yaml(config), end="")
        return 0
    out = args.out or f"runs/{config.setting}"
    results = run(config, out, progress=not args.no_progress)
    from mllmcl.parallel import launched

    if launched() and int(os.environ.get("RANK", "0")) != 0:
        return 0  # the main process prints the table and writes the report
    print()
    print(summary_table(results))
    report = render_report([out])
    print(f"\nresults: {out}/results.json · report: {report} · seconds this session: "
          f"{results['run']['seconds_this_session']}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from mllmcl.report.sweep import sweep_table
    from mllmcl.sweep import cells, sweep

    config = _config(args)
    if args.dry_run:
        for name, cell in cells(config, args.orders, args.seeds):
            print(f"{name}: seed {cell.seed}, order {cell.data.order or 'benchmark'}")
        return 0
    summary = sweep(config, args.out, args.orders, args.seeds, progress=not args.no_progress)
    from mllmcl.parallel import launched

    if launched() and int(os.environ.get("RANK", "0")) != 0:
        return 0
    print()
    print(sweep_table(summary))
    print(f"\nsweep: {args.out}/sweep.json · report: {args.out}/report.md")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from mllmcl.eval.cl_metrics import metrics_from_file

    print(json.dumps(metrics_from_file(args.file), indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from mllmcl.report import render_report

    print(render_report(args.dirs, args.out))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}") from None
    if not values or not all(0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}")
    return values


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


DEBUG_ENV = "MLLMCL_DEBUG"
DEBUG_HELP = (f"show the Python traceback of an error instead of the one-line message (also: {DEBUG_ENV}=1); "
              "accepted before or after the command")


def _debug_option() -> argparse.ArgumentParser:
    """`--debug` after a (sub-)command too; SUPPRESS keeps it from resetting a `--debug` given before."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return debug


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors look like every other error: one line `mllmcl: error: …`, status 2."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("mllmcl").strip()
        self.exit(2, f"mllmcl: error: {where + ': ' if where else ''}{one_line(message)} "
                     f"(see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mllmcl", description="Continual learning of multimodal LLMs (MLLM-CL, MR-LoRA and baselines). "
        "Errors you can cause print one line `mllmcl: error: …` naming the file, row or key and exit with "
        "status 2 (docs/errors.md).")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        commands[name] = handler
        return sub.add_parser(name, help=help, description=help, parents=[_debug_option()])

    command("ls", _ls, "list registered backbones, methods, routers and scorers")

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", default=None,
                       help="a YAML config file (keys as in `config.yaml` of any run folder), or the name of a shipped "
                            "configuration (`mllmcl ls` lists them, e.g. full: the full-size synthetic benchmark)")
        p.add_argument("--setting", default=None,
                       help="dcl: domains RS, Med, AD, Sci, Fin; acl: abilities OCR, Math, VP, APP (default: dcl); "
                            "a data root with its own manifest may name another")
        p.add_argument("--methods", default=None,
                       help="comma-separated, in order (default: zero-shot,seq-lora,mr-lora,oracle); e.g. replay, joint, "
                            "ewc+replay (any method that trains on its data, plus a replay buffer), mr-lora[mllm] "
                            "(mr-lora with another router: mllm, prototype, oracle); `mllmcl ls` lists them all")
        p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per step still prints)")
        p.add_argument("--dry-run", action="store_true",
                       help="check the configuration and print it (resolved, as config.yaml would hold it); run nothing")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides (every key: docs/methods.md, `mllmcl ls`), e.g. train.epochs=1 "
                            "data.tasks=RS,Med data.order=random:1 router.kind=mllm ewc.lambda=100 seed=1 "
                            "data.benchmark=/data/Domain_data (an MLLM-CL root instead of the synthetic one)")

    p = command("run", _run, "run continual learning: every method learns the tasks in order and is evaluated on "
                "every task after each; prints the paper's table and writes results, predictions, report and "
                "heatmaps to --out (see docs/results.md). Re-running with the same --out resumes.")
    run_options(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<setting>); an existing one is resumed")

    p = command("sweep", _sweep, "the same run over several task orders and seeds: one run folder per cell "
                "(MR-LoRA experts trained once per seed and shared by its orders), then sweep.json and a report "
                "with every metric as mean ± std (see docs/results.md). Re-running with the same --out resumes.")
    run_options(p)
    p.add_argument("--orders", type=_positive_int, default=3,
                   help="task orders: random:0 (the benchmark's own) … random:N-1 (default: 3)")
    p.add_argument("--seeds", type=_positive_int, default=1,
                   help="seeds: seed … seed+M-1, each the default of data.seed and train.seed (default: 1)")
    p.add_argument("--out", required=True, help="sweep folder; an existing one is resumed")

    p = command("metrics", _metrics, "print MFT, MFN, MAA, BWT, Forgetting and FWT as JSON for an accuracy matrix "
                "given as {\"matrix\": [[...]], \"zero_shot\": [...]} (zero_shot optional, needed for FWT)")
    p.add_argument("file", help="the JSON file")

    p = command("report", _report, "render report.md and accuracy-matrix heatmaps from run folders' results.json "
                "(several folders: compared side by side)")
    p.add_argument("dirs", nargs="+", help="run folders (or results.json files)")
    p.add_argument("--out", default=None, help="where to write the report (required with several folders; "
                   "default for one: that folder)")

    p = command("pretrain", _pretrain, "rebuild the embedded tiny backbone from a seed, or --check the shipped one")
    p.add_argument("--check", action="store_true",
                   help="do not train: evaluate a backbone on held-out general questions and exit 1 below --min-accuracy")
    p.add_argument("--backbone", default="tiny", help="backbone to --check: tiny or hf:<path> (default: tiny)")
    p.add_argument("--min-accuracy", type=float, default=45.0,
                   help="pass mark for --check in percent (default: 45; the shipped weights measure 51.5)")
    p.add_argument("--out", default=None, help="where to write the checkpoint (default: the package's shipped weights)")
    p.add_argument("--seed", type=int, default=0, help="seed of model init, data and order (default: 0)")
    p.add_argument("--pool", type=_positive_int, default=40_000, help="number of distinct training examples (default: 40000)")
    p.add_argument("--epochs", type=_positive_float, default=2.0, help="passes over the pool (default: 2)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="examples per step (default: 32)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="peak learning rate, cosine schedule (default: 1e-3)")
    p.add_argument("--eval-examples", type=_positive_int, default=1000, help="held-out examples to evaluate (default: 1000)")
    p.add_argument("--vision-steps", type=int, default=5000,
                   help="steps of stage 1: the vision tower alone names what lies under each image patch; 0 skips it (default: 5000)")
    p.add_argument("--train-vision", action="store_true",
                   help="let stage 2 also train the vision tower (default: frozen, as in LLaVA-1.5)")

    p = command("ask", _ask, "answer one question about one or more image files")
    p.add_argument("question", help="the question, e.g. 'What color is the circle?'")
    p.add_argument("--image", nargs="+", required=True, help="image file(s)")
    p.add_argument("--backbone", default="tiny", help="tiny or hf:<path> (default: tiny)")
    p.add_argument("--adapter", default=None, help="a saved LoRA adapter folder to answer with (default: base model)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=32, help="answer length limit in tokens (default: 32)")

    p = command("demo", _demo, "the tiny backbone answers general questions, then learns a new task with a LoRA expert")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--out", default="runs/demo", help="folder for the demo's adapter and results (default: runs/demo)")

    bench = subcommands(command("bench", _subcommand, "benchmarks that print figures (docs/engine.md, docs/methods.md)"),
                        "BENCHMARK")
    q = bench("engine", _bench_engine, "the engine's training loop vs a bare PyTorch loop; one adapter vs mixed "
              "adapters in generation")
    q.add_argument("--repeats", type=_positive_int, default=5, help="timed repeats, the median is kept (default: 5)")
    q.add_argument("--steps", type=_positive_int, default=20, help="timed training steps per loop (default: 20)")
    q.add_argument("--batch-size", type=_positive_int, default=32,
                   help="training batch size (default: 32; generation always uses 32)")
    q.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    q = bench("routing", _bench_routing, "MR-LoRA's two-stage inference on a finished run vs the oracle and vs the "
              "official answer lookup")
    q.add_argument("--run", default="runs/dcl", help="a finished run folder (default: runs/dcl)")
    q.add_argument("--method", default="mr-lora", help="which routed method of the run (default: mr-lora)")
    q.add_argument("--repeats", type=_positive_int, default=2, help="timed repeats, the best is kept (default: 2)")
    q = bench("routers", _bench_routers, "routing accuracy of each router on the synthetic DCL tasks as the "
              "question templates overlap (data.overlap 0, 0.5, 1), on the validation split")
    q.add_argument("--overlaps", type=_fractions, default=(0.0, 0.5, 1.0),
                   help="comma-separated overlap levels (default: 0,0.5,1)")
    q.add_argument("--routers", default=None,
                   help="comma-separated router variants to run (default: all; the report lists their names)")
    q.add_argument("--split", choices=["val", "test"], default="val",
                   help="the split routed (default: val; tune on it, report test)")
    q.add_argument("--cache", default="runs/data", help="where the synthetic datasets are kept (default: runs/data)")
    q.add_argument("--seed", type=int, default=0, help="seed of the data and the router training (default: 0)")
    q = bench("methods", _bench_methods, "training speed of each continual-learning method relative to seq-lora, and "
              "answering speed (o-lora's merged sum vs seq-lora's one adapter)")
    q.add_argument("--methods", default="seq-lora,ewc,lwf,o-lora,moelora,seq-lora+replay",
                   help="comma-separated methods (default: seq-lora,ewc,lwf,o-lora,moelora,seq-lora+replay)")
    q.add_argument("--cache", default="runs/data", help="where the synthetic datasets are kept (default: runs/data)")
    q.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    q = bench("scale", _bench_scale, "the engine at LLaVA-1.5-7B's shape (random weights, no download): expert "
              "training, single and routed generation, the MLLM router's pass; samples/s and peak memory")
    q.add_argument("--layers", type=_positive_int, default=None,
                   help="keep the first K layers of both towers (default: all 24 + 32; a CPU needs 1 or 2)")
    q.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    q.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto",
                   help="weights: auto = bf16 on GPU, fp32 on CPU (training uses bf16 autocast either way)")
    q.add_argument("--steps", type=_positive_int, default=2, help="timed optimizer steps (default: 2)")
    q.add_argument("--samples", type=_positive_int, default=8, help="generation and routing samples (default: 8)")

    p = command("score", _score, "score a predictions .jsonl with a task's official MLLM-CL rule; prints one JSON "
                "object (see docs/scoring.md)")
    p.add_argument("--task", required=True,
                   help="task name, any case: RS, Med, AD, Sci, Fin, OCR, Math, VP or APP (scorers: `mllmcl ls`)")
    p.add_argument("--questions", required=True, help="the official test.json (a JSON list with question_id, answer, …)")
    p.add_argument("--predictions", required=True,
                   help="one JSON object per line with question_id and text (like the official merge.jsonl)")
    p.add_argument("--submission", default=None,
                   help="APP only: also write the MMT-Bench submission TSV (index, question_id, prediction, opt) here")
    p.add_argument("--judge-url", default=None,
                   help="Math only: OpenAI-compatible base URL of an LLM answer extractor (default: rules, offline)")
    p.add_argument("--judge-model", default="gpt-4o-mini", help="model name sent to --judge-url (default: gpt-4o-mini)")
    p.add_argument("--judge-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the --judge-url API key (default: OPENAI_API_KEY)")

    data_command = subcommands(command("data", _subcommand, "data roots: `mllmcl data check` validates an MLLM-CL "
                                       "layout (docs/data.md); `mllmcl data synth` writes the synthetic benchmark "
                                       "(docs/benchmark.md)"), "DATA_COMMAND")

    q = data_command("check", _data_check, "check every row and image of an MLLM-CL data root; "
                     "exit 0 if all is well, 1 if problems were found")
    q.add_argument("--root", required=True, help="the data root (e.g. Domain_data/ or Ability_data/)")
    q.add_argument("--setting", choices=["dcl", "acl"], default=None,
                   help="dcl (domain) or acl (ability); may be omitted when the root's mllmcl.json names it")
    q.add_argument("--tasks", default=None, help="comma-separated subset of tasks, e.g. RS,Med (default: all)")
    q.add_argument("--folder", action="append", default=[], metavar="TASK=FOLDER",
                   help="read TASK from FOLDER (relative to the root); repeatable, e.g. --folder RS=MyRS")
    q.add_argument("--decode", action="store_true",
                   help="fully decode every image (default: PIL verify(), which does not decode the pixels)")
    q.add_argument("--workers", type=_positive_int, default=None, help="threads checking images (default: up to 8)")
    q.add_argument("--limit", type=_positive_int, default=20, help="problems to print (default: 20; all are counted)")
    q.add_argument("--json", action="store_true",
                   help="print one JSON object instead: {tasks: {name: {train, test, router, replay}}, problems: "
                        "[{file, row, id, message}], ok} (every problem; --limit does not apply)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")

    q = data_command("synth", _data_synth, "write the synthetic MLLM-CL benchmark (offline stand-in) in the official "
                     "layout; deterministic by seed (see docs/benchmark.md)")
    q.add_argument("--setting", choices=["dcl", "acl"], required=True,
                   help="dcl: five domains RS, Med, AD, Sci, Fin (IID); acl: four abilities OCR, Math, VP, APP "
                        "(shifted test)")
    q.add_argument("--out", required=True, help="folder to create; an existing copy of the same dataset is reused")
    q.add_argument("--train", type=_positive_int, default=2000, help="training items per task (default: 2000)")
    q.add_argument("--test", type=_positive_int, default=300, help="test items per task (default: 300)")
    q.add_argument("--val", type=int, default=100,
                   help="validation items per task, written to val.json beside test.json: the test distribution "
                        "with items of their own; tune on them, never on test (default: 100; 0: none)")
    q.add_argument("--seed", type=int, default=0, help="seed of every drawn item (default: 0)")
    q.add_argument("--image-size", type=_positive_int, default=48,
                   help="image side in pixels (default: 48, the tiny backbone's input)")
    q.add_argument("--router-k", type=int, default=20, help="router-training samples per task (default: 20)")
    q.add_argument("--replay-k", type=int, default=20, help="replay samples per task (default: 20)")
    q.add_argument("--overlap", type=float, default=0.0,
                   help="dcl: share of items (train, val, test, unseen) asked in question formats shared by all "
                        "domains (a yes/no and a letter template, identical text, one fixed rule per domain); at 1 "
                        "the question says nothing about the task (default: 0)")
    q.add_argument("--visual-overlap", type=float, default=0.0,
                   help="dcl: share of items whose backdrop colours come from one pool shared by all domains "
                        "instead of the domain's palette (default: 0)")
    q.add_argument("--unseen", type=int, default=None,
                   help="test items of a held-out domain no method trains on (retail shelves), written to "
                        "OUT/unseen/test.json and loaded as Benchmark.unseen, not as a task (default: 100 for dcl, "
                        "0 for acl)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")

    parser.set_defaults(_commands=commands)
    return parser


def _debug_wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def _safe_streams() -> None:
    """Text we print may hold what no encoding can write (a lone surrogate from a JSON `\\ud800` escape, a
    file name that is not UTF-8): print it escaped rather than fail while reporting something else."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper (a test's StringIO): leave it
            pass


def main(argv: list[str] | None = None) -> int:
    # deprecation chatter from transformers/peft internals is not the user's concern
    warnings.filterwarnings("ignore", category=FutureWarning)
    _safe_streams()
    parser = build_parser()
    # `run`'s KEY=VALUE overrides may come before, between or after its options
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "command", None) not in ("run", "sweep") or any(a.startswith("-") or "=" not in a for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    debug = _debug_wanted(args)
    try:
        return args._commands[args.command](args)
    except UserError as err:
        if debug:
            raise
        print(f"mllmcl: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mllmcl: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug in mllmcl, not the user's doing: one line, the traceback on request
        if debug:
            raise
        print(f"mllmcl: error: internal error: {type(err).__name__}: {one_line(str(err))} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
