"""An event's peak frame at the camera's own resolution and colour, from its recent footage.

The ring keeps model-size grey frames; the camera's footage buffer keeps what it sent. When an
event's peak changes, ``find_peak`` picks the peak frame's chunk out of the footage and keeps
that chunk's group of pictures (references only, taken at once on the event loop, so that the
buffer's trimming cannot take the frame away later). ``decode_peak`` (blocking: run it on a
thread) then decodes only that GOP, from its keyframe up to the peak frame, or the JPEG chunk.
With a camera's ``record`` stream the footage is that stream's (full resolution, demuxed only):
its timestamps are not the scored frames', so the chunk that arrived nearest the time the peak
frame's own packet arrived (its decode time less the decoder's delay) is the peak; the snapshot
is then the record stream's frame of that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import av
import cv2
import numpy as np

from streamdet.errors import StreamdetError
from streamdet.footage import Chunk, Footage, FootageBuffer
from streamdet.frames import FrameRef

# A frame's packet arrives before the frame is decoded, but a decoder with frame threads hands
# frames out a few packets late: so the footage around the frame's wall time is searched.
_WINDOW_S = 1.0
# The same stream time within this is the same frame (frames are >= 1/120 s apart).
_SAME_PTS_S = 0.004


class FootageError(StreamdetError):
    """The peak frame could not be taken from the camera's footage."""


@dataclass(frozen=True)
class PeakFootage:
    """The footage of a peak frame: its GOP from the keyframe up to the frame's own chunk."""

    footage: Footage

    @property
    def target(self) -> Chunk:
        return self.footage.chunks[-1]


def find_peak(buffer: FootageBuffer, ref: FrameRef) -> PeakFootage | None:
    """The chunk of the frame ``ref`` points at, with its GOP; None when the buffer has no
    footage of that moment. Cheap: the chunks are not copied, nothing is decoded."""
    # A record stream's chunk of the frame came when the frame's own packet did (0 otherwise).
    wall = ref.wall_time - buffer.detect_delay_s
    footage = buffer.cut(wall - _WINDOW_S, wall + _WINDOW_S)
    if footage is None:
        return None
    chunks = footage.chunks
    index = _same_pts(footage, ref)
    if index is None:  # no timestamps to match: the chunk that arrived nearest in time
        index = min(range(len(chunks)), key=lambda i: abs(chunks[i].wall - wall))
        if abs(chunks[index].wall - wall) > _WINDOW_S:
            return None
    key = max(i for i in range(index + 1) if chunks[i].key)  # cut() starts at a keyframe
    return PeakFootage(Footage(footage.fmt, chunks[key : index + 1]))


def _same_pts(footage: Footage, ref: FrameRef) -> int | None:
    """The packet with the frame's own stream time, when both have one. (A looping file's
    frame times keep increasing while its packets' start again: they then do not match and
    the arrival time decides. A separate record stream's timestamps are its own: arrival time.)"""
    time_base = footage.fmt.time_base
    if footage.fmt.kind != "packets" or not footage.fmt.detect_pts:
        return None
    if time_base is None or ref.pts_s is None:
        return None
    seconds = float(time_base)  # not Fraction arithmetic per chunk: this runs on the loop
    best: tuple[float, int] | None = None
    for i, chunk in enumerate(footage.chunks):
        if chunk.pts is not None and chunk.wall <= ref.wall_time:  # it arrived before
            gap = abs(chunk.pts * seconds - ref.pts_s)
            best = min(best, (gap, i)) if best else (gap, i)
    return best[1] if best is not None and best[0] <= _SAME_PTS_S else None


def decode_peak(peak: PeakFootage) -> np.ndarray:
    """The peak frame as a BGR image at the camera's resolution. Raises ``FootageError``."""
    fmt = peak.footage.fmt
    if fmt.kind == "jpeg":
        image = cv2.imdecode(np.frombuffer(peak.target.data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise FootageError("the JPEG frame could not be decoded")
        return image
    try:
        return _decode_packets(peak)
    except (av.FFmpegError, ValueError) as exc:  # ValueError: a pixel format PyAV cannot convert
        raise FootageError(f"{fmt.codec} footage could not be decoded: {exc}") from exc


def _decode_packets(peak: PeakFootage) -> np.ndarray:
    codec = cast(av.VideoCodecContext, av.CodecContext.create(peak.footage.fmt.codec, "r"))
    frames = []
    for chunk in peak.footage.chunks:
        packet = av.Packet(chunk.data)
        packet.pts, packet.dts = chunk.pts, chunk.dts
        frames += codec.decode(packet)
    frames += codec.decode(None)  # the frames the decoder still holds
    if not frames:
        count = len(peak.footage.chunks)
        raise FootageError(f"no frame decoded from {count} {peak.footage.fmt.codec} packet(s)")
    pts = peak.target.pts
    frame = next((f for f in frames if pts is not None and f.pts == pts), frames[-1])
    image: np.ndarray = frame.to_ndarray(format="bgr24")
    return image
