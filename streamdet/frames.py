"""Small frozen records and enums that pass between stages (pixels stay in the ring)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class SourceState(enum.Enum):
    """Where a camera's capture worker is in its life."""

    NOT_STARTED = "not_started"
    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


class ModelState(enum.Enum):
    """Where a camera's detector is: it learns normal in place when it has no model yet."""

    NO_MODEL = "no_model"  # nothing trained and learning in place is off
    LEARNING = "learning"  # collecting normal footage from the live stream
    TRAINING = "training"  # fitting and calibrating on what it collected
    DETECTING = "detecting"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Points at one frame held in a camera's ring.

    ``seq`` counts frames delivered by the camera since the stage started (0, 1, 2, ... across
    reconnects); ``wall_time`` is ``time.time()`` when the frame was decoded; ``pts_s`` is the
    stream's presentation time in seconds (``None`` when the stream has none).
    """

    camera: str
    slot: int
    seq: int
    wall_time: float
    pts_s: float | None
    analyse: bool


# Why an object is unusual, as object-level models say it (their output carries the index).
REASONS = (
    "fast",
    "slow",
    "large",
    "small",
    "unusual place",
    "wrong way",
    "unusual look",
    "lingering",
    "left behind",
)


@dataclass(frozen=True, slots=True)
class DetectedObject:
    """One object an object-level model scored: where, how unusual, and why."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 relative to the frame
    score: float  # the object's normalised score (the frame score is the highest)
    reason: str  # e.g. "fast", "unusual place", "left behind"
    # the feature row it was scored with (object models that learn on line): what teaching
    # the camera that this object was normal stores
    features: np.ndarray | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {"box": [round(v, 4) for v in self.box], "score": self.score, "reason": self.reason}

    @staticmethod
    def from_rows(
        rows: np.ndarray | None, features: np.ndarray | None = None
    ) -> tuple[DetectedObject, ...]:
        """Object rows (K, 7) of a model's output (and their feature rows (K, D), if the model
        gives them) -> the valid ones, highest score first."""
        if rows is None:
            return ()
        found = [
            DetectedObject(
                (float(r[0]), float(r[1]), float(r[2]), float(r[3])),
                float(r[4]),
                REASONS[int(r[5])] if 0 <= int(r[5]) < len(REASONS) else "unusual",
                None if features is None else features[i],
            )
            for i, r in enumerate(rows)
            if r[6] > 0
        ]
        return tuple(sorted(found, key=lambda o: -o.score))


@dataclass(frozen=True, slots=True)
class ScoredFrame:
    """One analysed frame: what the inference stage hands to alerting and the API."""

    ref: FrameRef
    score: float  # the model's normalised frame score (max over the map)
    smoothed: float  # causal EMA of ``score``: what the threshold applies to
    threshold: float
    anomaly_map: np.ndarray  # (gh, gw) normalised patch scores, float32
    scored_at: float  # time.time() when scoring finished
    normal_peak: float | None = None  # highest smoothed score of held-out normal footage
    objects: tuple[DetectedObject, ...] = ()  # object-level models: highest score first
    model: str = ""  # the model that scored it, id and version (e.g. "objects v3")

    @property
    def latency_s(self) -> float:
        """Capture (decode) to score, in seconds."""
        return self.scored_at - self.ref.wall_time

    @property
    def above(self) -> bool:
        return self.smoothed > self.threshold
