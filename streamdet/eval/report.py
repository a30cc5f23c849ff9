"""Evaluation outputs: per-clip score CSVs, the ROC curve and score timelines (PNG)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt
import numpy as np

from streamdet.eval.metrics import roc_curve


def write_scores(path: Path, scores: np.ndarray) -> None:
    """``frame,score`` with one row per decoded frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "score"])
        writer.writerows((i, f"{s:.6f}") for i, s in enumerate(scores))


def plot_roc(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> None:
    """One ROC curve per model: ``{name: (labels, scores, auc)}``."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for name, (labels, scores, area) in curves.items():
        fpr, tpr = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {area:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="Frame-level ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_timeline(
    path: Path, clip: str, scores: np.ndarray, labels: np.ndarray, threshold: float, fps: float
) -> None:
    """Score over time with the calibrated threshold and the anomalous ground truth shaded."""
    seconds = np.arange(len(scores)) / fps
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    ax.fill_between(
        seconds,
        0,
        1,
        where=labels.astype(bool),
        transform=ax.get_xaxis_transform(),
        color="tab:red",
        alpha=0.15,
        step="mid",
        label="anomalous (ground truth)",
    )
    ax.plot(seconds, scores, color="tab:blue", linewidth=1.2, label="score")
    ax.axhline(threshold, color="tab:orange", linestyle="--", linewidth=1, label="threshold")
    ax.set(xlabel="seconds", ylabel="score", title=clip)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
