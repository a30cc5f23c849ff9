"""Small frozen records and enums that pass between stages (pixels stay in the ring)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SourceState(enum.Enum):
    """Where a camera's capture worker is in its life."""

    NOT_STARTED = "not_started"
    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
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
