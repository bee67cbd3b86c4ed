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

# Before torch loads: the instruction set out of the arithmetic (mllmcl/reproducible.py). Not for `bench scale`,
# which times bf16 autocast: oneDNN has no AVX2 bf16 path, and pinned it runs ~1000x slower.
if sys.argv[1:3] != ["bench", "scale"]:
    pin_cpu_kernels()
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


def _bench_serve(args: argparse.Namespace) -> int:
    from mllmcl.serve.bench import run_serve_bench

    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    run_serve_bench(args.library, requests=args.requests, concurrency=concurrency, max_batch=args.max_batch,
                    max_wait_ms=args.max_wait_ms, fallback=not args.no_fallback, repeats=args.repeats, out=args.out)
    return 0


def _bench_openworld(args: argparse.Namespace) -> int:
    from mllmcl.serve.bench import run_openworld_bench

    run_openworld_bench(args.library, out=args.out, split=args.split)
    return 0


def _library(args: argparse.Namespace) -> int:
    """`mllmcl library export`: a new expert library from a finished run."""
    from mllmcl.serve.grow import export_run

    manifest = export_run(args.run, args.out, method=args.method, heldout=args.heldout, target_frr=args.target_frr)
    print(f"library {args.out}: version {manifest['version']}, experts "
          f"{', '.join(e['name'] for e in manifest['experts'])} (see: mllmcl expert ls {args.out})")
    return 0


def _expert_add(args: argparse.Namespace) -> int:
    from mllmcl.serve.grow import add_expert

    report = add_expert(args.library, args.name, args.train, args.test, description=args.description,
                        max_drop=args.max_drop, min_routing=args.min_routing, epochs=args.epochs, scorer=args.scorer,
                        max_new_tokens=args.max_new_tokens)
    return _gate_outcome(report)


def _expert_remove(args: argparse.Namespace) -> int:
    from mllmcl.serve.grow import remove_expert

    return _gate_outcome(remove_expert(args.library, args.name, max_drop=args.max_drop, min_routing=args.min_routing))


def _gate_outcome(report: dict) -> int:
    """Print the gate's verdict; a failed gate is a result (exit 1), not an error."""
    measured = report["measured"]
    for name, m in measured["experts"].items():
        print(f"  {name:<12} accuracy {m['accuracy']:6.2f}  routed {m['routed_accuracy']:6.2f}  routing "
              f"{m['routing']:6.2f}%  fallback {m['fallback']:5.2f}%")
    print(f"  routing {measured['routing']:.2f}% · thresholds {_thresholds(measured['threshold'])}")
    if report["passed"]:
        print(f"gate passed: version {report['version']} is current (report: {report['report']})")
        return 0
    print(f"gate FAILED: version {report['base_version']} stays current (report: {report['report']})")
    for line in report["failures"]:
        print(f"  {line}")
    return 1


def _thresholds(values: dict | None) -> str:
    return "none" if not values else ", ".join(f"{name} {value:.4g}" for name, value in values.items())


def _expert_ls(args: argparse.Namespace) -> int:
    from mllmcl.serve.library import Library

    library = Library(args.library)
    if args.json:
        print(json.dumps({**library.manifest, "audit": library.audit_lines()}, indent=2))
        return 0
    manifest = library.manifest
    version = library.version()
    print(f"library {library.path} · backbone {manifest['backbone']} · current version {library.current} · router "
          f"{version['router']['kind']} · fallback target false-reject {100 * version['target_frr']:.1f}% · routing "
          f"{version['routing']:.2f}%")
    print(f"{'expert':<14}{'accuracy':>9}{'routed':>9}{'routing':>9}{'fallback':>9}{'threshold':>11}  "
          f"{'adapter sha256':<14} data")
    thresholds = version.get("threshold") or {}
    for e in version["experts"]:
        scores = e["scores"]
        limit = thresholds.get(e["name"])
        print(f"{e['name']:<14}{scores.get('accuracy', float('nan')):>9.2f}"
              f"{scores.get('routed_accuracy', float('nan')):>9.2f}{scores.get('routing', float('nan')):>9.2f}"
              f"{scores.get('fallback', float('nan')):>9.2f}{'none' if limit is None else f'{limit:.4g}':>11}  "
              f"{e['sha256'][:12]:<14} {e['data'][:12]}")
    print("versions:")
    for v in manifest["versions"]:
        mark = "*" if v["version"] == library.current else " "
        change = v.get("change") or {}
        print(f" {mark} v{v['version']:<4} {v['created']}  {change.get('command', '')}  [{', '.join(v['experts'])}]")
    print("history:")
    for h in manifest["history"]:
        print(f"   {h['time']}  {h['action']}: {h.get('from')} -> {h['to']}")
    audit = library.audit_lines()
    rejected = [a for a in audit if isinstance(a.get("gate"), dict) and a["gate"].get("passed") is False]
    print(f"audit: {len(audit)} entries, {len(rejected)} rejected by the gate ({library.path / 'audit.jsonl'})")
    return 0


def _expert_rollback(args: argparse.Namespace) -> int:
    from mllmcl.serve.grow import rollback

    version = rollback(args.library, args.to)
    print(f"current version: {version}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from mllmcl.serve.app import ServeSettings, serve

    settings = ServeSettings(api_key=args.api_key or os.environ.get("MLLMCL_API_KEY") or None,
                             max_tokens=args.max_tokens, max_image_bytes=args.max_image_bytes,
                             max_image_pixels=args.max_image_pixels, max_batch=args.max_batch,
                             max_wait=args.max_wait_ms / 1000, watch=args.watch, fallback=not args.no_fallback)
    serve(args.path, args.host, args.port, settings)
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
    if args.jobs is not None:
        overrides["jobs"] = args.jobs
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


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum`, or an error saying it must be `what`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "a whole number >= 0")


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
        p.add_argument("-j", "--jobs", type=_non_negative_int, default=None,
                       help="processes running the run's independent parts at once: each method, each MR-LoRA expert "
                            "(the config key `jobs`; default 0: one per CPU core, 1 on a GPU; 1: everything in this "
                            "process). The results are those of one process at the same thread count (docs/engine.md)")
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

    q = bench("serve", _bench_serve, "the HTTP server's requests/s and p50/p95 latency at several concurrency levels, "
              "against offline batched answering of the same inputs (docs/serving.md)")
    q.add_argument("--library", required=True, help="an expert library or a finished run folder")
    q.add_argument("--requests", type=_positive_int, default=256, help="requests per concurrency level (default: 256)")
    q.add_argument("--concurrency", default="1,8,32", help="concurrency levels (default: 1,8,32)")
    q.add_argument("--max-batch", type=_positive_int, default=32, help="the server's batch bound (default: 32)")
    q.add_argument("--max-wait-ms", type=float, default=None,
                   help="the server's batching wait (default: the server's own default)")
    q.add_argument("--no-fallback", action="store_true", help="every auto request to an expert (server and offline)")
    q.add_argument("--repeats", type=_positive_int, default=3, help="offline runs, the best is kept (default: 3)")
    q.add_argument("--out", default=None, help="also write the figures to this JSON file")
    q = bench("openworld", _bench_openworld, "the open-world fallback: AUROC of seen vs unseen-domain items, how many "
              "unseen items reach the base model, and what the fallback costs on the seen tasks (docs/serving.md)")
    q.add_argument("--library", required=True, help="an expert library")
    q.add_argument("--split", choices=["test", "val"], default="test",
                   help="the seen tasks' split to measure on (default: test; the library calibrates on val)")
    q.add_argument("--out", default=None, help="also write the figures to this JSON file")

    p = command("serve", _serve, "serve an expert library (or a finished run folder) behind an OpenAI-compatible API: "
                "POST /v1/chat/completions with model auto (routed), an expert's name or base; GET /v1/models; "
                "POST /v1/library/reload; GET /health. One process (docs/serving.md)")
    p.add_argument("path", metavar="LIB|RUN", help="an expert library (mllmcl library export) or a finished run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /v1/* (default: $MLLMCL_API_KEY, else none)")
    p.add_argument("--max-tokens", type=_positive_int, default=256, help="cap on a request's max_tokens (default: 256)")
    p.add_argument("--max-batch", type=_positive_int, default=32, help="requests per generation call (default: 32)")
    p.add_argument("--max-wait-ms", type=float, default=100.0,
                   help="the longest a batch waits for the clients the previous batch answered to send their next "
                        "requests (it stops as soon as they have; a lone client never waits; default: 100 ms)")
    p.add_argument("--max-image-bytes", type=_positive_int, default=8 * 2**20,
                   help="413 above this many decoded image bytes (default: 8 MiB)")
    p.add_argument("--max-image-pixels", type=_positive_int, default=4096 * 4096,
                   help="413 above this many image pixels (default: 4096x4096)")
    p.add_argument("--watch", type=float, default=2.0,
                   help="seconds between checks of the library's pointer; a new current version is swapped in "
                        "(0: only POST /v1/library/reload; default: 2)")
    p.add_argument("--no-fallback", action="store_true",
                   help="route every auto request to an expert, never to the base model")

    p = command("library", _library, "expert libraries: `mllmcl library export --run RUN --out LIB` builds one from a "
                "finished run (docs/serving.md)")
    p.add_argument("action", choices=["export"], help="export")
    p.add_argument("--run", required=True, help="a finished run folder (e.g. runs/dcl)")
    p.add_argument("--out", required=True, help="the new library's folder (must not exist or be empty)")
    p.add_argument("--method", default="mr-lora", help="the run's routed method to export (default: mr-lora)")
    p.add_argument("--heldout", type=_positive_int, default=100,
                   help="held-out rows kept per expert, from the validation split where the data has one, else "
                        "the test split (default: 100)")
    p.add_argument("--target-frr", type=float, default=0.05,
                   help="the fallback threshold's false-reject rate on the held-out rows (default: 0.05; 0: no fallback)")

    expert = subcommands(command("expert", _subcommand, "grow an expert library: add (through the regression gate), "
                                 "ls, rollback, remove (docs/serving.md)"), "EXPERT_COMMAND")

    def expert_command(name: str, handler, help: str) -> argparse.ArgumentParser:
        q = expert(name, handler, help)
        q.add_argument("library", metavar="LIB", help="the expert library")
        return q

    def gate_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--max-drop", type=float, default=1.0,
                       help="the gate: largest drop, in points, of any existing expert's held-out accuracy (default: 1.0)")
        q.add_argument("--min-routing", type=float, default=95.0,
                       help="the gate: least share (%%) of held-out rows routed to their own expert (default: 95)")

    q = expert_command("add", _expert_add, "train a new expert on LLaVA conversation rows, refit the router, measure "
                       "every expert's held-out rows and make it current only if the gate passes (exit 1 if not)")
    q.add_argument("--name", required=True, help="the expert's name (what clients send as model)")
    q.add_argument("--train", required=True, help="train.json: LLaVA conversation rows, images relative to its folder")
    q.add_argument("--test", default=None,
                   help="held-out rows (LLaVA rows or test rows: question_id, image, text, answer); default: a "
                        "seeded 20%% of --train, kept out of training")
    q.add_argument("--description", default=None, help="one sentence on the domain (the mllm router's prompt lists it)")
    q.add_argument("--scorer", default="fin",
                   help="the rule scoring held-out answers, any of `mllmcl ls` (default: fin, exact match ignoring "
                        "case, spaces and periods)")
    q.add_argument("--epochs", type=_positive_float, default=None, help="training epochs (default: the library's train.epochs)")
    q.add_argument("--max-new-tokens", type=_positive_int, default=None,
                   help="answer length when measuring (default: the library's eval.max_new_tokens)")
    gate_options(q)
    q = expert_command("ls", _expert_ls, "versions, experts, scores, history and the audit log's count")
    q.add_argument("--json", action="store_true", help="library.json and the audit log as one JSON object")
    q = expert_command("rollback", _expert_rollback, "move the current-version pointer back (to the current version's "
                       "parent, or --to VERSION)")
    q.add_argument("--to", type=_positive_int, default=None, help="the version to make current")
    q = expert_command("remove", _expert_remove, "a new version without expert NAME, through the gate")
    q.add_argument("name", help="the expert to remove")
    gate_options(q)

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
