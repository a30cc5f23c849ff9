"""Video files decoded to grey clips at a given size: what learning and evaluation read.

Light on purpose (PyAV, numpy and capture's frame conversion; no torch, no capture threads), so
that ``streamdet.eval.dataset`` can list and read clips without loading the models.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from streamdet.capture.convert import av_frame_into
from streamdet.errors import StreamdetError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
DEFAULT_FPS = 25.0  # a stream or file that does not say its rate


class FootageError(StreamdetError):
    """A video file of footage (training, evaluation) is missing or cannot be decoded."""


def video_files(folder: Path) -> list[Path]:
    """Video files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def clip_fps(path: Path) -> float:
    """The video's frame rate (``DEFAULT_FPS`` when the file does not say)."""
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
        return float(rate) if rate else DEFAULT_FPS


def read_clip(path: Path, width: int, height: int) -> np.ndarray:
    """Decode every frame of a video to grey at ``width``x``height``: (N, H, W) uint8."""
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                out = np.empty((height, width), np.uint8)
                av_frame_into(frame, out)
                frames.append(out)
    except (av.FFmpegError, OSError) as exc:
        raise FootageError(f"cannot decode {path}: {exc}") from exc
    if not frames:
        raise FootageError(f"{path}: no frames")
    return np.stack(frames)
