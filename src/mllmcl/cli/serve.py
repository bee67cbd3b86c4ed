"""Commands about serving (docs/serving.md): `serve` (an expert library or a run folder behind an
OpenAI-compatible API), `library export` (a library from a finished run), `expert add|ls|rollback|remove`
(grow a library through the regression gate). Their defaults are serve/settings.py's."""
from __future__ import annotations

import argparse
import json
import os

from mllmcl.cli.options import non_negative_int, positive_float, positive_int
from mllmcl.core.errors import UserError
from mllmcl.serve.library import Library
from mllmcl.serve.settings import ExpertSettings, GateSettings, ServeSettings


def register(commands) -> None:
    serving = ServeSettings()
    p = commands.add("serve", _serve, "serve an expert library (or a finished run folder) behind an OpenAI-compatible "
                     "API: POST /v1/chat/completions with model auto (routed), an expert's name or base; GET "
                     "/v1/models; POST /v1/library/reload; GET /health. One process (docs/serving.md)")
    p.add_argument("path", metavar="LIB|RUN", help="an expert library (mllmcl library export) or a finished run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--api-key", default=serving.api_key,
                   help="require 'Authorization: Bearer KEY' on /v1/* (default: $MLLMCL_API_KEY, else none)")
    p.add_argument("--max-tokens", type=positive_int, default=serving.max_tokens,
                   help="cap on a request's max_tokens (default: %(default)s)")
    p.add_argument("--max-batch", type=positive_int, default=serving.max_batch,
                   help="requests per generation call (default: %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=1000 * serving.max_wait,
                   help="the longest a batch waits for the clients the previous batch answered to send their next "
                        "requests (it stops as soon as they have; a lone client never waits; default: %(default)s ms)")
    p.add_argument("--max-image-bytes", type=positive_int, default=serving.max_image_bytes,
                   help="413 above this many decoded image bytes (default: %(default)s)")
    p.add_argument("--max-image-pixels", type=positive_int, default=serving.max_image_pixels,
                   help="413 above this many image pixels (default: %(default)s)")
    p.add_argument("--watch", type=float, default=serving.watch,
                   help="seconds between checks of the library's pointer; a new current version is swapped in "
                        "(0: only POST /v1/library/reload; default: %(default)s)")
    p.add_argument("--no-fallback", action="store_true",
                   help="route every auto request to an expert, never to the base model")
    p.add_argument("--threads", type=non_negative_int, default=serving.threads, metavar="N",
                   help="torch CPU threads (0: every core; default: the library's run setting, `threads` in its "
                        "configuration)")
    p.add_argument("--backend", choices=["local", "vllm"], default="local",
                   help="who answers: local (this process, default) or vllm (an OpenAI-compatible engine at "
                        "--upstream serving the adapters of `library export --format vllm`; this process routes)")
    p.add_argument("--upstream", default=None, metavar="URL",
                   help="the engine's base URL for --backend vllm, e.g. http://127.0.0.1:8001/v1")
    p.add_argument("--upstream-key", default=None, metavar="KEY",
                   help="the engine's API key (default: $MLLMCL_UPSTREAM_KEY, else none)")
    p.add_argument("--upstream-model", default=None, metavar="NAME",
                   help="the engine's name for the base model, which answers the fallback (default: the model "
                        "its /v1/models lists without a parent)")

    expert = ExpertSettings()
    p = commands.add("library", _library, "expert libraries: `mllmcl library export --run RUN --out LIB` builds one "
                     "from a finished run (docs/serving.md)")
    p.add_argument("action", choices=["export"], help="export")
    p.add_argument("--format", choices=["library", "vllm"], default="library",
                   help="library (default): a new expert library from --run; vllm: the experts of --library as "
                        "adapters vLLM's multi-LoRA serving loads, with the `vllm serve` command that matches")
    p.add_argument("--run", default=None, help="a finished run folder (e.g. runs/dcl), for --format library")
    p.add_argument("--library", default=None, help="an expert library, for --format vllm (its current version)")
    p.add_argument("--out", required=True, help="the new folder (must not exist or be empty)")
    p.add_argument("--no-lm-head", action="store_true",
                   help="--format vllm: drop the experts' LoRA on the output head too (vLLM takes it for some "
                        "models only); the held-out cost is measured and printed")
    p.add_argument("--max-drop", type=float, default=None,
                   help="--format vllm: refuse the export when what it drops costs an expert more than this many "
                        f"points on its held-out rows (default: {GateSettings().max_drop}; inf accepts any loss)")
    p.add_argument("--method", default=expert.method, help="the run's routed method to export (default: %(default)s)")
    p.add_argument("--heldout", type=positive_int, default=expert.heldout,
                   help="held-out rows kept per expert, from the validation split where the data has one, else "
                        "the test split (default: %(default)s)")
    p.add_argument("--target-frr", type=float, default=expert.target_frr,
                   help="the fallback threshold's false-reject rate on the held-out rows (default: %(default)s; 0: no "
                        "fallback)")

    experts = commands.group("expert", "grow an expert library: add (through the regression gate), ls, rollback, "
                             "remove (docs/serving.md)", "EXPERT_COMMAND")

    def expert_command(name: str, handler, help: str) -> argparse.ArgumentParser:
        q = experts.add(name, handler, help)
        q.add_argument("library", metavar="LIB", help="the expert library")
        return q

    q = expert_command("add", _expert_add, "train a new expert on LLaVA conversation rows, refit the router, measure "
                       "every expert's held-out rows and make it current only if the gate passes (exit 1 if not)")
    q.add_argument("--name", required=True, help="the expert's name (what clients send as model)")
    q.add_argument("--train", required=True, help="train.json: LLaVA conversation rows, images relative to its folder")
    q.add_argument("--test", default=None,
                   help="held-out rows (LLaVA rows or test rows: question_id, image, text, answer); default: a "
                        "seeded 20%% of --train, kept out of training")
    q.add_argument("--description", default=None, help="one sentence on the domain (the mllm router's prompt lists it)")
    q.add_argument("--scorer", default=expert.scorer,
                   help="the rule scoring held-out answers, any of `mllmcl ls` (default: %(default)s, exact match "
                        "ignoring case, spaces and periods)")
    q.add_argument("--epochs", type=positive_float, default=None, help="training epochs (default: the library's train.epochs)")
    q.add_argument("--max-new-tokens", type=positive_int, default=None,
                   help="answer length when measuring (default: the library's eval.max_new_tokens)")
    q.add_argument("--min-gain", type=float, default=GateSettings().min_gain,
                   help="the gate: least lead, in points, of the new expert over the base model on its own held-out "
                        "rows (default: %(default)s)")
    _gate_options(q)
    q = expert_command("ls", _expert_ls, "versions, experts, scores, history and the audit log's count")
    q.add_argument("--json", action="store_true", help="library.json and the audit log as one JSON object")
    q = expert_command("rollback", _expert_rollback, "move the current-version pointer back (to the current version's "
                       "parent, or --to VERSION)")
    q.add_argument("--to", type=positive_int, default=None, help="the version to make current")
    q = expert_command("remove", _expert_remove, "a new version without expert NAME, through the gate")
    q.add_argument("name", help="the expert to remove")
    _gate_options(q)


def _gate_options(q: argparse.ArgumentParser) -> None:
    gate = GateSettings()
    q.add_argument("--max-drop", type=float, default=gate.max_drop,
                   help="the gate: largest drop, in points, of any existing expert's held-out accuracy "
                        "(default: %(default)s)")
    q.add_argument("--min-routing", type=float, default=gate.min_routing,
                   help="the gate: least share (%%) of held-out rows routed to their own expert (default: %(default)s)")


def _serve(args: argparse.Namespace) -> int:
    from mllmcl.serve.app import serve  # loads torch: only when the command runs

    settings = ServeSettings(api_key=args.api_key or os.environ.get("MLLMCL_API_KEY") or None,
                             max_tokens=args.max_tokens, max_image_bytes=args.max_image_bytes,
                             max_image_pixels=args.max_image_pixels, max_batch=args.max_batch,
                             max_wait=args.max_wait_ms / 1000, watch=args.watch, fallback=not args.no_fallback,
                             threads=args.threads)
    upstream = None
    if args.backend == "vllm":
        if not args.upstream:
            raise UserError("--backend vllm needs --upstream URL: the engine serving the exported adapters")
        from mllmcl.serve.upstream import Upstream  # the HTTP client: only when the command runs

        upstream = Upstream(args.upstream, args.upstream_key or os.environ.get("MLLMCL_UPSTREAM_KEY") or None,
                            args.upstream_model)
    elif args.upstream or args.upstream_model or args.upstream_key:
        raise UserError("--upstream, --upstream-key and --upstream-model go with --backend vllm")
    serve(args.path, args.host, args.port, settings, upstream=upstream)
    return 0


def _library(args: argparse.Namespace) -> int:
    """`mllmcl library export`: a new expert library from a finished run, or a library's experts for vLLM."""
    if args.format == "vllm":
        if args.run or not args.library:
            raise UserError("--format vllm exports an expert library: pass --library LIB (build one from a run "
                            "with `mllmcl library export --run RUN --out LIB`)")
        from mllmcl.serve.vllm_export import export_vllm  # loads torch: only when the command runs

        export_vllm(args.library, args.out, lm_head=not args.no_lm_head,
                    max_drop=GateSettings().max_drop if args.max_drop is None else args.max_drop)
        return 0
    if args.library or not args.run or args.no_lm_head or args.max_drop is not None:
        raise UserError("--format library builds a library from a run: pass --run RUN (--library, --no-lm-head "
                        "and --max-drop go with --format vllm)")
    from mllmcl.serve.grow import export_run  # loads torch: only when the command runs

    manifest = export_run(args.run, args.out, method=args.method, heldout=args.heldout, target_frr=args.target_frr)
    print(f"library {args.out}: version {manifest['version']}, experts "
          f"{', '.join(e['name'] for e in manifest['experts'])} (see: mllmcl expert ls {args.out})")
    return 0


def _expert_add(args: argparse.Namespace) -> int:
    from mllmcl.serve.grow import add_expert  # loads torch: only when the command runs

    report = add_expert(args.library, args.name, args.train, args.test, description=args.description,
                        max_drop=args.max_drop, min_routing=args.min_routing, epochs=args.epochs, scorer=args.scorer,
                        max_new_tokens=args.max_new_tokens, min_gain=args.min_gain)
    return _gate_outcome(report)


def _expert_remove(args: argparse.Namespace) -> int:
    from mllmcl.serve.grow import remove_expert  # loads torch: only when the command runs

    return _gate_outcome(remove_expert(args.library, args.name, max_drop=args.max_drop, min_routing=args.min_routing))


def _expert_rollback(args: argparse.Namespace) -> int:
    from mllmcl.serve.grow import rollback  # loads torch: only when the command runs

    version = rollback(args.library, args.to)
    print(f"current version: {version}")
    return 0


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
