"""The MLLM-CL release on disk, read into records: `load_benchmark(root, setting)` → a `Benchmark` with its
tasks in training order, each holding train, test and (where the root has them) validation `Sample`s, plus
the router and replay training sets.

Rows are parsed and validated when the benchmark is loaded; images are not opened (a `Sample` holds an
absolute path, `mllmcl.data.records.load_image` opens it when the engine asks), so a 100k-row task loads in
about a second. `mllmcl.data.check` validates every row and every image of a root and reports all problems.

Formats (see docs/data.md):
- training rows (tasks, router, replay): LLaVA conversations, `{"id" | "question_id", "image",
  "conversations": [{"from": "human", "value": "<image>\\n…"}, {"from": "gpt", "value": "…"}, …]}`;
- test and validation rows: `{"question_id", "image", "text", "answer", …task fields}`.
Image paths are relative to the task folder in task files, to the data root (or the folder an `ExtraFile`
names) in router and replay files. One image per row: the engine takes one image per sample, so rows with
several images, or none, are refused with the file, row and id.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from mllmcl.core.errors import UserError
from mllmcl.core.io import is_dir, is_file, parse_json
from mllmcl.data.official_router import OFFICIAL_LETTERS, letter_map, looks_official, parse_official_prompt
from mllmcl.data.records import Query, split_instruction
from mllmcl.data.tasks import FORMAT_INSTRUCTIONS, UNSEEN, ExtraFile, Layout, TaskSpec, find_name, resolve_layout

IMAGE_TOKEN = "<image>"
_EMPTY: Mapping[str, Any] = MappingProxyType({})


# --- records ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One row of a task, router or replay file.

    `question`/`answer` are the first turn (what the engine's `VQAExample` needs); `turns` holds every
    (human, gpt) pair of a training conversation with the `<image>` placeholder removed, or
    `((question, answer),)` for a test row. For a test row, `question` is the prompt the official
    evaluation feeds: `text`, plus the task's prompt rule (Fin's answer-format suffix), and `answer` is the
    ground truth (the first one where the row lists several; "" where the task has no public answers).
    `meta` holds every other field of the row; `row` is the original row, read-only (shallow), which
    scorers take as is.
    """

    id: str
    task: str
    image: Path
    question: str
    answer: str
    turns: tuple[tuple[str, str], ...]
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)
    row: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)

    @property
    def query(self) -> Query:
        """What a router and a method may see of this sample: its image and prompt, without task or answer."""
        return Query(self.id, self.image, self.question, split_instruction(self.question, FORMAT_INSTRUCTIONS)[1])


@dataclass(frozen=True, eq=False)
class Task:
    """One task of a benchmark: its definition, where its files are, and its samples. `val` holds the
    validation rows (test format, read from `val_file` in the test folder; empty when there is none, as in
    the real release): tune on them, never on `test`."""

    spec: TaskSpec
    root: Path
    folder: Path
    test_folder: Path
    train_file: Path
    test_file: Path
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]
    val: tuple[Sample, ...] = ()
    val_file: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, eq=False)
class Benchmark:
    """A data root read in one setting: tasks in training order, router and replay training sets (empty
    when the root has none). Router/replay samples carry their task: an official router row's letter (its
    question is then the bare question), else the row's `task` field, else the task whose folder holds the
    image, or "" (see `read_extra`). `unseen`: test samples of a held-out domain that is not among the tasks
    (task "Unseen"; from the manifest's `unseen` file, empty without one), for open-world checks."""

    setting: str
    root: Path
    tasks: tuple[Task, ...]
    router: tuple[Sample, ...] = ()
    replay: tuple[Sample, ...] = ()
    router_file: Path | None = None
    replay_file: Path | None = None
    manifest: Path | None = None
    unseen: tuple[Sample, ...] = ()
    unseen_file: Path | None = None

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> Task:
        """The task called `name` (any case: `rs` finds RS)."""
        found = find_name(name, self.names)
        if found is None:
            raise UserError(f"no task {name!r} in this benchmark; tasks: {', '.join(self.names)}")
        return self.tasks[self.names.index(found)]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data root: the file, the 0-based row index (None for the whole file)."""

    file: Path
    row: int | None
    message: str
    id: str | None = None

    def __str__(self) -> str:
        if self.row is None:
            return f"{self.file}: {self.message}"
        which = f"row {self.row}" + (f" (id {self.id!r})" if self.id is not None else "")
        return f"{self.file}: {which}: {self.message}"


# --- reading rows -------------------------------------------------------------------------------------

class _RowError(Exception):
    """A malformed row; the caller adds file, row index and id."""


Parsed = list[tuple[int, Sample]]
"""Samples with the index of the row they came from (rows that failed are left out)."""


def read_rows(path: Path, problems: list[Problem]) -> list | None:
    """The JSON list in `path`, or None (with a problem recorded) when it is missing or not a list."""
    try:
        data = parse_json(path.read_bytes())
    except FileNotFoundError:
        problems.append(Problem(path, None, "file not found"))
        return None
    except IsADirectoryError:
        problems.append(Problem(path, None, "is a folder, expected a JSON file"))
        return None
    except OSError as err:
        problems.append(Problem(path, None, f"cannot read ({err.strerror or err})"))
        return None
    except ValueError as err:  # parse_json's: what is wrong with the JSON
        problems.append(Problem(path, None, str(err)))
        return None
    if not isinstance(data, list):
        problems.append(Problem(path, None, f"must be a JSON list of rows, found a JSON {type(data).__name__}"))
        return None
    return data


def _clean(text: str) -> str:
    # LLaVA's preprocess_multimodal: drop the placeholder and strip; text without one is left as written
    return text.replace(IMAGE_TOKEN, "").strip() if IMAGE_TOKEN in text else text


def _unicode(text: str, key: str) -> str:
    """`text`, unless a JSON escape made it hold a lone surrogate, which no tokenizer encodes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise _RowError(f"{key} holds {text[err.start]!r}, a lone surrogate that is not text") from None
    return text


def _row_id(row: dict, keys: Sequence[str]) -> str:
    for key in keys:
        if key in row:
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
                raise _RowError(f"{key!r} must be a non-empty string or an integer, got {value!r}")
            return str(value)
    raise _RowError(f"missing key {' or '.join(map(repr, keys))}")


class _Paths(dict):
    """rel path → absolute Path under `base`, built once per distinct path (Path() costs ~6 µs; many rows
    of a task share an image)."""

    def __init__(self, base: Path):
        super().__init__()
        self.base = base

    def __missing__(self, rel: str) -> Path:
        path = self[rel] = self.base / rel
        return path


def _image(row: dict, paths: _Paths) -> Path:
    value = row.get("image")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list) and len(value) > 1:
        raise _RowError(f"{len(value)} images in one row; multi-image rows are not supported "
                        "(the engine takes one image per sample)")
    if value is None or value == "" or value == []:
        raise _RowError("no image; text-only rows are not supported (the engine takes one image per sample)")
    if not isinstance(value, str):
        raise _RowError(f"'image' must be a path string, got {type(value).__name__}")
    return paths[value]


def _train_sample(row: Any, task: str, paths: _Paths) -> Sample:
    if not isinstance(row, dict):
        raise _RowError(f"a row must be a JSON object, got {type(row).__name__}")
    sid = _row_id(row, ("question_id", "id"))  # the official dataset prefers question_id
    image = _image(row, paths)
    convs = row.get("conversations")
    if not isinstance(convs, list) or not convs:
        raise _RowError("missing key 'conversations'" if convs is None else "'conversations' must be a non-empty list")
    values = []
    for k, turn in enumerate(convs):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or "from" not in turn:
            raise _RowError(f"conversations[{k}] must be an object with 'from' and a string 'value'")
        expected = "human" if k % 2 == 0 else "gpt"
        if turn["from"] != expected:
            raise _RowError(f"conversations[{k}] is from {turn['from']!r}, expected {expected!r} "
                            "(turns must alternate human, gpt)")
        if k > 0 and IMAGE_TOKEN in turn["value"]:
            raise _RowError(f"conversations[{k}] holds an {IMAGE_TOKEN} placeholder; only the first human "
                            "turn may (one image per row)")
        values.append(_unicode(turn["value"], f"conversations[{k}]"))
    if values[0].count(IMAGE_TOKEN) > 1:
        raise _RowError(f"{values[0].count(IMAGE_TOKEN)} {IMAGE_TOKEN} placeholders for one image")
    if len(values) % 2:
        raise _RowError("the conversation ends with a human turn (no answer)")
    turns = []
    for k in range(0, len(values), 2):
        question, answer = _clean(values[k]), values[k + 1]
        if not question.strip():
            raise _RowError(f"conversations[{k}]: empty question")
        if not answer.strip():
            raise _RowError(f"conversations[{k + 1}]: empty answer")
        turns.append((question, answer))
    meta = {k: v for k, v in row.items() if k not in ("id", "question_id", "image", "conversations")}
    return Sample(sid, task, image, turns[0][0], turns[0][1], tuple(turns), MappingProxyType(meta),
                  MappingProxyType(row))


def _answer(row: dict, spec: TaskSpec) -> str:
    if "answer" not in row:
        if spec.answers_public:
            raise _RowError("missing key 'answer'")
        return ""
    value = row["answer"]
    if isinstance(value, list):  # OCRBench: any of several strings is right; the first is the reference
        if not value:
            raise _RowError("'answer' is an empty list")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _RowError(f"'answer' must be a string, a number or a list of them, got {type(value).__name__}")
    text = str(value)
    if not text.strip() and spec.answers_public:
        raise _RowError("empty answer")
    return text


def _test_sample(row: Any, spec: TaskSpec, paths: _Paths) -> Sample:
    if not isinstance(row, dict):
        raise _RowError(f"a row must be a JSON object, got {type(row).__name__}")
    sid = _row_id(row, ("question_id",))
    image = _image(row, paths)
    text = row.get("text")
    if not isinstance(text, str):
        raise _RowError("missing key 'text'" if text is None else f"'text' must be a string, got {type(text).__name__}")
    if not _clean(_unicode(text, "'text'")).strip():
        raise _RowError("empty 'text'")
    answer = _unicode(_answer(row, spec), "'answer'")
    question = spec.prompt(_clean(text), answer)
    meta = {k: v for k, v in row.items() if k not in ("question_id", "image", "text", "answer")}
    return Sample(sid, spec.name, image, question, answer, ((question, answer),), MappingProxyType(meta),
                  MappingProxyType(row))


def parse_rows(rows: Iterable[Any], path: Path, problems: list[Problem], *, kind: str, base: Path,
               spec: TaskSpec | None = None, task: str = "") -> Parsed:
    """Validate `rows` of `path` as `kind` "train" (LLaVA conversations; `task` names them) or "test"
    (needs `spec`). Every bad row adds a problem. Ids: a test file keys predictions to ground truth, so a
    repeated id there is a problem; in a training file ids are labels only, so a repeat is renamed
    `<id>#<row>` (LLaVA-style data often reuses an image's id for several conversations)."""
    parsed: Parsed = []
    paths = _Paths(base)
    for index, row in enumerate(rows):
        try:
            sample = _test_sample(row, spec, paths) if kind == "test" else _train_sample(row, task, paths)
        except _RowError as err:
            rid = row.get("question_id", row.get("id")) if isinstance(row, dict) else None
            problems.append(Problem(path, index, str(err), None if rid is None else str(rid)))
            continue
        parsed.append((index, sample))
    first: dict[str, int] = {}
    for k, (index, sample) in enumerate(parsed):
        if sample.id not in first:
            first[sample.id] = index
        elif kind == "test":
            problems.append(Problem(path, index, f"duplicate question_id (first at row {first[sample.id]})", sample.id))
        else:
            parsed[k] = (index, replace(sample, id=f"{sample.id}#{index}"))
    return parsed


# --- finding files ------------------------------------------------------------------------------------

def find_file(root: Path, folders: Sequence[str], files: Sequence[str]) -> tuple[Path, Path] | None:
    """(folder, file) of the first candidate folder under `root` that holds one of `files`, else None."""
    for folder in folders:
        for name in files:
            if is_file(root / folder / name):
                return root / folder, root / folder / name
    return None


def _looked_for(folders: Sequence[str], files: Sequence[str]) -> str:
    return ", ".join(f"{folder}/{name}" for folder in folders for name in files)


@dataclass
class TaskData:
    """What was found for one task, complete or not (the checker reports partial tasks too)."""

    spec: TaskSpec
    folder: Path | None = None
    train_file: Path | None = None
    train: Parsed = field(default_factory=list)
    test_folder: Path | None = None
    test_file: Path | None = None
    test: Parsed = field(default_factory=list)
    val_file: Path | None = None
    val: Parsed = field(default_factory=list)


def read_task(root: Path, spec: TaskSpec, problems: list[Problem]) -> TaskData:
    data = TaskData(spec)
    found = find_file(root, spec.folders, spec.train_files)
    if found is None:
        problems.append(Problem(root, None, f"task {spec.name}: no training file; looked for "
                                            f"{_looked_for(spec.folders, spec.train_files)}"))
    else:
        data.folder, data.train_file = found
        rows = read_rows(data.train_file, problems)
        if rows is not None:
            data.train = parse_rows(rows, data.train_file, problems, kind="train", base=data.folder, task=spec.name)
    found = find_file(root, spec.test_folders, spec.test_files)
    if found is None:
        problems.append(Problem(root, None, f"task {spec.name}: no test file; looked for "
                                            f"{_looked_for(spec.test_folders, spec.test_files)}"))
    else:
        data.test_folder, data.test_file = found
        rows = read_rows(data.test_file, problems)
        if rows is not None:
            data.test = parse_rows(rows, data.test_file, problems, kind="test", spec=spec, base=data.test_folder)
    found = find_file(root, spec.test_folders, spec.val_files)  # optional: no problem when absent
    if found is not None:
        val_folder, data.val_file = found
        rows = read_rows(data.val_file, problems)
        if rows is not None:
            data.val = parse_rows(rows, data.val_file, problems, kind="test", spec=spec, base=val_folder)
    return data


def _task_of(specs: Sequence[TaskSpec]):
    """rel image path → name of the task whose folder it lies in ("" if none); longest folder wins."""
    prefixes = sorted({(PurePosixPath(f).parts, s.name) for s in specs for f in (*s.folders, *s.test_folders)},
                      key=lambda p: -len(p[0]))

    def task_of(rel: Any) -> str:
        if isinstance(rel, list) and len(rel) == 1:
            rel = rel[0]
        parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
        return next((name for prefix, name in prefixes if parts[:len(prefix)] == prefix), "")

    return task_of


def _official_router_sample(sample: Sample, setting: str) -> Sample:
    """An official router row as a router sample: the task from its letter, the bare question."""
    question = parse_official_prompt(sample.question, setting)
    if question is None:
        raise _RowError(f"not an official {setting.upper()} router prompt: the question must lie between the "
                        "official routing prompt and the after-question instruction (mllmcl.data.official_router)")
    letter = sample.answer.strip()
    task = OFFICIAL_LETTERS[setting].get(letter)
    if task is None:
        raise _RowError(f"router answer {sample.answer!r} is not a letter of the official {setting.upper()} router "
                        f"({letter_map(setting)})")
    turns = ((question, letter),) + sample.turns[1:]
    return replace(sample, task=task, question=question, answer=letter, turns=turns)


def _extra_task(row: dict, sample: Sample, extra: ExtraFile, setting: str | None, router: bool, names: set[str],
                task_of) -> Sample:
    """Which task a router/replay row belongs to. A router row that holds the official router prompt of the
    setting (as every row of an official file must): its letter's task, and its bare question. Else the
    row's own `task` field (mllmcl's own format), else the task whose folder holds the image ("" if none)."""
    task = row.get("task")
    if "task" in row and (not isinstance(task, str) or task not in names):
        raise _RowError(f"'task' must name a task of this benchmark ({', '.join(sorted(names))}), got {task!r}")
    if router and setting in OFFICIAL_LETTERS and (extra.official or looks_official(sample.question)):
        sample = _official_router_sample(sample, setting)
        if task is not None and task != sample.task:
            raise _RowError(f"'task' is {task!r} but the router answer {sample.answer!r} names {sample.task!r} "
                            f"({letter_map(setting)})")
        return sample
    return replace(sample, task=task if task is not None else task_of(row.get("image")))


def read_extra(root: Path, candidates: Sequence[ExtraFile], specs: Sequence[TaskSpec], problems: list[Problem],
               *, setting: str | None = None, router: bool = False) -> tuple[Path | None, Parsed]:
    """The first existing router/replay candidate, parsed; (None, []) when none exists. Each sample gets its
    task (see `_extra_task`); `router` marks router files, whose official rows (the official router prompt of
    `setting` and a letter) become the bare question and the letter's task. A malformed official row (prompt
    that does not parse, letter outside the map) and a `task` field naming no task are problems."""
    for extra in candidates:
        path = root / extra.file
        if not is_file(path):
            continue
        rows = read_rows(path, problems)
        if rows is None:
            return path, []
        task_of, names = _task_of(specs), {s.name for s in specs}
        parsed: Parsed = []
        for index, sample in parse_rows(rows, path, problems, kind="train", base=root / extra.images):
            try:
                parsed.append((index, _extra_task(rows[index], sample, extra, setting, router, names, task_of)))
            except _RowError as err:
                problems.append(Problem(path, index, str(err), str(sample.row.get("question_id",
                                                                                  sample.row.get("id")))))
        return path, parsed
    return None, []


def read_unseen(root: Path, layout: Layout, problems: list[Problem]) -> tuple[Path | None, Parsed]:
    """The held-out test rows the manifest names (`unseen`), parsed as test rows of `tasks.UNSEEN`, image
    paths relative to the file's folder; (None, []) when the manifest names none."""
    if layout.unseen is None:
        return None, []
    path = root / layout.unseen
    rows = read_rows(path, problems)
    if rows is None:
        return path, []
    return path, parse_rows(rows, path, problems, kind="test", spec=replace(UNSEEN, setting=layout.setting),
                            base=path.parent)


# --- loading ------------------------------------------------------------------------------------------

def data_root(root: str | Path) -> Path:
    path = Path(root).expanduser().absolute()
    if not is_dir(path):
        raise UserError(f"{path}: data root not found (or not a folder)")
    return path


def select(specs: Sequence[TaskSpec], tasks: Sequence[str] | None) -> list[TaskSpec]:
    """The specs named in `tasks`, in the benchmark's order; all when `tasks` is None."""
    if tasks is None:
        return list(specs)
    names = [s.name for s in specs]
    found = [find_name(t, names) for t in tasks]  # any case: `rs` picks RS
    if None in found:
        unknown = tasks[found.index(None)]
        raise UserError(f"unknown task {unknown!r}; tasks of this setting: {', '.join(names)}")
    return [s for s in specs if s.name in found]


def summarise(problems: Sequence[Problem], root: Path, setting: str | None = None) -> str:
    """One line: how many problems, the first (file, row, what), and the command that lists them all."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    check = f"mllmcl data check --root {root}" + (f" --setting {setting}" if setting else "")
    return f"{len(problems)} problem(s) in the data at {root}; first: {problems[0]}{more}; `{check}` lists them all"


def load_layout(root: str | Path, setting: str | None = None, **overrides: Any) -> tuple[Path, Layout]:
    path = data_root(root)
    return path, resolve_layout(path, setting, **overrides)


def load_benchmark(root: str | Path, setting: str | None = None, tasks: Sequence[str] | None = None, *,
                   folders: Mapping[str, str | Sequence[str]] | None = None,
                   test_folders: Mapping[str, str | Sequence[str]] | None = None,
                   specs: Sequence[TaskSpec] | None = None, router: str | ExtraFile | None = None,
                   replay: str | ExtraFile | None = None) -> Benchmark:
    """Read the MLLM-CL data at `root` in `setting` ("dcl" or "acl"; may be omitted when the root's
    `mllmcl.json` names it). `tasks` picks a subset (kept in benchmark order). Overrides, in rising priority
    over the built-in definitions and the manifest: `folders`/`test_folders` ({"RS": "MyRS"}), `specs` (the
    whole task list), `router`/`replay` (a file, or an `ExtraFile` with its image folder). Any malformed row
    or missing file raises one UserError naming the file, row and problem (first few of all found)."""
    path, layout = load_layout(root, setting, specs=specs, folders=folders, test_folders=test_folders,
                               router=router, replay=replay)
    problems: list[Problem] = []
    found = [read_task(path, spec, problems) for spec in select(layout.specs, tasks)]
    router_file, router_rows = read_extra(path, layout.router, layout.specs, problems, setting=layout.setting,
                                          router=True)
    replay_file, replay_rows = read_extra(path, layout.replay, layout.specs, problems, setting=layout.setting)
    unseen_file, unseen_rows = read_unseen(path, layout, problems)
    if problems:
        raise UserError(summarise(problems, path, layout.setting))
    built = tuple(Task(d.spec, path, d.folder, d.test_folder, d.train_file, d.test_file,
                       tuple(s for _, s in d.train), tuple(s for _, s in d.test), tuple(s for _, s in d.val),
                       d.val_file) for d in found)
    return Benchmark(layout.setting, path, built, tuple(s for _, s in router_rows), tuple(s for _, s in replay_rows),
                     router_file, replay_file, layout.manifest, tuple(s for _, s in unseen_rows), unseen_file)
