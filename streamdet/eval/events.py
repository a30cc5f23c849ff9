"""Event-level results at the calibrated threshold: what an operator would have been sent.

Frame AUC ranks scores; an operator gets *events*. Each clip's smoothed scores go through the
product's own event rules (``streamdet.alert.rules.EventTracker``, default settings) at the
clip's frame rate, with the calibrated threshold and the held-out normal peak, as ``run`` would
apply them. Then:

* a labelled anomalous stretch (a run of 1s) is **caught** when an event overlaps it (from its
  start to its end, or to the clip's end while still open);
* an event overlapping no anomalous stretch is a **false event**; their rate is per hour of
  normal (label 0) footage.

Anomaly maps are not kept by ``streamdet eval``, so the rules' global-change test (most of the
image above the threshold at once) is not applied here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamdet.alert.rules import Change, EventTracker, Observation, RuleSettings

_NO_MAP = np.zeros((1, 1), np.float32)


@dataclass(frozen=True)
class ClipEvents:
    stretches: int  # labelled anomalous stretches
    caught: int  # of them, overlapped by an event
    events: int
    false_events: int  # events overlapping no anomalous stretch
    normal_seconds: float


def stretches(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1s as (first, last + 1) frame indices."""
    padded = np.concatenate([[0], np.asarray(labels, np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def clip_events(
    scores: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    fps: float,
    normal_peak: float | None = None,
    rules: RuleSettings | None = None,
) -> ClipEvents:
    """Events the rules raise on one clip's smoothed ``scores``, against its ``labels``."""
    tracker = EventTracker("eval", rules or RuleSettings())
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for i, score in enumerate(scores):
        obs = Observation(i / fps, i, float(score), threshold, _NO_MAP, normal_peak)
        for update in tracker.feed(obs):
            if update.change is Change.STARTED:
                start = update.event.start
            elif update.change is Change.ENDED and start is not None:
                spans.append((start, update.event.end or start))
                start = None
    if start is not None:  # still open at the clip's end
        spans.append((start, (len(scores) - 1) / fps))
    runs = [(a / fps, (b - 1) / fps) for a, b in stretches(labels)]

    def overlaps(span: tuple[float, float], run: tuple[float, float]) -> bool:
        return span[0] <= run[1] and run[0] <= span[1]

    caught = sum(any(overlaps(s, r) for s in spans) for r in runs)
    false = sum(not any(overlaps(s, r) for r in runs) for s in spans)
    normal_s = float(np.count_nonzero(np.asarray(labels) == 0)) / fps
    return ClipEvents(len(runs), caught, len(spans), false, normal_s)


def event_summary(clips: dict[str, ClipEvents]) -> dict[str, object]:
    """Totals over clips: share of stretches caught, false events and their hourly rate."""
    stretches_total = sum(c.stretches for c in clips.values())
    caught = sum(c.caught for c in clips.values())
    false = sum(c.false_events for c in clips.values())
    normal_h = sum(c.normal_seconds for c in clips.values()) / 3600
    return {
        "anomalous_stretches": stretches_total,
        "stretches_caught": caught,
        "stretch_recall": caught / stretches_total if stretches_total else None,
        "events": sum(c.events for c in clips.values()),
        "false_events": false,
        "normal_hours": round(normal_h, 4),
        "false_events_per_hour": false / normal_h if normal_h > 0 else None,
        "rules": "streamdet.alert.rules defaults at the clip frame rate; no global-change test",
        "per_clip": {n: c.__dict__ for n, c in clips.items()},
    }
