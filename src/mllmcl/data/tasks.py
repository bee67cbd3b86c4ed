"""What the tasks of MLLM-CL are: one `TaskSpec` per task, the built-in definitions of the nine official
tasks, where their files lie on disk, and the `mllmcl.json` manifest that overrides all of it.

The released data is laid out twice over: the README's names (`RS/`, `OCR_test/`, …) and the names the
released scripts were run with (`RemoteSensing/`, `Medical/data/`, `math2/`, `CV-Benchv2/`, …). Each spec
lists every accepted folder, README name first; the loader takes the first one that holds the file.
Sources (github bjzhb666/MLLM-CL, commit 80bf389): README.md "Dataset"; scripts/LLaVA/Train_dom*/,
scripts/LLaVA/Train_ability*/ (training folders and file names); scripts/LLaVA/Eval_dom/,
scripts/LLaVA/Eval_ability/ (test folders); ETrain/Eval/LLaVA/CoIN/model_*.py (prompts, token limits).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mllmcl.core.errors import UserError
from mllmcl.core.io import is_file, read_json, write_json_atomic

SETTINGS = ("dcl", "acl")
MANIFEST = "mllmcl.json"


# --- prompt rules: what the official evaluation appends to a test prompt ------------------------------

FIN_YES_NO = " Only answer with yes or no directly."
FIN_LETTER = " Answer with the given letter directly, e.g., A, B, C, D."
LETTER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
"""LLaVA-1.5's multiple-choice instruction (its A-OKVQA data; MR-LoRA's router prompt uses it too)."""
SHORT_INSTRUCTION = "Answer the question using a single word or phrase."
"""LLaVA-1.5's short-answer instruction (its VQAv2 and GQA data): a word, a phrase, a number, or yes/no."""
FORMAT_INSTRUCTIONS = (LETTER_INSTRUCTION, SHORT_INSTRUCTION, FIN_YES_NO.strip(), FIN_LETTER.strip())
"""The answer-format instructions a prompt of the release ends with (LLaVA-1.5's two, Fin's two); what
`records.split_instruction` looks for."""


def _fin_suffix(text: str, answer: str) -> str:
    # model_fin.py: `if answer in ['Yes', 'No']` (case-sensitive) → yes/no suffix, else the letter suffix
    return text + (FIN_YES_NO if answer in ("Yes", "No") else FIN_LETTER)


PROMPT_RULES: dict[str, Callable[[str, str], str]] = {"fin": _fin_suffix}
"""Name → `rule(text, answer) -> prompt`. The loader applies it to test rows only (training rows of a data
root are used as written); the synthetic writer (`mllmcl.data.synth.write`) also applies it to the training
rows it writes, so Fin's synthetic training prompts end with the suffix its evaluation adds."""

RULE_SUFFIXES = (FIN_YES_NO.strip(), FIN_LETTER.strip())
"""What the prompt rules append: Fin's two suffixes, chosen from the ground-truth answer."""


def without_rule_suffix(prompt: str) -> str:
    """`prompt` without the suffix a prompt rule appends: the row's own `text`, what the official router reads.
    A router shown the suffix would be shown a cue derived from the answer (and one only Fin carries)."""
    tail = prompt.rstrip()
    for suffix in RULE_SUFFIXES:
        if tail.endswith(suffix):
            return tail[:-len(suffix)].rstrip()
    return prompt

# --- names ---------------------------------------------------------------------------------------------

def find_name(typed: str, names: Sequence[str]) -> str | None:
    """The name among `names` that the user meant by `typed`: the exact name, else the one name equal to it
    ignoring case (`rs`, `Rs` -> `RS`); None when there is none or the case-blind match is ambiguous."""
    if not isinstance(typed, str):
        return None
    if typed in names:
        return typed
    folded = [n for n in names if n.casefold() == typed.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


# --- the definition of a task -------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskSpec:
    """How to find, prompt and score one task.

    `folders` / `test_folders` are candidate folders relative to the data root, tried in order; the first
    that holds one of `train_files` / `test_files` is used. `val_files`: an optional validation file in
    the test format, looked for in the test folders (the synthetic benchmark writes one; the release has
    none). `description` is the one sentence the MLLM
    router prompt uses for the task's expert. `prompt_rule` names an entry of `PROMPT_RULES`.
    `answers_public` is False where the test set has no local ground truth (APP is scored by a server), so
    test rows may lack `answer`.
    """

    name: str
    setting: str
    scorer: str
    description: str
    folders: tuple[str, ...]
    test_folders: tuple[str, ...]
    train_files: tuple[str, ...] = ("train.json",)
    test_files: tuple[str, ...] = ("test.json",)
    val_files: tuple[str, ...] = ("val.json",)
    max_new_tokens: int = 128
    prompt_rule: str | None = None
    answers_public: bool = True

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if not self.name or not isinstance(self.name, str):
            raise UserError(f"a task needs a non-empty name, got {self.name!r}")
        for key in ("setting", "scorer", "description"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise UserError(f"{where}: {key!r} must be a non-empty string")
        for key in ("folders", "test_folders", "train_files", "test_files", "val_files"):
            value = getattr(self, key)
            if not value or not all(isinstance(v, str) and v for v in value):
                raise UserError(f"{where}: {key!r} must be a non-empty list of non-empty strings")
        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise UserError(f"{where}: 'max_new_tokens' must be a positive integer, got {self.max_new_tokens!r}")
        if self.prompt_rule is not None and (not isinstance(self.prompt_rule, str) or
                                             self.prompt_rule not in PROMPT_RULES):
            raise UserError(f"{where}: unknown prompt_rule {self.prompt_rule!r}; known: {', '.join(PROMPT_RULES)}")
        if not isinstance(self.answers_public, bool):
            raise UserError(f"{where}: 'answers_public' must be true or false")

    def prompt(self, text: str, answer: str) -> str:
        """The prompt the official evaluation feeds for a test row with this text and ground truth."""
        return PROMPT_RULES[self.prompt_rule](text, answer) if self.prompt_rule else text

    def to_manifest(self) -> dict[str, Any]:
        """This spec as a manifest task entry (the inverse of the manifest parser)."""
        return {"name": self.name, "folder": list(self.folders), "test_folder": list(self.test_folders),
                 "scorer": self.scorer, "description": self.description, "train_file": list(self.train_files),
                 "test_file": list(self.test_files), "val_file": list(self.val_files), "max_new_tokens": self.max_new_tokens,
                 "prompt_rule": self.prompt_rule, "answers_public": self.answers_public}


def _dcl(name: str, scorer: str, description: str, *folders: str, **kw: Any) -> TaskSpec:
    # DCL is IID: the eval scripts read test.json from the README folder (`RS/test.json`), the training
    # scripts train.json from theirs (`RemoteSensing/train.json`); a test file is accepted in either.
    return TaskSpec(name, "dcl", scorer, description, folders, folders, **kw)


def _acl(name: str, scorer: str, description: str, folders: tuple[str, ...], test_folders: tuple[str, ...],
         **kw: Any) -> TaskSpec:
    return TaskSpec(name, "acl", scorer, description, folders, test_folders, **kw)


BUILTIN: dict[str, tuple[TaskSpec, ...]] = {
    "dcl": (
        _dcl("RS", "rs", "remote sensing: aerial and satellite images; questions on object presence, counts "
             "and land-use areas", "RS", "RemoteSensing"),
        _dcl("Med", "med", "medical imaging: pathology slides, cell sections and photographs of medical "
             "conditions", "Med", "Medical/data", "Medical"),
        _dcl("AD", "ad", "autonomous driving: six ego-vehicle camera views tiled in one image; perception, "
             "prediction, coordinates and action planning", "AD", "AD/DriveLM"),
        _dcl("Sci", "sci", "science: diagrams and maps from biology, physics, chemistry and geography, with "
             "multiple-choice or short answers", "Sci"),
        _dcl("Fin", "fin", "finance: stock candlestick charts; trend prediction and technical indicators, "
             "answered yes/no or with an option letter", "Fin", prompt_rule="fin"),
    ),
    "acl": (
        # model_ocr.py hard-codes max_new_tokens=2048 in its generate call (its --max_new_tokens flag is unused)
        _acl("OCR", "ocr", "OCR: reading text in images, handwriting, documents and scene text",
             ("OCR",), ("OCR_test",), train_files=("train.json", "train_without_dense_caption.json"),
             max_new_tokens=2048),
        # model_math.py generates up to 2048 new tokens (its default; 2_eval_math.sh does not override it)
        _acl("Math", "math", "math and logic: equations, geometry, function plots, puzzles and charts",
             ("Math", "math2"), ("Math_test", "math_test"), max_new_tokens=2048),
        # model_sat.py: max_new_tokens 64
        _acl("VP", "vp", "visual perception: counting objects and judging their 2D/3D spatial relations",
             ("VP", "tallyqa150k"), ("VP_test", "CV-Benchv2"), train_files=("train.json", "ty_cl_sft.json"),
             max_new_tokens=64),
        _acl("APP", "app", "GUI agent: screenshots of apps and web pages; finding buttons, fields and the next "
             "action", ("APP", "App"), ("APP_test",), answers_public=False),
    ),
}
"""The nine official tasks, per setting, in the official training order."""

UNSEEN = TaskSpec("Unseen", "dcl", "fin", "an unseen domain that no task trains on (the synthetic benchmark's "
                  "retail shelves)", ("unseen",), ("unseen",))
"""How held-out test rows (the manifest's `unseen` file) are read: no prompt rule, scored by exact match
after lower-casing and removing spaces and periods (the `fin` rule), as every answer is one closed word
or letter. It is not a task: no method trains on it, the benchmark lists it apart."""


# --- router and replay files --------------------------------------------------------------------------

@dataclass(frozen=True)
class ExtraFile:
    """Where a router or replay training file lies: `file` relative to the data root (or absolute), and
    `images`, the folder its image paths are relative to (the data root unless stated). `official` marks a
    router file of the release: every row must then be an official router row (the official router prompt
    and one letter, see `mllmcl.data.official_router`)."""

    file: str
    images: str = "."
    official: bool = False


BUILTIN_EXTRAS: dict[str, dict[str, tuple[ExtraFile, ...]]] = {
    # First existing file wins. `router/train.json`, `replay/train.json`: mllmcl's synthetic data.
    # `task5Router_train20.json` / `Router_train20.json`: README; the official router script trains with
    # `--image_folder .../num5sample_images20` (Train_dom_single/0_train_router.sh), so its paths are
    # relative to that folder. `router_DCL/task5.json`, `replay_DCL/task5.json`: the HF dataset
    # MLLM-CL/MLLM-CL-ReplayData (buffers after the last task). `task5replay20_train.json`: README; the replay
    # scripts use `--image_folder $DATA_PATH`, so its paths are relative to the data root.
    # Official router rows hold the whole official router prompt and a letter (official_router.py).
    "router": {
        "dcl": (ExtraFile("router/train.json"), ExtraFile("router_DCL/task5.json", official=True),
                ExtraFile("task5Router_train20.json", "num5sample_images20", official=True)),
        "acl": (ExtraFile("router/train.json"), ExtraFile("router_ACL/task4.json", official=True),
                ExtraFile("Router_train20.json", "sample_images20", official=True)),
    },
    "replay": {
        "dcl": (ExtraFile("replay/train.json"), ExtraFile("replay_DCL/task5.json"),
                ExtraFile("task5replay20_train.json")),
        "acl": (ExtraFile("replay/train.json"), ExtraFile("replay_ACL/task4.json"), ExtraFile("replay20.json")),
    },
}


# --- the manifest -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """The resolved description of one data root: setting, task specs in order, router/replay candidates."""

    setting: str
    specs: tuple[TaskSpec, ...]
    router: tuple[ExtraFile, ...]
    replay: tuple[ExtraFile, ...]
    manifest: Path | None = None
    unseen: str | None = None  # held-out test rows (root-relative file; images relative to its folder)


_MANIFEST_KEYS = {"setting", "tasks", "router", "router_images", "replay", "replay_images", "unseen"}
_TASK_KEYS = {"name", "folder", "test_folder", "scorer", "description", "train_file", "test_file", "val_file",
              "max_new_tokens", "prompt_rule", "answers_public"}
_TASK_FIELD = {"folder": "folders", "test_folder": "test_folders", "train_file": "train_files",
               "test_file": "test_files", "val_file": "val_files"}


def _names(value: Any, where: str) -> tuple[str, ...]:
    """A folder/file entry: one string or a list of candidate strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise UserError(f"{where}: must be a non-empty string or a list of them, got {value!r}")
    return tuple(items)


def _spec_from_manifest(entry: Any, setting: str, builtin: Mapping[str, TaskSpec], where: str) -> TaskSpec:
    if not isinstance(entry, dict):
        raise UserError(f"{where}: a task entry must be an object, got {type(entry).__name__}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name})"
    unknown = sorted(set(entry) - _TASK_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_TASK_KEYS))})")
    kwargs: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "name":
            continue
        field_name = _TASK_FIELD.get(key, key)
        kwargs[field_name] = _names(value, f"{where}: {key!r}") if key in _TASK_FIELD else value
    base = builtin.get(name)
    try:
        if base is not None:  # a known task: the manifest changes only what it names
            if "folders" in kwargs and "test_folders" not in kwargs and base.folders == base.test_folders:
                kwargs["test_folders"] = kwargs["folders"]
            return replace(base, setting=setting, **kwargs)
        missing = [k for k in ("folder", "scorer", "description") if k not in entry]
        if missing:
            raise UserError(f"a task that is not built in needs {', '.join(map(repr, missing))}")
        kwargs.setdefault("test_folders", kwargs["folders"])
        return TaskSpec(name=name, setting=setting, **kwargs)
    except UserError as err:  # TaskSpec's own checks name the task, not the file
        raise UserError(f"{where}: {err}") from None


def _extra(manifest: dict, key: str, where: str) -> tuple[ExtraFile, ...] | None:
    if key not in manifest and f"{key}_images" not in manifest:
        return None
    if key not in manifest:
        raise UserError(f"{where}: {key}_images given without {key!r}")
    value = manifest[key]
    if value is None:
        return ()
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: {key!r} must be a file path or null, got {value!r}")
    images = manifest.get(f"{key}_images", ".")
    if not isinstance(images, str) or not images:
        raise UserError(f"{where}: '{key}_images' must be a folder path, got {images!r}")
    return (ExtraFile(value, images),)


def read_manifest(root: Path) -> dict | None:
    """The parsed `mllmcl.json` of `root`, or None when there is none."""
    path = root / MANIFEST
    if not is_file(path):
        return None
    data = read_json(path, "manifest")
    if not isinstance(data, dict):
        raise UserError(f"{path}: must be a JSON object")
    unknown = sorted(set(data) - _MANIFEST_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_MANIFEST_KEYS))})")
    return data


def resolve_layout(root: Path, setting: str | None, *, specs: Sequence[TaskSpec] | None = None,
                   folders: Mapping[str, str | Sequence[str]] | None = None,
                   test_folders: Mapping[str, str | Sequence[str]] | None = None,
                   router: str | ExtraFile | None = None, replay: str | ExtraFile | None = None) -> Layout:
    """Combine, in rising priority, the built-in definitions, the root's manifest and the Python-level
    overrides into one `Layout`. `folders={"RS": "MyRS"}` replaces a task's candidate folders (and, for a
    DCL task, its test folders); `router`/`replay` name a file (root-relative, images root-relative) or an
    `ExtraFile`."""
    manifest_path = root / MANIFEST
    manifest = read_manifest(root)
    if manifest is not None:
        declared = manifest.get("setting")
        if declared is not None and (not isinstance(declared, str) or not declared):
            raise UserError(f"{manifest_path}: 'setting' must be a non-empty string")
        if setting is not None and declared is not None and setting != declared:
            raise UserError(f"{manifest_path}: the data root is setting {declared!r}, not {setting!r}")
        setting = setting or declared
    if setting is None:
        raise UserError(f"{root}: give the setting (dcl or acl); the root has no {MANIFEST} that names it")
    # a manifest task named like an official one inherits its definition, whatever the setting
    builtin = {s.name: s for group in BUILTIN.values() for s in group}
    if manifest is None and setting not in SETTINGS:
        raise UserError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)} "
                        f"(other settings need an {MANIFEST} manifest)")

    layout_specs = tuple(BUILTIN.get(setting, ()))
    router_files = BUILTIN_EXTRAS["router"].get(setting, ())
    replay_files = BUILTIN_EXTRAS["replay"].get(setting, ())
    if manifest is not None:
        if "tasks" in manifest:
            entries = manifest["tasks"]
            if not isinstance(entries, list) or not entries:
                raise UserError(f"{manifest_path}: 'tasks' must be a non-empty list")
            layout_specs = tuple(_spec_from_manifest(e, setting, builtin, f"{manifest_path}: tasks[{i}]")
                                 for i, e in enumerate(entries))
        elif setting not in BUILTIN:
            raise UserError(f"{manifest_path}: setting {setting!r} is not built in, so the manifest must list 'tasks'")
        declared_router = _extra(manifest, "router", str(manifest_path))
        declared_replay = _extra(manifest, "replay", str(manifest_path))
        router_files = router_files if declared_router is None else declared_router  # () = declared absent
        replay_files = replay_files if declared_replay is None else declared_replay
        unseen = manifest.get("unseen")
        if unseen is not None and (not isinstance(unseen, str) or not unseen):
            raise UserError(f"{manifest_path}: 'unseen' must be a file path or null, got {unseen!r}")
    if specs is not None:
        layout_specs = tuple(specs)
    names = [s.name for s in layout_specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        where = "" if specs is not None or manifest is None else f"{manifest_path}: "
        raise UserError(f"{where}task {duplicated[0]!r} is defined twice")
    for key, override in (("folders", folders), ("test_folders", test_folders)):
        for typed, value in (override or {}).items():
            name = find_name(typed, names)  # any case: `rs` is RS
            if name is None:
                raise UserError(f"{key} override for unknown task {typed!r}; tasks: {', '.join(names)}")
            candidates = _names(value if isinstance(value, str) else list(value), f"{key}[{name!r}]")
            layout_specs = tuple(_override_folders(s, key, candidates) if s.name == name else s for s in layout_specs)
    if router is not None:
        router_files = (router if isinstance(router, ExtraFile) else ExtraFile(str(router)),)
    if replay is not None:
        replay_files = (replay if isinstance(replay, ExtraFile) else ExtraFile(str(replay)),)
    return Layout(setting, layout_specs, tuple(router_files), tuple(replay_files),
                  manifest_path if manifest is not None else None, manifest.get("unseen") if manifest else None)


def _override_folders(spec: TaskSpec, key: str, candidates: tuple[str, ...]) -> TaskSpec:
    if key == "folders" and spec.folders == spec.test_folders:  # IID task: one folder holds both files
        return replace(spec, folders=candidates, test_folders=candidates)
    return replace(spec, **{key: candidates})


def write_manifest(root: str | Path, setting: str, specs: Sequence[TaskSpec], *, router: str | None = None,
                   router_images: str = ".", replay: str | None = None, replay_images: str = ".",
                   unseen: str | None = None) -> Path:
    """Write `root/mllmcl.json` describing `specs` (atomically); returns its path. For data generators.
    `unseen`: a file of held-out test rows (no task trains on them), root-relative."""
    data: dict[str, Any] = {"setting": setting, "tasks": [s.to_manifest() for s in specs]}
    if router is not None:
        data.update(router=router, router_images=router_images)
    if replay is not None:
        data.update(replay=replay, replay_images=replay_images)
    if unseen is not None:
        data.update(unseen=unseen)
    path = Path(root) / MANIFEST
    write_json_atomic(path, data)
    return path


def builtin_spec(name: str) -> TaskSpec:
    """The built-in spec of an official task (e.g. "RS")."""
    specs = {s.name: s for group in BUILTIN.values() for s in group}
    found = find_name(name, list(specs))  # any case
    if found is None:
        raise UserError(f"unknown task {name!r}; built in: {', '.join(specs)}")
    return specs[found]

