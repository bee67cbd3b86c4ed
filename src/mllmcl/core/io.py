"""File helpers shared by every reader and writer of user files.

Atomic writes: a result file is either the old one or the complete new one, never half-written.
Reads: `read_json` turns every way a JSON file can be unreadable into one `UserError` naming the file;
`is_file` / `is_dir` answer False for a path the OS cannot even look up (a name over 255 bytes, a NUL).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from mllmcl.core.errors import UserError


def parse_json(data: bytes | str) -> Any:
    """`json.loads(data)`; every way it can fail becomes a ValueError saying what is wrong (no path: the
    caller names the file). Bytes may be UTF-8, -16 or -32, as `json.loads` detects them."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        # err.msg can end in "at" ("Unterminated string starting at"): give the place apart from it
        raise ValueError(f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    except UnicodeDecodeError:
        raise ValueError("not valid JSON: not UTF-8 text") from None
    except RecursionError:
        raise ValueError("not valid JSON that can be read: nested too deeply") from None
    except ValueError as err:  # a number literal of more than 4300 digits
        raise ValueError(f"not valid JSON that can be read: {err}") from None


def read_json(path: str | Path, what: str = "file") -> Any:
    """The JSON value in `path`, or a UserError naming it: missing, a folder, unreadable, not JSON."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a JSON {what}") from None
    except (OSError, ValueError) as err:  # permission, a name too long, a NUL in the name
        raise UserError(f"{path}: cannot read the {what} ({getattr(err, 'strerror', None) or err})") from None
    try:
        return parse_json(data)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None


def json_lines(lines: Iterable[bytes], where: str | Path, what: str = "a JSON object") -> Iterator[tuple[str, dict]]:
    """The objects of a JSON-lines file's `lines` (blank ones skipped), each with its place `file:line`; a line
    that is not JSON, or not an object, is a UserError naming that place."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        place = f"{where}:{number}"
        try:
            item = parse_json(line)
        except ValueError as err:
            raise UserError(f"{place}: {err}") from None
        if not isinstance(item, dict):
            raise UserError(f"{place}: expected {what}")
        yield place, item


def is_file(path: str | Path) -> bool:
    """`Path.is_file`, but False (not an exception) for a path the OS refuses to look up."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: str | Path) -> bool:
    """`Path.is_dir`, but False (not an exception) for a path the OS refuses to look up."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to a temp file beside `path`, flush it to disk, then rename it over `path`. A path that
    cannot be written (a folder there, a file where a folder should be, no permission, disk full) is a
    UserError naming it, and leaves nothing behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp makes the file private (0600); keep the mode of the file we replace, else the usual 0644
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot write here ({getattr(err, 'strerror', None) or err})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UserError(f"{path}: cannot write here ({err.strerror or err})") from None
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """UTF-8; what UTF-8 cannot hold (a lone surrogate read from a JSON escape) is written escaped."""
    write_bytes_atomic(path, text.encode("utf-8", "backslashreplace"))


def write_json_atomic(path: str | Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def slug(name: str) -> str:
    """A file-name-safe form of a method, task or run name: `mr-lora[prototype]` -> `mr-lora_prototype_`."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    return safe or "_"
