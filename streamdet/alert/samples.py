"""What an event keeps of its objects, so that an operator can later say it was normal.

An object-level model gives every object the feature row it was scored with. While an event
lasts, ``EventSamples`` keeps the unusual objects' rows of a bounded number of its frames, spread
over the whole event: every frame at first, and each time ``max_frames`` are held, every other
one is dropped and only every second frame after is taken (so a long event keeps an even
sample, in constant memory). The peak frame's objects are added at the end.
"""

from __future__ import annotations

import numpy as np

from streamdet.frames import DetectedObject


class EventSamples:
    """The feature rows of one open event's unusual objects, at up to ``max_frames`` frames."""

    def __init__(self, max_frames: int = 32) -> None:
        self.max_frames = max_frames
        self._frames: list[np.ndarray] = []
        self._stride = 1
        self._seen = 0

    def add(self, objects: tuple[DetectedObject, ...]) -> None:
        """One frame of the event: its unusual objects (those without rows are skipped)."""
        rows = [o.features for o in objects if o.features is not None]
        if not rows:
            return
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        self._frames.append(np.stack(rows).astype(np.float32))
        if len(self._frames) >= self.max_frames:
            self._frames = self._frames[::2]
            self._stride *= 2

    def rows(self, peak: tuple[DetectedObject, ...] = ()) -> np.ndarray | None:
        """Every kept row (and the peak frame's), (n, D); None when there is none."""
        extra = [o.features for o in peak if o.features is not None]
        frames = [*self._frames, *([np.stack(extra).astype(np.float32)] if extra else [])]
        if not frames or len({f.shape[1] for f in frames}) != 1:
            return None
        return np.concatenate(frames)
