"""Open-world fallback: when a sample fits no expert, the base model answers it instead of a wrong expert.

The router's confidence (prototype: how typical the distance to the nearest prototype is among the
buffers' own; mllm: the chosen letter's probability) is thresholded. The threshold is calibrated on
held-out rows of the experts (never on data a router trained on) to a target false-reject rate: the share
of those in-domain rows that would go to the base model. Pure functions of lists of confidences."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def calibrate(confidence: Sequence[float], target_frr: float = 0.05) -> float | None:
    """A threshold that rejects (confidence < threshold) the largest share of the in-domain `confidence`s
    that is at most `target_frr`, placed halfway between the last score it rejects and the first it keeps:
    no calibration row sits on it, where the float noise of a different batch (padding, another batch size)
    would decide its side. None (no fallback) when there is nothing to calibrate on or the target is 0."""
    values = np.sort(np.asarray(confidence, dtype=np.float64))
    if not len(values) or target_frr <= 0:
        return None
    k = int(np.floor(target_frr * len(values) + 1e-9))  # how many may be rejected
    if k >= len(values):
        return float(np.nextafter(values[-1], np.inf))
    below = int(np.searchsorted(values, values[k], side="left"))  # what can be rejected: below values[k] and its ties
    if below == 0:
        return float(values[0])  # nothing may be rejected: only what scores below every in-domain row
    return float((values[below - 1] + values[k]) / 2)


def auroc(seen: Sequence[float], unseen: Sequence[float]) -> float | None:
    """Probability that an in-domain sample gets a higher confidence than an unseen-domain one (ties count
    half): 1.0 separates them perfectly, 0.5 is chance. None without both kinds."""
    a, b = np.asarray(seen, dtype=np.float64), np.asarray(unseen, dtype=np.float64)
    if not len(a) or not len(b):
        return None
    b = np.sort(b)
    below = np.searchsorted(b, a, side="left")
    ties = np.searchsorted(b, a, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(a) * len(b)))


def rejected(confidence: Sequence[float], threshold: float | None) -> float:
    """Share (%) of `confidence`s below `threshold`, i.e. sent to the base model."""
    if threshold is None or not len(confidence):
        return 0.0
    return 100.0 * float(np.mean(np.asarray(confidence) < threshold))


__all__ = ["auroc", "calibrate", "rejected"]
