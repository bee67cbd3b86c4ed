"""Continual-learning metrics: small pure functions of the accuracy matrix (MLLM-CL paper, section 5).

`a[i][j]` is the accuracy (%) on task j after training task i, 0-based, a T×T table; `zero_shot[j]` is the
untrained model's accuracy on task j. Every function copies its input into a fresh float array first, so a
caller's list or numpy array is never changed, and checks it: a matrix that is not square, is ragged, or
holds a non-number / NaN / inf is a `UserError` with a message saying which.

    >>> cl_metrics([[80, 10], [50, 90]], zero_shot=[20, 30])
    {'MFT': 85.0, 'MFN': 70.0, 'MAA': 75.0, 'BWT': -30.0, 'Forgetting': 30.0, 'FWT': -20.0}

BWT, Forgetting and FWT compare two moments of training, so with a single task they are undefined (`None`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mllmcl.core.errors import UserError
from mllmcl.core.io import read_json

METRIC_NAMES = ("MFT", "MFN", "MAA", "BWT", "Forgetting", "FWT")

ArrayLike = Sequence[Sequence[float]] | np.ndarray


def _numbers(values: Any, what: str, ndim: int) -> np.ndarray:
    """A float copy of `values` with `ndim` dimensions, all finite numbers, or a UserError naming `what`."""
    try:
        array = np.array(values)  # np.array copies: the caller's data is never touched
    except ValueError:
        raise UserError(f"{what} is ragged: its rows have different lengths") from None
    if array.ndim != ndim:
        shape = "a list of rows of numbers" if ndim == 2 else "a flat list of numbers"
        raise UserError(f"{what} must be {shape}, got something of shape {array.shape}")
    if array.dtype.kind not in "iuf":  # bools, strings, None and dicts are not accuracies
        raise UserError(f"{what} must hold numbers only")
    array = array.astype(float)
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        where = "".join(f"[{int(k)}]" for k in bad[0])
        raise UserError(f"{what} has a non-finite value at {where}: {array[tuple(bad[0])]}")
    return array


def _matrix(matrix: ArrayLike) -> np.ndarray:
    a = _numbers(matrix, "accuracy matrix", ndim=2)
    rows, cols = a.shape
    if rows == 0:
        raise UserError("accuracy matrix is empty")
    if rows != cols:
        raise UserError(f"accuracy matrix must be square (T rows of T tasks), got {rows} rows of {cols}")
    return a


def _zero_shot(zero_shot: Sequence[float] | np.ndarray, tasks: int) -> np.ndarray:
    z = _numbers(zero_shot, "zero_shot", ndim=1)
    if len(z) != tasks:
        raise UserError(f"zero_shot must have one accuracy per task ({tasks}), got {len(z)}")
    return z


def mft(matrix: ArrayLike) -> float:
    """Mean fine-tune accuracy: mean over j of a[j][j], each task right after learning it."""
    return float(np.mean(np.diag(_matrix(matrix))))


def mfn(matrix: ArrayLike) -> float:
    """Mean final accuracy: mean over j of a[T-1][j], every task after the last one was learned."""
    return float(np.mean(_matrix(matrix)[-1]))


def maa(matrix: ArrayLike) -> float:
    """Mean average accuracy: mean over i of (mean over j <= i of a[i][j]), the seen tasks at every step."""
    a = _matrix(matrix)
    return float(np.mean([np.mean(a[i, : i + 1]) for i in range(len(a))]))


def bwt(matrix: ArrayLike) -> float | None:
    """Backward transfer: mean over j < T-1 of a[T-1][j] - a[j][j] (negative = forgetting); None if T == 1."""
    a = _matrix(matrix)
    if len(a) == 1:
        return None
    earlier = np.arange(len(a) - 1)
    return float(np.mean(a[-1, earlier] - a[earlier, earlier]))


def forgetting(matrix: ArrayLike) -> float | None:
    """Forgetting (Chaudhry et al. 2018): mean over j < T-1 of (max over i in [j, T-2] of a[i][j]) - a[T-1][j],
    the drop from each task's best accuracy before the last step; None if T == 1."""
    a = _matrix(matrix)
    last = len(a) - 1
    if last == 0:
        return None
    return float(np.mean([np.max(a[j:last, j]) - a[last, j] for j in range(last)]))


def fwt(matrix: ArrayLike, zero_shot: Sequence[float] | np.ndarray) -> float | None:
    """Forward transfer: mean over j >= 1 of a[j-1][j] - zero_shot[j], how much learning the earlier tasks
    helped a task before it was trained; None if T == 1."""
    a = _matrix(matrix)
    z = _zero_shot(zero_shot, len(a))
    if len(a) == 1:
        return None
    later = np.arange(1, len(a))
    return float(np.mean(a[later - 1, later] - z[later]))


def cl_metrics(matrix: ArrayLike, zero_shot: Sequence[float] | np.ndarray | None = None) -> dict[str, float | None]:
    """All six metrics as plain Python floats: {"MFT", "MFN", "MAA", "BWT", "Forgetting", "FWT"}.
    FWT is None without `zero_shot`; BWT, Forgetting and FWT are None for a single task."""
    a = _matrix(matrix)  # validate once, before any metric, so the first error is about the input
    if zero_shot is not None:
        _zero_shot(zero_shot, len(a))
    return {
        "MFT": mft(a),
        "MFN": mfn(a),
        "MAA": maa(a),
        "BWT": bwt(a),
        "Forgetting": forgetting(a),
        "FWT": None if zero_shot is None else fwt(a, zero_shot),
    }


def metrics_from_file(path: str | Path) -> dict[str, float | None]:
    """`cl_metrics` of a JSON file `{"matrix": [[...], ...], "zero_shot": [...]}` (zero_shot optional).
    A missing file, bad JSON or a bad matrix is a UserError naming the file."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or "matrix" not in data:
        raise UserError(f'{path}: expected a JSON object {{"matrix": [[...]], "zero_shot": [...]}} '
                        f'with a "matrix" key')
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, not warned about
            metrics = cl_metrics(data["matrix"], data.get("zero_shot"))
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    if not all(v is None or np.isfinite(v) for v in metrics.values()):  # e.g. 1e308 + 1e308
        raise UserError(f"{path}: the accuracies are too large to average (percentages are expected)")
    return metrics
