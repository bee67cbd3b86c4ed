"""CL metrics against hand-computed matrices, input immutability, and the errors a user can cause."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from mllmcl.core.errors import UserError
from mllmcl.eval.cl_metrics import bwt, cl_metrics, forgetting, fwt, maa, metrics_from_file, mfn, mft

# a[i][j] = accuracy on task j after training task i.
A3 = [[80.0, 20.0, 10.0],
      [85.0, 90.0, 30.0],
      [50.0, 70.0, 95.0]]
Z3 = [15.0, 25.0, 5.0]
EXPECTED3 = {
    "MFT": (80 + 90 + 95) / 3,            # diagonal: 265/3 = 88.33
    "MFN": (50 + 70 + 95) / 3,            # last row: 215/3 = 71.67
    # row means over seen tasks: 80, (85+90)/2 = 87.5, 215/3; their mean = 717.5/9 = 79.72
    "MAA": (80 + 87.5 + 215 / 3) / 3,
    "BWT": ((50 - 80) + (70 - 90)) / 2,   # last row minus diagonal for j < T-1: -25
    # best before the last step minus last: task 0 max(80, 85) - 50 = 35, task 1 max(90) - 70 = 20 -> 27.5
    # (not -BWT: task 0 peaked after task 1, not right after its own training)
    "Forgetting": (35 + 20) / 2,
    "FWT": ((20 - 25) + (30 - 5)) / 2,    # a[j-1][j] - zero_shot[j] for j >= 1: (-5 + 25)/2 = 10
}

A2 = [[80.0, 10.0],
      [50.0, 90.0]]
Z2 = [20.0, 30.0]
EXPECTED2 = {
    "MFT": 85.0,        # (80 + 90)/2
    "MFN": 70.0,        # (50 + 90)/2
    "MAA": 75.0,        # (80 + (50+90)/2)/2 = (80 + 70)/2
    "BWT": -30.0,       # 50 - 80
    "Forgetting": 30.0,  # max(80) - 50
    "FWT": -20.0,       # a[0][1] - z[1] = 10 - 30
}


def _close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if value is None:
            assert actual[key] is None, key
        else:
            assert actual[key] == pytest.approx(value), key


def test_three_tasks_by_hand():
    _close(cl_metrics(A3, Z3), EXPECTED3)
    assert round(cl_metrics(A3, Z3)["MAA"], 2) == 79.72


def test_two_tasks_by_hand():
    _close(cl_metrics(A2, Z2), EXPECTED2)


def test_single_task_has_no_transfer_metrics():
    _close(cl_metrics([[70.0]], [10.0]),
           {"MFT": 70.0, "MFN": 70.0, "MAA": 70.0, "BWT": None, "Forgetting": None, "FWT": None})
    assert bwt([[70]]) is None and forgetting([[70]]) is None and fwt([[70]], [10]) is None


def test_fwt_needs_zero_shot():
    result = cl_metrics(A3)
    assert result["FWT"] is None
    _close({k: v for k, v in result.items() if k != "FWT"}, {k: v for k, v in EXPECTED3.items() if k != "FWT"})


def test_values_are_python_floats():
    for value in cl_metrics(np.array(A3, dtype=np.float32), np.array(Z3)).values():
        assert type(value) is float
    assert type(cl_metrics([[1, 2], [3, 4]])["MFT"]) is float  # ints in, float out


def test_single_functions_match():
    assert mft(A3) == pytest.approx(EXPECTED3["MFT"])
    assert mfn(A3) == pytest.approx(EXPECTED3["MFN"])
    assert maa(A3) == pytest.approx(EXPECTED3["MAA"])
    assert bwt(A3) == pytest.approx(EXPECTED3["BWT"])
    assert forgetting(A3) == pytest.approx(EXPECTED3["Forgetting"])
    assert fwt(A3, Z3) == pytest.approx(EXPECTED3["FWT"])


@pytest.mark.parametrize("as_numpy", [False, True])
def test_input_not_mutated(as_numpy):
    matrix = np.array(A3) if as_numpy else copy.deepcopy(A3)
    zero_shot = np.array(Z3) if as_numpy else list(Z3)
    matrix_before, zero_before = copy.deepcopy(matrix), copy.deepcopy(zero_shot)
    cl_metrics(matrix, zero_shot)
    for fn in (mft, mfn, maa, bwt, forgetting):
        fn(matrix)
    fwt(matrix, zero_shot)
    np.testing.assert_array_equal(matrix, matrix_before)
    np.testing.assert_array_equal(zero_shot, zero_before)
    assert type(matrix) is type(matrix_before)


@pytest.mark.parametrize("matrix, message", [
    ([[1, 2, 3], [4, 5, 6]], "square"),
    ([[1, 2], [3]], "ragged"),
    ([[1, math.nan], [2, 3]], r"non-finite value at \[0\]\[1\]"),
    ([[1, 2], [math.inf, 3]], r"non-finite value at \[1\]\[0\]"),
    ([[1, "2"], [3, 4]], "numbers only"),
    ([[1, None], [3, 4]], "numbers only"),
    ([1, 2, 3], "list of rows"),
    ([], "list of rows"),
    (np.zeros((0, 0)), "empty"),
])
def test_bad_matrix(matrix, message):
    with pytest.raises(UserError, match=message):
        cl_metrics(matrix)
    with pytest.raises(UserError, match=message):
        mft(matrix)


@pytest.mark.parametrize("zero_shot, message", [
    ([1.0, 2.0], r"one accuracy per task \(3\), got 2"),
    ([1.0, 2.0, 3.0, 4.0], r"one accuracy per task \(3\), got 4"),
    ([1.0, math.nan, 3.0], "non-finite"),
    ([[1.0, 2.0, 3.0]], "flat list"),
])
def test_bad_zero_shot(zero_shot, message):
    with pytest.raises(UserError, match=message):
        cl_metrics(A3, zero_shot)
    with pytest.raises(UserError, match=message):
        fwt(A3, zero_shot)


def test_metrics_from_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"matrix": A3, "zero_shot": Z3}))
    _close(metrics_from_file(path), EXPECTED3)
    path.write_text(json.dumps({"matrix": A2}))
    _close(metrics_from_file(str(path)), {**EXPECTED2, "FWT": None})
    json.dumps(metrics_from_file(path))  # what the CLI prints: must serialise


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ("[[1, 2], [3, 4]]", '"matrix" key'),
    ('{"zero_shot": [1]}', '"matrix" key'),
    ('{"matrix": [[1, 2, 3], [4, 5, 6]]}', "square"),
    ('{"matrix": [[1, 2], [3, 4]], "zero_shot": [1]}', "one accuracy per task"),
])
def test_metrics_from_file_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message) as err:
        metrics_from_file(path)
    assert str(path) in str(err.value)


def test_metrics_from_folder_is_an_error(tmp_path):
    with pytest.raises(UserError, match="folder"):
        metrics_from_file(tmp_path)
