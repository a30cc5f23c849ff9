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

from streamdet.capture.stage import CaptureStage
from streamdet.config import CameraConfig, CaptureConfig
from streamdet.errors import ModelError, SourceError
from streamdet.eval.dataset import VIDEO_SUFFIXES, clip_fps, read_clip, video_files
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


def collect_live(
    camera: CameraConfig,
    capture: CaptureConfig,
    spec: ModelSpec,
    seconds: float,
    progress: Progress,
    clip_seconds: float = 10.0,
) -> TrainingData:
    """Watch the camera for ``seconds``; keep every decoded frame, as clips of ``clip_seconds``.

    A clip also ends where frames were missed (a reconnect, or the ring lapped us), so that
    models never learn motion between frames that were not neighbours.
    """
    stage = CaptureStage([camera], capture)
    clips: list[list[np.ndarray]] = [[]]
    last_seq, fps = -1, 25.0
    started = time.monotonic()
    with stage:
        ring = stage.ring(camera.name)
        while (elapsed := time.monotonic() - started) < seconds:
            progress("watch camera", elapsed / seconds, {"frames": float(sum(map(len, clips)))})
            time.sleep(0.05)
            newest = ring.latest()
            if newest is None or newest.seq == last_seq:
                continue
            count = min(newest.seq - last_seq, ring.size - 1)
            refs, pixels = ring.window(count)
            stream = stage.worker(camera.name).stats.stream
            fps = stream.fps if stream and stream.fps else fps
            if refs[0].seq != last_seq + 1 or len(clips[-1]) >= clip_seconds * fps:
                clips.append([])
            clips[-1].extend(_resize_stack(pixels, spec))
            last_seq = refs[-1].seq
    progress("watch camera", 1.0, {"frames": float(sum(map(len, clips)))})
    kept = [np.stack(c) for c in clips if len(c) >= 8]
    if sum(map(len, kept)) < 50:
        raise SourceError(f"[{camera.name}] too few frames in {seconds:.0f} s to learn from")
    return TrainingData(kept, fps)


def _resize_stack(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    if pixels.ndim == 4:  # colour camera: models see grey
        pixels = np.stack([cv2.cvtColor(p, cv2.COLOR_BGR2GRAY) for p in pixels])
    if pixels.shape[1:] == (spec.height, spec.width):
        return pixels.copy()
    return np.stack(
        [cv2.resize(p, (spec.width, spec.height), interpolation=cv2.INTER_AREA) for p in pixels]
    )


def fit_and_calibrate(
    spec: ModelSpec,
    data: TrainingData,
    settings: TrainSettings,
    budget: Budget,
    progress: Progress,
) -> Trained:
    """Train on all but the held-out share of ``data``; calibrate on the held-out share."""
    if len(data.clips) < 2:
        raise ModelError("need at least 2 clips (or live windows) to hold some out for calibration")
    held = max(1, math.ceil(len(data.clips) * budget.holdout))
    fit, calib = data.clips[:-held], data.clips[-held:]
    torch.manual_seed(settings.seed)
    model = build_model(spec).to(settings.device)
    started = time.monotonic()
    train_model(model, TrainingData(fit, data.fps), settings, progress)
    train_seconds = time.monotonic() - started
    held_scores = []
    for clip in calib:
        if len(clip) > model.context:
            raw = score_clip(model, clip, device=settings.device)[0][model.context :]
            held_scores.append(ema(raw, budget.smoothing_alpha))
    if not held_scores:
        raise ModelError("held-out footage too short to score")
    calibration = calibrate(
        held_scores,
        analysis_fps=budget.analysis_fps,
        false_events_per_hour=budget.false_events_per_hour,
        smoothing_alpha=budget.smoothing_alpha,
    )
    summary = {
        "train_seconds": round(train_seconds, 2),
        "clips": len(fit),
        "frames": sum(len(c) for c in fit),
        "held_out_clips": len(calib),
        "fps": data.fps,
        "seed": settings.seed,
        "device": settings.device,
    }
    return Trained(model, calibration, summary)
