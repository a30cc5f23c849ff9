"""Which frames a detecting camera may learn as normal. Pure code: no threads, no clock.

A frame's object feature rows wait in a short buffer until ``margin_s`` of later frames have
been seen. They are learned only if no frame within ``margin_s`` before or after it was hot
(the caller says which: one that could start an event or hold an open one), so the run-up to
an event, the event and its tail never train the model; and at most ``fps`` frames a second
are learned (neighbouring frames are near copies). The buffer is bounded (``max_frames``,
oldest first out: counted in ``dropped``); a frame whose rows are not needed (a hot one) keeps
only its time.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Seen:
    time: float
    hot: bool
    rows: np.ndarray | None  # (n, D) of a frame that may be learned


class OnlineLearner:
    """One camera's buffer of recent frames, releasing those far enough from any hot frame."""

    def __init__(self, margin_s: float, fps: float, max_frames: int = 4096) -> None:
        self.margin_s = margin_s
        self.interval_s = 1.0 / fps
        self._frames: collections.deque[_Seen] = collections.deque()
        self._hot: collections.deque[float] = collections.deque()  # hot times still buffered
        self._max_frames = max_frames
        self._last_hot = float("-inf")  # the newest hot frame already out of the buffer
        self._last_learned = float("-inf")
        self.dropped = 0

    def observe(self, time: float, hot: bool, rows: np.ndarray | None) -> list[np.ndarray]:
        """Take one scored frame (in time order); return the rows of the frames now learned."""
        keep = None if hot or rows is None or not len(rows) else rows
        self._frames.append(_Seen(time, hot, keep))
        if hot:
            self._hot.append(time)
        if len(self._frames) > self._max_frames:  # scoring far faster than the margin: bound it
            self._pop()
            self.dropped += 1
        learned = []
        while self._frames and self._frames[0].time <= time - self.margin_s:
            seen = self._pop()
            due = seen.time - self._last_learned >= self.interval_s
            if seen.rows is not None and due and self._far_from_hot(seen.time):
                self._last_learned = seen.time
                learned.append(seen.rows)
        return learned

    def _pop(self) -> _Seen:
        seen = self._frames.popleft()
        if seen.hot:
            self._last_hot = seen.time
            self._hot.popleft()
        return seen

    def _far_from_hot(self, time: float) -> bool:
        after = self._hot[0] if self._hot else float("inf")  # the next hot frame still buffered
        return time - self._last_hot > self.margin_s and after - time > self.margin_s

    def forget(self) -> None:
        """Drop what waits (the model changed under it, e.g. it was retrained)."""
        self._frames.clear()
        self._hot.clear()
