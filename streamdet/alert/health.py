"""Camera-health events: a covered lens, a moved view, a blurred or frozen picture.

``HealthTracker`` is pure (no threads, no clock): fed each check's strengths (see
``streamdet.learning.health.findings``; > 1 means the frame shows the condition), a condition
**opens** once it has held for ``open_after_s`` (its start is the first check that showed it)
and **ends** once it has not held for ``clear_after_s`` (its end is the first check that no
longer showed it). Each condition is its own event, of kind ``health``, never an anomaly.

``HealthChecks`` samples every camera's two newest frames at ``check_fps`` (blocking work for a
thread: a resize and a few OpenCV passes on a frame at the model's size) and measures them
against the camera's learned baseline. A camera without one (a model trained before health
checks, or still learning) is not checked; that is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from streamdet.alert.reader import FrameReader
from streamdet.alert.rules import Change, EventState, Update
from streamdet.config import HealthConfig
from streamdet.learning.health import (
    CONDITIONS,
    HealthBaseline,
    Measures,
    Meter,
    findings,
    frozen_check_possible,
    to_size,
)

logger = logging.getLogger(__name__)

# A camera's learned normal look once it detects; None: its health is not checked.
BaselineOf = Callable[[str], HealthBaseline | None]

_EPS = 1e-6
WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)


def describe(condition: str, m: Measures, baseline: HealthBaseline) -> str:
    """The measured figure against normal, for the event's ``reason``."""
    if condition == "covered":
        return (
            f"contrast {m.contrast:.1f} (normal >= {baseline.contrast:.1f}), "
            f"brightness {m.brightness:.1f} (normal >= {baseline.brightness:.1f})"
        )
    if condition == "blurred":
        return f"sharpness {m.sharpness:.0f} (normal >= {baseline.sharpness:.0f})"
    if condition == "moved":
        return (
            f"view shifted {2 * m.shift:.0f} px, match {m.match:.2f} "
            f"(normal >= {baseline.match:.2f})"
        )
    change = 0.0 if m.change is None else m.change
    return f"frame-to-frame change {change:.2f} (normal >= {baseline.change:.2f})"


@dataclass
class _Condition:
    since: float | None = None  # first check of the current run that showed it
    cleared_since: float | None = None  # first check of the current run that did not
    event: EventState | None = None


class HealthTracker:
    """One camera's health conditions. Feed every check in order; get the changes back."""

    def __init__(self, camera: str, open_after_s: float = 3.0, clear_after_s: float = 3.0) -> None:
        self.camera = camera
        self.open_after_s, self.clear_after_s = open_after_s, clear_after_s
        self.conditions = {c: _Condition() for c in CONDITIONS}
        self.last_time: float | None = None

    def holding(self) -> bool:
        """A condition is open, or showed in the last check (anomaly scores mean little)."""
        return any(s.event is not None or s.since is not None for s in self.conditions.values())

    def is_open(self, condition: str) -> bool:
        return self.conditions[condition].event is not None

    def feed(self, time: float, strengths: dict[str, float], why: dict[str, str]) -> list[Update]:
        """One check at ``time``: each condition's strength (> 1: shown) and, for those shown,
        the measured figure against normal (the event's ``reason``)."""
        self.last_time = time
        updates = []
        for condition, state in self.conditions.items():
            strength = strengths.get(condition, 0.0)
            if strength > 1:
                state.cleared_since = None
                state.since = time if state.since is None else state.since
                if state.event is None and time - state.since + _EPS >= self.open_after_s:
                    state.event = EventState(
                        camera=self.camera,
                        start=state.since,
                        end=None,
                        peak_score=round(min(strength, 1e3), 3),
                        peak_time=time,
                        peak_seq=-1,
                        region=WHOLE_FRAME,
                        threshold=1.0,
                        reason=why.get(condition),
                        kind="health",
                        condition=condition,
                    )
                    updates.append(Update(Change.STARTED, state.event))
                continue
            state.since = None
            if state.event is None:
                continue
            state.cleared_since = time if state.cleared_since is None else state.cleared_since
            if time - state.cleared_since + _EPS >= self.clear_after_s:
                updates.append(self._end(state, state.event, state.cleared_since))
        return updates

    def finish(self) -> list[Update]:
        """End every open condition now (the stream stops)."""
        ends = []
        for state in self.conditions.values():
            if state.event is not None:
                at = state.cleared_since or self.last_time or state.event.start
                ends.append(self._end(state, state.event, max(at, state.event.start)))
            state.since = None
        return ends

    @staticmethod
    def _end(state: _Condition, event: EventState, at: float) -> Update:
        state.event, state.cleared_since = None, None
        return Update(Change.ENDED, replace(event, end=at))


class HealthChecks:
    """Every camera's health checks; ``check()`` is blocking (call it from a thread)."""

    def __init__(
        self,
        cameras: list[str],
        frames: FrameReader,
        baseline: BaselineOf,
        config: HealthConfig,
    ) -> None:
        self.frames, self.baseline, self.config = frames, baseline, config
        self.suppress_anomalies = config.suppress_anomalies
        # replaced, never changed in place: check() runs in a thread while a reload adds and
        # removes cameras
        self.trackers = {
            c: HealthTracker(c, config.open_after_s, config.clear_after_s) for c in cameras
        }
        self.checked: set[str] = set()  # cameras with a baseline, checked at least once
        self._meters: dict[str, tuple[HealthBaseline, Meter]] = {}
        self._last_seq: dict[str, int] = {}
        self._told: set[str] = set()

    def add(self, camera: str) -> None:
        """Check ``camera`` too (added by a reload)."""
        tracker = HealthTracker(camera, self.config.open_after_s, self.config.clear_after_s)
        self.trackers = {**self.trackers, camera: tracker}

    def remove(self, camera: str) -> list[Update]:
        """Stop checking ``camera``; the ends of its open conditions."""
        trackers = dict(self.trackers)
        tracker = trackers.pop(camera, None)
        self.trackers = trackers
        for known in (self._meters, self._last_seq):
            known.pop(camera, None)
        self.checked.discard(camera)
        self._told.discard(camera)
        return [] if tracker is None else tracker.finish()

    def check(self) -> list[Update]:
        """Measure each camera's newest frame (if new) and feed its tracker."""
        updates = []
        for camera, tracker in self.trackers.items():
            try:
                updates += self._check(camera, tracker)
            except Exception:  # one camera's check failing must not stop the others
                logger.exception("[%s] health check failed", camera)
        return updates

    def _meter(self, camera: str) -> tuple[HealthBaseline, Meter] | None:
        baseline = self.baseline(camera)
        if baseline is None:
            return None
        known = self._meters.get(camera)
        if known is None or known[0] is not baseline:  # a (new) model with its baseline
            known = self._meters[camera] = (baseline, Meter(baseline.reference_image()))
            if not frozen_check_possible(baseline):
                logger.warning(
                    "[%s] health: normal footage hardly changes (%.2f), repeats frames (%.0f %%):"
                    " frozen check off",
                    camera,
                    baseline.change,
                    100 * baseline.repeats,
                )
        return known

    def _check(self, camera: str, tracker: HealthTracker) -> list[Update]:
        found = self._meter(camera)
        if found is None:
            self._tell_once(camera)
            return []
        baseline, meter = found
        refs, pixels = self.frames.newest(camera, 2)
        if not refs or refs[-1].seq == self._last_seq.get(camera):
            return []
        self._last_seq[camera] = refs[-1].seq
        grey = to_size(pixels[-1], baseline)
        neighbours = len(refs) == 2 and refs[0].seq + 1 == refs[1].seq
        before = to_size(pixels[0], baseline) if neighbours else None
        measures = meter.measure(grey, before)
        strengths = findings(baseline, measures)
        why = {c: describe(c, measures, baseline) for c, s in strengths.items() if s > 1}
        self.checked.add(camera)
        return tracker.feed(refs[-1].wall_time, strengths, why)

    def _tell_once(self, camera: str) -> None:
        if camera not in self._told:
            self._told.add(camera)
            logger.info(
                "[%s] health checks off until the camera's model has a health baseline "
                "(it is learning, or was trained before health checks: retrain to get one)",
                camera,
            )

    def suppresses(self, camera: str) -> bool:
        """Whether a condition holds on ``camera`` and its anomaly events are not raised."""
        tracker = self.trackers.get(camera)
        return self.suppress_anomalies and tracker is not None and tracker.holding()

    def snapshot(self, camera: str) -> dict[str, bool] | None:
        """Each condition: open or not; None while the camera is not checked (no baseline)."""
        tracker = self.trackers.get(camera)
        if tracker is None or camera not in self.checked or self.baseline(camera) is None:
            return None
        return {c: tracker.is_open(c) for c in tracker.conditions}

    def finish(self) -> list[Update]:
        return [u for t in self.trackers.values() for u in t.finish()]
