"""`mllmcl data synth`: write the synthetic benchmark in the official MLLM-CL layout.

    OUT/mllmcl.json                 manifest: setting, task folders, router/replay files
    OUT/synth.json                  how it was drawn (the SynthSpec and the generator's fingerprint), so a
                                    cached copy is reused only if both are equal
    OUT/RS/images/*.png             DCL: one folder per task with train.json, val.json and test.json
    OUT/RS/train.json, val.json, test.json
    OUT/OCR/images, train.json      ACL: training folder …
    OUT/OCR_test/images, val.json, test.json   … and a separate test folder, as in the release
    OUT/router/train.json           k training samples per task for the MLLM router (paths from OUT)
    OUT/replay/train.json           k training samples per task for replay methods (paths from OUT)
    OUT/unseen/images, test.json    DCL: test rows of a held-out domain no method trains on (`unseen`)

Training questions are written as the official evaluation will ask them at test time (the task's prompt
rule applied, e.g. Fin's answer-format suffix), so what an expert learns is what it is asked.

`val.json` holds validation rows in the test format, drawn from the test distribution (the shifted one in
ACL) with item seeds of their own (split "val"), so no validation item is a test item: tune drawers,
recipes and router settings on it, never on test (the MLLM router's rank and learning rate were chosen
before it existed; docs/methods.md says so). The real release has no validation file.

DCL knobs (`mllmcl.data.synth.shared`): `overlap`, the share of items asked in question formats shared by
all domains; `visual_overlap`, the share drawn with backdrops from a pool shared by all domains; `skill`, the
share asking the skill common to all domains (one rule everywhere); `unseen`,
the number of test items of the held-out domain (`mllmcl.data.synth.unseen`), recorded by the manifest's
`unseen` key and loaded as `Benchmark.unseen`, never as a task.

The folder is written under a temporary name and renamed into place when complete, so an interrupted
run leaves no half-written dataset; asking again for the same dataset returns the existing one, and of two
processes drawing the same dataset at once (two runs sharing a cache), the one that finishes second keeps
the first one's copy.

Cache key: a dataset is a function of its `SynthSpec` and of the generator's code, so `synth.json` also
stores `synth_fingerprint()`, a hash of that code (and of the libraries that draw the pixels). A folder
drawn by other code is refused, never reused; put the fingerprint in a cache folder's name to keep one
copy per generator version side by side.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy
import PIL

from mllmcl.data import tasks as task_definitions
from mllmcl.data.synth import MODULES, synth_task
from mllmcl.data.synth.rows import image_name, question_row, conversation_row
from mllmcl.data.synth.shared import DEFAULT_SKILL, draw_item
from mllmcl.data.tasks import UNSEEN, builtin_spec, write_manifest
from mllmcl.core.errors import UserError
from mllmcl.core.parallel import cpu_cores
from mllmcl.core.io import is_file, read_json

SPEC_FILE = "synth.json"
ROUTER_FILE, REPLAY_FILE = "router/train.json", "replay/train.json"
UNSEEN_DIR = "unseen"


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines a synthetic dataset; stored in its manifest."""

    setting: str = "dcl"
    train: int = 2000       # training items per task
    test: int = 300         # test items per task
    val: int = 100          # validation items per task (test distribution, own seeds); 0: no val.json
    seed: int = 0
    image_size: int = 48    # px; the tiny backbone's input size
    router_k: int = 20      # router-training samples per task
    replay_k: int = 20      # replay samples per task
    overlap: float | None = None  # dcl: share of items in question formats shared by all domains; None: 1 for dcl
    visual_overlap: float = 0.0  # dcl: share of items with backdrops from the pool shared by all domains
    skill: float | None = None   # dcl: share of items asking the skill common to all domains; None: DEFAULT_SKILL
    unseen: int | None = None    # test items of the held-out domain; None: 100 for dcl, 0 for acl

    def __post_init__(self):
        if self.setting not in MODULES:
            raise UserError(f"unknown setting {self.setting!r}; known: {', '.join(MODULES)}")
        if self.overlap is None:
            object.__setattr__(self, "overlap", 1.0 if self.setting == "dcl" else 0.0)
        if self.skill is None:
            object.__setattr__(self, "skill", DEFAULT_SKILL if self.setting == "dcl" else 0.0)
        for key in ("overlap", "visual_overlap", "skill"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise UserError(f"synth {key} must be a number between 0 and 1, got {value!r}")
            if value and self.setting != "dcl":
                raise UserError(f"synth {key} is defined for dcl (the five domains), not {self.setting}; got {value}")
            object.__setattr__(self, key, float(value))
        if self.unseen is None:
            object.__setattr__(self, "unseen", 100 if self.setting == "dcl" else 0)
        if self.unseen < 0 or (self.unseen and self.setting != "dcl"):
            raise UserError(f"synth unseen is 0 or more test items of a held-out domain, defined for dcl; "
                            f"got {self.unseen} for {self.setting}")
        for key in ("train", "test", "image_size"):
            if getattr(self, key) < 1:
                raise UserError(f"synth {key} must be positive, got {getattr(self, key)}")
        if self.val < 0:
            raise UserError(f"synth val must be 0 or more, got {self.val}")
        for key in ("router_k", "replay_k"):
            if not 0 <= getattr(self, key) <= self.train:
                raise UserError(f"synth {key} must be between 0 and train={self.train}, got {getattr(self, key)}")


def fingerprint_inputs() -> list[tuple[str, bytes]]:
    """What a synthetic dataset depends on besides its `SynthSpec`, as (name, bytes) pairs: the source of
    every module of `mllmcl.data.synth` (drawers, helpers, row formats, the writer), of `mllmcl.data.tasks`
    (the prompt rules applied to written questions, the manifest), and the versions of Pillow (fonts,
    drawing, resampling) and numpy (the texture streams of `numpy.random.Generator` may change between
    releases). The package's files are listed from its folder rather than named here: a hand-kept list
    would have the failure this replaces (a new helper module forgotten, stale data reused)."""
    package = Path(__file__).parent
    files = sorted(package.glob("*.py")) + [Path(task_definitions.__file__)]
    inputs = [(f"mllmcl/data/{path.relative_to(package.parent).as_posix()}", path.read_bytes()) for path in files]
    return inputs + [("Pillow", PIL.__version__.encode()), ("numpy", numpy.__version__.encode())]


def synth_fingerprint() -> str:
    """12 hex digits of the sha256 of `fingerprint_inputs()`: changes whenever the generator's code (or
    Pillow / numpy) changes; short enough for a cache folder name."""
    digest = hashlib.sha256()
    for name, data in fingerprint_inputs():
        for part in (name.encode(), data):  # length-prefixed, so no two input lists hash alike
            digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:12]


def cache_name(spec: SynthSpec) -> str:
    """The cache folder of `spec` drawn by this code: readable sizes and seed, then a digest of the whole spec
    and the generator's fingerprint, so a changed drawer or knob never reuses an old folder."""
    digest = hashlib.sha256(json.dumps(_stamp(spec), sort_keys=True).encode()).hexdigest()[:10]
    return f"{spec.setting}-{spec.train}-{spec.test}-s{spec.seed}-{digest}"


def _stamp(spec: SynthSpec) -> dict:
    """The content of `synth.json`: the spec and the fingerprint of the code that draws it."""
    return {**asdict(spec), "fingerprint": synth_fingerprint()}


def task_folders(setting: str, task: str) -> tuple[str, str]:
    """(train folder, test folder) of `task` in the README layout."""
    return (task, task) if setting == "dcl" else (task, f"{task}_test")


def write_synth(out: str | Path, spec: SynthSpec = SynthSpec(), progress: bool = True) -> Path:
    """Write the dataset `spec` to `out` (or return `out` if it already holds exactly that dataset)."""
    out = Path(out)
    blocked = next((p for p in (out, *out.parents) if is_file(p)), None)
    if blocked is not None:
        raise UserError(f"{out}: cannot write the dataset here ({blocked} is a file, not a folder)")
    if (out / SPEC_FILE).exists():
        existing, wanted = read_json(out / SPEC_FILE, "synthetic dataset spec"), _stamp(spec)
        if not isinstance(existing, dict):
            raise UserError(f"{out / SPEC_FILE}: not a synthetic dataset's spec (a JSON object); "
                            "choose another --out or delete it")
        if existing == wanted:
            return out
        same_spec = {k: v for k, v in existing.items() if k not in ("fingerprint", "version")} == asdict(spec)
        if same_spec:  # "version": the hand-bumped number that the fingerprint replaced
            raise UserError(f"{out} was drawn by other generator code (fingerprint "
                            f"{existing.get('fingerprint', 'none')}, this code {wanted['fingerprint']}); "
                            "delete it or choose another --out")
        raise UserError(f"{out} already holds another synthetic dataset ({out / SPEC_FILE}: {existing}); "
                        "choose another --out or delete it")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not a synthetic dataset; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        _write_into(tmp, spec, progress)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not _holds(out, spec):
            raise
        # another process (a second run sharing the cache) finished the same dataset first: use its copy
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _holds(out: Path, spec: SynthSpec) -> bool:
    """Whether `out` holds exactly the dataset `spec`, complete (its spec file is written last)."""
    try:
        return json.loads((out / SPEC_FILE).read_text()) == _stamp(spec)
    except (OSError, ValueError):
        return False


# Below this many images one process draws them all: starting helper processes would cost more.
PARALLEL_FROM = 2000


def _write_into(root: Path, spec: SynthSpec, progress: bool) -> None:
    from tqdm.auto import tqdm

    tasks = list(MODULES[spec.setting])
    total = len(tasks) * (spec.train + spec.val + spec.test) + spec.unseen
    bar = tqdm(total=total, desc=f"synth {spec.setting}", unit="image", disable=not progress, dynamic_ncols=True)
    with _drawers(total) as pool:
        _write_tasks(root, spec, tasks, bar, pool)


@contextmanager
def _drawers(total: int):
    """Processes drawing the items of a large dataset, one per CPU core (each item is drawn from its own
    seeds, so the files are the same byte for byte however many draw them); None for a small one."""
    cores = cpu_cores()
    if cores < 2 or total < PARALLEL_FROM:
        yield None
        return
    with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _write_tasks(root: Path, spec: SynthSpec, tasks: list[str], bar, pool) -> None:
    router, replay, specs = [], [], []
    for name in tasks:
        train_dir, test_dir = task_folders(spec.setting, name)
        task_spec = replace(builtin_spec(name), folders=(train_dir,), test_folders=(test_dir,))

        def as_asked(item, task_name, index, image, split):
            return conversation_row(replace(item, question=task_spec.prompt(item.question, item.answer)), task_name,
                                    index, image)

        train_rows = _write_split(root / train_dir, name, "train", spec.train, spec, as_asked, bar, pool)
        test_rows = _write_split(root / test_dir, name, "test", spec.test, spec, question_row, bar, pool)
        _dump(root / train_dir / "train.json", train_rows)
        _dump(root / test_dir / "test.json", test_rows)
        if spec.val:
            val_rows = _write_split(root / test_dir, name, "val", spec.val, spec, question_row, bar, pool)
            _dump(root / test_dir / "val.json", val_rows)
        rng = random.Random(f"mllmcl-synth/{spec.seed}/{name}/buffers")
        router += [_from_root(train_rows[i], train_dir, name) for i in sorted(rng.sample(range(spec.train), spec.router_k))]
        replay += [_from_root(train_rows[i], train_dir, name) for i in sorted(rng.sample(range(spec.train), spec.replay_k))]
        specs.append(task_spec)
    unseen = None
    if spec.unseen:  # a held-out domain: test rows only, never a task
        unseen = f"{UNSEEN_DIR}/test.json"
        rows = _write_split(root / UNSEEN_DIR, UNSEEN.name, "test", spec.unseen, spec, question_row, bar, pool)
        _dump(root / unseen, rows)
    bar.close()
    for path, rows in ((ROUTER_FILE, router), (REPLAY_FILE, replay)):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        _dump(root / path, rows)
    write_manifest(root, spec.setting, specs, router=ROUTER_FILE, replay=REPLAY_FILE, unseen=unseen)
    (root / SPEC_FILE).write_text(json.dumps(_stamp(spec), indent=2) + "\n")


def _write_split(folder: Path, name: str, split: str, count: int, spec: SynthSpec, make_row, bar,
                 pool: ProcessPoolExecutor | None) -> list[dict]:
    """Draw, save and turn into rows `count` items of `split` (in `pool` when given); "val" is drawn like
    "test" from its own seeds."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    draw = partial(_draw_and_save, folder, name, split, spec)
    items = pool.map(draw, range(count), chunksize=50) if pool is not None else map(draw, range(count))
    rows = []
    for index, item in enumerate(items):
        rows.append(make_row(item, name, index, image_name(item, split, index), split))
        bar.update(1)
    return rows


def _draw_and_save(folder: Path, name: str, split: str, spec: SynthSpec, index: int):
    """Item `index` of `split` of task `name`, its image saved under `folder`; returned without the image."""
    item = draw_item(synth_task(name), spec.seed, split, index, spec.image_size, spec.overlap, spec.visual_overlap,
                     spec.skill)
    item.image.save(folder / image_name(item, split, index))
    return replace(item, image=None)


def _from_root(row: dict, folder: str, task: str) -> dict:
    """A training row re-rooted at the data root (router and replay files), tagged with its task."""
    return {**row, "image": f"{folder}/{row['image']}", "task": task}


def _dump(path: Path, rows) -> None:
    path.write_text(json.dumps(rows, indent=1) + "\n")
