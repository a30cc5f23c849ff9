"""Turning one camera's stream of scored frames into events. Pure code: no threads, no clock.

An event **starts** when the smoothed score stays above the threshold for ``min_duration_s``
(its start time is the first frame above), or at once when it reaches ``instant_ratio`` x the
threshold: a thrown bag or a car crossing a narrow view is gone before ``min_duration_s``,
and a score that far above the threshold is evidence enough (the threshold is calibrated
for every up-crossing to count as an event; ``min_duration_s`` is a margin on top for scores
just above it). It **updates** while it lasts (peak score, where), and
**ends** once the score has stayed below the lower release level for ``end_after_s``. The release
level is ``release_ratio`` x threshold (hysteresis), raised to the highest score the camera's
held-out normal footage reached when that is higher (never above the threshold): a threshold
calibrated just above busy normal traffic would otherwise keep an event open for as long as the
traffic lasts. After an end, ``cooldown_s`` must pass before another start, so
a flickering score cannot raise a storm. A frame whose anomaly map is above the threshold over
most of the image (``global_share``: lights switched, an IR cut filter flipping) is a global
change, not an anomaly: it neither starts nor extends an event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import numpy as np

from streamdet.frames import DetectedObject, ScoredFrame
from streamdet.scoring.calibration import release_level

_EPS = 1e-6  # frame times are sums of 1/fps: 0.6 - 0.2 must count as 0.4


@dataclass(frozen=True)
class RuleSettings:
    min_duration_s: float = 0.6
    instant_ratio: float = 2.0
    end_after_s: float = 2.0
    release_ratio: float = 0.8
    cooldown_s: float = 10.0
    global_share: float = 0.5


@dataclass(frozen=True)
class Observation:
    """What the rules need of one scored frame."""

    time: float  # capture wall time, seconds
    seq: int
    smoothed: float
    threshold: float
    anomaly_map: np.ndarray  # (gh, gw)
    normal_peak: float | None = None  # held-out normal footage's highest score, if known
    objects: tuple[DetectedObject, ...] = ()  # object-level models: highest score first

    @staticmethod
    def of(frame: ScoredFrame) -> Observation:
        return Observation(
            frame.ref.wall_time,
            frame.ref.seq,
            frame.smoothed,
            frame.threshold,
            frame.anomaly_map,
            frame.normal_peak,
            frame.objects,
        )


@dataclass(frozen=True)
class EventState:
    """An event as the rules see it (the store adds ids, files and delivery)."""

    camera: str
    start: float
    end: float | None
    peak_score: float
    peak_time: float
    peak_seq: int
    region: tuple[float, float, float, float]  # x0, y0, x1, y1 relative to the frame
    threshold: float
    reason: str | None = None  # why: the reason most of the event's hot frames gave
    objects: tuple[DetectedObject, ...] = ()  # the peak frame's unusual objects
    kind: str = "anomaly"  # or "health": a camera condition (streamdet.alert.health)
    condition: str | None = None  # health events: covered, blurred, moved or frozen


class Change(enum.Enum):
    STARTED = "started"
    UPDATED = "updated"  # a new peak
    ENDED = "ended"


@dataclass(frozen=True)
class Update:
    change: Change
    event: EventState


def unusual_objects(obs: Observation) -> tuple[DetectedObject, ...]:
    """The objects above the threshold, or the highest one when none is (smoothing can keep
    the frame above while no single object is)."""
    above = tuple(o for o in obs.objects if o.score > obs.threshold)
    return above or obs.objects[:1]


def region_of(anomaly_map: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """Bounding box (relative) of the map cells above ``level``; the max cell if none are."""
    rows, cols = anomaly_map.shape
    ys, xs = np.nonzero(anomaly_map > level)
    if len(ys) == 0:
        y, x = np.unravel_index(int(np.argmax(anomaly_map)), anomaly_map.shape)
        ys, xs = np.array([y]), np.array([x])
    return (xs.min() / cols, ys.min() / rows, (xs.max() + 1) / cols, (ys.max() + 1) / rows)


class EventTracker:
    """The rules for one camera. Feed every scored frame in order; get the changes back."""

    def __init__(self, camera: str, settings: RuleSettings | None = None) -> None:
        self.camera = camera
        self.settings = settings or RuleSettings()
        self.event: EventState | None = None
        self._above_since: float | None = None
        self._first_above: Observation | None = None
        self._below_since: float | None = None
        self._cooldown_until = float("-inf")
        self._last_time: float | None = None
        # reason -> summed excess over the threshold of the hot frames that gave it. The
        # event's reason is the one that carried it most, not the peak frame's alone (a
        # wrong-way walker slowing down at its peak would otherwise end as "slow").
        self._votes: dict[str, float] = {}

    def _vote(self, obs: Observation) -> str | None:
        if obs.objects and obs.objects[0].reason:
            reason = obs.objects[0].reason
            self._votes[reason] = self._votes.get(reason, 0.0) + obs.smoothed - obs.threshold
        return max(self._votes, key=self._votes.__getitem__) if self._votes else None

    def is_global(self, obs: Observation) -> bool:
        return float(np.mean(obs.anomaly_map > obs.threshold)) >= self.settings.global_share

    def release_level(self, obs: Observation) -> float:
        """Below this for ``end_after_s``, an open event ends."""
        return release_level(obs.threshold, obs.normal_peak, self.settings.release_ratio)

    def feed(self, obs: Observation) -> list[Update]:
        self._last_time = obs.time
        hot = obs.smoothed > obs.threshold and not self.is_global(obs)
        if self.event is None:
            return self._idle(obs, hot)
        return self._active(obs, hot)

    def _idle(self, obs: Observation, hot: bool) -> list[Update]:
        if not hot or obs.time < self._cooldown_until:
            self._above_since, self._first_above = None, None
            self._votes = {}
            return []
        if self._above_since is None:
            self._above_since, self._first_above = obs.time, obs
        reason = self._vote(obs)
        strong = obs.smoothed >= self.settings.instant_ratio * obs.threshold
        if not strong and obs.time - self._above_since + _EPS < self.settings.min_duration_s:
            return []
        first = self._first_above or obs
        self.event = EventState(
            camera=self.camera,
            start=first.time,
            end=None,
            peak_score=first.smoothed,
            peak_time=first.time,
            peak_seq=first.seq,
            region=region_of(first.anomaly_map, first.threshold),
            threshold=first.threshold,
            reason=reason,
            objects=unusual_objects(first),
        )
        updates = [Update(Change.STARTED, self.event)]
        if obs is not first and obs.smoothed > first.smoothed:
            updates += self._peak(obs)
        self._below_since = None
        return updates

    def _active(self, obs: Observation, hot: bool) -> list[Update]:
        event = self.event
        if event is None:  # the caller checked; keeps the type checker honest
            return []
        if hot:
            self.event = event = replace(event, reason=self._vote(obs) or event.reason)
        updates = self._peak(obs) if hot and obs.smoothed > event.peak_score else []
        if obs.smoothed >= self.release_level(obs) and not self.is_global(obs):
            self._below_since = None
            return updates
        if self._below_since is None:
            self._below_since = obs.time
        if obs.time - self._below_since + _EPS < self.settings.end_after_s:
            return updates
        ended = replace(self.event or event, end=self._below_since)
        self.event, self._above_since, self._first_above = None, None, None
        self._votes = {}
        self._cooldown_until = ended.end + self.settings.cooldown_s if ended.end else obs.time
        return [*updates, Update(Change.ENDED, ended)]

    def finish(self) -> Update | None:
        """End the open event now, as the stream stops (a shutdown, the end of a file): at
        the time the score fell below the release level, else at the last frame seen."""
        event = self.event
        if event is None:
            return None
        end = self._below_since if self._below_since is not None else self._last_time
        ended = replace(event, end=max(end if end is not None else event.peak_time, event.start))
        self.event, self._above_since, self._first_above = None, None, None
        self._votes = {}
        return Update(Change.ENDED, ended)

    def _peak(self, obs: Observation) -> list[Update]:
        if self.event is None:
            return []
        self.event = replace(
            self.event,
            peak_score=obs.smoothed,
            peak_time=obs.time,
            peak_seq=obs.seq,
            region=region_of(obs.anomaly_map, obs.threshold),
            objects=unusual_objects(obs) or self.event.objects,
        )
        return [Update(Change.UPDATED, self.event)]
