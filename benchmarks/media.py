"""Synthetic test clips whose frame index can be read back from the pixels.

Every frame carries its index as a 16-bit binary code: 16 black/white blocks across the top
band (most significant bit on the left).  The code is laid out in *relative* coordinates, so
``read_frame_index`` works on any resize of the frame, and it samples only the middle of each
block, so H.264 ringing at block edges does not matter.  Below the band a bright square
moves across a gradient so the content is real motion, not just a changing counter.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamdet.capture.synthetic import SceneFault, ScheduledAnomaly, SyntheticScene

CODE_BITS = 16
BAND_FRACTION = 1 / 8  # the code occupies the top eighth of the frame
# Sample the central half of each block: edges blur under compression and resizing.
_SAMPLE_LO, _SAMPLE_HI = 0.25, 0.75
_MIN_BLOCK_PX = 16
_BLACK, _WHITE = 16, 235  # limited-range luma, what H.264 decoders expect
_SQUARE_FRACTION = 1 / 6  # side of the moving square relative to the frame height


def make_clip(
    path: Path,
    *,
    frames: int = 250,
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    gop: int = 25,
    pattern: str = "moving",
    tint: tuple[int, int] | None = None,
) -> Path:
    """Encode an H.264 MP4 (yuv420p, no B-frames, keyframe every ``gop``) and return ``path``.

    ``pattern`` is ``"moving"`` (a bright square crosses the frame) or ``"static"`` (the square
    stays put, so only the counter changes - handy as a "nothing happens" baseline). ``tint``
    (U, V) colours the background below the code band; the band and the square stay grey.
    """
    if pattern not in ("moving", "static"):
        raise ValueError(f"unknown pattern {pattern!r}")
    if width // CODE_BITS < _MIN_BLOCK_PX or int(height * BAND_FRACTION) < _MIN_BLOCK_PX:
        raise ValueError(f"{width}x{height} is too small for {_MIN_BLOCK_PX}px code blocks")
    if width % 2 or height % 2:
        raise ValueError("yuv420p needs an even width and height")
    path.parent.mkdir(parents=True, exist_ok=True)
    background = _background(width, height)
    with av.open(str(path), mode="w") as container:
        stream = _h264_stream(container, width, height, fps, gop)
        stream.options = {**stream.options, "preset": "ultrafast", "tune": "zerolatency"}
        for index in range(frames):
            luma = _draw_frame(background, index, moving=pattern == "moving")
            frame = av.VideoFrame.from_ndarray(_to_yuv420p(luma, tint), format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def read_frame_index(grey: np.ndarray) -> int:
    """Decode the frame counter from a greyscale (or colour) frame of any size."""
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    height, width = grey.shape
    band = height * BAND_FRACTION
    y0, y1 = int(band * _SAMPLE_LO), max(int(band * _SAMPLE_HI), int(band * _SAMPLE_LO) + 1)
    value = 0
    for bit in range(CODE_BITS):
        cell = width / CODE_BITS
        x0 = int((bit + _SAMPLE_LO) * cell)
        x1 = max(int((bit + _SAMPLE_HI) * cell), x0 + 1)
        value = (value << 1) | int(grey[y0:y1, x0:x1].mean() > 127)
    return value


def _background(width: int, height: int) -> np.ndarray:
    """A dim diagonal gradient: gives the encoder and the detector some texture."""
    ramp = np.add.outer(np.linspace(0, 0.5, height), np.linspace(0, 0.5, width))
    return (40 + 60 * ramp).astype(np.uint8)


def _draw_frame(background: np.ndarray, index: int, *, moving: bool) -> np.ndarray:
    """Luma plane of frame ``index``: code band on top, bright square below it."""
    height, width = background.shape
    luma = background.copy()
    band = int(height * BAND_FRACTION)
    code = index % (1 << CODE_BITS)
    for bit in range(CODE_BITS):
        x0, x1 = bit * width // CODE_BITS, (bit + 1) * width // CODE_BITS
        on = (code >> (CODE_BITS - 1 - bit)) & 1
        luma[:band, x0:x1] = _WHITE if on else _BLACK
    side = max(int(height * _SQUARE_FRACTION), 2)
    span_x, span_y = width - side, height - band - side
    step = index if moving else 0
    # Bounce: triangle waves with different periods so the square covers the whole area.
    x = _triangle(step * 7, span_x)
    y = band + _triangle(step * 3, span_y)
    luma[y : y + side, x : x + side] = _WHITE
    return luma


def _triangle(t: int, span: int) -> int:
    """Position bouncing between 0 and ``span`` as ``t`` grows."""
    if span <= 0:
        return 0
    t %= 2 * span
    return t if t <= span else 2 * span - t


def _to_yuv420p(luma: np.ndarray, tint: tuple[int, int] | None = None) -> np.ndarray:
    """Stack a luma plane with its chroma in PyAV's (H * 3 / 2, W) yuv420p layout: neutral, or
    ``tint`` (U, V) where the background is below the code band."""
    height, width = luma.shape
    if tint is None:
        chroma = np.full((height // 2, width), 128, dtype=np.uint8)  # U and V, half height each
        return np.concatenate([luma, chroma])
    if height % 4:
        raise ValueError("a tinted clip needs a height divisible by 4")
    planes = [np.full((height // 2, width // 2), 128, dtype=np.uint8) for _ in range(2)]
    background = luma[::2, ::2] < 200  # not the square (at half resolution, like chroma)
    background[: int(height * BAND_FRACTION) // 2 + 1] = False
    for plane, value in zip(planes, tint, strict=True):
        plane[background] = value
    # Each (H/2, W/2) plane is laid out as H/4 rows of W bytes.
    return np.concatenate([luma, *(p.reshape(height // 4, width) for p in planes)])


def make_scene_clip(
    path: Path,
    *,
    frames: int = 250,
    width: int = 1280,
    height: int = 720,
    fps: int = 25,
    gop: int = 50,
    seed: int = 0,
    anomalies: tuple[ScheduledAnomaly, ...] = (),
    crf: int = 23,
    faults: tuple[SceneFault, ...] = (),
) -> Path:
    """Encode the synthetic scene (textured, noisy, people walking) as an H.264 MP4.

    Unlike ``make_clip`` this decodes about as expensively as real camera footage, because the
    sensor noise and texture leave the encoder real detail to code.
    """
    scene = SyntheticScene(
        width=width, height=height, fps=fps, seed=seed, anomalies=anomalies, faults=faults
    )
    canvas = np.empty((height, width, 3), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = _h264_stream(container, width, height, fps, gop)
        stream.options = {**stream.options, "preset": "veryfast", "crf": str(crf)}
        for index in range(frames):
            scene.render(index, canvas)
            frame = av.VideoFrame.from_ndarray(canvas, format="bgr24").reformat(format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _h264_stream(container: Any, width: int, height: int, fps: int, gop: int) -> Any:
    """An H.264 stream with a fixed GOP and no B-frames: RTSP clients can start decoding at the
    next keyframe, and frames come out in presentation order with no reordering delay."""
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = Fraction(1, fps)
    stream.codec_context.gop_size = gop
    stream.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"}
    return stream
