"""What the fuzz suites (tests/test_fuzz_*.py) share: bounded, reproducible Hypothesis settings; strategies
that break VALID inputs (a key dropped, a value of the wrong type, unicode, huge numbers, NaN, nested junk,
bytes cut or flipped) as well as raw garbage; and the one property every input surface must keep:

    the command succeeds, or it prints exactly one stderr line `mllmcl: error: …` that names the file, row
    or key, exits with status 2 and leaves the folders it may write exactly as they were.

An exit status of 1 with `mllmcl: error: internal error: …` is a bug in mllmcl and fails the property: the
fix is a UserError where the input is read.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from mllmcl.cli.main import main

# Reproducible in CI (derandomize: the same examples on every run, no example database written into the
# repository) and bounded: each suite states its own max_examples, chosen so the whole fuzz suite adds
# well under a minute. too_slow is suppressed because an example writes files and runs a real command
# (milliseconds, more with a model), which is the point of the suite; data_too_large because the
# mutation strategies draw whole documents. MLLMCL_FUZZ_SCALE=N searches deeper when hunting bugs by hand:
# N times the examples, fresh random ones on every run.
SCALE = float(os.environ.get("MLLMCL_FUZZ_SCALE", "1"))
FUZZ = settings(deadline=None, derandomize=SCALE == 1, database=None, print_blob=SCALE != 1,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=max(1, int(examples * SCALE)))


# ---------------------------------------------------------------------------------------------- values

HUGE_INT = "@@HUGE_INT@@"   # replaced by a 5000-digit integer literal (Python's int() refuses > 4300 digits)
DEEP = "@@DEEP@@"           # replaced by 100 000 nested lists (json.loads recurses)
_LITERALS = {HUGE_INT: "9" * 5000, DEEP: "[" * 100_000 + "]" * 100_000}

# every code point, lone surrogates included (a JSON "\ud800" escape decodes to one)
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
SPECIAL_TEXT = st.sampled_from(["", " ", "\n", "<image>", "<image><image>", "a" * 300, "../../../etc/passwd",
                                "/", ".", "\x00", "\ud800", "Unanswerable", "yes", "A", "RS", "ALL_3", "é/ü.png",
                                "1e999", "NaN", "null", "[]", "{}"])
NUMBERS = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 10**30, 1e308, -0.0, float("inf"), float("-inf"), float("nan"), HUGE_INT]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, SPECIAL_TEXT)
# one flat choice, so that every JSON type (and the pathological literals) is drawn about equally often
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                 st.sampled_from([0, -1, 10**30, 1e308, float("inf"), float("nan"), HUGE_INT, DEEP]),
                 TEXT, SPECIAL_TEXT, st.lists(SCALARS, min_size=1, max_size=3),
                 st.dictionaries(st.one_of(TEXT, SPECIAL_TEXT), SCALARS, max_size=3),
                 st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                               st.dictionaries(TEXT, inner, max_size=3)), max_leaves=6))


def _retyped(value: Any) -> st.SearchStrategy:
    """Values of another JSON type than `value` that a careless writer might produce from it."""
    if isinstance(value, str):
        return st.sampled_from([None, 0, 5, 1.5, float("inf"), True, [value], {"value": value}, [], value * 50,
                                value + "\ud800"])
    if isinstance(value, bool) or value is None:
        return st.sampled_from(["true", 1, [value], "", "null"])
    if isinstance(value, (int, float)):
        return st.sampled_from([str(value), None, [value], float("nan"), float("inf"), -value, HUGE_INT, 10**30])
    return st.sampled_from([None, "", 0, json.dumps(value)])


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every position in a JSON document: () for the root, then keys / indices down to the leaves."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, prefix + (index,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw, valid: Any, max_edits: int = 3) -> Any:
    """`valid` (a JSON document) with a few edits at random positions: a value replaced by one of another
    type or by junk, a key or item dropped, an unknown key added, an item duplicated, a value wrapped in a
    list or an object. Mostly one edit, so that the document gets past the first check it breaks."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, max_edits]))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths[1:] or paths))  # the root itself: see json_file's raw garbage
        op = draw(st.sampled_from(["retype", "retype", "replace", "drop", "add", "duplicate", "wrap"]))
        target = _get(doc, path)
        if op == "drop" and path:
            del _get(doc, path[:-1])[path[-1]]
            continue
        if op == "duplicate" and path and isinstance(_get(doc, path[:-1]), list):
            _get(doc, path[:-1]).append(copy.deepcopy(target))
            continue
        if op == "add" and isinstance(target, dict):
            target[draw(st.one_of(TEXT, SPECIAL_TEXT))] = draw(JUNK)
            continue
        if op == "retype":
            new = draw(_retyped(target))
        elif op == "wrap":
            new = draw(st.sampled_from([[target], {"value": target}]))
        else:
            new = draw(JUNK)
        if not path:
            doc = new
        else:
            _get(doc, path[:-1])[path[-1]] = new
    return doc


def encode(doc: Any) -> bytes:
    """JSON bytes of `doc` (NaN and Infinity written as Python's json writes them; the HUGE_INT and DEEP
    markers expanded into literals no encoder would write)."""
    text = json.dumps(doc, allow_nan=True)
    for marker, literal in _LITERALS.items():
        text = text.replace(json.dumps(marker), literal)
    return text.encode("utf-8")


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """`data` damaged the way files get damaged: cut short, a byte flipped, invalid UTF-8 inserted, a BOM
    prepended, re-encoded as UTF-16, emptied."""
    how = draw(st.sampled_from(["cut", "cut", "flip", "bad utf-8", "bom", "utf-16", "empty"]))
    if how == "cut":
        return data[:draw(st.integers(0, max(0, len(data) - 1)))]
    if how == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    if how == "bad utf-8":
        at = draw(st.integers(0, len(data)))
        return data[:at] + b"\xff\xfe\xc3" + data[at:]
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "utf-16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if how == "empty":
        return b""
    return data


def json_file(valid: Any) -> st.SearchStrategy[bytes]:
    """The bytes of a JSON file: mostly `valid` with a few values broken (what reaches the deeper checks),
    else its bytes damaged, both, or raw garbage."""
    edited = mutated(valid).map(encode)
    return st.one_of(edited, edited, edited, edited, edited.flatmap(damaged),
                     st.just(encode(valid)).flatmap(damaged), st.binary(max_size=64))


def jsonl_file(valid_lines: Sequence[Any]) -> st.SearchStrategy[bytes]:
    """The bytes of a JSON-lines file: lines kept, broken, blank, repeated or garbage; sometimes damaged."""
    line = st.sampled_from(list(valid_lines)).flatmap(
        lambda v: st.one_of(st.just(v), mutated(v, max_edits=2))).map(encode)
    lines = st.lists(st.one_of(line, line, line, st.just(b""), st.binary(max_size=20)), min_size=1, max_size=5)
    edited = lines.map(lambda ls: b"\n".join(ls) + b"\n")
    return st.one_of(edited, edited, edited, edited.flatmap(damaged), st.binary(max_size=64))


def png_claiming(size: tuple[int, int]) -> bytes:
    """A PNG whose header claims `size` (width, height) but holds almost no data: a decompression bomb's
    shape, a few dozen bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", size[0], size[1], 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------------- running

@dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str
    warned: list[str]  # Python warnings: a terminal shows them on stderr, above the error line

    def __str__(self) -> str:
        return (f"mllmcl {' '.join(self.argv)!r} -> exit {self.code}\nstdout: {self.out[-2000:]}\n"
                f"stderr: {self.err[-2000:]}\nwarnings: {self.warned}")


def cli(argv: Sequence[str]) -> Outcome:
    """Run `mllmcl argv` in this process; stdout and stderr are strict UTF-8 streams, like a terminal's, and
    the warnings Python would print there (its default filters) are recorded."""
    streams = [io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="\n", write_through=True) for _ in range(2)]
    with contextlib.redirect_stdout(streams[0]), contextlib.redirect_stderr(streams[1]), \
            warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", DeprecationWarning)  # shown only for code run as __main__
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:  # argparse: --help, usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = (s.buffer.getvalue().decode("utf-8") for s in streams)
    return Outcome([str(a) for a in argv], code, out, err, [f"{w.category.__name__}: {w.message}" for w in caught])


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folders` (hidden ones too): path -> (size, mtime_ns)."""
    seen = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                stat = path.lstat()
                seen[str(path)] = (stat.st_size if name in filenames else 0, stat.st_mtime_ns)
    return seen


def assert_one_line_error(outcome: Outcome, names: Iterable[str | Path]) -> str:
    """Exit 2 with exactly one stderr line `mllmcl: error: …` naming one of `names`; returns that line."""
    assert outcome.code == 2, str(outcome)
    lines = outcome.err.splitlines()
    assert len(lines) == 1 and not outcome.warned, str(outcome)
    assert lines[0].startswith("mllmcl: error: "), str(outcome)
    assert "Traceback" not in outcome.err, str(outcome)
    names = [str(n) for n in names]
    assert any(n in lines[0] for n in names), f"the error names none of {names}:\n{outcome}"
    return lines[0]


def assert_keeps_promise(outcome: Outcome, names: Iterable[str | Path], *, ok: Iterable[int] = (0,),
                         before: dict | None = None, after: dict | None = None) -> bool:
    """The property: success (an exit status in `ok`), or the one-line error naming one of `names` with
    nothing written (`before` == `after`, snapshots of the folders the command may write). True on success."""
    if outcome.code in tuple(ok):
        assert "Traceback" not in outcome.err, str(outcome)
        return True
    assert_one_line_error(outcome, names)
    if before is not None:
        assert after == before, f"files changed although the command failed:\n{outcome}"
    return False


def assert_user_error(err: BaseException, names: Iterable[str | Path]) -> None:
    """A UserError raised by the library: one line, naming one of `names`."""
    text = str(err)
    assert "\n" not in text and "\r" not in text, f"a multi-line message: {text!r}"
    names = [str(n) for n in names]
    assert any(n in text for n in names), f"{text!r} names none of {names}"


@contextlib.contextmanager
def one_thread():
    """Torch on one thread: the micro model's forward passes are tiny, and splitting them across the
    cores of a busy machine made each `mllmcl ask` several times slower (0.6 s against 0.1 s, measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
