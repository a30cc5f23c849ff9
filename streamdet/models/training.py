"""Learning "normal" for a camera: collect footage, train, calibrate, save.

Footage comes from recorded files/folders or from the camera's own live stream for a while.
The last share of clips (or of live windows) is held out: the model never trains on it, and the
threshold is calibrated on its smoothed scores for the camera's false-event budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from streamdet.capture.ring import FrameRing
from streamdet.capture.stage import CaptureStage
from streamdet.config import CameraConfig, CaptureConfig
from streamdet.errors import ModelError, SourceError
from streamdet.eval.dataset import VIDEO_SUFFIXES, clip_fps, read_clip, video_files
from streamdet.inference.health import HealthBaseline, learn_baseline
from streamdet.models.base import (
    AnomalyModel,
    ModelSpec,
    Progress,
    TrainingData,
    TrainSettings,
    score_clip,
)
from streamdet.models.registry import build_model, train_model
from streamdet.scoring.calibration import Calibration, calibrate
from streamdet.scoring.smoothing import ema


@dataclass(frozen=True)
class Budget:
    """What the threshold is calibrated for."""

    analysis_fps: float
    false_events_per_hour: float
    smoothing_alpha: float
    holdout: float = 0.15  # share of clips held out for calibration


@dataclass
class Trained:
    model: AnomalyModel
    calibration: Calibration
    summary: dict[str, Any]
    health: HealthBaseline | None = None  # the camera's normal look (camera-health events)

    def metadata(self, camera: str, **training: Any) -> dict[str, Any]:
        """The checkpoint's metadata besides the model's own: what every caller saves."""
        meta = {
            "camera": camera,
            "calibration": self.calibration.as_dict(),
            "training": {**self.summary, **training},
        }
        if self.health is not None:
            meta["health"] = self.health.as_dict()
        return meta


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


class FootageCollector:
    """Keeps every new frame of a running camera's ring, as clips of at most ``clip_seconds``.

    A clip also ends where frames were missed (a reconnect, or the ring lapped us), so that
    models never learn motion between frames that were not neighbours. Call ``poll()`` often
    enough that the ring does not lap it (its size divided by the frame rate).
    """

    def __init__(self, ring: FrameRing, spec: ModelSpec, clip_seconds: float = 10.0) -> None:
        self.ring, self.spec, self.clip_seconds = ring, spec, clip_seconds
        self.clips: list[list[np.ndarray]] = [[]]
        self._last_seq = -1
        self._clip_started = 0.0

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
    """Watch the camera for ``seconds`` and keep what it shows (see ``FootageCollector``)."""
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


def stream_fps(stage: CaptureStage, camera: str, default: float = 25.0) -> float:
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


MIN_HELD_OUT = 50  # frames: calibration needs a tail to look at


def split_holdout(
    clips: list[np.ndarray], share: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hold out the last ``share`` of frames (at least MIN_HELD_OUT), cutting a clip if needed."""
    total = sum(map(len, clips))
    need = max(MIN_HELD_OUT, math.ceil(total * share))
    if total - need < MIN_HELD_OUT:
        raise ModelError(
            f"only {total} frames of footage: need at least {2 * MIN_HELD_OUT} "
            f"({MIN_HELD_OUT} to learn from and {MIN_HELD_OUT} held out to calibrate)"
        )
    fit, held = list(clips), list[np.ndarray]()
    while need > 0:
        clip = fit.pop()
        if len(clip) <= need:
            held.insert(0, clip)
            need -= len(clip)
        else:
            fit.append(clip[:-need])
            held.insert(0, clip[-need:])
            need = 0
    return fit, held


def fit_and_calibrate(
    spec: ModelSpec,
    data: TrainingData,
    settings: TrainSettings,
    budget: Budget,
    progress: Progress,
) -> Trained:
    """Train on all but the held-out share of ``data``; calibrate on the held-out share; learn
    the camera's normal look (for health events) from the same footage the model learns."""
    fit, calib = split_holdout(data.clips, budget.holdout)
    health = learn_baseline(fit)
    torch.manual_seed(settings.seed)
    model = build_model(spec).to(settings.device)
    started = time.monotonic()
    train_model(model, TrainingData(fit, data.fps), settings, progress)
    train_seconds = time.monotonic() - started
    # scored at the camera's analysis rate, as `run` will: every step-th frame (each with its
    # neighbour before it), smoothed per analysed frame. Each of the step phases is such a
    # series of its own, so no held-out frame is wasted on the tail estimate.
    step = max(round(data.fps / budget.analysis_fps), 1)
    held_scores, held_seconds = [], 0.0
    for clip in calib:
        if len(clip) > model.context:
            raw = score_clip(model, clip, device=settings.device)[0][model.context :]
            held_seconds += len(raw) / data.fps
            for phase in range(min(step, len(raw))):
                held_scores.append(ema(raw[phase::step], budget.smoothing_alpha))
    if not held_scores:
        raise ModelError("held-out footage too short to score")
    try:
        calibration = calibrate(
            held_scores,
            analysis_fps=budget.analysis_fps,
            false_events_per_hour=budget.false_events_per_hour,
            smoothing_alpha=budget.smoothing_alpha,
            seconds=held_seconds,
        )
    except ValueError as exc:
        raise ModelError(f"cannot calibrate: {exc}") from None
    summary = {
        "train_seconds": round(train_seconds, 2),
        "clips": len(fit),
        "frames": sum(len(c) for c in fit),
        "held_out_clips": len(calib),
        "fps": data.fps,
        "seed": settings.seed,
        "device": settings.device,
        "held_out_seconds": round(held_seconds, 1),
    }
    return Trained(model, calibration, summary, health)
