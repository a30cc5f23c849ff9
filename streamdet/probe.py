"""``streamdet probe URL``: the first thing to run against a new camera.

Opens the source the way the capture stage would, decodes for a while and reports codec,
resolution, declared and measured frame rate, and time to first frame.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from streamdet.capture.sources import PyAVSource, VideoSource, rtsp_open_args, socket_timeouts
from streamdet.errors import SourceError
from streamdet.log import redact


@dataclass(frozen=True)
class ProbeResult:
    source: str
    codec: str
    width: int
    height: int
    declared_fps: float | None
    measured_fps: float | None
    frames: int
    open_s: float
    first_frame_s: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        def fmt(value: float | None, unit: str, digits: int = 2) -> str:
            return "unknown" if value is None else f"{value:.{digits}f}{unit}"

        return [
            f"source:          {self.source}",
            f"codec:           {self.codec}",
            f"resolution:      {self.width}x{self.height}",
            f"declared fps:    {fmt(self.declared_fps, '', 2)}",
            f"measured fps:    {fmt(self.measured_fps, '', 2)} (frames decoded: {self.frames})",
            f"open:            {fmt(self.open_s, ' s', 3)}",
            f"first frame:     {fmt(self.first_frame_s, ' s', 3)}",
        ]


def source_for_url(url: str, transport: str = "tcp", timeout_s: float = 5.0) -> VideoSource:
    """A PyAV source for a URL, file path or /dev/videoN, opened as streamdet would."""
    if url.startswith(("rtsp://", "rtsps://")):
        return PyAVSource(url, **rtsp_open_args(transport, timeout_s, timeout_s))
    if url.startswith(("http://", "https://")):
        return PyAVSource(url, fmt="mpjpeg", **socket_timeouts(timeout_s, timeout_s))
    if url.startswith("/dev/video"):
        return PyAVSource(url, fmt="v4l2")
    return PyAVSource(url, live=False, realtime=True)


def probe(source: VideoSource, *, frames: int = 50, max_seconds: float = 10.0) -> ProbeResult:
    """Open ``source`` and decode up to ``frames`` frames or ``max_seconds``. Raises SourceError."""
    started = time.monotonic()
    try:
        info = source.open()
        opened = time.monotonic()
        out = np.empty((max(info.height, 1), max(info.width, 1)), np.uint8)
        arrivals: list[float] = []
        while len(arrivals) < frames and time.monotonic() - started < max_seconds:
            if source.read_into(out) is None:
                break
            arrivals.append(time.monotonic())
    finally:
        source.close()
    count = len(arrivals)
    first = arrivals[0] if arrivals else None
    # FFmpeg hands over the frames it buffered while probing all at once: measure the rate over
    # the second half only, when frames arrive as the camera sends them.
    tail = arrivals[count // 2 :]
    span = tail[-1] - tail[0] if len(tail) > 1 else 0.0
    measured = (len(tail) - 1) / span if span > 0 else None
    return ProbeResult(
        source=redact(source.description),
        codec=info.codec,
        width=info.width,
        height=info.height,
        declared_fps=info.fps,
        measured_fps=measured,
        frames=count,
        open_s=opened - started,
        first_frame_s=None if first is None else first - started,
    )


__all__ = ["ProbeResult", "SourceError", "probe", "source_for_url"]
