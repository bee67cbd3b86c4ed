"""The `mllmcl` command line: one dispatch table from sub-command to handler, filled by the command groups.

Errors a user can cause (a `UserError`, or a bad option) print one line `mllmcl: error: …` and exit with
status 2; nothing else is written. Anything else is a bug in mllmcl: one line `mllmcl: error: internal
error: …`, status 1. `--debug` (or `MLLMCL_DEBUG=1`) shows the Python traceback of either instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Callable, NoReturn

from mllmcl.cli import bench, data, model, report, run, serve
from mllmcl.core.errors import UserError, one_line
from mllmcl.core.reproducible import pin_cpu_kernels

GROUPS = (model, run, report, bench, data, serve)
"""The command groups, in the order `mllmcl --help` lists their commands."""
Handler = Callable[[argparse.Namespace], int]
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


class Commands:
    """The dispatch table: each command (`run`, `bench engine`, …) and its handler, with its parser. A command
    group adds its commands with `add`, and nested ones (`bench engine`) under a `group`."""

    def __init__(self, parser: argparse.ArgumentParser, prefix: str = "", metavar: str = "COMMAND",
                 handlers: dict[str, Handler] | None = None):
        self.prefix = prefix
        self.handlers: dict[str, Handler] = {} if handlers is None else handlers
        dest = "command" if not prefix else f"{prefix.replace(' ', '_')}_command"
        self._sub = parser.add_subparsers(dest=dest, required=True, metavar=metavar,
                                          help="one of those listed below" if prefix else None)

    def add(self, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        path = f"{self.prefix} {name}".strip()
        self.handlers[path] = handler
        parser = self._sub.add_parser(name, help=help, description=help, parents=[_debug_option()])
        parser.set_defaults(command_path=path)
        return parser

    def group(self, name: str, help: str, metavar: str) -> "Commands":
        """A command whose sub-commands (`data check`, `data synth`) are added to the returned table."""
        parser = self._sub.add_parser(name, help=help, description=help, parents=[_debug_option()])
        return Commands(parser, f"{self.prefix} {name}".strip(), metavar, self.handlers)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mllmcl", description="Continual learning of multimodal LLMs (MLLM-CL, MR-LoRA and baselines). "
        "Errors you can cause print one line `mllmcl: error: …` naming the file, row or key and exit with "
        "status 2 (docs/errors.md).")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    commands = Commands(parser)
    for group in GROUPS:
        group.register(commands)
    parser.set_defaults(_handlers=commands.handlers)
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


def _prepare_process(argv: list[str]) -> None:
    """Before a command imports torch: the instruction set out of the arithmetic (core/reproducible.py) —
    not for `bench scale`, which times bf16 autocast (oneDNN has no AVX2 bf16 path: pinned, it runs ~1000x
    slower) — and the quiet defaults of the Hugging Face libraries."""
    if argv[:2] != ["bench", "scale"]:
        pin_cpu_kernels()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # deprecation chatter from transformers/peft internals is not the user's concern
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    _prepare_process(argv)
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
        return args._handlers[args.command_path](args)
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
