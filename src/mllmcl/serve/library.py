"""The expert library on disk: experts, versions of the routed model, the pointer to the current one, and an
audit log. It holds no model code: `serve/routed.py` loads a version, `serve/grow.py` changes the library.

    LIB/
      library.json               the manifest: base backbone, the current version number and that version's
                                 whole manifest (experts, router state, threshold), the history of versions
                                 and of pointer moves. Replaced atomically: switching it switches the version.
      versions/v0001/            one version, immutable: version.json (its manifest) and router/ (state)
      experts/<name>-<sha12>/    one expert, immutable, shared by every version that holds it: adapter/ (peft),
                                 buffer.json (router buffer, LLaVA rows), heldout.json (held-out rows, test
                                 format), images/
      reports/<stamp>-<action>.json   each candidate's evaluation and gate verdict, accepted or not
      audit.jsonl                one line per attempted change: time, command, data fingerprint, gate result
      .lock                      held while the library changes (one writer at a time)

A version folder is written under a temporary name and renamed into place; an expert folder is staged
under `.staging/` and moved into `experts/` only when its version is accepted; the pointer file is replaced
with an atomic rename. So a reader sees either the old library or the new one, and a rejected candidate
leaves only its report and its audit line."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from mllmcl.data.mllm_cl import Problem, Sample, parse_rows, read_rows
from mllmcl.data.tasks import TaskSpec
from mllmcl.core.errors import UserError
from mllmcl.serve.manifest import check_library_manifest, check_version_manifest
from mllmcl.core.io import json_lines, read_json, write_json_atomic, write_text_atomic

MANIFEST = "library.json"
FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED = ("auto", "base")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_expert_name(name: str) -> str:
    """An expert's name is what clients send as `model`: short, plain, not `auto` or `base`."""
    if not isinstance(name, str) or not _NAME.match(name) or name.lower() in RESERVED:
        raise UserError(f"invalid expert name {name!r}: 1-64 letters, digits, '_', '-' or '.', not auto or base")
    return name


# --- fingerprints -----------------------------------------------------------------------------------

def folder_sha256(folder: Path) -> str:
    """sha256 over a folder's files (relative path and bytes, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def data_fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 of training data as the engine sees it: every turn of every row and the bytes of its image."""
    digest = hashlib.sha256()
    images: dict[Path, bytes] = {}
    for s in samples:
        if s.image not in images:
            try:
                images[s.image] = hashlib.sha256(Path(s.image).read_bytes()).digest()
            except OSError as err:
                raise UserError(f"{s.image}: cannot read the image of row {s.id!r} ({err})") from None
        digest.update(json.dumps([list(t) for t in s.turns], ensure_ascii=False).encode() + images[s.image])
    return digest.hexdigest()


# --- records -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExpertRecord:
    """One expert as a version lists it: `path` (relative to the library) holds adapter/, buffer.json and
    heldout.json; `sha256` is the adapter's, `data` the fingerprint of its training data; `scores` what the
    version measured on its held-out rows (accuracy %, share routed to it %)."""

    name: str
    description: str
    path: str
    sha256: str
    data: str
    scorer: str
    max_new_tokens: int
    heldout: int
    scores: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: Path) -> "ExpertRecord":
        try:
            return cls(**values)
        except TypeError as err:
            raise UserError(f"{where}: an expert entry is malformed ({err})") from None


# --- the library ----------------------------------------------------------------------------------------

class Library:
    """An expert library folder (see the module docstring). `manifest` is library.json as read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = self._read(self.path / MANIFEST)

    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    @staticmethod
    def _read(path: Path) -> dict:
        if not path.is_file():
            raise UserError(f"{path.parent}: not an expert library ({MANIFEST} missing); make one with "
                            "`mllmcl library export --run RUN --out LIB`")
        data = read_json(path, "library manifest")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{path}: library format {data.get('format') if isinstance(data, dict) else None!r}, "
                            f"this mllmcl reads {FORMAT}")
        check_library_manifest(data, path)
        return data

    def reload(self) -> None:
        self.manifest = self._read(self.path / MANIFEST)

    # -- reading
    @property
    def current(self) -> int:
        return int(self.manifest["current"])

    def version_folder(self, version: int) -> Path:
        return self.path / "versions" / f"v{version:04d}"

    def manifest_file(self, version: int | None = None) -> Path:
        """The file `version`'s manifest is read from: library.json for the current one (it holds a copy),
        else the version's own version.json."""
        if version is None or version == self.current:
            return self.path / MANIFEST
        return self.version_folder(version) / "version.json"

    def version(self, version: int | None = None) -> dict:
        """The manifest of `version` (default: the current one)."""
        path = self.manifest_file(version)
        if path.name == MANIFEST:
            if self.manifest["version"] is None:
                raise UserError(f"{self.path}: holds no version yet (its export or first change did not finish); "
                                "export the run again into a new folder")
            return self.manifest["version"]
        if not path.is_file():
            known = ", ".join(str(v["version"]) for v in self.manifest.get("versions", []))
            raise UserError(f"{self.path}: no version {version} (versions: {known})")
        manifest = read_json(path, "version manifest")
        check_version_manifest(manifest, path)
        return manifest

    def experts(self, version: int | None = None) -> list[ExpertRecord]:
        manifest = self.version(version)
        return [ExpertRecord.from_dict(e, self.path / MANIFEST) for e in manifest["experts"]]

    def buffer(self, record: ExpertRecord) -> tuple[Sample, ...]:
        folder = self.path / record.path
        return read_samples(folder / "buffer.json", "train", folder, record)

    def heldout(self, record: ExpertRecord) -> tuple[Sample, ...]:
        folder = self.path / record.path
        return read_samples(folder / "heldout.json", "test", folder, record)

    # -- writing
    @classmethod
    def create(cls, path: str | Path, backbone: str, source: dict) -> "Library":
        """An empty library at `path` (a new or empty folder): no version yet."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"{path}: already exists and is not an empty folder; pick a new --out")
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path / MANIFEST, {"format": FORMAT, "backbone": backbone, "source": source,
                                            "created": now(), "current": 0, "version": None, "versions": [],
                                            "history": []})
        return cls(path)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time (a second `expert add` waits for the first)."""
        with open(self.path / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self.reload()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def staging(self) -> Path:
        """A fresh private folder under `.staging/` (removed by the caller, or by `discard_staging`)."""
        root = self.path / ".staging"
        root.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(dir=root, prefix="candidate-"))

    def adopt_expert(self, staged: Path, name: str, sha: str) -> str:
        """Move a staged expert folder into experts/ (content-addressed; an identical one is kept); returns its
        path relative to the library."""
        rel = f"experts/{name}-{sha[:12]}"
        final = self.path / rel
        final.parent.mkdir(exist_ok=True)
        if final.exists():
            shutil.rmtree(staged)
        else:
            os.replace(staged, final)
        return rel

    def commit(self, manifest: dict, write_state, action: dict) -> int:
        """Write a new immutable version (`manifest`, and `write_state(folder)` for its router state) and make
        it current. Returns its number."""
        number = max([v["version"] for v in self.manifest["versions"]], default=0) + 1
        versions = self.path / "versions"
        versions.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=versions, prefix=f".v{number:04d}."))
        manifest = {**manifest, "version": number, "parent": self.current or None, "created": now(),
                    "router": {**manifest["router"], "state": f"versions/v{number:04d}/router"}}
        try:
            write_state(tmp / "router")
            write_json_atomic(tmp / "version.json", manifest)
            os.replace(tmp, self.version_folder(number))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        summary = {"version": number, "created": manifest["created"], "parent": manifest["parent"],
                   "change": manifest.get("change"), "experts": [e["name"] for e in manifest["experts"]]}
        self._point(number, manifest, {**action, "to": number}, versions=[*self.manifest["versions"], summary])
        return number

    def set_current(self, version: int, action: dict) -> None:
        """Move the pointer to an existing version (a rollback)."""
        self._point(version, self.version(version), {**action, "to": version})

    def _point(self, version: int, manifest: dict, action: dict, versions: list | None = None) -> None:
        new = {**self.manifest, "current": version, "version": manifest,
               "history": [*self.manifest["history"], {"time": now(), "from": self.current or None, **action}]}
        if versions is not None:
            new["versions"] = versions
        write_json_atomic(self.path / MANIFEST, new)  # the switch: one atomic rename
        self.manifest = new

    def audit(self, entry: dict) -> None:
        """Append one line to audit.jsonl (flushed to disk before returning)."""
        line = json.dumps({"time": now(), **entry}, ensure_ascii=False) + "\n"
        with open(self.path / "audit.jsonl", "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def write_report(self, action: str, report: dict) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.path / "reports" / f"{stamp}-{action}.json"
        write_json_atomic(path, report)
        return path

    def audit_lines(self) -> list[dict]:
        path = self.path / "audit.jsonl"
        if not path.is_file():
            return []
        lines = path.read_bytes().splitlines()
        return [entry for _, entry in json_lines(lines, path, "an audit entry (a JSON object)")]


# --- rows in an expert folder -------------------------------------------------------------------------------

def _spec(record: ExpertRecord) -> TaskSpec:
    return TaskSpec(record.name, "library", record.scorer, record.description, (".",), (".",),
                    max_new_tokens=record.max_new_tokens)


def read_samples(path: Path, kind: str, base: Path, record: ExpertRecord) -> tuple[Sample, ...]:
    problems: list[Problem] = []
    rows = read_rows(path, problems)
    parsed = parse_rows(rows or [], path, problems, kind=kind, base=base, spec=_spec(record), task=record.name)
    if problems:
        raise UserError(str(problems[0]))
    return tuple(s for _, s in parsed)


def write_expert_rows(folder: Path, buffer: Sequence[Sample], heldout: Sequence[Sample]) -> None:
    """buffer.json (LLaVA conversation rows) and heldout.json (test rows whose `text` is the full prompt) in
    `folder`, with copies of their images under images/ (the library does not depend on the data root)."""
    images: dict[Path, str] = {}

    def copy(image: Path) -> str:
        if image not in images:
            rel = f"images/{len(images):06d}{Path(image).suffix.lower() or '.png'}"
            (folder / "images").mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(image, folder / rel)
            except OSError as err:
                raise UserError(f"{image}: cannot copy the image into the library ({err})") from None
            images[image] = rel
        return images[image]

    def conversation(turns) -> list[dict]:
        return [turn for k, (q, a) in enumerate(turns)
                for turn in ({"from": "human", "value": f"<image>\n{q}" if k == 0 else q}, {"from": "gpt", "value": a})]

    buffer_rows = [{"id": s.id, "image": copy(s.image), "conversations": conversation(s.turns)} for s in buffer]
    heldout_rows = [{**{k: v for k, v in s.row.items() if k not in ("image", "conversations", "id")},
                     "question_id": s.id, "image": copy(s.image), "text": s.question, "answer": s.answer}
                    for s in heldout]
    write_text_atomic(folder / "buffer.json", json.dumps(buffer_rows, ensure_ascii=False))
    write_text_atomic(folder / "heldout.json", json.dumps(heldout_rows, ensure_ascii=False))


__all__ = ["ExpertRecord", "Library", "RESERVED", "check_expert_name", "data_fingerprint", "folder_sha256",
           "read_samples", "write_expert_rows"]
