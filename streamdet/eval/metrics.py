"""Frame-level detection metrics, written out here so the definitions are visible."""

from __future__ import annotations

import numpy as np


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (from high to low)."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    hits = labels[order]
    # keep the last index of each run of equal scores so ties move together
    distinct = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(sorted_scores) - 1]
    tp = np.cumsum(hits)[distinct]
    fp = np.cumsum(~hits)[distinct]
    positives, negatives = max(int(hits.sum()), 1), max(int((~hits).sum()), 1)
    return np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    fpr, tpr = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The error rate where false-positive rate equals false-negative rate."""
    fpr, tpr = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def video_normalised(scores: np.ndarray) -> np.ndarray:
    """Min-max normalise within one video (the papers' convention: uses future frames)."""
    low, high = float(np.min(scores)), float(np.max(scores))
    return (scores - low) / (high - low) if high > low else np.zeros_like(scores, dtype=float)
