"""Commands that run continual learning: `run` (every method on the tasks in order) and `sweep` (the same over
task orders and seeds). Their settings are the run configuration's (cl/config.py): `--config`, then
`--setting`/`--methods`/`--jobs`, then KEY=VALUE overrides; `--dry-run` checks and prints it without torch."""
from __future__ import annotations

import argparse
import os

from mllmcl.cl.config import RunConfig, cells, load_config, parse_overrides, to_yaml
from mllmcl.cli.options import non_negative_int, positive_int
from mllmcl.core.parallel import launched
from mllmcl.report import render_report
from mllmcl.report.sweep import sweep_table
from mllmcl.report.tables import summary_table


def register(commands) -> None:
    p = commands.add("run", _run, "run continual learning: every method learns the tasks in order and is evaluated on "
                     "every task after each; prints the paper's table and writes results, predictions, report and "
                     "heatmaps to --out (see docs/results.md). Re-running with the same --out resumes.")
    _run_options(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<setting>); an existing one is resumed")

    p = commands.add("sweep", _sweep, "the same run over several task orders and seeds: one run folder per cell "
                     "(MR-LoRA experts trained once per seed and shared by its orders), then sweep.json and a report "
                     "with every metric as mean ± std (see docs/results.md). Re-running with the same --out resumes.")
    _run_options(p)
    p.add_argument("--orders", type=positive_int, default=3,
                   help="task orders: random:0 (the benchmark's own) … random:N-1 (default: %(default)s)")
    p.add_argument("--seeds", type=positive_int, default=1,
                   help="seeds: seed … seed+M-1, each the default of data.seed and train.seed (default: %(default)s)")
    p.add_argument("--out", required=True, help="sweep folder; an existing one is resumed")


def _run_options(p: argparse.ArgumentParser) -> None:
    defaults = RunConfig()
    p.add_argument("--config", default=None,
                   help="a YAML config file (keys as in `config.yaml` of any run folder), or the name of a shipped "
                        "configuration (`mllmcl ls` lists them, e.g. full: the full-size synthetic benchmark)")
    p.add_argument("--setting", default=None,
                   help=f"dcl: domains RS, Med, AD, Sci, Fin; acl: abilities OCR, Math, VP, APP (default: "
                        f"{defaults.setting}); a data root with its own manifest may name another")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated, in order (default: {','.join(defaults.methods)}); e.g. replay, joint, "
                        "ewc+replay (any method that trains on its data, plus a replay buffer), mr-lora[mllm] "
                        "(mr-lora with another router: mllm, prototype, oracle); `mllmcl ls` lists them all")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per step still prints)")
    p.add_argument("-j", "--jobs", type=non_negative_int, default=None,
                   help=f"processes running the run's independent parts at once: each method, each MR-LoRA expert "
                        f"(the config key `jobs`; default {defaults.jobs}: one per CPU core, 1 on a GPU; 1: everything "
                        "in this process). The results are those of one process at the same thread count "
                        "(docs/engine.md)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the configuration and print it (resolved, as config.yaml would hold it); run nothing")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides (every key: docs/methods.md, `mllmcl ls`), e.g. train.epochs=1 "
                        "data.tasks=RS,Med data.order=random:1 router.kind=mllm ewc.lambda=100 seed=1 "
                        "data.benchmark=/data/Domain_data (an MLLM-CL root instead of the synthetic one)")


def _config(args: argparse.Namespace) -> RunConfig:
    """The validated run configuration of `run` and `sweep`: --config, then --setting/--methods, then KEY=VALUE."""
    overrides = parse_overrides(args.overrides)
    if args.setting:
        overrides["setting"] = args.setting
    if args.methods:
        overrides["methods"] = args.methods
    if args.jobs is not None:
        overrides["jobs"] = args.jobs
    return load_config(args.config, overrides)


def _main_process() -> bool:
    """Whether this process prints the table and writes the report (the main one of several)."""
    return not launched() or int(os.environ.get("RANK", "0")) == 0


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.dry_run:
        print(to_yaml(config), end="")
        return 0
    from mllmcl.run.protocol import run  # loads torch: only when a run starts

    out = args.out or f"runs/{config.setting}"
    results = run(config, out, progress=not args.no_progress)
    if not _main_process():
        return 0
    print()
    print(summary_table(results))
    report = render_report([out])
    print(f"\nresults: {out}/results.json · report: {report} · seconds this session: "
          f"{results.run.seconds_this_session}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.dry_run:
        for name, cell in cells(config, args.orders, args.seeds):
            print(f"{name}: seed {cell.seed}, order {cell.data.order or 'benchmark'}")
        return 0
    from mllmcl.run.sweep import sweep  # loads torch: only when a sweep starts

    summary = sweep(config, args.out, args.orders, args.seeds, progress=not args.no_progress)
    if not _main_process():
        return 0
    print()
    print(sweep_table(summary))
    print(f"\nsweep: {args.out}/sweep.json · report: {args.out}/report.md")
    return 0
