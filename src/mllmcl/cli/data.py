"""Commands about data roots: `data check` validates an MLLM-CL layout (docs/data.md); `data synth` writes the
synthetic benchmark (docs/benchmark.md), with `SynthSpec`'s defaults."""
from __future__ import annotations

import argparse
import json

from mllmcl.cli.options import default_of, positive_int
from mllmcl.core.errors import UserError
from mllmcl.data.check import CheckReport, check_benchmark
from mllmcl.data.synth.shared import DEFAULT_SKILL
from mllmcl.data.synth.write import SynthSpec, write_synth


def register(commands) -> None:
    data = commands.group("data", "data roots: `mllmcl data check` validates an MLLM-CL layout (docs/data.md); "
                          "`mllmcl data synth` writes the synthetic benchmark (docs/benchmark.md)", "DATA_COMMAND")

    q = data.add("check", _check, "check every row and image of an MLLM-CL data root; "
                 "exit 0 if all is well, 1 if problems were found")
    q.add_argument("--root", required=True, help="the data root (e.g. Domain_data/ or Ability_data/)")
    q.add_argument("--setting", choices=["dcl", "acl"], default=None,
                   help="dcl (domain) or acl (ability); may be omitted when the root's mllmcl.json names it")
    q.add_argument("--tasks", default=None, help="comma-separated subset of tasks, e.g. RS,Med (default: all)")
    q.add_argument("--folder", action="append", default=[], metavar="TASK=FOLDER",
                   help="read TASK from FOLDER (relative to the root); repeatable, e.g. --folder RS=MyRS")
    q.add_argument("--decode", action="store_true",
                   help="fully decode every image (default: PIL verify(), which does not decode the pixels)")
    q.add_argument("--workers", type=positive_int, default=None, help="threads checking images (default: up to 8)")
    q.add_argument("--limit", type=positive_int, default=default_of(CheckReport.format, "limit"),
                   help="problems to print (default: %(default)s; all are counted)")
    q.add_argument("--json", action="store_true",
                   help="print one JSON object instead: {tasks: {name: {train, test, router, replay}}, problems: "
                        "[{file, row, id, message}], ok} (every problem; --limit does not apply)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")

    spec = SynthSpec()
    q = data.add("synth", _synth, "write the synthetic MLLM-CL benchmark (offline stand-in) in the official "
                 "layout; deterministic by seed (see docs/benchmark.md)")
    q.add_argument("--setting", choices=["dcl", "acl"], required=True,
                   help="dcl: five domains RS, Med, AD, Sci, Fin (IID); acl: four abilities OCR, Math, VP, APP "
                        "(shifted test)")
    q.add_argument("--out", required=True, help="folder to create; an existing copy of the same dataset is reused")
    q.add_argument("--train", type=positive_int, default=spec.train, help="training items per task (default: %(default)s)")
    q.add_argument("--test", type=positive_int, default=spec.test, help="test items per task (default: %(default)s)")
    q.add_argument("--val", type=int, default=spec.val,
                   help="validation items per task, written to val.json beside test.json: the test distribution "
                        "with items of their own; tune on them, never on test (default: %(default)s; 0: none)")
    q.add_argument("--seed", type=int, default=spec.seed, help="seed of every drawn item (default: %(default)s)")
    q.add_argument("--image-size", type=positive_int, default=spec.image_size,
                   help="image side in pixels (default: %(default)s, the tiny backbone's input)")
    q.add_argument("--router-k", type=int, default=spec.router_k,
                   help="router-training samples per task (default: %(default)s)")
    q.add_argument("--replay-k", type=int, default=spec.replay_k, help="replay samples per task (default: %(default)s)")
    q.add_argument("--overlap", type=float, default=None,
                   help="dcl: share of items (train, val, test, unseen) asked with the generic questions shared by "
                        "all domains (one yes/no, one letter and one short-answer question, identical text, one rule "
                        "per domain); at 1 the question tells the task only through the domain's mix of formats "
                        "(default: 1 for dcl, 0 for acl)")
    q.add_argument("--visual-overlap", type=float, default=spec.visual_overlap,
                   help="dcl: share of items whose backdrop colours come from one pool shared by all domains "
                        "instead of the domain's palette (default: %(default)s)")
    q.add_argument("--skill", type=float, default=None,
                   help="dcl: share of items asking the skill common to all domains (a marker badge over the domain's "
                        "image: is there one, which colour), one rule in every domain, so later tasks train it again "
                        f"(default: {DEFAULT_SKILL} for dcl, chosen on the validation split; 0 for acl)")
    q.add_argument("--unseen", type=int, default=default_of(SynthSpec, "unseen"),
                   help="test items of a held-out domain no method trains on (retail shelves), written to "
                        "OUT/unseen/test.json and loaded as Benchmark.unseen, not as a task (default: 100 for dcl, "
                        "0 for acl)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check(args: argparse.Namespace) -> int:
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


def _synth(args: argparse.Namespace) -> int:
    spec = SynthSpec(setting=args.setting, train=args.train, test=args.test, val=args.val, seed=args.seed,
                     image_size=args.image_size, router_k=args.router_k, replay_k=args.replay_k,
                     overlap=args.overlap, visual_overlap=args.visual_overlap, skill=args.skill,
                     unseen=args.unseen)
    out = write_synth(args.out, spec, progress=not args.no_progress)
    print(f"synthetic {args.setting} data in {out} (check it with: mllmcl data check --root {out})")
    return 0
