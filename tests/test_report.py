"""Reports from hand-built results.json dicts: report.md, heatmaps, the terminal table, and bad inputs."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from PIL import Image

from mllmcl.core.errors import UserError
from mllmcl.core.io import slug
from mllmcl.eval.cl_metrics import cl_metrics
from mllmcl.eval.results import Results
from mllmcl.report import load_results, render_report, save_heatmap, summary_table
from mllmcl.report.heatmap import _text_colour
from mllmcl.report.tables import heatmap_name, markdown_report, unique_labels

TASKS = ["RS", "Med", "AD"]
ZERO_SHOT = [10.0, 20.0, 30.0]
SEQ = [[90.0, 25.0, 31.0],
       [60.0, 85.0, 33.0],
       [40.0, 55.0, 80.0]]
MR = [[91.0, 20.0, 30.0],
      [90.5, 86.0, 30.0],
      [90.25, 85.5, 81.0]]


def _static(final: list[float]) -> dict:
    """A non-sequential method: only final accuracies, MFN their mean."""
    metrics = dict.fromkeys(("MFT", "MFN", "MAA", "BWT", "Forgetting", "FWT"))
    metrics["MFN"] = sum(final) / len(final)
    return {"sequential": False, "zero_shot": ZERO_SHOT, "final": final, "metrics": metrics,
            "seconds": {"learn": [], "evaluate": [1.0]}}


def _sequential(matrix: list[list[float]]) -> dict:
    return {"sequential": True, "zero_shot": ZERO_SHOT, "matrix": matrix, "final": matrix[-1],
            "metrics": cl_metrics(matrix, ZERO_SHOT), "seconds": {"learn": [1.0] * 3, "evaluate": [1.0] * 4}}


def make_results() -> dict:
    mr_lora = _sequential(MR)
    confusion = [[50, 0, 0], [1, 48, 1], [0, 0, 50]]
    mr_lora["routing"] = {
        "router": "mllm", "accuracy": 98.67, "per_task": {"RS": 100.0, "Med": 96.0, "AD": 100.0},
        "confusion": confusion,
        "stages": [{"stage": 1, "seen": ["RS"], "accuracy": 100.0, "per_task": {"RS": 100.0},
                    "confusion": [[50]]},
                   {"stage": 2, "seen": ["RS", "Med"], "accuracy": 99.0, "per_task": {"RS": 100.0, "Med": 98.0},
                    "confusion": [[50, 0], [1, 49]]},
                   {"stage": 3, "seen": TASKS, "accuracy": 98.67, "per_task": {"RS": 100.0, "Med": 96.0,
                                                                                 "AD": 100.0},
                    "confusion": confusion}]}
    return {
        "format": 1, "mllmcl_version": "0.1.0",
        "run": {"setting": "dcl", "benchmark": "synth", "backbone": "tiny", "seed": 0,
                "started": "2026-01-01T10:00:00", "finished": "2026-01-01T10:05:00"},
        "tasks": TASKS,
        "methods": {"zero-shot": _static(ZERO_SHOT), "seq-lora": _sequential(SEQ),
                    "oracle": _static([92.0, 87.0, 82.0]), "mr-lora": mr_lora},
    }


def write_run(folder: Path, results: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) > 100


def _row(table: str, name: str) -> dict[str, str]:
    header, _, *rows = table.splitlines()
    row = next(r for r in rows if r.split()[0] == name)
    return dict(zip(header.split(), row.split()))


def test_render_single_run(tmp_path):
    run = write_run(tmp_path / "run", make_results())
    report = render_report([run])
    assert report == run / "report.md"
    text = report.read_text()
    for name in ("zero-shot", "seq-lora", "oracle", "mr-lora"):
        assert name in text
    seq = cl_metrics(SEQ, ZERO_SHOT)
    for value in (seq["MFT"], seq["MAA"], seq["BWT"], seq["Forgetting"], 98.67, 87.0):
        assert f"{value:.2f}" in text
    assert "![seq-lora accuracy matrix](heatmaps/seq-lora.png)" in text
    assert "![mr-lora accuracy matrix](heatmaps/mr-lora.png)" in text
    assert "| zero-shot | 10.00 | 20.00 | 30.00 |" in text        # zero-shot row on top of the matrix
    assert "| after Med | 60.00 | 85.00 | 33.00 |" in text
    assert "| Med | 1 | 48 | 1 |" in text                          # confusion row of the router
    assert "dcl" in text and "RS → Med → AD" in text
    assert_png(run / "heatmaps" / "seq-lora.png")
    assert_png(run / "heatmaps" / "mr-lora.png")
    assert sorted(p.name for p in (run / "heatmaps").iterdir()) == ["mr-lora.png", "seq-lora.png"]
    assert (run / "report.md").stat().st_mode & 0o777 == 0o644  # readable by others, unlike a raw mkstemp
    assert not list(run.glob(".*.tmp")) and not list((run / "heatmaps").glob(".*"))  # no temp files left


def test_render_does_not_change_results(tmp_path):
    results = make_results()
    run = write_run(tmp_path / "run", results)
    before = (run / "results.json").read_bytes()
    render_report([run / "results.json"])  # a results.json path works too
    assert (run / "results.json").read_bytes() == before
    kept = copy.deepcopy(results)
    markdown_report([("run", Results.model_validate(results))])
    summary_table(Results.model_validate(results))
    assert results == kept


def test_summary_table():
    table = summary_table(Results.model_validate(make_results()))
    oracle = _row(table, "oracle")
    assert oracle["BWT"] == "—" and oracle["MFN"] == "87.00" and oracle["Routing"] == "—"
    seq = _row(table, "seq-lora")
    assert seq["BWT"] == f"{cl_metrics(SEQ)['BWT']:.2f}" and seq["AD"] == "80.00"
    assert _row(table, "mr-lora")["Routing"] == "98.67"
    lines = table.splitlines()
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule line up
    assert table.index("MFT") < table.index("MFN") < table.index("MAA") < table.index("BWT")


def test_in_progress_run_renders(tmp_path):
    results = make_results()
    results["run"]["finished"] = None
    results["methods"] = {"zero-shot": results["methods"]["zero-shot"],
                          "seq-lora": {"sequential": True, "zero_shot": ZERO_SHOT, "matrix": [SEQ[0]],
                                       "final": None, "metrics": None, "seconds": {"learn": [1.0],
                                                                                   "evaluate": [1.0, 1.0]}},
                          # what the runner writes before a routed method's first step is done
                          "mr-lora": {"sequential": True, "zero_shot": ZERO_SHOT, "steps": 0, "matrix": [],
                                      "final": None, "metrics": None, "seconds": {"learn": [], "evaluate": []},
                                      "routing": {"router": None, "accuracy": None, "per_task": None,
                                                  "confusion": None, "stages": []}},
                          "oracle": {"sequential": False, "zero_shot": ZERO_SHOT, "steps": 1, "matrix": None,
                                     "final": None, "metrics": None, "seconds": {"learn": [1.0], "evaluate": []}}}
    run = write_run(tmp_path / "run", results)
    text = render_report([run]).read_text()
    assert "| after Med | — | — | — |" in text and "in progress" in text
    assert _row(summary_table(Results.model_validate(results)), "seq-lora")["MFN"] == "—"
    assert_png(run / "heatmaps" / "seq-lora.png")
    assert not (run / "heatmaps" / "mr-lora.png").exists()  # no row yet, no heatmap
    assert "## Routing: mr-lora" in text and "## Accuracy matrix: mr-lora" not in text


def test_method_names_become_safe_file_names(tmp_path):
    results = make_results()
    results["methods"]["mr-lora[prototype]"] = results["methods"].pop("mr-lora")
    run = write_run(tmp_path / "run", results)
    text = render_report([run]).read_text()
    assert "(heatmaps/mr-lora_prototype_.png)" in text
    assert_png(run / "heatmaps" / "mr-lora_prototype_.png")


def test_two_runs_side_by_side(tmp_path):
    other = make_results()
    other["methods"]["seq-lora"] = _sequential(MR)
    a = write_run(tmp_path / "a" / "run", make_results())
    b = write_run(tmp_path / "b" / "run", other)  # same folder name: labels made unique
    out = tmp_path / "both"
    report = render_report([a, b], out=out)
    assert report == out / "report.md"
    text = report.read_text()
    assert "## Comparison" in text and "run MFN" in text and "run-2 MAA" in text
    assert "## Run: run" in text and "## Run: run-2" in text
    for label in ("run", "run-2"):
        for method in ("seq-lora", "mr-lora"):
            assert f"({heatmap_name(method, label)})" in text
            assert_png(out / heatmap_name(method, label))
    comparison = text.split("## Run:")[0]
    assert f"{cl_metrics(SEQ)['MAA']:.2f}" in comparison and f"{cl_metrics(MR)['MAA']:.2f}" in comparison
    assert not (a / "report.md").exists()


def test_helpers():
    assert slug("mr-lora[prototype]") == "mr-lora_prototype_"
    assert slug("seq-lora") == "seq-lora" and slug("../x") == "_x" and slug("") == "_"
    assert heatmap_name("mr-lora[prototype]") == "heatmaps/mr-lora_prototype_.png"
    assert unique_labels(["a", "b", "a", "a"]) == ["a", "b", "a-2", "a-3"]
    assert _text_colour((0.1, 0.0, 0.3, 1.0)) == "white" and _text_colour((0.9, 0.9, 0.1, 1.0)) == "black"


def test_save_heatmap_partial_and_atomic(tmp_path):
    path = save_heatmap([[50.0, 60.0]], ["A", "B"], tmp_path / "h" / "x.png", "partial", zero_shot=[1.0, 2.0])
    assert_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such run folder"),
    (lambda d: d.mkdir(), "no results.json"),
    (lambda d: write_run(d, {}) and (d / "results.json").write_text("{oops"), "not valid JSON"),
    (lambda d: write_run(d, {**make_results(), "format": 2}), "format 2"),
    (lambda d: write_run(d, [1, 2]), "JSON object"),
    (lambda d: write_run(d, {"format": 1, "tasks": TASKS}), "'methods'"),
])
def test_load_errors(tmp_path, setup, message):
    run = tmp_path / "run"
    setup(run)
    with pytest.raises(UserError, match=message) as err:
        load_results(run)
    assert str(run) in str(err.value)
    with pytest.raises(UserError, match=message):
        render_report([run])


def test_several_runs_need_out(tmp_path):
    a = write_run(tmp_path / "a", make_results())
    b = write_run(tmp_path / "b", make_results())
    with pytest.raises(UserError, match="--out"):
        render_report([a, b])
    with pytest.raises(UserError, match="at least one"):
        render_report([])
    assert not (a / "report.md").exists()


def test_methods_with_and_without_replay_side_by_side():
    results = make_results()
    results["methods"]["ewc"] = _sequential([[80.0, 10.0, 5.0], [60.0, 85.0, 5.0], [40.0, 50.0, 90.0]])
    results["methods"]["ewc+replay"] = _sequential([[80.0, 10.0, 5.0], [75.0, 85.0, 5.0], [70.0, 80.0, 88.0]])
    results["methods"]["replay"] = _sequential([[80.0, 10.0, 5.0], [70.0, 80.0, 5.0], [65.0, 75.0, 85.0]])
    report = markdown_report([("run", Results.model_validate(results))])
    section = report.split("With and without replay (the paper's layout)")[1].split("##")[0]
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in section.strip().splitlines()]
    rows = {cells[0]: dict(zip(lines[0], cells)) for cells in lines[2:]}
    assert set(rows) == {"seq-lora", "ewc"} and "MFN (+replay)" in lines[0]
    assert rows["ewc"]["MFN"] == f"{(40 + 50 + 90) / 3:.2f}"
    assert rows["ewc"]["MFN (+replay)"] == f"{(70 + 80 + 88) / 3:.2f}"
    assert "With and without replay" not in markdown_report([("run", Results.model_validate(make_results()))])


def test_a_results_file_of_the_previous_version_loads_and_writes_back_unchanged(tmp_path):
    """tests/assets/results_format1.json: a small run (zero-shot, seq-lora, mr-lora, oracle on three synthetic
    DCL tasks, two parallel parts) as mllmcl wrote results.json before the file had its own model."""
    asset = Path(__file__).parent / "assets" / "results_format1.json"
    results = Results.load(asset)
    assert results.methods["mr-lora"].routing.router == "prototype" and results.run.jobs["processes"] == 2
    results.write(tmp_path / "results.json")
    assert (tmp_path / "results.json").read_bytes() == asset.read_bytes()
