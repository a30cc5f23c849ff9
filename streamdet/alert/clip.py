"""Event clips: an MP4 written from a camera's ``ClipBuffer`` footage.

Copied packets (H.264/H.265 from the camera) are remuxed as they are: the camera's resolution and
quality, no decoding, cheap. JPEG frames (synthetic, MJPEG, raw webcams) are encoded with H.264.
Timestamps start at 0; ``+faststart`` puts the index first so a browser can play while loading.
The file appears under its final name only when complete.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from streamdet.footage import Chunk, Footage

_WALL_TIME_BASE = Fraction(1, 90000)  # for packets that arrived without timestamps
_MS = Fraction(1, 1000)


def write_clip(footage: Footage, path: Path) -> Path:
    """Write ``footage`` to ``path`` (MP4). Raises ``OSError``/``av.FFmpegError`` on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            if footage.fmt.kind == "packets":
                _remux(out, footage)
            else:
                _encode(out, footage)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
    return path


def _remux(out: Any, footage: Footage) -> None:
    fmt, chunks = footage.fmt, footage.chunks
    origin = _decode_time(chunks[0]) if fmt.time_base is not None else None
    time_base = fmt.time_base if origin is not None and fmt.time_base else _WALL_TIME_BASE
    stream = out.add_mux_stream(fmt.codec, width=fmt.width, height=fmt.height, time_base=time_base)
    times: list[tuple[int, int]] = []
    for chunk in chunks:
        pts, dts = _timestamps(chunk, chunks[0], origin, time_base)
        dts = max(dts, times[-1][1] + 1) if times else dts  # muxers need increasing dts
        times.append((max(pts, dts), dts))
    # Every packet gets a duration: without one, MP4's edit list would cut the last frame.
    durations = [b[1] - a[1] for a, b in itertools.pairwise(times)]
    durations.append(durations[-1] if durations else round(0.04 / time_base))
    for chunk, (pts, dts), duration in zip(chunks, times, durations, strict=True):
        packet = av.Packet(chunk.data)
        packet.pts, packet.dts, packet.duration = pts, dts, duration
        packet.time_base = time_base
        packet.is_keyframe = chunk.key
        packet.stream = stream
        out.mux(packet)


def _decode_time(chunk: Chunk) -> int | None:
    return chunk.dts if chunk.dts is not None else chunk.pts


def _timestamps(
    chunk: Chunk, first: Chunk, origin: int | None, time_base: Fraction
) -> tuple[int, int]:
    decode_time = _decode_time(chunk)
    if origin is not None and decode_time is not None:
        dts = decode_time - origin
        return (dts if chunk.pts is None else chunk.pts - origin), dts
    ticks = round((chunk.wall - first.wall) / time_base)
    return ticks, ticks


def _encode(out: Any, footage: Footage) -> None:
    fmt, chunks = footage.fmt, footage.chunks
    width, height = fmt.width - fmt.width % 2, fmt.height - fmt.height % 2  # 4:2:0 needs even
    rate = max(1, round(len(chunks) / footage.seconds)) if footage.seconds > 0 else 5
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.time_base = _MS
    stream.options = {"preset": "veryfast", "crf": "23"}
    last = -1
    for chunk in chunks:
        image = cv2.imdecode(np.frombuffer(chunk.data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            continue  # a damaged JPEG from the camera: skip the frame, keep the clip
        pixels = np.ascontiguousarray(image[:height, :width], dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="bgr24")
        frame.pts = max(round((chunk.wall - chunks[0].wall) / _MS), last + 1)
        frame.time_base = _MS
        last = frame.pts
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
