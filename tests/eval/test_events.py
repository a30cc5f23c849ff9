"""Event-level evaluation: the product's rules over scores, against labelled stretches."""

from __future__ import annotations

import numpy as np

from streamdet.eval.events import clip_events, event_summary, stretches


def test_stretches_are_runs_of_ones() -> None:
    assert stretches(np.array([0, 1, 1, 0, 0, 1, 0, 1, 1])) == [(1, 3), (5, 6), (7, 9)]
    assert stretches(np.zeros(4)) == []


def test_a_caught_stretch_a_missed_one_and_a_false_event() -> None:
    fps = 10.0
    labels = np.zeros(400, np.int8)
    labels[50:100] = 1  # caught: the score is high through it
    labels[300:320] = 1  # missed: the score stays low
    scores = np.zeros(400)
    scores[55:95] = 5.0
    scores[200:215] = 5.0  # 1.5 s above the threshold in normal footage: a false event
    scores[250:252] = 5.0  # 0.2 s: shorter than min_duration_s, no event
    result = clip_events(scores, labels, threshold=1.0, fps=fps)
    assert (result.stretches, result.caught, result.events, result.false_events) == (2, 1, 2, 1)
    assert result.normal_seconds == 33.0
    summary = event_summary({"a": result})
    assert summary["stretch_recall"] == 0.5
    assert summary["false_events_per_hour"] == 1 / (33.0 / 3600)


def test_an_event_still_open_at_the_clip_end_counts() -> None:
    labels = np.zeros(100, np.int8)
    labels[80:] = 1
    scores = np.zeros(100)
    scores[85:] = 3.0
    result = clip_events(scores, labels, threshold=1.0, fps=10.0)
    assert (result.caught, result.false_events) == (1, 0)
