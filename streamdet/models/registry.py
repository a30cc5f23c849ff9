"""The model registry: kind name -> how to build and train it. Explicit; no discovery magic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from streamdet.errors import ModelError
from streamdet.models import (
    autoencoder,
    flow,
    fusion,
    local,
    motion,
    motionflow,
    objects,
    predictor,
)
from streamdet.models.base import (
    AnomalyModel,
    ModelSpec,
    Progress,
    Trainer,
    TrainingData,
    TrainSettings,
)


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[ModelSpec], AnomalyModel]
    train: Trainer
    spec: ModelSpec  # defaults: input size, patch size, params
    smoothing_alpha: float  # causal EMA applied to its frame scores (1.0: none)
    summary: str
    # its threshold is calibrated on every part of the footage, each scored by a model that
    # did not learn it (``streamdet.learning.workflow``): this many contiguous blocks, each
    # one more training unless the model can leave a block out; 0: on a held-out tail (kinds
    # that take minutes to train)
    calibration_folds: int = 0


MODELS: dict[str, ModelEntry] = {
    "framediff": ModelEntry(
        motion.build,
        motion.train_framediff,
        ModelSpec("framediff"),
        1.0,
        "baseline: mean absolute frame difference",
    ),
    "motionflow": ModelEntry(
        motionflow.build,
        motionflow.train_motionflow,
        motionflow.default_spec(),
        0.5,
        "default: moving share + DIS optical-flow speed per square, z-scored by normal frame"
        " maxima",
    ),
    "objects": ModelEntry(
        objects.build,
        objects.train_objects,
        objects.default_spec(),
        0.5,
        "objects from a learned background (place, size, speed, direction, stillness, a crop "
        "embedding) against a k-NN bank of the camera's normal objects, with a reason",
        calibration_folds=8,
    ),
    "motion": ModelEntry(
        motion.build,
        motion.train_motion,
        ModelSpec("motion"),
        0.5,
        "local motion cues per patch: share of moving pixels and speed (normal flow by "
        "default; params flow=block for block matching)",
    ),
    "flow": ModelEntry(
        flow.build,
        flow.train_flow,
        flow.default_spec(),
        0.5,
        "DIS optical flow per cell: speed and direction against that cell's normal footage",
    ),
    "patchae": ModelEntry(
        local.build,
        local.train_patchae,
        ModelSpec("patchae"),
        0.5,
        "local-region CNN: autoencoder features of moving patches vs a bank of normal ones",
    ),
    "fusion": ModelEntry(
        fusion.build,
        fusion.train_fusion,
        fusion.default_spec(),
        0.5,
        "motion (block matching) + patchae, each on its normal-footage tail scale",
    ),
    "ae": ModelEntry(
        autoencoder.build,
        autoencoder.train,
        ModelSpec("ae"),
        1.0,
        "convolutional autoencoder; reconstruction error per patch",
    ),
    "predictor": ModelEntry(
        predictor.build,
        predictor.train,
        ModelSpec("predictor"),
        1.0,
        "U-Net future-frame predictor; prediction error per patch",
    ),
}


def entry(kind: str) -> ModelEntry:
    try:
        return MODELS[kind]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ModelError(f"unknown model kind {kind!r}; known: {known}") from None


def default_spec(
    kind: str,
    *,
    width: int | None = None,
    height: int | None = None,
    params: dict[str, Any] | None = None,
) -> ModelSpec:
    """The kind's default spec, with the input size and some params overridden."""
    spec = entry(kind).spec
    return replace(
        spec,
        width=width or spec.width,
        height=height or spec.height,
        params={**spec.params, **(params or {})},
    )


def build_model(spec: ModelSpec) -> AnomalyModel:
    model = entry(spec.kind).build(spec)
    if not isinstance(model, AnomalyModel):
        raise ModelError(f"model kind {spec.kind!r} did not build an AnomalyModel")
    return model


def train_model(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    entry(model.kind).train(model, data, settings, progress)
