"""Footage to learn from, as grey clips at the model's input size: from video files or folders
(``collect_files``), or from a running camera's ring (``FootageCollector``, ``collect_live``).

A clip never spans a gap: a file is one clip, and live footage starts a new clip wherever frames
were missed, so that models never learn motion between frames that were not neighbours.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from streamdet.errors import ModelError, SourceError
from streamdet.frames import FrameRef
from streamdet.learning.videos import DEFAULT_FPS, VIDEO_SUFFIXES, clip_fps, read_clip, video_files
from streamdet.models.base import ModelSpec, Progress, TrainingData

if TYPE_CHECKING:
    from streamdet.capture.stage import CaptureStage
    from streamdet.config import CameraConfig, CaptureConfig


def footage_files(paths: list[Path]) -> list[Path]:
    """Video files named directly or found in named folders. Raises ModelError if none."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(video_files(path))
        elif path.is_file():
            found.append(path)
        else:
            raise ModelError(f"training footage not found: {path}")
    if not found:
        raise ModelError(
            f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {[str(p) for p in paths]}"
        )
    return found


def collect_files(paths: list[Path], spec: ModelSpec, progress: Progress) -> TrainingData:
    """Decode every file to grey at the model's size; one clip per file."""
    files = footage_files(paths)
    clips = []
    for i, path in enumerate(files):
        progress("decode footage", i / len(files), {})
        clips.append(read_clip(path, spec.width, spec.height))
    progress("decode footage", 1.0, {})
    return TrainingData(clips, clip_fps(files[0]))


class FrameWindows(Protocol):
    """What live learning reads of a camera's frames (``streamdet.capture.ring.FrameRing``)."""

    camera: str
    size: int

    def latest(self, analysable_only: bool = False) -> FrameRef | None: ...

    def window(
        self, count: int, out: np.ndarray | None = None
    ) -> tuple[list[FrameRef], np.ndarray]: ...


class FootageCollector:
    """Keeps every new frame of a running camera's ring, as clips of at most ``clip_seconds``.

    A clip also ends where frames were missed because the ring lapped us (not at a reconnect:
    the ring numbers frames on across one, so its two sides join in one clip). Call
    ``poll()`` often enough that the ring does not lap it (its size divided by the frame rate).
    """

    def __init__(self, ring: FrameWindows, spec: ModelSpec, clip_seconds: float = 10.0) -> None:
        self.ring, self.spec, self.clip_seconds = ring, spec, clip_seconds
        self.clips: list[list[np.ndarray]] = [[]]
        self._last_seq = -1

    @property
    def frames(self) -> int:
        return sum(map(len, self.clips))

    def poll(self, fps: float) -> None:
        newest = self.ring.latest()
        if newest is None or newest.seq == self._last_seq:
            return
        count = min(newest.seq - self._last_seq, self.ring.size - 1)
        refs, pixels = self.ring.window(count)
        broken = refs[0].seq != self._last_seq + 1
        if broken or len(self.clips[-1]) >= self.clip_seconds * fps:
            self.clips.append([])
        self.clips[-1].extend(_resize_stack(pixels, self.spec))
        self._last_seq = refs[-1].seq

    def data(self, fps: float, min_frames: int = 50) -> TrainingData:
        """The clips kept so far (those of at least 8 frames). Raises SourceError when they
        hold fewer than ``min_frames``: the camera sent (almost) nothing."""
        kept = [np.stack(c) for c in self.clips if len(c) >= 8]
        if sum(map(len, kept)) < min_frames:
            raise SourceError(f"[{self.ring.camera}] only {self.frames} frames: too few to learn")
        return TrainingData(kept, fps)


def collect_live(
    camera: CameraConfig,
    capture: CaptureConfig,
    spec: ModelSpec,
    seconds: float,
    progress: Progress,
) -> TrainingData:
    """Watch the camera for ``seconds`` on a capture stage of its own and keep what it shows
    (see ``FootageCollector``)."""
    from streamdet.capture.stage import CaptureStage  # threads and decoders: only when watching

    stage = CaptureStage([camera], capture)
    with stage:
        collector = FootageCollector(stage.ring(camera.name), spec)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            progress("watch camera", elapsed / seconds, {"frames": float(collector.frames)})
            time.sleep(0.05)
            collector.poll(stream_fps(stage, camera.name))
        fps = stream_fps(stage, camera.name)
    progress("watch camera", 1.0, {"frames": float(collector.frames)})
    return collector.data(fps)


def stream_fps(stage: CaptureStage, camera: str, default: float = DEFAULT_FPS) -> float:
    """The frame rate the camera's stream declares (``default`` until it says)."""
    stream = stage.worker(camera).stats.stream
    return stream.fps if stream is not None and stream.fps else default


def _resize_stack(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    if pixels.ndim == 4:  # colour camera: models see grey
        pixels = np.stack([cv2.cvtColor(p, cv2.COLOR_BGR2GRAY) for p in pixels])
    if pixels.shape[1:] == (spec.height, spec.width):
        return pixels.copy()
    return np.stack(
        [cv2.resize(p, (spec.width, spec.height), interpolation=cv2.INTER_AREA) for p in pixels]
    )
