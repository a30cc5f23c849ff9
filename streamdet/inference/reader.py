"""What the inference stage may read of capture: a narrow interface, not the capture stage.

Scoring needs each camera's ring of newest frames (``capture.ring.FrameRing``: windows copied
out of it) and a wake-up after any camera committed a frame marked for analysis
(``capture.wake.FrameSignal``), so that the loop waits instead of polling the rings. The App
gives it the capture stage, which has both; a test gives it anything that has.
"""

from __future__ import annotations

from typing import Protocol

from streamdet.capture.ring import FrameRing


class FrameSignal(Protocol):
    """Wakes the loop after any camera committed an analysable frame."""

    def wait(self, seen: int, timeout: float) -> int:
        """The signal's generation once it is past ``seen``, or after ``timeout`` seconds."""
        ...

    def notify(self) -> None:
        """Wake every waiter (the stage's own stop does, so as not to wait for a frame)."""
        ...


class ScoringFrames(Protocol):
    """Each camera's ring, and the signal of new analysable frames."""

    @property
    def frames(self) -> FrameSignal: ...

    def ring(self, camera: str) -> FrameRing:
        """The camera's ring; a ``StreamdetError`` for a camera it does not hold."""
        ...
