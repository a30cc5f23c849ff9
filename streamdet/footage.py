"""A camera's recent footage as the stages exchange it: encoded chunks, and who holds them.

Capture keeps each camera's footage (``streamdet.capture.clips.ClipBuffer``); the alert stage cuts
event clips and peak frames from it. Both speak these plain types, and alert reads a buffer only
through ``FootageBuffer``: it never imports capture.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class ClipFormat:
    """How a segment's chunks are encoded: copied packets of ``codec``, or JPEG frames."""

    kind: Literal["packets", "jpeg"]
    codec: str
    width: int
    height: int
    time_base: Fraction | None = None  # of packet timestamps
    # The packets are the detect stream's own, so their timestamps are the scored frames'
    # (False for a camera's separate record stream: its frames are found by arrival time).
    detect_pts: bool = True


@dataclass(frozen=True, slots=True)
class Chunk:
    """One packet or JPEG frame. ``wall`` is ``time.time()`` when it arrived, like frame times."""

    wall: float
    key: bool
    data: bytes
    pts: int | None = None
    dts: int | None = None


@dataclass(frozen=True)
class Footage:
    """What ``cut`` returns: one segment's chunks, starting at a keyframe."""

    fmt: ClipFormat
    chunks: list[Chunk]

    @property
    def seconds(self) -> float:
        return self.chunks[-1].wall - self.chunks[0].wall if self.chunks else 0.0


class FootageBuffer(Protocol):
    """What a reader may do with a camera's footage: hold it while an event is open, cut a
    stretch of it, and see how far it reaches."""

    # how long after its packet came a detect frame is in the ring (the decoder's delay)
    detect_delay_s: float

    def hold(self, since: float) -> int:
        """Keep footage from ``since`` until ``release(token)``; returns the token."""
        ...

    def release(self, token: int) -> None: ...

    def cut(self, start: float, end: float) -> Footage | None:
        """The chunks from the keyframe at or before ``start`` to ``end``; None if none."""
        ...

    def newest(self) -> float | None:
        """The wall time of the newest chunk, if any."""
        ...
