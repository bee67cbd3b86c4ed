"""`mllmcl data check`: validate every row and every image of an MLLM-CL data root and report all problems.

Rows are validated by the same parser the loader uses, and every item's answer against the answer format its
question asks for (`mllmcl.data.answer_formats`: the row's `answer_format`, the instruction its prompt ends
with); validation files (`val.json`, where a root has them)
are validated like test files, and so are the held-out rows a manifest names (`unseen`). Each distinct image is checked once: by default it
must exist and pass PIL's `verify()`, which reads the header and the file's structure (for PNG also the
chunk checksums) but does not decode the pixels, so a truncated JPEG body can pass; `decode=True` opens and
fully decodes every image instead (several times slower).
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image
from tqdm import tqdm

from mllmcl.data.answer_formats import format_problem
from mllmcl.data.mllm_cl import Parsed, Problem, load_layout, read_extra, read_task, read_unseen, select
from mllmcl.core.io import is_dir, is_file


@dataclass(frozen=True)
class FileReport:
    """One file: its path, how many rows parsed and how many distinct images they name."""

    path: Path
    rows: int
    images: int


@dataclass(frozen=True)
class TaskReport:
    """One task: its train and test files (None when not found) and how many router/replay rows are its."""

    name: str
    train: FileReport | None
    test: FileReport | None
    router: int = 0
    replay: int = 0
    val: FileReport | None = None  # optional: the release has no validation file


@dataclass
class CheckReport:
    """The outcome of `check_benchmark`: counts per file and every problem found (empty when all is well)."""

    root: Path
    setting: str
    manifest: Path | None
    tasks: list[TaskReport]
    router: FileReport | None
    replay: FileReport | None
    images_checked: int
    decode: bool
    looked_for: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unassigned: dict[str, int] = field(default_factory=dict)
    """Router/replay rows that belong to none of the checked tasks (no task, or a task not checked)."""
    unseen: FileReport | None = None  # held-out test rows the manifest names, if any

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON-ready object: row counts per task (train and test files; router and
        replay rows of the task), every problem with its file, row index and id, and `ok`."""
        def rows(report: FileReport | None) -> int:
            return report.rows if report else 0

        return {
            "tasks": {t.name: {"train": rows(t.train), "test": rows(t.test), "val": rows(t.val), "router": t.router,
                               "replay": t.replay} for t in self.tasks},
            "unseen": rows(self.unseen),
            "problems": [{"file": str(p.file), "row": p.row, "id": p.id, "message": p.message}
                         for p in self.problems],
            "ok": self.ok,
            "root": str(self.root), "setting": self.setting,
            "unassigned": {"router": self.unassigned.get("router", 0), "replay": self.unassigned.get("replay", 0)},
            "notes": list(self.notes),
        }

    def format(self, limit: int = 20) -> str:
        """A plain-text report: a table of counts, then the first `limit` problems and how many more."""
        def rel(path: Path | None) -> str:
            if path is None:
                return "-"
            return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

        lines = [f"data root {self.root}  setting {self.setting}  "
                 f"manifest {rel(self.manifest) if self.manifest else '(none: built-in definitions)'}"]
        header = f"{'task':<8}{'train rows':>11}{'images':>9}{'test rows':>11}{'images':>9}{'val rows':>10}  files"
        lines += [header, "-" * len(header)]
        for t in self.tasks:
            tr, te, va = t.train, t.test, t.val
            lines.append(f"{t.name:<8}{tr.rows if tr else '-':>11}{tr.images if tr else '-':>9}"
                         f"{te.rows if te else '-':>11}{te.images if te else '-':>9}{va.rows if va else '-':>10}  "
                         f"{rel(tr.path if tr else None)}, {rel(te.path if te else None)}"
                         + (f", {rel(va.path)}" if va else ""))
        for name, extra in (("router", self.router), ("replay", self.replay)):
            looked = ", ".join(self.looked_for.get(name, [])) or "nothing"
            lines.append(f"{name}: {rel(extra.path)}: {extra.rows} rows, {extra.images} images" if extra
                         else f"{name}: none found (looked for {looked})")
        if self.unseen:
            lines.append(f"unseen (held-out domain, not a task): {rel(self.unseen.path)}: {self.unseen.rows} rows, "
                         f"{self.unseen.images} images")
        how = "opened and fully decoded" if self.decode else "exist and pass PIL verify(), pixels not decoded"
        lines.append(f"{self.images_checked} distinct images checked ({how})")
        lines += [f"note: {n}" for n in self.notes]
        if self.ok:
            lines.append("OK")
        else:
            shown = self.problems[:limit]
            lines.append(f"FAILED: {len(self.problems)} problem(s)" +
                         (f", first {len(shown)} shown:" if len(shown) < len(self.problems) else ":"))
            lines += [f"  {p}" for p in shown]
            if len(self.problems) > len(shown):
                lines.append(f"  … and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


def _file_report(path: Path | None, parsed: Parsed) -> FileReport | None:
    return None if path is None else FileReport(path, len(parsed), len({s.image for _, s in parsed}))


def check_image(path: Path, decode: bool = False) -> str | None:
    """None if the image is fine, else what is wrong with it."""
    if not is_file(path):
        return "image not found" if not is_dir(path) else "a folder, not an image file"
    try:
        with Image.open(path) as image:
            if decode:
                image.load()
            else:
                image.verify()
    except Exception as err:  # PIL raises many types for corrupt files; all mean "cannot decode"
        return f"cannot decode image ({type(err).__name__}: {err})"
    return None


def _check_images(refs: dict[Path, tuple[Path, int, str, int]], decode: bool, workers: int,
                  progress: bool) -> list[Problem]:
    paths = list(refs)
    problems = []
    chunk = 4096  # bounded number of pending futures, even for a million images
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(paths), desc="images", unit="img", disable=not progress or not paths) as bar:
        for start in range(0, len(paths), chunk):
            part = paths[start:start + chunk]
            for path, error in zip(part, pool.map(lambda p: check_image(p, decode), part)):
                bar.update()
                if error:
                    file, row, sid, count = refs[path]
                    more = f" (and {count - 1} more rows)" if count > 1 else ""
                    problems.append(Problem(file, row, f"{error}: {path}{more}", sid))
    return problems


def check_benchmark(root: str | Path, setting: str | None = None, tasks: Sequence[str] | None = None, *,
                    decode: bool = False, workers: int | None = None, progress: bool = True,
                    **overrides: Any) -> CheckReport:
    """Check the data at `root` like `load_benchmark` reads it (same arguments and overrides), but collect
    every problem instead of stopping: missing files, malformed rows, repeated test ids, missing and
    undecodable images. Raises UserError only when the root or its manifest cannot be read at all."""
    path, layout = load_layout(root, setting, **overrides)
    problems: list[Problem] = []
    found = [read_task(path, spec, problems) for spec in select(layout.specs, tasks)]
    router_file, router_rows = read_extra(path, layout.router, layout.specs, problems, setting=layout.setting,
                                          router=True)
    replay_file, replay_rows = read_extra(path, layout.replay, layout.specs, problems, setting=layout.setting)
    unseen_file, unseen_rows = read_unseen(path, layout, problems)

    sources: list[tuple[Path | None, Parsed]] = [(d.train_file, d.train) for d in found]
    sources += [(d.test_file, d.test) for d in found] + [(d.val_file, d.val) for d in found]
    sources += [(router_file, router_rows), (replay_file, replay_rows), (unseen_file, unseen_rows)]
    refs: dict[Path, tuple[Path, int, str, int]] = {}  # image → first (file, row, id) naming it, row count
    renamed = 0
    for file, parsed in sources:
        for index, sample in parsed:
            # a router row answers with its expert's letter, not in the format its question asks for
            wrong = None if parsed is router_rows else format_problem(sample.row, sample.question, sample.answer)
            if wrong:
                problems.append(Problem(file, index, wrong, sample.id))
            renamed += sample.id != str(sample.row.get("question_id", sample.row.get("id")))
            first = refs.get(sample.image)
            refs[sample.image] = (file, index, sample.id, 1) if first is None else (*first[:3], first[3] + 1)
    problems += _check_images(refs, decode, workers or min(8, os.cpu_count() or 1), progress)

    notes = []
    if renamed:
        notes.append(f"{renamed} training row(s) repeat an earlier id in their file; they are loaded as "
                     "<id>#<row> (ids label training rows only)")
    per_task = {kind: Counter(s.task for _, s in parsed) for kind, parsed in (("router", router_rows),
                                                                              ("replay", replay_rows))}
    checked = {d.spec.name for d in found}
    unassigned = {kind: sum(n for task, n in counts.items() if task not in checked)
                  for kind, counts in per_task.items()}
    return CheckReport(path, layout.setting, layout.manifest,
                       [TaskReport(d.spec.name, _file_report(d.train_file, d.train), _file_report(d.test_file, d.test),
                                   per_task["router"][d.spec.name], per_task["replay"][d.spec.name],
                                   _file_report(d.val_file, d.val)) for d in found],
                       _file_report(router_file, router_rows), _file_report(replay_file, replay_rows),
                       len(refs), decode, {"router": [e.file for e in layout.router],
                                           "replay": [e.file for e in layout.replay]}, problems, notes, unassigned,
                       _file_report(unseen_file, unseen_rows))

