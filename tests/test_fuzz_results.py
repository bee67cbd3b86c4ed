"""Fuzz: the accuracy-matrix file of `mllmcl metrics` and the results.json files given to `mllmcl report`
(one run, or two side by side with --out).

Property: the command succeeds (metrics: finite numbers or null; report: report.md written), or prints one
line `mllmcl: error: …` naming the file (and the key), exits 2 and writes nothing: no report.md, no heatmap,
no temporary file, in the run folders or in --out.
"""
from __future__ import annotations

import pytest
import json
import math

from hypothesis import given
from hypothesis import strategies as st

from fuzzkit import assert_keeps_promise, cli, encode, fuzz, json_file, snapshot

METRICS_FILE = {"matrix": [[80.0, 10.5], [50, 90.25]], "zero_shot": [20.0, 30]}

TASKS = ["RS", "Med"]
RESULTS = {
    "format": 1, "mllmcl_version": "0.1.0",
    "run": {"setting": "dcl", "benchmark": "synth", "backbone": "tiny", "seed": 0,
            "started": "2026-01-01T10:00:00", "finished": None},
    "tasks": TASKS, "zero_shot": [10.0, 20.0],
    "methods": {
        "zero-shot": {"sequential": False, "zero_shot": [10.0, 20.0], "final": [10.0, 20.0],
                      "metrics": {"MFT": None, "MFN": 15.0, "MAA": None, "BWT": None, "Forgetting": None, "FWT": None},
                      "seconds": {"learn": [], "evaluate": [1.0]}},
        "mr-lora[mllm]": {"sequential": True, "zero_shot": [10.0, 20.0], "steps": 2,
                          "matrix": [[90.0, 15.0], [88.5, 91]], "final": [88.5, 91],
                          "metrics": {"MFT": 90.5, "MFN": 89.75, "MAA": 89.83, "BWT": -1.5, "Forgetting": 1.5,
                                      "FWT": -5.0},
                          "seconds": {"learn": [1.0, 2.0], "evaluate": [1.0, 1.0, 1.0]},
                          "routing": {"router": "mllm", "accuracy": 99.0, "per_task": {"RS": 100.0, "Med": 98.0},
                                      "confusion": [[50, 0], [2, 48]],
                                      "stages": [{"stage": 1, "seen": ["RS"], "accuracy": 100.0,
                                                  "per_task": {"RS": 100.0}, "confusion": [[50]]}]}},
    },
}


@pytest.mark.slow
@given(content=json_file(METRICS_FILE))
@fuzz(150)
def test_metrics_file(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("metrics", numbered=True)
    path = folder / "matrix.json"
    path.write_bytes(content)
    before = snapshot(folder)
    outcome = cli(["metrics", path])
    if assert_keeps_promise(outcome, [path], before=before, after=snapshot(folder)):
        values = json.loads(outcome.out)  # strict JSON: no NaN or Infinity printed
        assert set(values) == {"MFT", "MFN", "MAA", "BWT", "Forgetting", "FWT"}
        assert all(v is None or math.isfinite(v) for v in values.values()), str(outcome)
    assert snapshot(folder) == before  # metrics never writes


def _strict(text: str) -> None:
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(f"{c} printed")))


@pytest.mark.slow
@given(content=json_file(RESULTS), second=st.booleans())
@fuzz(30)
def test_report_of_results_files(tmp_path_factory, content, second):
    """One broken run folder, alone (report written into it) or beside a good one (report in --out)."""
    folder = tmp_path_factory.mktemp("report", numbered=True)
    run = folder / "run"
    run.mkdir()
    (run / "results.json").write_bytes(content)
    argv = ["report", run]
    if second:
        good = folder / "good"
        good.mkdir()
        (good / "results.json").write_bytes(encode(RESULTS))
        argv = ["report", good, run / "results.json", "--out", folder / "both"]
    before = snapshot(folder)
    outcome = cli(argv)
    if assert_keeps_promise(outcome, [run / "results.json"], before=before, after=snapshot(folder)):
        written = folder / "both" if second else run
        assert (written / "report.md").is_file(), str(outcome)
        assert not [p for p in written.rglob(".*") if p.name.endswith(".tmp")], "a temporary file was left"


@given(where=st.sampled_from(["a file", "inside a file", "the results file"]))
@fuzz(3)
def test_report_out_that_cannot_be_written(tmp_path_factory, where):
    folder = tmp_path_factory.mktemp("out", numbered=True)
    for name in ("a", "b"):
        (folder / name).mkdir()
        (folder / name / "results.json").write_bytes(encode(RESULTS))
    (folder / "file").write_text("x")
    out = {"a file": folder / "file", "inside a file": folder / "file" / "sub",
           "the results file": folder / "a" / "results.json"}[where]
    before = snapshot(folder)
    outcome = cli(["report", folder / "a", folder / "b", "--out", out])
    assert_keeps_promise(outcome, [out], before=before, after=snapshot(folder))


def test_report_of_a_results_file_with_hundreds_of_tasks(tmp_path):
    """700 tasks once made a 72 000-pixel-wide heatmap canvas and `mllmcl report` was killed for memory
    after two minutes; the matrix table is written, the heatmap left out with a note."""
    tasks = [f"t{i}" for i in range(700)]
    (tmp_path / "results.json").write_text(json.dumps({"format": 1, "tasks": tasks, "methods": {
        "seq-lora": {"sequential": True, "matrix": [[50.0] * 700]}}}))
    outcome = cli(["report", tmp_path])
    assert outcome.code == 0, str(outcome)
    assert "(no heatmap: more than 60 tasks)" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "heatmaps").exists()
