"""Frame-level metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from streamdet.eval.metrics import auc, equal_error_rate, roc_curve, video_normalised


def test_auc_perfect_inverse_and_chance() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auc(labels, np.zeros(4)) == 0.5  # all tied


def test_auc_equals_the_rank_statistic() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = rng.normal(size=500) + labels * 0.7
    scores[::7] = scores[0]  # some ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(labels, scores) == pytest.approx(pairs, abs=1e-12)


def test_auc_one_class_is_nan() -> None:
    assert np.isnan(auc(np.ones(5), np.arange(5)))


def test_roc_curve_endpoints() -> None:
    fpr, tpr = roc_curve(np.array([0, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_equal_error_rate() -> None:
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    eer = equal_error_rate(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert eer == pytest.approx(0.5)


def test_video_normalised() -> None:
    assert video_normalised(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert video_normalised(np.array([1.0, 1.0])).tolist() == [0.0, 0.0]
