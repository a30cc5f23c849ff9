"""Recent footage per camera, kept compressed, so that events can get a clip with pre-roll.

The ring holds small model-size frames for a few seconds; an event clip needs the camera's own
resolution from seconds *before* the event started. So every camera also keeps a ``ClipBuffer``:

- H.264/H.265 streams keep their **encoded packets** as they arrive (turned into Annex B with the
  parameter sets repeated at keyframes, so any keyframe can start a clip). Nothing is decoded or
  encoded for this, and clips are copies of what the camera sent.
- Other sources (the synthetic scene, MJPEG, raw webcams) keep **JPEG frames** at a modest rate
  (MJPEG's own frames, unchanged); a clip re-encodes them.

The buffer is a deque of groups of pictures (GOPs), each starting at a keyframe, trimmed to the
pre-roll plus the detection lag — unless an open event holds older footage, up to the longest
clip — and to a byte cap.
The capture thread writes; the alert stage reads (``cut``) from another thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from av.bitstream import BitStreamFilterContext

from streamdet.footage import Chunk, ClipFormat, Footage

logger = logging.getLogger(__name__)

# Codecs whose packets are copied into clips; the filters make every keyframe self-contained.
_COPIED = {
    "h264": "h264_mp4toannexb,dump_extra=freq=keyframe",
    "hevc": "hevc_mp4toannexb,dump_extra=freq=keyframe",
}


@dataclass
class _Gop:
    segment: int
    fmt: ClipFormat
    chunks: list[Chunk]
    size: int = 0


class ClipBuffer:
    """Thread-safe: one writer (the capture thread), any number of readers."""

    def __init__(self, keep_s: float, max_clip_s: float, max_bytes: int) -> None:
        self.keep_s = keep_s  # footage always kept: the pre-roll and the time to detect
        self.max_clip_s = max_clip_s
        self.max_bytes = max_bytes
        self._gops: collections.deque[_Gop] = collections.deque()
        self._bytes = 0
        self._segment = 0
        self._fmt: ClipFormat | None = None
        self._holds: dict[int, float] = {}
        # How long after its packet came a detect frame is in the ring (the decoder's delay),
        # set by the detect worker: a record stream's chunk of a frame came that much earlier.
        self.detect_delay_s = 0.0
        self._next_hold = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writer side
    def begin(self, fmt: ClipFormat) -> None:
        """A new connection (or a file's loop): timestamps and format start afresh."""
        with self._lock:
            self._segment += 1
            self._fmt = fmt
            self._gops.append(_Gop(self._segment, fmt, []))

    def add(self, chunk: Chunk) -> None:
        with self._lock:
            if self._fmt is None:
                return
            last = self._gops[-1] if self._gops else None
            if last is None or last.segment != self._segment or (chunk.key and last.chunks):
                last = _Gop(self._segment, self._fmt, [])
                self._gops.append(last)
            last.chunks.append(chunk)
            last.size += len(chunk.data)
            self._bytes += len(chunk.data)
            self._trim(chunk.wall)

    def _trim(self, now: float) -> None:
        cutoff = now - self.keep_s
        if self._holds:
            cutoff = max(min(cutoff, *self._holds.values()), cutoff - self.max_clip_s)
        gops = self._gops
        while len(gops) >= 2 and (
            (gops[1].chunks and gops[1].chunks[0].wall <= cutoff) or self._bytes > self.max_bytes
        ):
            self._bytes -= gops.popleft().size

    # ------------------------------------------------------------------ reader side
    @property
    def nbytes(self) -> int:
        return self._bytes

    def newest(self) -> float | None:
        """Arrival time of the newest chunk, or None when empty."""
        with self._lock:
            for gop in reversed(self._gops):
                if gop.chunks:
                    return gop.chunks[-1].wall
        return None

    def hold(self, since: float) -> int:
        """Keep footage from ``since`` on (up to the longest clip) until ``release``."""
        with self._lock:
            self._next_hold += 1
            self._holds[self._next_hold] = since
            return self._next_hold

    def release(self, token: int) -> None:
        with self._lock:
            self._holds.pop(token, None)

    def cut(self, start: float, end: float) -> Footage | None:
        """Chunks from the last keyframe at or before ``start`` up to ``end``, of one segment
        (the newest one in range: a clip does not span a reconnect). None if nothing is left."""
        with self._lock:  # copy the lists: the capture thread appends to the newest one
            gops = [
                _Gop(g.segment, g.fmt, list(g.chunks))
                for g in self._gops
                if g.chunks and g.chunks[0].wall <= end
            ]
        if not gops:
            return None
        first = 0
        for i, gop in enumerate(gops):
            if gop.chunks[0].wall <= start and gop.chunks[0].key:
                first = i
        segment = gops[-1].segment
        chunks = [
            c for g in gops[first:] if g.segment == segment for c in g.chunks if c.wall <= end
        ]
        while chunks and not chunks[0].key:  # a segment's first packets may precede a keyframe
            chunks.pop(0)
        return Footage(gops[-1].fmt, chunks) if chunks else None


class _Rate:
    """At most ``fps`` frames per second of the given clock."""

    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._next = 0.0

    def allow(self, t: float) -> bool:
        if t + self.interval < self._next:  # the clock went back (a file looped)
            self._next = t
        if t < self._next:
            return False
        self._next = max(self._next + self.interval, t)
        return True


class Recorder:
    """Feeds one connection's footage into a ``ClipBuffer``; used by the source's thread."""

    def __init__(
        self, buffer: ClipBuffer, jpeg_fps: float, jpeg_quality: int = 80, detect_pts: bool = True
    ) -> None:
        self.buffer = buffer
        self.detect_pts = detect_pts  # see ClipFormat
        self.jpeg_fps = jpeg_fps
        self._quality = jpeg_quality
        self._filter: Any = None
        self._mode: Literal["packets", "jpeg_packets", "frames", "off"] = "frames"
        self._rate = _Rate(jpeg_fps)

    def begin_stream(self, stream: Any) -> None:
        """Start a segment for a PyAV stream: copy its packets, or keep JPEG frames."""
        ctx = stream.codec_context
        self._rate = _Rate(self.jpeg_fps)
        self._filter = None
        if ctx.name in _COPIED:
            self._filter = BitStreamFilterContext(_COPIED[ctx.name], stream)
            self._mode = "packets"
            fmt = ClipFormat(
                "packets", ctx.name, ctx.width, ctx.height, stream.time_base, self.detect_pts
            )
        else:
            self._mode = "jpeg_packets" if ctx.name == "mjpeg" else "frames"
            fmt = ClipFormat("jpeg", "mjpeg", ctx.width, ctx.height)
        self.buffer.begin(fmt)

    def begin_frames(self, width: int, height: int) -> None:
        """Start a segment for a source that hands over decoded BGR frames."""
        self._rate = _Rate(self.jpeg_fps)
        self._mode = "frames"
        self.buffer.begin(ClipFormat("jpeg", "mjpeg", width, height))

    def packet(self, packet: Any) -> None:
        """A demuxed packet, before it is decoded."""
        if self._mode not in ("packets", "jpeg_packets"):
            return  # called for every packet: the other modes pay nothing here
        now = time.time()
        try:
            if self._mode == "packets":
                key = bool(packet.is_keyframe)
                for out in self._filter.filter(packet):
                    self.buffer.add(Chunk(now, key, bytes(out), out.pts, out.dts))
            elif self._mode == "jpeg_packets" and self._rate.allow(now):
                self.buffer.add(Chunk(now, True, bytes(packet)))
        except Exception as exc:  # clips are a side job: never let them stop capture
            self._give_up(exc)

    def frame(self, image: np.ndarray | Any) -> None:
        """A decoded frame (BGR array, or a PyAV frame) for sources whose packets are not kept."""
        if self._mode != "frames":
            return  # called for every frame: copied-packet sources pay nothing here
        now = time.time()
        if not self._rate.allow(now):
            return
        try:
            if not isinstance(image, np.ndarray):
                image = image.to_ndarray(format="bgr24")
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
            if ok:
                self.buffer.add(Chunk(now, True, data.tobytes()))
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        logger.warning("clip footage stops until the next connection: %r", exc)
        self._mode = "off"
