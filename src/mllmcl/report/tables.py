"""Tables from results (eval/results.py): the paper-style summary for the terminal and the markdown report.

Everything here is a pure function of the results (see docs/results.md); a value that is missing (a metric
that does not apply, a method still running) is shown as "—". Heatmap file names come from
`heatmap_name`, shared with `render_report`, so the links in the markdown match the files written.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from mllmcl.core.io import slug
from mllmcl.eval.cl_metrics import METRIC_NAMES
from mllmcl.eval.results import MethodResults, Results, Routing

MISSING = "—"
COMPARED = ("MFN", "MAA", "BWT")  # the side-by-side columns when several runs are reported


def heatmap_name(method: str, label: str | None = None) -> str:
    """The heatmap file of a method, relative to the report folder; prefixed by the run label when the
    report covers several runs."""
    stem = slug(method) if label is None else f"{slug(label)}__{slug(method)}"
    return f"heatmaps/{stem}.png"


def has_matrix(method: MethodResults) -> bool:
    """A sequential method with at least one row of its accuracy matrix: it gets a matrix table and heatmap."""
    return method.sequential and bool(method.matrix)


HEATMAP_MAX_TASKS = 60
"""Beyond this many tasks a heatmap's cells are too small to read and its canvas takes gigabytes (700 tasks:
a 72 000-pixel-wide image, which got `mllmcl report` killed for memory); the matrix table stays."""


def has_heatmap(method: MethodResults, tasks: Sequence[str]) -> bool:
    return has_matrix(method) and len(tasks) <= HEATMAP_MAX_TASKS


def fmt(value: Any) -> str:
    """A number with 2 decimals, "—" for a missing one."""
    return MISSING if value is None else f"{float(value):.2f}"


def _cells(values: Sequence[Any] | None, n: int) -> list[str]:
    """`n` formatted cells from a row that may be missing or short."""
    values = list(values or [])
    return [fmt(values[j] if j < len(values) else None) for j in range(n)]


def _metric(results: Results, method: str, metric: str) -> Any:
    """A method's metric in one run; None when the run lacks the method or the metric."""
    entry = results.methods.get(method)
    return (entry.metrics or {}).get(metric) if entry else None


# ---------------------------------------------------------------------------------------------- layout

def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns: the first (names) left-aligned, the others (numbers) right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join([first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:])]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _alt(text: str) -> str:
    """Image alt text with its brackets escaped, so `mr-lora[prototype]` does not end the link early."""
    return text.replace("[", "\\[").replace("]", "\\]")


def _escape(cell: str) -> str:
    return str(cell).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Markdown: names left-aligned, numbers right-aligned; a "|" inside a cell is escaped."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(_escape(c) for c in cells) + " |"

    align = "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"
    return "\n".join([line(header), align, *(line(row) for row in rows)])


# ---------------------------------------------------------------------------------------------- summary

def _summary_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """One row per method: final accuracy per task, the six metrics, routing accuracy."""
    tasks = results.tasks
    header = ["method", *tasks, *METRIC_NAMES, "Routing"]
    rows = []
    for name, method in results.methods.items():
        metrics = method.metrics or {}
        rows.append([name, *_cells(method.final, len(tasks)), *(fmt(metrics.get(m)) for m in METRIC_NAMES),
                     fmt(method.routing.accuracy if method.routing else None)])
    return header, rows


def summary_table(results: Results) -> str:
    """The paper-style plain-text table for the terminal: one row per method, per-task final accuracy, then
    MFT, MFN, MAA, BWT, Forgetting, FWT and routing accuracy."""
    return plain_table(*_summary_rows(results))


def comparison_table(runs: Sequence[tuple[str, Results]]) -> str:
    """Markdown: MFN, MAA and BWT of every method (rows) in every run (column groups)."""
    methods = list(dict.fromkeys(name for _, results in runs for name in results.methods))
    header = ["method", *(f"{label} {metric}" for label, _ in runs for metric in COMPARED)]
    rows = [[name, *(fmt(_metric(results, name, metric)) for _, results in runs for metric in COMPARED)]
            for name in methods]
    return markdown_table(header, rows)


REPLAY_COLUMNS = ("MFN", "MAA", "BWT")


def replay_pairs(names: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """The paper's layout: (method, its entry without replay, its entry with replay — the "*" row) for every
    method that has a `+replay` entry (`replay` is `seq-lora+replay`), in first-seen order."""
    def base(name: str) -> str:
        return "seq-lora" if name == "replay" else name.removesuffix("+replay")

    replayed = {base(n): n for n in names if n == "replay" or n.endswith("+replay")}
    order = list(dict.fromkeys(base(n) for n in names if base(n) in replayed))
    return [(b, b if b in names else None, replayed[b]) for b in order]


def replay_table(names: Sequence[str], value) -> str | None:
    """Markdown: each method without and with replay side by side (MFN, MAA, BWT), `value(entry, metric)`
    giving a cell; None when no method was run with replay."""
    pairs = replay_pairs(names)
    if not pairs:
        return None
    header = ["method", *REPLAY_COLUMNS, *(f"{m} (+replay)" for m in REPLAY_COLUMNS)]
    rows = [[method, *(value(plain, m) if plain else MISSING for m in REPLAY_COLUMNS),
             *(value(replayed, m) for m in REPLAY_COLUMNS)] for method, plain, replayed in pairs]
    return markdown_table(header, rows)


# ---------------------------------------------------------------------------------------------- details

def _settings(results: Results) -> str:
    run = results.run
    shown = {"setting": run.setting, "benchmark": run.benchmark, "backbone": run.backbone, "seed": run.seed,
             "started": run.started}
    lines = [f"- **{key}**: {value}" for key, value in shown.items() if value is not None]
    lines.append(f"- **finished**: {run.finished or 'not yet (in progress)'}")
    lines.append(f"- **tasks** (training order): {' → '.join(results.tasks)}")
    if results.mllmcl_version is not None:
        lines.append(f"- **mllmcl**: {results.mllmcl_version}")
    return "\n".join(lines)


def matrix_table(method: MethodResults, tasks: Sequence[str]) -> str:
    """Markdown accuracy matrix: the zero-shot row on top, then "after <task>" per step ("—" if not run yet)."""
    rows = []
    if method.zero_shot is not None:
        rows.append(["zero-shot", *_cells(method.zero_shot, len(tasks))])
    matrix = method.matrix or []
    for i, task in enumerate(tasks):
        rows.append([f"after {task}", *_cells(matrix[i] if i < len(matrix) else None, len(tasks))])
    return markdown_table(["", *tasks], rows)


def routing_section(routing: Routing, tasks: Sequence[str]) -> str:
    """Markdown: router name and accuracy, accuracy per task, per-stage accuracy and the confusion matrix."""
    parts = [f"Router `{routing.router or '?'}`: {fmt(routing.accuracy)} % of the final stage's "
             f"test samples sent to their own task's expert."]
    per_task = routing.per_task or {}
    if per_task:
        parts.append(markdown_table(["task", "routing accuracy"], [[t, fmt(a)] for t, a in per_task.items()]))
    if routing.stages:
        parts.append(markdown_table(["stage", "seen tasks", "routing accuracy"],
                                     [[str(s.stage), ", ".join(s.seen), fmt(s.accuracy)] for s in routing.stages]))
    confusion = routing.confusion
    if confusion:
        parts.append("Confusion (rows: true task, columns: chosen expert):\n\n" +
                     markdown_table(["true \\ chosen", *tasks],
                                     [[t, *(str(n) for n in row)] for t, row in zip(tasks, confusion)]))
    return "\n\n".join(parts)


def run_section(results: Results, label: str | None, level: int = 2) -> str:
    """One run as markdown: settings, summary, matrices with heatmap links, routing. Headings start at
    `level`; `label` prefixes heatmap file names (None for a single-run report)."""
    h = "#" * level
    tasks = results.tasks
    methods = results.methods
    header, rows = _summary_rows(results)
    parts = [f"{h} Settings\n\n{_settings(results)}", f"{h} Summary\n\n{markdown_table(header, rows)}"]
    paired = replay_table(list(methods), lambda name, metric: fmt(_metric(results, name, metric)))
    if paired:
        parts.append(f"{h} With and without replay (the paper's layout)\n\n{paired}")
    for name, method in methods.items():
        if has_matrix(method):
            picture = (f"![{_alt(name)} accuracy matrix]({heatmap_name(name, label)})" if has_heatmap(method, tasks)
                       else f"(no heatmap: more than {HEATMAP_MAX_TASKS} tasks)")
            parts.append(f"{h} Accuracy matrix: {name}\n\n{matrix_table(method, tasks)}\n\n{picture}")
    for name, method in methods.items():
        if method.routing:
            parts.append(f"{h} Routing: {name}\n\n{routing_section(method.routing, tasks)}")
    return "\n\n".join(parts)


def markdown_report(runs: Sequence[tuple[str, Results]]) -> str:
    """The whole report.md for one or several (label, results) runs; with several, a comparison table of
    MFN/MAA/BWT per method per run comes first, then one section per run."""
    if len(runs) == 1:
        label, results = runs[0]
        return f"# MLLM-CL report: {label}\n\n{run_section(results, None)}\n"
    parts = [f"# MLLM-CL report: {', '.join(label for label, _ in runs)}",
             f"## Comparison\n\n{comparison_table(runs)}"]
    parts += [f"## Run: {label}\n\n{run_section(results, label, level=3)}" for label, results in runs]
    return "\n\n".join(parts) + "\n"


def unique_labels(names: Iterable[str]) -> list[str]:
    """Folder names as run labels, made unique with -2, -3, … suffixes."""
    labels: list[str] = []
    for name in names:
        label, k = name, 2
        while label in labels:
            label, k = f"{name}-{k}", k + 1
        labels.append(label)
    return labels
