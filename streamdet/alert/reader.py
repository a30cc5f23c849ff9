"""What the alert stage may read of the frames: a narrow interface, not the capture stage.

Alerting gets scored frames through a hand-off and, beside it, a ``FrameReader``: copy the
pixels a ``FrameRef`` points at (an event's peak frame, for its snapshot), the newest frames of
a camera (the health checks), and a camera's recent footage (a ``FootageBuffer``: hold it
while an event is open, cut the event's clip). The App gives it one built on whatever holds
the rings; a test gives it a ring of its own.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streamdet.footage import FootageBuffer
from streamdet.frames import FrameRef


class FrameReader(Protocol):
    """Read access to the cameras' frames and footage; every method is quick and thread-safe."""

    def read(self, ref: FrameRef) -> np.ndarray | None:
        """A copy of the frame ``ref`` points at; None once it has been overwritten (or its
        camera is gone)."""
        ...

    def newest(self, camera: str, count: int) -> tuple[list[FrameRef], np.ndarray]:
        """Up to ``count`` of the camera's newest frames, oldest first, copied."""
        ...

    def footage(self, camera: str) -> FootageBuffer | None:
        """The camera's recent footage for clips and snapshots; None when clips are off."""
        ...
