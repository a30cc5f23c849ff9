"""The learning workflow, in one place: footage -> train -> calibrate the threshold on scores of
footage the scoring model never learned -> learn the health baseline -> save; and a saved
checkpoint read back.

Every caller goes through here: ``streamdet train``, a camera learning in place
(``streamdet.inference.detector``), ``streamdet eval`` and the benchmarks. The threshold is
calibrated on smoothed scores, at the camera's analysis rate, of footage the model that scored
it did not learn, for the camera's false-event budget. Two ways (the kind's
``calibration_folds``, ``streamdet.models.registry``):

* **folds** (``objects``, the default kind: 8): the footage is cut into that many contiguous
  blocks; the camera's model learns all of it, and each block is scored by it leaving that
  block out (``AnomalyModel.leaving_out``: ``objects`` drops the block's own objects from its
  bank), or else by a model trained on the other blocks. Every part of the footage is held out
  once, so a quiet stretch at the end does not set the threshold for the busy ones: on the
  indoor camera of ``shared/data/real``, learning from its first 40 s, a threshold from the
  held-out last 6 s (quiet) was crossed 10 times in the next 99 s; from the blocks, never
  (0.46 x it at most).
* **tail**: the last share of the footage is held out and never trained on (kinds whose training
  takes minutes, where each fold would cost as much again).
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
    score_windows,
    windows,
)
from streamdet.models.checkpoint import save_checkpoint
from streamdet.models.registry import build_model, default_spec, entry, train_model
from streamdet.scoring.calibration import Calibration, calibrate
from streamdet.scoring.smoothing import ema

if TYPE_CHECKING:
    from streamdet.config import CameraConfig, ModelsConfig

MIN_HELD_OUT = 50  # frames: calibration needs a tail to look at
# analysis-rate series scored per fold (of the fps / analysis_fps there are): neighbouring
# series are near copies, and scoring all of the footage for each would cost more than the
# trainings at 25 fps
FOLD_PHASES = 2


@dataclass(frozen=True)
class Budget:
    """What the threshold is calibrated for."""

    analysis_fps: float
    false_events_per_hour: float
    smoothing_alpha: float
    holdout: float = 0.15  # share of the footage held out for calibration (no folds)
    folds: int | None = None  # contiguous blocks each scored out of fold; None: the kind's own


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


def frames_needed(plan: Plan) -> int:
    """The least footage (frames) ``learn`` can learn and calibrate ``plan``'s model from."""
    return 2 * MIN_HELD_OUT


def folds_for(plan: Plan, frames: int) -> int:
    """The calibration folds ``learn`` takes for ``frames`` of footage: the plan's (or its
    kind's), fewer where a fold would have fewer than MIN_HELD_OUT frames; under 2, none (a
    held-out tail)."""
    folds = plan.budget.folds
    folds = entry(plan.spec.kind).calibration_folds if folds is None else folds
    folds = min(folds, frames // MIN_HELD_OUT)
    return folds if folds >= 2 else 0


def split_blocks(clips: list[np.ndarray], folds: int) -> list[tuple[int, list[np.ndarray]]]:
    """The footage cut into ``folds`` contiguous blocks of about as many frames each (a clip
    that spans two is cut): each block's first frame (counted over the clips one after the
    other) and its clips."""
    total = sum(map(len, clips))
    size = math.ceil(total / folds)
    blocks: list[tuple[int, list[np.ndarray]]] = [(b * size, []) for b in range(folds)]
    done = 0  # frames placed so far
    for clip in clips:
        at = 0
        while at < len(clip):
            block = min(done // size, folds - 1)
            room = (block + 1) * size - done if block < folds - 1 else len(clip) - at
            part = clip[at : at + room]
            blocks[block][1].append(part)
            at += len(part)
            done += len(part)
    return blocks


def learn(data: TrainingData, plan: Plan, progress: Progress = no_progress) -> Trained:
    """Learn the camera's model from ``data`` and calibrate its threshold on scores of footage
    the scoring model did not learn (out of fold, or a held-out tail: see the module); learn
    the camera's normal look (for health events) from the footage the model learns."""
    folds = folds_for(plan, data.frames)
    fit, held = (data.clips, []) if folds else split_holdout(data.clips, plan.budget.holdout)
    health = learn_baseline(fit)
    started = time.monotonic()
    model = _trained(plan, TrainingData(fit, data.fps), progress)
    train_seconds = time.monotonic() - started
    summary: dict[str, Any] = {
        "train_seconds": round(train_seconds, 2),
        "clips": len(fit),
        "frames": sum(len(c) for c in fit),
    }
    if folds:
        held_scores, held_seconds = out_of_fold_scores(model, data, plan, folds, progress)
        summary["folds"] = folds
    else:
        held_scores, held_seconds = analysed_scores(model, held, data.fps, plan)
        summary["held_out_clips"] = len(held)
    calibration = calibrate_scores(held_scores, held_seconds, plan)
    summary.update(
        fps=data.fps,
        seed=plan.settings.seed,
        device=plan.settings.device,
        held_out_seconds=round(held_seconds, 1),
    )
    return Trained(model, calibration, summary, health)


def out_of_fold_scores(
    model: AnomalyModel, data: TrainingData, plan: Plan, folds: int, progress: Progress
) -> tuple[list[np.ndarray], float]:
    """Every block's smoothed scores (``analysed_scores``) from ``model`` leaving that block
    out (``AnomalyModel.leaving_out``), or else from a model trained on the other blocks."""
    blocks = split_blocks(data.clips, folds)
    scores: list[np.ndarray] = []
    seconds = 0.0
    for i, (first, clips) in enumerate(blocks):
        end = first + sum(map(len, clips))
        progress("calibration", i / folds, {})
        left_out = model.leaving_out(first, end)
        if left_out is None:
            rest = [clip for j, (_, b) in enumerate(blocks) if j != i for clip in b]
            fold = _trained(plan, TrainingData(rest, data.fps), _in_fold(progress, i, folds))
            block_scores, block_seconds = analysed_scores(fold, clips, data.fps, plan, FOLD_PHASES)
        else:
            with left_out as scorer:
                block_scores, block_seconds = analysed_scores(
                    scorer, clips, data.fps, plan, FOLD_PHASES
                )
        scores += block_scores
        seconds += block_seconds
    progress("calibration", 1.0, {})
    return scores, seconds


def _trained(plan: Plan, data: TrainingData, progress: Progress) -> AnomalyModel:
    torch.manual_seed(plan.settings.seed)
    model = build_model(plan.spec).to(plan.settings.device)
    train_model(model, data, plan.settings, progress)
    return model


def _in_fold(progress: Progress, fold: int, folds: int) -> Progress:
    """``progress`` with each phase named for the calibration fold it is part of."""

    def report(phase: str, fraction: float, figures: dict[str, float]) -> None:
        progress(f"calibration {fold + 1}/{folds}: {phase}", fraction, figures)

    return report


def analysed_scores(
    model: AnomalyModel,
    clips: list[np.ndarray],
    fps: float,
    plan: Plan,
    phases: int | None = None,
) -> tuple[list[np.ndarray], float]:
    """``clips``' smoothed scores at the camera's analysis rate, as `run` scores them: every
    step-th frame (each with its neighbour before it), smoothed per analysed frame. Each of the
    step phases is such a series of its own (``phases``: only that many of them, spread over
    the step), so that no frame is wasted on the tail estimate. Also: the seconds they last."""
    budget = plan.budget
    step = max(round(fps / budget.analysis_fps), 1)
    used = step if phases is None else min(phases, step)
    offsets = sorted({round(i * step / used) for i in range(used)})
    series, seconds = [], 0.0
    for clip in clips:
        if len(clip) <= model.context:
            continue
        view = windows(clip, model.context)  # window i ends at frame i + context
        seconds += len(view) / fps
        for offset in offsets[: len(view)]:
            raw = score_windows(model, view[offset::step], device=plan.settings.device)[0]
            series.append(ema(raw, budget.smoothing_alpha))
    if not series:
        raise ModelError("held-out footage too short to score")
    return series, seconds


def calibrate_scores(scores: list[np.ndarray], seconds: float, plan: Plan) -> Calibration:
    """The threshold from held-out smoothed score series (``seconds`` of footage)."""
    budget = plan.budget
    try:
        return calibrate(
            scores,
            analysis_fps=budget.analysis_fps,
            false_events_per_hour=budget.false_events_per_hour,
            smoothing_alpha=budget.smoothing_alpha,
            seconds=seconds,
        )
    except ValueError as exc:
        raise ModelError(f"cannot calibrate: {exc}") from None
