"""Commands that read results and score answers, without a model: `report` (report.md and heatmaps from run
folders), `metrics` (the continual-learning metrics of an accuracy matrix), `score` (a predictions file with a
task's official rule)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mllmcl.cli.options import default_of
from mllmcl.core.errors import UserError
from mllmcl.core.io import write_text_atomic
from mllmcl.eval.cl_metrics import metrics_from_file
from mllmcl.eval.files import score_files
from mllmcl.report import load_runs, render_report
from mllmcl.report.paper import compare, comparison_markdown


def register(commands) -> None:
    p = commands.add("metrics", _metrics, "print MFT, MFN, MAA, BWT, Forgetting and FWT as JSON for an accuracy "
                     "matrix given as {\"matrix\": [[...]], \"zero_shot\": [...]} (zero_shot optional, needed for FWT)")
    p.add_argument("file", help="the JSON file")

    p = commands.add("report", _report, "render report.md and accuracy-matrix heatmaps from run folders' results.json "
                     "(several folders: compared side by side)")
    p.add_argument("dirs", nargs="+", help="run folders (or results.json files)")
    p.add_argument("--out", default=None, help="where to write the report (required with several folders; "
                   "default for one: that folder)")
    p.add_argument("--against", choices=["paper"], default=None,
                   help="instead, compare the runs (run or sweep folders) with the published MLLM-CL table of their "
                   "setting (LLaVA-1.5-7B): MFN and BWT raw and normalised by the zero-shot-to-Oracle room, and "
                   "Spearman's rho of the ranking; printed, and written to --out/against_paper.md if given "
                   "(docs/pilot.md)")

    p = commands.add("score", _score, "score a predictions .jsonl with a task's official MLLM-CL rule; prints one JSON "
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
    p.add_argument("--judge-model", default=default_of(score_files, "judge_model"),
                   help="model name sent to --judge-url (default: %(default)s)")
    p.add_argument("--judge-key-env", default=default_of(score_files, "judge_key_env"),
                   help="environment variable holding the --judge-url API key (default: %(default)s)")


def _metrics(args: argparse.Namespace) -> int:
    print(json.dumps(metrics_from_file(args.file), indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    if args.against == "paper":
        try:
            text = comparison_markdown(compare(load_runs(args.dirs)))
        except ValueError as e:
            raise UserError(f"report --against paper ({', '.join(args.dirs)}): {e}") from None
        if args.out:
            write_text_atomic(Path(args.out) / "against_paper.md", text)
        print(text)
        return 0
    print(render_report(args.dirs, args.out))
    return 0


def _score(args: argparse.Namespace) -> int:
    summary = score_files(args.task, args.questions, args.predictions, submission=args.submission,
                          judge_url=args.judge_url, judge_model=args.judge_model, judge_key_env=args.judge_key_env)
    print(json.dumps(summary))
    return 0
