"""The learning workflow, in one place: footage -> hold out a tail -> train -> calibrate the
threshold -> learn the health baseline -> save; and a saved checkpoint read back.

Every caller goes through here: ``streamdet train``, a camera learning in place
(``streamdet.inference.detector``), ``streamdet eval`` and the benchmarks. The last share of
the footage is held out: the model never trains on it, and the threshold is calibrated on its
smoothed scores for the camera's false-event budget at the camera's analysis rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from streamdet.errors import ModelError
from streamdet.learning.health import HealthBaseline, learn_baseline
from streamdet.models.base import (
    AnomalyModel,
    ModelSpec,
    Progress,
    TrainingData,
    TrainSettings,
    no_progress,
    score_clip,
)
from streamdet.models.checkpoint import save_checkpoint
from streamdet.models.registry import build_model, default_spec, entry, train_model
from streamdet.scoring.calibration import Calibration, calibrate
from streamdet.scoring.smoothing import ema

if TYPE_CHECKING:
    from streamdet.config import CameraConfig, ModelsConfig

MIN_HELD_OUT = 50  # frames: calibration needs a tail to look at


@dataclass(frozen=True)
class Budget:
    """What the threshold is calibrated for."""

    analysis_fps: float
    false_events_per_hour: float
    smoothing_alpha: float
    holdout: float = 0.15  # share of the footage held out for calibration


@dataclass(frozen=True)
class Plan:
    """What to learn and how: the model's spec, the training settings, the threshold's budget."""

    spec: ModelSpec
    settings: TrainSettings
    budget: Budget

    @classmethod
    def for_camera(
        cls, camera: CameraConfig, models: ModelsConfig, device: str, kind: str | None = None
    ) -> Plan:
        """A configured camera's plan: ``kind`` (default: the camera's, else ``models.kind``)
        at its defaults, ``models``' seed and time budget, the camera's analysis rate."""
        kind = kind or camera.model or models.kind
        settings = TrainSettings(
            seed=models.seed, max_seconds=models.max_train_seconds, device=device
        )
        budget = Budget(
            camera.analysis_fps, models.false_events_per_hour, entry(kind).smoothing_alpha
        )
        return cls(default_spec(kind), settings, budget)


@dataclass
class Trained:
    """A model learned from footage, with its threshold and the camera's normal look."""

    model: AnomalyModel
    calibration: Calibration
    summary: dict[str, Any]
    health: HealthBaseline | None = None  # the camera's normal look (camera-health events)

    def metadata(self, camera: str | None = None, **training: Any) -> dict[str, Any]:
        """The checkpoint's metadata besides the model's own: what every caller saves."""
        meta: dict[str, Any] = {} if camera is None else {"camera": camera}
        meta["calibration"] = self.calibration.as_dict()
        meta["training"] = {**self.summary, **training}
        if self.health is not None:
            meta["health"] = self.health.as_dict()
        return meta

    def save(self, folder: Path, camera: str | None = None, **training: Any) -> Path:
        """Write the checkpoint (weights + metadata, atomically) into ``folder``."""
        return save_checkpoint(self.model, folder, self.metadata(camera, **training))


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


def learn(data: TrainingData, plan: Plan, progress: Progress = no_progress) -> Trained:
    """Train on all but the held-out share of ``data``; calibrate on the held-out share; learn
    the camera's normal look (for health events) from the same footage the model learns."""
    fit, held = split_holdout(data.clips, plan.budget.holdout)
    health = learn_baseline(fit)
    torch.manual_seed(plan.settings.seed)
    model = build_model(plan.spec).to(plan.settings.device)
    started = time.monotonic()
    train_model(model, TrainingData(fit, data.fps), plan.settings, progress)
    train_seconds = time.monotonic() - started
    calibration, held_seconds = calibrate_held_out(model, held, data.fps, plan)
    summary = {
        "train_seconds": round(train_seconds, 2),
        "clips": len(fit),
        "frames": sum(len(c) for c in fit),
        "held_out_clips": len(held),
        "fps": data.fps,
        "seed": plan.settings.seed,
        "device": plan.settings.device,
        "held_out_seconds": round(held_seconds, 1),
    }
    return Trained(model, calibration, summary, health)


def calibrate_held_out(
    model: AnomalyModel, held: list[np.ndarray], fps: float, plan: Plan
) -> tuple[Calibration, float]:
    """The threshold from the held-out clips' smoothed scores, and the seconds they last."""
    budget = plan.budget
    # scored at the camera's analysis rate, as `run` will: every step-th frame (each with its
    # neighbour before it), smoothed per analysed frame. Each of the step phases is such a
    # series of its own, so no held-out frame is wasted on the tail estimate.
    step = max(round(fps / budget.analysis_fps), 1)
    held_scores, held_seconds = [], 0.0
    for clip in held:
        if len(clip) > model.context:
            raw = score_clip(model, clip, device=plan.settings.device)[0][model.context :]
            held_seconds += len(raw) / fps
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
    return calibration, held_seconds
